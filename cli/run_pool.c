/* run_pool.c — the runs of one `recall run` invocation, trained by worker
 * threads (longest first), with a status block on a terminal and one
 * line per finished run (cmd_run.h). */
#include "cmd_run.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

char *cr_join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *s = malloc(n);
  if (!s) abort();
  snprintf(s, n, "%s/%s", a, b);
  return s;
}

double cr_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- the jobs ---- */

typedef struct {
  int x, r;    /* experiment, run */
  double cost; /* a guess of its work, to start the longest first */
} job;

/* The work of a run, roughly: the elements its forward graph computes at
 * L, times the sequences it may run: training examples (forward and
 * backward, ~3 forwards), test batches, and the sweep (~3L lengths padded
 * to buckets of ~1.5 times their length on average). */
static double job_cost(const cm_run *r) {
  double work = 0;
  const ir_func *f = r->fm->f;
  for (int i = 0; f && i < f->n_nodes; i++) work += (double)ir_numel(&f->nodes[i].type);
  const rt_train_config *c = &r->train;
  double evals = c->eval_every > 0 ? (double)c->max_steps / (double)c->eval_every : 0;
  double fwd = 3.0 * (double)c->max_steps * c->batch + evals * c->test_size +
               (double)r->sweep_n * 3.0 * r->L * 1.5;
  return work * fwd;
}

/* Longest first (ties: experiment order), so that two workers do not end
 * with one long run left for one of them. */
static int cmp_job(const void *a, const void *b) {
  const job *x = a, *y = b;
  if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
  return x->x != y->x ? x->x - y->x : x->r - y->r;
}

/* ---- progress ---- */

typedef struct {
  bool active;
  const char *xname, *run; /* xname NULL outside a study */
  const char *phase;       /* "compiling", "training", "sweep" */
  long step, max;
  double loss, acc, test_acc, rate;
  int sw_done, sw_total;
} slot;

typedef struct {
  pthread_mutex_t lock;
  cr_xp *xps;
  int n_xps;
  bool study;
  job *jobs;
  int n_jobs, next, finished, failed, skipped, total;
  bool *job_failed;
  const char *backend;
  int threads;
  bool tty;
  slot *slots;
  int n_slots, drawn;
  double t0, last_draw;
} pool;

typedef struct {
  pool *p;
  int slot;
} worker;

