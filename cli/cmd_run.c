/* cmd_run.c — `recall run EXPERIMENT.lua`: expands an experiment spec
 * into runs, trains them (in parallel worker threads, which share the
 * process's JIT kernel cache: runs that differ only in seed, lr or task
 * compile nothing new) and writes the experiment directory of
 * .notes/results-format.md. A study spec runs each of its experiments into
 * DIR/<name>/ and concatenates their results.
 *
 * SIGINT/SIGTERM (cli/signals.c): the workers stop at their next training
 * step or sweep length and take no new run; an unfinished run gets no
 * `done` marker (--resume redoes it from scratch), results.csv and the
 * report are not written, and the command exits with 130 / 143. Every
 * file is renamed into place complete, so the directory holds complete
 * files or none. */
#include "cmd_run.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out) {
  fputs("usage: recall run EXPERIMENT.lua [-o DIR] [-j JOBS] [--set k=v ...] [--resume]\n"
        "                  [--threads N] [--backend jit|interp]\n"
        "Runs every run of an experiment spec (specs/experiments/NAME.lua) and writes\n"
        "DIR/experiment.json, DIR/runs/<run>/ (what `recall train` writes, then\n"
        "`done`), DIR/results.csv and DIR/convergence.csv (DIR: runs/<name>).\n"
        "A study spec runs each of its experiments into DIR/<name>/.\n"
        "  -j JOBS       runs trained at the same time (default: the CPU count)\n"
        "  --threads N   worker threads inside each run (default 1)\n"
        "  --set k=v     overrides the experiment's value of k for every run;\n"
        "                a list k=a,b,c sweeps it (e.g. --set seed=0,1,2,3)\n"
        "  --resume      continue DIR: skip runs marked done, redo the others\n"
        "  --dry-run     list the runs and their options; train nothing\n"
        "Results do not depend on -j or --threads.\n", out);
}

static char *xstrdup(const char *s) {
  char *d = strdup(s);
  if (!d) abort();
  return d;
}

static char *join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *s = malloc(n);
  if (!s) abort();
  snprintf(s, n, "%s/%s", a, b);
  return s;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* ---- the experiments and their runs ---- */

typedef struct {
  fe_experiment *e;
  char *dir;   /* its directory */
  cm_run *cm;  /* one per run, set up before anything runs */
  bool *done;  /* skipped: finished by an earlier invocation */
} xp;

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
  xp *xps;
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

