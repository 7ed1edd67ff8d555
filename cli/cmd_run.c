/* cmd_run.c — `recall run EXPERIMENT.lua`: expands an experiment spec
 * into runs, has run_pool.c train them (in parallel worker threads, which
 * share the process's JIT kernel cache: runs that differ only in seed, lr
 * or task compile nothing new) and writes the experiment directory of
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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
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
static void experiment_json(const cr_xp *x, rt_buf *b) {
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
  char *runs = cr_join(dir, "runs");
  DIR *d = opendir(runs);
  int n = 0;
  for (struct dirent *de; d && (de = readdir(d));) {
    if (de->d_name[0] == '.') continue;
    char *rd = cr_join(runs, de->d_name), *done = cr_join(rd, "done");
    n += exists(done);
    free(rd), free(done);
  }
  if (d) closedir(d);
  free(runs);
  return n;
}

/* Checks dir against --resume, marks finished runs and writes
 * experiment.json (unless a matching one is there). */
static int prepare_dir(cr_xp *x, bool resume) {
  rt_buf b = {0};
  experiment_json(x, &b);
  char *path = cr_join(x->dir, "experiment.json");
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
  cr_remove_temps(x->dir);
  char *fig = cr_join(x->dir, "figures");
  cr_remove_temps(fig);
  free(fig);
  for (int i = 0; i < x->e->n_runs; i++) {
    char *runs = cr_join(x->dir, "runs"), *rd = cr_join(runs, x->e->runs[i].name);
    char *done = cr_join(rd, "done");
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
static int setup_runs(cr_xp *x) {
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

static void free_xp(cr_xp *x) {
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
static void list_runs(const cr_xp *xps, int n, bool study, const char *dir) {
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
static int write_study_json(const fe_experiment *s, const cr_xp *xps, int n, const char *dir) {
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
  char *path = cr_join(dir, "experiment.json");
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
  cr_xp *xps = NULL;
  cr_tally t = {0};
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
    xps[i].dir = study ? cr_join(a.dir, xps[i].e->name) : cli_strdup(a.dir);
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
  if (top) cr_remove_temps(a.dir);
  if (top && write_study_json(top, xps, n_xps, a.dir) < 0) goto out;

  double t0 = cr_now();
  cr_run_pool(xps, n_xps, top != NULL, a.jobs, a.backend, a.threads, &t);
  double secs = cr_now() - t0;
  if (cli_stop) {
    /* results.csv and the report would describe a part as if it were the
     * whole: leave them to the --resume that finishes the experiment */
    cli_error("run", "interrupted: %d of %d runs finished; rerun with --resume to finish "
              "(recall run %s -o %s --resume)", t.finished + t.skipped, t.total, a.spec, a.dir);
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
  cr_fmt_time(secs, el, sizeof el);
  if (t.failed || all_done < t.total) {
    for (int i = 0; i < t.failed; i++) {
      const cr_xp *x = &xps[t.failures[i].x];
      fprintf(stderr, "recall run: failed: %s%s%s\n", top ? x->e->name : "", top ? "/" : "",
              x->e->runs[t.failures[i].r].name);
    }
    cli_error("run", "%d of %d runs finished in %s; %d failed (messages above). "
              "results.csv has the finished ones; fix the cause and continue with "
              "`recall run %s -o %s --resume`", all_done, t.total, el, t.total - all_done,
              a.spec, a.dir);
    goto out;
  }
  if (cli_stop) {
    cli_error("run", "interrupted: all %d runs finished and results.csv is written, the "
              "report is not; `recall report %s` or --resume writes it", t.total, a.dir);
    status = cli_stop_status();
    goto out;
  }
  int rep = make_report(a.dir);
  if (cli_stop) { /* a Ctrl-C also reaches the report's gnuplot children */
    cli_error("run", "interrupted: all %d runs finished and results.csv is written; the "
              "report may be incomplete: `recall report %s` writes it again", t.total, a.dir);
    status = cli_stop_status();
    goto out;
  }
  if (rep < 0) goto out;
  fprintf(stderr, "recall run: %d runs (%d trained now) in %s; wrote %s\n", t.total,
          t.trained, el, a.dir);
  status = 0;
out:
  for (int i = 0; i < n_xps; i++) free_xp(&xps[i]);
  free(xps);
  fe_experiment_free(top);
  free(t.failures);
  cli_settings_free(&a.set);
  return status;
}

