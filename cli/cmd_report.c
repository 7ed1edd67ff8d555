/* cmd_report.c — `recall report DIR`: report.md and figures for an
 * experiment directory or a study (runtime/report.c does the work; this
 * reads experiment.json and talks to the user). */
#include "cmd_model.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
  fputs("usage: recall report DIR [--no-render] [-q]\n"
        "Writes DIR/report.md and DIR/figures/ (NAME.dat, NAME.gp and, with\n"
        "gnuplot, NAME.png and NAME.svg) from DIR/results.csv and\n"
        "convergence.csv. A study directory (one experiment directory per\n"
        "problem) gets a report in each plus one for the whole study.\n"
        "  --no-render  write data and gnuplot scripts only\n"
        "  -q           print nothing but errors and warnings\n", out);
}

static char *dup_or_null(const char *s) { return s && *s ? cli_strdup(s) : NULL; }

static void add_option(rt_report_meta *m, const char *k, const char *v) {
  m->keys = realloc(m->keys, sizeof *m->keys * (size_t)(m->n + 1));
  m->values = realloc(m->values, sizeof *m->values * (size_t)(m->n + 1));
  if (!m->keys || !m->values) abort();
  m->keys[m->n] = cli_strdup(k), m->values[m->n++] = cli_strdup(v); /* k: never empty */
}

/* "runs.3.options.lr" -> 3 and "lr" (the part after the run's index,
 * without "options."); false for other keys. */
static bool run_key(const char *key, long *index, const char **rest) {
  if (strncmp(key, "runs.", 5)) return false;
  char *end;
  *index = strtol(key + 5, &end, 10);
  if (end == key + 5 || *end != '.') return false;
  *rest = end + 1;
  if (!strncmp(*rest, "options.", 8)) *rest += 8;
  return **rest != '\0';
}

/* The options every run of experiment.json gives the same value, in the
 * order of the first run. */
static void shared_options(const cm_json *j, rt_report_meta *m) {
  long n_runs = 0, idx;
  const char *rest;
  for (int i = 0; i < j->n; i++)
    if (run_key(j->keys[i], &idx, &rest) && idx + 1 > n_runs) n_runs = idx + 1;
  for (int i = 0; i < j->n; i++) {
    if (!run_key(j->keys[i], &idx, &rest) || idx != 0 || !strcmp(rest, "name") ||
        !strcmp(rest, "label") || !strcmp(rest, "dir"))
      continue;
    long same = 0;
    for (int k = 0; k < j->n; k++) {
      long idx2;
      const char *rest2;
      if (run_key(j->keys[k], &idx2, &rest2) && !strcmp(rest2, rest) &&
          !strcmp(j->values[k], j->values[i]))
        same++;
    }
    if (same == n_runs) add_option(m, rest, j->values[i]);
  }
}

static int read_meta(void *ctx, const char *dir, rt_report_meta *out, ir_error *err) {
  (void)ctx;
  size_t n = strlen(dir) + 20;
  char *path = malloc(n);
  if (!path) abort();
  snprintf(path, n, "%s/experiment.json", dir);
  FILE *f = fopen(path, "rb");
  if (!f) { /* optional: results.csv says enough */
    free(path);
    return 0;
  }
  rt_buf text = {0};
  char chunk[8192];
  size_t k;
  while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
    rt_buf_printf(&text, "%.*s", (int)k, chunk);
  fclose(f);
  cm_json j;
  char msg[160];
  int rc = 0;
  if (cm_json_parse(text.s ? text.s : "", &j, msg, sizeof msg) < 0) {
    ir_err(err, "%s: %s", path, msg);
    rc = -1;
  } else {
    out->name = dup_or_null(cm_json_get(&j, "name"));
    out->title = dup_or_null(cm_json_get(&j, "title"));
    out->problem = dup_or_null(cm_json_get(&j, "problem"));
    shared_options(&j, out);
    cm_json_free(&j);
  }
  rt_buf_free(&text);
  free(path);
  return rc;
}

int cli_report(const char *dir, bool quiet) {
  static bool told; /* the missing-gnuplot note, once per process */
  rt_report_options o = {.meta = read_meta};
  rt_report_info info;
  ir_error err;
  if (rt_report(dir, &o, &info, &err) < 0) {
    cli_error("report", "%s", err.msg);
    return 1;
  }
  if (info.gnuplot_missing && !told) {
    if (info.study)
      fprintf(stderr, "gnuplot not found: figures skipped (scripts in %s/figures and "
              "%s/*/figures)\n", dir, dir);
    else
      fprintf(stderr, "gnuplot not found: figures skipped (scripts in %s/figures)\n", dir);
    told = true;
  }
  if (!quiet)
    fprintf(stderr, "recall report: wrote %s/report.md (%d experiment%s, %d figures, "
            "%d rendered)\n", dir, info.experiments, info.experiments == 1 ? "" : "s",
            info.figures, info.rendered);
  return 0;
}

int cmd_report(int argc, char **argv) {
  const char *dir = NULL;
  bool quiet = false, render = true;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
      quiet = true;
    } else if (!strcmp(argv[i], "--no-render")) {
      render = false;
    } else {
      int k = cli_positional("report", argv[i], &dir, usage);
      if (k) return k > 0 ? 0 : 2;
    }
  }
  if (!dir) {
    usage(stderr);
    return 2;
  }
  if (render) return cli_report(dir, quiet);
  rt_report_options o = {.meta = read_meta, .gnuplot = ""};
  rt_report_info info;
  ir_error err;
  if (rt_report(dir, &o, &info, &err) < 0) {
    cli_error("report", "%s", err.msg);
    return 1;
  }
  if (!quiet)
    fprintf(stderr, "recall report: wrote %s/report.md (%d figures, not rendered)\n", dir,
            info.figures);
  return 0;
}