static void fmt_time(double s, char *buf, size_t n) {
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
  double el = now() - p->t0, u = progress_units(p);
  char e[32], eta[32], line[512];
  fmt_time(el, e, sizeof e);
  fmt_time(u > 0.05 ? el * (p->n_jobs - u) / u : -1, eta, sizeof eta);
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
  p->last_draw = now();
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
  if (p->tty && now() - p->last_draw >= 0.2) redraw(p);
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
static void remove_temps(const char *dir) {
  DIR *d = opendir(dir);
  for (struct dirent *de; d && (de = readdir(d));) {
    if (!is_temp_name(de->d_name)) continue;
    char *f = join(dir, de->d_name);
    unlink(f);
    free(f);
  }
  if (d) closedir(d);
}

/* Files of an unfinished earlier attempt: a redo must not inherit them. */
static void clear_run_dir(const char *dir) {
  for (int i = 0; run_files[i]; i++) {
    char *f = join(dir, run_files[i]);
    unlink(f);
    free(f);
  }
  remove_temps(dir);
}

static void finish_line(pool *p, const job *j, int rc, const cr_outcome *o, double secs) {
  xp *x = &p->xps[j->x];
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
    xp *x = &p->xps[j.x];
    cm_run *r = &x->cm[j.r];
    slot *s = &p->slots[w->slot];
    *s = (slot){.active = true, .xname = p->study ? x->e->name : NULL,
                .run = x->e->runs[j.r].name, .phase = "starting",
                .max = r->train.max_steps, .test_acc = NAN};
    redraw(p);
    pthread_mutex_unlock(&p->lock);

    char *runs = join(x->dir, "runs");
    char *dir = join(runs, x->e->runs[j.r].name);
    clear_run_dir(dir);
    cr_outcome o;
    double t = now();
    int rc = cr_train_run(r, dir, p->backend, p->threads, &hooks, &o);
    if (rc == 0) { /* written last: the run is complete */
      char *done = join(dir, "done");
      char text[32];
      int n = snprintf(text, sizeof text, "%s\n", cr_status_name(o.train.status));
      ir_error err;
      if ((rc = rt_write_atomic(done, text, (size_t)n, &err)) < 0) cli_error("run", "%s", err.msg);
      free(done);
    }
    t = now() - t;
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
  p->t0 = now();
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

/* ---- experiment.json ---- */

static void json_strmap(rt_buf *b, const char *const *k, const char *const *v, int n,
                        const char *indent) {
  rt_buf_printf(b, "{");
  for (int i = 0; i < n; i++) {
    rt_buf_printf(b, "%s\n%s  ", i ? "," : "", indent);
    rt_buf_json_str(b, k[i]);
    rt_buf_printf(b, ": ");
    rt_buf_json_str(b, v[i]);
  }
  rt_buf_printf(b, "\n%s}", indent);
}

/* The experiment as expanded: each run's name, label, spec, directory and
 * the options the experiment gives it (config.json has them resolved). */
static void experiment_json(const xp *x, rt_buf *b) {
  const fe_experiment *e = x->e;
  rt_buf_printf(b, "{\n  \"name\": ");
  rt_buf_json_str(b, e->name);
  rt_buf_printf(b, ",\n  \"title\": ");
  rt_buf_json_str(b, e->title);
  rt_buf_printf(b, ",\n  \"problem\": ");
  rt_buf_json_str(b, e->problem);
  rt_buf_printf(b, ",\n  \"spec\": ");
  char *abs = realpath(e->path, NULL);
  rt_buf_json_str(b, abs ? abs : e->path);
  free(abs);
  rt_buf_printf(b, ",\n  \"runs\": [");
  for (int i = 0; i < e->n_runs; i++) {
    const fe_run *r = &e->runs[i];
    rt_buf_printf(b, "%s\n    {\"name\": ", i ? "," : "");
    rt_buf_json_str(b, r->name);
    rt_buf_printf(b, ", \"label\": ");
    rt_buf_json_str(b, r->label);
    rt_buf_printf(b, ", \"spec\": ");
    rt_buf_json_str(b, x->cm[i].spec);
    rt_buf_printf(b, ", \"dir\": ");
    char dir[600];
    snprintf(dir, sizeof dir, "runs/%s", r->name);
    rt_buf_json_str(b, dir);
    rt_buf_printf(b, ",\n     \"options\": ");
    json_strmap(b, (const char *const *)r->keys, (const char *const *)r->values, r->n, "     ");
    rt_buf_printf(b, "}");
  }
  rt_buf_printf(b, "\n  ]\n}\n");
}

/* experiment.json's runs, flattened: "runs.3.options.lr" -> "0.01". */
static bool run_key(const char *k) { return !strncmp(k, "runs.", 5); }

static bool same_runs(const cm_json *a, const cm_json *b, char *why, size_t n) {
  int ia = 0, ib = 0;
  for (;;) {
    while (ia < a->n && !run_key(a->keys[ia])) ia++;
    while (ib < b->n && !run_key(b->keys[ib])) ib++;
    if (ia >= a->n || ib >= b->n) {
      if (ia < a->n || ib < b->n)
        snprintf(why, n, "it has %s runs or options", ia < a->n ? "more" : "fewer");
      return ia >= a->n && ib >= b->n;
    }
    if (strcmp(a->keys[ia], b->keys[ib]) || strcmp(a->values[ia], b->values[ib])) {
      if (strcmp(a->keys[ia], b->keys[ib]))
        snprintf(why, n, "%s there, %s now", a->keys[ia], b->keys[ib]);
      else
        snprintf(why, n, "%s is %s there, %s now", a->keys[ia], a->values[ia], b->values[ib]);
      return false;
    }
    ia++, ib++;
  }
}

/* How many runs under dir/runs/ are marked done. */
static int count_done(const char *dir) {
  char *runs = join(dir, "runs");
  DIR *d = opendir(runs);
  int n = 0;
  for (struct dirent *de; d && (de = readdir(d));) {
    if (de->d_name[0] == '.') continue;
    char *rd = join(runs, de->d_name), *done = join(rd, "done");
    n += exists(done);
    free(rd), free(done);
  }
  if (d) closedir(d);
  free(runs);
  return n;
}

/* Checks dir against --resume, marks finished runs and writes
 * experiment.json (unless a matching one is there). */
static int prepare_dir(xp *x, bool resume) {
  rt_buf b = {0};
  experiment_json(x, &b);
  char *path = join(x->dir, "experiment.json");
  int rc = -1;
  char *old = NULL;
  cm_json jo = {0}, jn = {0};
  int n_done = count_done(x->dir);
  if (!resume && n_done > 0) {
    cli_error("run", "%s already holds %d finished run%s; use --resume to continue it "
              "(finished runs are kept), or another -o DIR", x->dir, n_done,
              n_done == 1 ? "" : "s");
    goto out;
  }
  char msg[256];
  if (resume && (old = cr_read_file(path, NULL))) {
    if (cm_json_parse(old, &jo, msg, sizeof msg) < 0) {
      cli_error("run", "%s: %s", path, msg);
      goto out;
    }
    if (cm_json_parse(b.s, &jn, msg, sizeof msg) < 0) abort();
    char why[512] = "";
    if (!same_runs(&jo, &jn, why, sizeof why)) {
      cli_error("run", "--resume: %s describes other runs than %s gives now (%s); "
                "use another -o DIR", path, x->e->path, why);
      goto out;
    }
  } else if (resume && n_done > 0) {
    cli_error("run", "--resume: %s has finished runs but no experiment.json", x->dir);
    goto out;
  }
  if (cm_mkdirs("run", x->dir) < 0) goto out;
  remove_temps(x->dir);
  char *fig = join(x->dir, "figures");
  remove_temps(fig);
  free(fig);
  for (int i = 0; i < x->e->n_runs; i++) {
    char *runs = join(x->dir, "runs"), *rd = join(runs, x->e->runs[i].name);
    char *done = join(rd, "done");
    x->done[i] = resume && exists(done);
    free(runs), free(rd), free(done);
  }
  ir_error err;
  if (!old && rt_write_atomic(path, b.s, b.len, &err) < 0) {
    cli_error("run", "%s", err.msg);
    goto out;
  }
  rc = 0;
out:
  cm_json_free(&jo);
  cm_json_free(&jn);
  free(old);
  free(path);
  rt_buf_free(&b);
  return rc;
}

/* ---- loading ---- */

static fe_experiment *load(const char *path, const cli_settings *set) {
  fe_options o = {.keys = set->keys, .values = set->values, .n_sets = set->n};
  fe_experiment *e = NULL;
  fe_error *err = calloc(1, sizeof *err);
  if (!err) abort();
  if (fe_load_experiment(path, &o, &e, err) < 0) {
    fprintf(stderr, "recall run: %s\n", err->msg);
    e = NULL;
  }
  free(err);
  return e;
}

/* cm_setup for every run: every mistake shows before anything trains. */
static int setup_runs(xp *x) {
  const fe_experiment *e = x->e;
  x->cm = calloc((size_t)e->n_runs + 1, sizeof *x->cm);
  x->done = calloc((size_t)e->n_runs + 1, sizeof *x->done);
  if (!x->cm || !x->done) abort();
  for (int i = 0; i < e->n_runs; i++) {
    const fe_run *r = &e->runs[i];
    if (cm_setup(&x->cm[i], "run", r->spec, (const char *const *)r->keys,
                 (const char *const *)r->values, r->n) < 0) {
      cli_error("run", "%s: in run %s (model %s, spec %s)", e->path, r->name, r->label, r->spec);
      return -1;
    }
    x->cm[i].train.stop = &cli_stop;
  }
  return 0;
}

static void free_xp(xp *x) {
  for (int i = 0; x->cm && x->e && i < x->e->n_runs; i++) cm_free(&x->cm[i]);
  free(x->cm);
  free(x->done);
  free(x->dir);
  fe_experiment_free(x->e);
}

/* ---- the report ---- */

/* The single call site of `recall report DIR` (cli/cmd_report.c). */
static int make_report(const char *dir) { return cli_report(dir, false) ? -1 : 0; }

/* ---- the command ---- */

typedef struct {
  const char *spec, *dir, *backend;
  int jobs, threads;
  bool resume, dry;
  cli_settings set;
} args;

static int parse_count(const char *flag, const char *s, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || end == s || v < 1 || v > 256) {
    cli_error("run", "%s takes a count 1..256, got '%s'", flag, s);
    return -1;
  }
  *out = (int)v;
  return 0;
}

/* 0 ok, 1 help printed, 2 bad usage */
static int parse_args(int argc, char **argv, args *a) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  *a = (args){.backend = "jit", .jobs = ncpu > 0 ? (int)(ncpu > 256 ? 256 : ncpu) : 1,
              .threads = 1};
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    bool more = i + 1 < argc;
    if (!strcmp(s, "--set") && more) {
      if (!cli_add_setting(&a->set, argv[++i])) {
        cli_error("run", "--set expects k=v, got '%s'", argv[i]);
        return 2;
      }
    } else if (!strcmp(s, "-o") && more) {
      a->dir = argv[++i];
    } else if (!strcmp(s, "-j") && more) {
      if (parse_count("-j", argv[++i], &a->jobs) < 0) return 2;
    } else if (!strncmp(s, "-j", 2) && s[2]) {
      if (parse_count("-j", s + 2, &a->jobs) < 0) return 2;
    } else if (!strcmp(s, "--threads") && more) {
      if (parse_count("--threads", argv[++i], &a->threads) < 0) return 2;
    } else if (!strcmp(s, "--backend") && more) {
      a->backend = argv[++i];
      if (strcmp(a->backend, "jit") && strcmp(a->backend, "interp")) {
        cli_error("run", "--backend is jit or interp, got '%s'", a->backend);
        return 2;
      }
    } else if (!strcmp(s, "--resume")) {
      a->resume = true;
    } else if (!strcmp(s, "--dry-run") || !strcmp(s, "-n")) {
      a->dry = true;
    } else if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
      usage(stdout);
      return 1;
    } else if (s[0] == '-' || a->spec) {
      cli_error("run", "unexpected argument '%s'", s);
      usage(stderr);
      return 2;
    } else {
      a->spec = s;
    }
  }
  if (!a->spec) {
    usage(stderr);
    return 2;
  }
  return 0;
}