void cr_fmt_time(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
  else if (s < 60) snprintf(buf, n, "%.0fs", s);
  else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static int term_width(void) {
  struct winsize w;
  return ioctl(2, TIOCGWINSZ, &w) == 0 && w.ws_col > 20 ? w.ws_col : 80;
}

/* One screen line, cut to the terminal's width so that nothing wraps
 * (the redraw counts lines). */
static void put_line(const char *s, int width) {
  fprintf(stderr, "\r\033[K%.*s\n", width - 1, s);
}

/* The share of this invocation's work done: finished runs, plus the
 * running ones by step. */
static double progress_units(const pool *p) {
  double u = p->finished + p->failed;
  for (int i = 0; i < p->n_slots; i++) {
    const slot *s = &p->slots[i];
    if (!s->active) continue;
    if (!strcmp(s->phase, "sweep")) u += 0.9 + 0.1 * s->sw_done / (s->sw_total ? s->sw_total : 1);
    else if (s->max > 0) u += 0.9 * (double)s->step / (double)s->max;
  }
  return u;
}

/* Redraws the block of status lines (lock held; a terminal only). */
static void redraw(pool *p) {
  if (!p->tty) return;
  int width = term_width();
  if (p->drawn) fprintf(stderr, "\033[%dA", p->drawn);
  double el = cr_now() - p->t0, u = progress_units(p);
  char e[32], eta[32], line[512];
  cr_fmt_time(el, e, sizeof e);
  cr_fmt_time(u > 0.05 ? el * (p->n_jobs - u) / u : -1, eta, sizeof eta);
  snprintf(line, sizeof line, "recall run: %d/%d runs done%s, elapsed %s, ETA %s",
           p->finished + p->skipped, p->total, p->failed ? " (some FAILED)" : "", e, eta);
  put_line(line, width);
  p->drawn = 1;
  for (int i = 0; i < p->n_slots; i++) {
    const slot *s = &p->slots[i];
    if (!s->active) continue;
    int k = snprintf(line, sizeof line, "  %s%s%s  ", s->xname ? s->xname : "",
                     s->xname ? "/" : "", s->run);
    if (!strcmp(s->phase, "training") && s->step > 0) {
      char test[32] = "";
      if (!isnan(s->test_acc)) snprintf(test, sizeof test, "  test %.3f", s->test_acc);
      snprintf(line + k, sizeof line - (size_t)k,
               "step %ld/%ld  loss %.4f  acc %.3f%s  %.0f steps/s", s->step, s->max, s->loss,
               s->acc, test, s->rate);
    } else if (!strcmp(s->phase, "sweep")) {
      snprintf(line + k, sizeof line - (size_t)k, "sweep %d/%d lengths", s->sw_done, s->sw_total);
    } else {
      snprintf(line + k, sizeof line - (size_t)k, "%s", s->phase);
    }
    put_line(line, width);
    p->drawn++;
  }
  fprintf(stderr, "\033[J");
  fflush(stderr);
  p->last_draw = cr_now();
}

/* A line that stays (lock held): above the status block on a terminal. */
static void say(pool *p, const char *line) {
  if (p->tty && p->drawn) fprintf(stderr, "\033[%dA\r\033[J", p->drawn);
  p->drawn = 0;
  fprintf(stderr, "%s\n", line);
  redraw(p);
  fflush(stderr);
}

static void maybe_redraw(pool *p) {
  if (p->tty && cr_now() - p->last_draw >= 0.2) redraw(p);
}

static void h_compile(void *c) {
  worker *w = c;
  pthread_mutex_lock(&w->p->lock);
  w->p->slots[w->slot].phase = "compiling";
  maybe_redraw(w->p);
  pthread_mutex_unlock(&w->p->lock);
}

static void h_step(void *c, long step, double loss, double acc, double el) {
  worker *w = c;
  pool *p = w->p;
  if (!p->tty) return;
  pthread_mutex_lock(&p->lock);
  slot *s = &p->slots[w->slot];
  s->phase = "training";
  s->step = step, s->loss = loss, s->acc = acc;
  s->rate = el > 0 ? step / el : 0;
  maybe_redraw(p);
  pthread_mutex_unlock(&p->lock);
}

static void h_eval(void *c, const rt_train_row *row) {
  worker *w = c;
  pthread_mutex_lock(&w->p->lock);
  w->p->slots[w->slot].test_acc = row->test_acc;
  pthread_mutex_unlock(&w->p->lock);
}

static void h_sweep(void *c, int done, int total) {
  worker *w = c;
  pthread_mutex_lock(&w->p->lock);
  slot *s = &w->p->slots[w->slot];
  s->phase = "sweep";
  s->sw_done = done, s->sw_total = total;
  maybe_redraw(w->p);
  pthread_mutex_unlock(&w->p->lock);
}

/* ---- one run ---- */

static const char *const run_files[] = {"done", "config.json", "train.csv", "sweep.csv",
                                        "checkpoint.safetensors", NULL};

/* A temporary file of rt_write_atomic / rt_st_write: NAME.tmp.PID.N. */
static bool is_temp_name(const char *name) {
  const char *t = strstr(name, ".tmp.");
  if (!t || t == name) return false;
  const char *s = t + 5;
  size_t a = strspn(s, "0123456789");
  if (!a || s[a] != '.') return false;
  s += a + 1;
  size_t b = strspn(s, "0123456789");
  return b && !s[b];
}

/* Removes the temporary files a killed earlier attempt left in dir (a
 * second signal exits without waiting for a write to finish). */
void cr_remove_temps(const char *dir) {
  DIR *d = opendir(dir);
  for (struct dirent *de; d && (de = readdir(d));) {
    if (!is_temp_name(de->d_name)) continue;
    char *f = cr_join(dir, de->d_name);
    unlink(f);
    free(f);
  }
  if (d) closedir(d);
}

/* Files of an unfinished earlier attempt: a redo must not inherit them. */
static void clear_run_dir(const char *dir) {
  for (int i = 0; run_files[i]; i++) {
    char *f = cr_join(dir, run_files[i]);
    unlink(f);
    free(f);
  }
  cr_remove_temps(dir);
}

static void finish_line(pool *p, const job *j, int rc, const cr_outcome *o, double secs) {
  cr_xp *x = &p->xps[j->x];
  const char *name = x->e->runs[j->r].name;
  char line[1024];
  int k = snprintf(line, sizeof line, "recall run: [%d/%d] %s%s%s: ", p->finished + p->skipped,
                   p->total, p->study ? x->e->name : "", p->study ? "/" : "", name);
  if (rc < 0) {
    /* the message went to stderr below the status block: keep it there
     * (the block is drawn again under it) */
    p->drawn = 0;
    snprintf(line + k, sizeof line - (size_t)k, "FAILED (see above)");
  } else {
    const rt_train_result *t = &o->train;
    k += snprintf(line + k, sizeof line - (size_t)k, "%s; %ld steps, %.1f s", t->message,
                  t->steps, secs);
    if (o->swept)
      snprintf(line + k, sizeof line - (size_t)k, "; sweep %d..%d mean accuracy %.3f", o->lo,
               o->hi, o->mean_acc);
  }
  say(p, line);
}

static void *work(void *arg) {
  worker *w = arg;
  pool *p = w->p;
  cr_hooks hooks = {h_compile, h_step, h_eval, h_sweep, w};
  for (;;) {
    pthread_mutex_lock(&p->lock);
    if (p->next >= p->n_jobs || cli_stop) {
      pthread_mutex_unlock(&p->lock);
      break;
    }
    int ji = p->next++;
    job j = p->jobs[ji];
    cr_xp *x = &p->xps[j.x];
    cm_run *r = &x->cm[j.r];
    slot *s = &p->slots[w->slot];
    *s = (slot){.active = true, .xname = p->study ? x->e->name : NULL,
                .run = x->e->runs[j.r].name, .phase = "starting",
                .max = r->train.max_steps, .test_acc = NAN};
    redraw(p);
    pthread_mutex_unlock(&p->lock);

    char *runs = cr_join(x->dir, "runs");
    char *dir = cr_join(runs, x->e->runs[j.r].name);
    clear_run_dir(dir);
    cr_outcome o;
    double t = cr_now();
    int rc = cr_train_run(r, dir, p->backend, p->threads, &hooks, &o);
    if (rc == 0) { /* written last: the run is complete */
      char *done = cr_join(dir, "done");
      char text[32];
      int n = snprintf(text, sizeof text, "%s\n", cr_status_name(o.train.status));
      ir_error err;
      if ((rc = rt_write_atomic(done, text, (size_t)n, &err)) < 0) cli_error("run", "%s", err.msg);
      free(done);
    }
    t = cr_now() - t;
    rt_model_free(r->rm); /* the kernels stay in the process's cache */
    r->rm = NULL;
    free(dir);
    free(runs);

    pthread_mutex_lock(&p->lock);
    s->active = false;
    /* a failed run does not stop the others: its message is printed now,
     * the summary counts it and --resume redoes it */
    if (rc == RT_STOPPED) {
      char line[512];
      snprintf(line, sizeof line, "recall run: %s%s%s: interrupted %s %ld steps",
               p->study ? x->e->name : "", p->study ? "/" : "", x->e->runs[j.r].name,
               o.trained ? "in the sweep, after" : "after", o.train.steps);
      say(p, line);
    } else {
      if (rc < 0) p->failed++, p->job_failed[ji] = true;
      else p->finished++;
      finish_line(p, &j, rc, &o, t);
    }
    pthread_mutex_unlock(&p->lock);
  }
  return NULL;
}

/* Trains every job with `jobs` worker threads. */
static void run_pool(pool *p, int jobs) {
  if (jobs > p->n_jobs) jobs = p->n_jobs;
  if (jobs < 1) return;
  p->slots = calloc((size_t)jobs, sizeof *p->slots);
  worker *ws = calloc((size_t)jobs, sizeof *ws);
  pthread_t *tid = calloc((size_t)jobs, sizeof *tid);
  if (!p->slots || !ws || !tid) abort();
  p->n_slots = jobs;
  p->t0 = cr_now();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 32u << 20); /* LLVM and Lua recurse */
  int started = 0;
  for (int i = 0; i < jobs; i++) {
    ws[i] = (worker){p, i};
    if (pthread_create(&tid[i], &attr, work, &ws[i]) != 0) break;
    started++;
  }
  if (started == 0) work(&ws[0]);
  for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
  pthread_attr_destroy(&attr);
  pthread_mutex_lock(&p->lock);
  if (p->tty && p->drawn) fprintf(stderr, "\033[%dA\r\033[J", p->drawn);
  p->drawn = 0;
  pthread_mutex_unlock(&p->lock);
  free(tid);
  free(ws);
}