/* --dry-run: each run's directory and the options the experiment sets. */
static void list_runs(const xp *xps, int n, bool study, const char *dir) {
  int total = 0;
  for (int i = 0; i < n; i++) {
    const fe_experiment *e = xps[i].e;
    printf("%s: %s (%d runs) -> %s\n", e->name, *e->title ? e->title : e->path, e->n_runs,
           xps[i].dir);
    for (int r = 0; r < e->n_runs; r++) {
      printf("  %-36s %s", e->runs[r].name, xps[i].cm[r].model);
      for (int k = 0; k < e->runs[r].n; k++)
        printf(" %s=%s", e->runs[r].keys[k], e->runs[r].values[k]);
      printf("\n");
    }
    total += e->n_runs;
  }
  if (study) printf("%d runs in all -> %s\n", total, dir);
}

/* The study's own experiment.json: what it consists of. */
static int write_study_json(const fe_experiment *s, const xp *xps, int n, const char *dir) {
  rt_buf b = {0};
  rt_buf_printf(&b, "{\n  \"name\": ");
  rt_buf_json_str(&b, s->name);
  rt_buf_printf(&b, ",\n  \"title\": ");
  rt_buf_json_str(&b, s->title);
  rt_buf_printf(&b, ",\n  \"study\": true,\n  \"experiments\": [");
  for (int i = 0; i < n; i++) {
    rt_buf_printf(&b, "%s\n    {\"name\": ", i ? "," : "");
    rt_buf_json_str(&b, xps[i].e->name);
    rt_buf_printf(&b, ", \"dir\": ");
    rt_buf_json_str(&b, xps[i].e->name);
    rt_buf_printf(&b, ", \"title\": ");
    rt_buf_json_str(&b, xps[i].e->title);
    rt_buf_printf(&b, ", \"problem\": ");
    rt_buf_json_str(&b, xps[i].e->problem);
    rt_buf_printf(&b, ", \"runs\": %d}", xps[i].e->n_runs);
  }
  rt_buf_printf(&b, "\n  ]\n}\n");
  char *path = join(dir, "experiment.json");
  ir_error err;
  int rc = rt_write_atomic(path, b.s, b.len, &err);
  if (rc < 0) cli_error("run", "%s", err.msg);
  free(path);
  rt_buf_free(&b);
  return rc;
}

int cmd_run(int argc, char **argv) {
  args a;
  int st = parse_args(argc, argv, &a);
  if (st) {
    cli_settings_free(&a.set);
    return st == 1 ? 0 : 2;
  }
  cli_catch_signals();
  int status = 1, n_xps = 0;
  xp *xps = NULL;
  pool p = {.lock = PTHREAD_MUTEX_INITIALIZER};
  fe_experiment *top = load(a.spec, &a.set);
  if (!top) goto out;
  char defdir[600];
  if (!a.dir) {
    snprintf(defdir, sizeof defdir, "runs/%s", top->name);
    a.dir = defdir;
  }
  /* the experiments: the spec itself, or a study's list */
  bool study = top->study;
  n_xps = study ? top->n_experiments : 1;
  xps = calloc((size_t)n_xps, sizeof *xps);
  if (!xps) abort();
  if (!study) xps[0].e = top, top = NULL; /* owned by xps[0] now */
  for (int i = 0; i < n_xps; i++) {
    if (study && !(xps[i].e = load(top->experiments[i], &a.set))) goto out;
    if (xps[i].e->study) {
      cli_error("run", "%s: a study cannot list another study", xps[i].e->path);
      goto out;
    }
    for (int j = 0; j < i; j++)
      if (!strcmp(xps[j].e->name, xps[i].e->name)) {
        cli_error("run", "%s lists two experiments named %s", top->path, xps[i].e->name);
        goto out;
      }
    xps[i].dir = study ? join(a.dir, xps[i].e->name) : xstrdup(a.dir);
  }
  for (int i = 0; i < n_xps; i++)
    if (setup_runs(&xps[i]) < 0) goto out;
  if (a.dry) {
    list_runs(xps, n_xps, study, a.dir);
    status = 0;
    goto out;
  }
  if (cli_stop) { /* while loading the specs: nothing written yet */
    cli_error("run", "interrupted before any run started; nothing was written");
    status = cli_stop_status();
    goto out;
  }
  for (int i = 0; i < n_xps; i++)
    if (prepare_dir(&xps[i], a.resume) < 0) goto out;
  if (top) remove_temps(a.dir);
  if (top && write_study_json(top, xps, n_xps, a.dir) < 0) goto out;

  p = (pool){.lock = PTHREAD_MUTEX_INITIALIZER, .xps = xps, .n_xps = n_xps,
             .study = top != NULL, .backend = a.backend, .threads = a.threads,
             .tty = isatty(2)};
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
  double t0 = now();
  run_pool(&p, a.jobs);
  double secs = now() - t0;
  if (cli_stop) {
    /* results.csv and the report would describe a part as if it were the
     * whole: leave them to the --resume that finishes the experiment */
    cli_error("run", "interrupted: %d of %d runs finished; rerun with --resume to finish "
              "(recall run %s -o %s --resume)", p.finished + p.skipped, p.total, a.spec, a.dir);
    status = cli_stop_status();
    goto out;
  }

  char msg[1024];
  int all_done = 0;
  for (int i = 0; i < n_xps; i++) {
    int n;
    if (cr_write_results(xps[i].dir, xps[i].e, &n, msg, sizeof msg) < 0) {
      cli_error("run", "%s", msg);
      goto out;
    }
    all_done += n;
  }
  if (top) {
    const char **subs = malloc(sizeof *subs * (size_t)n_xps);
    if (!subs) abort();
    for (int i = 0; i < n_xps; i++) subs[i] = xps[i].dir;
    int rc = cr_concat_results(a.dir, subs, n_xps, msg, sizeof msg);
    free(subs);
    if (rc < 0) {
      cli_error("run", "%s", msg);
      goto out;
    }
  }
  char el[32];
  fmt_time(secs, el, sizeof el);
  if (p.failed || all_done < p.total) {
    for (int i = 0; i < p.n_jobs; i++)
      if (p.job_failed[i])
        fprintf(stderr, "recall run: failed: %s%s%s\n", top ? xps[p.jobs[i].x].e->name : "",
                top ? "/" : "", xps[p.jobs[i].x].e->runs[p.jobs[i].r].name);
    cli_error("run", "%d of %d runs finished in %s; %d failed (messages above). "
              "results.csv has the finished ones; fix the cause and continue with "
              "`recall run %s -o %s --resume`", all_done, p.total, el, p.total - all_done,
              a.spec, a.dir);
    goto out;
  }
  if (cli_stop) {
    cli_error("run", "interrupted: all %d runs finished and results.csv is written, the "
              "report is not; `recall report %s` or --resume writes it", p.total, a.dir);
    status = cli_stop_status();
    goto out;
  }
  int rep = make_report(a.dir);
  if (cli_stop) { /* a Ctrl-C also reaches the report's gnuplot children */
    cli_error("run", "interrupted: all %d runs finished and results.csv is written; the "
              "report may be incomplete: `recall report %s` writes it again", p.total, a.dir);
    status = cli_stop_status();
    goto out;
  }
  if (rep < 0) goto out;
  fprintf(stderr, "recall run: %d runs (%d trained now) in %s; wrote %s\n", p.total,
          p.n_jobs, el, a.dir);
  status = 0;
out:
  for (int i = 0; i < n_xps; i++) free_xp(&xps[i]);
  free(xps);
  fe_experiment_free(top);
  free(p.jobs);
  free(p.job_failed);
  free(p.slots);
  cli_settings_free(&a.set);
  return status;
}