void cr_run_pool(cr_xp *xps, int n_xps, bool study, int jobs, const char *backend,
                 int threads, cr_tally *t) {
  pool p = {.lock = PTHREAD_MUTEX_INITIALIZER, .xps = xps, .n_xps = n_xps, .study = study,
            .backend = backend, .threads = threads, .tty = isatty(2)};
  for (int i = 0; i < n_xps; i++)
    for (int r = 0; r < xps[i].e->n_runs; r++) {
      p.total++;
      if (xps[i].done[r]) {
        p.skipped++;
        continue;
      }
      p.jobs = realloc(p.jobs, sizeof *p.jobs * (size_t)(p.n_jobs + 1));
      if (!p.jobs) abort();
      p.jobs[p.n_jobs++] = (job){i, r, job_cost(&xps[i].cm[r])};
    }
  if (p.n_jobs > 1) qsort(p.jobs, (size_t)p.n_jobs, sizeof *p.jobs, cmp_job);
  p.job_failed = calloc((size_t)p.n_jobs + 1, sizeof *p.job_failed);
  if (!p.job_failed) abort();
  if (p.skipped)
    fprintf(stderr, "recall run: --resume: %d of %d runs are done; running the other %d\n",
            p.skipped, p.total, p.n_jobs);
  run_pool(&p, jobs);
  *t = (cr_tally){.total = p.total, .skipped = p.skipped, .trained = p.n_jobs,
                  .finished = p.finished, .failed = p.failed};
  t->failures = malloc(sizeof *t->failures * (size_t)(p.failed + 1));
  if (!t->failures) abort();
  for (int i = 0, k = 0; i < p.n_jobs; i++)
    if (p.job_failed[i]) t->failures[k++] = (cr_run_ref){p.jobs[i].x, p.jobs[i].r};
  free(p.jobs);
  free(p.job_failed);
  free(p.slots);
}
