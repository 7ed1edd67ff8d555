/* test_report.c — `recall report` on small fixed results: the tables hold
 * the hand-computed means and min–max, the findings name the right models
 * and lengths, the .dat files hold the right numbers, and the figures are
 * valid PNG and SVG when gnuplot is installed (else the skip is reported
 * and the data, scripts and report are still written). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_util.h"
#include "figure_check.h"
#include "runtime.h"

/* ---- files ---- */

static char *path_of(const char *dir, const char *file) {
  static char buf[8][1024];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 1024, "%s/%s", dir, file);
  return p;
}

static void put(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static char *tmpdir(void) {
  char *d = strdup("/tmp/recall_report_XXXXXX");
  assert_non_null(mkdtemp(d));
  return d;
}

static void rm_rf(const char *dir) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

/* ---- the fixture ----
 * K 16, L 8, M 1, d 8, n 100 sequences per length, seeds 0 and 1.
 * tau 1 (lengths 3..24):
 *   mamba            s0 1.0 everywhere; s1 1.0 up to 20, 0.84 above
 *                    -> mean 1.0 up to 20, 0.92 above: holds 0.9 to 24 (3L)
 *   transformer-rope s0 1.0 up to 10, 0.5 above; s1 0.9 / 0.3
 *                    -> mean 0.95 up to 10, 0.4 above: drops at 11
 *   transformer-learned, transformer-nope: always answer label 0, so their
 *                    accuracy is label 0's frequency in the sweep data
 * tau 2 (lengths 4..24):
 *   mamba            s0 1.0 up to 16, 0.6 above; s1 1.0 / 0.7
 *                    -> mean 0.65 above 16: holds to 16 (2L), drops at 17
 *   transformer-rope as for tau 1
 */
enum { K = 16, L = 8, NSEQ = 100 };

/* Label 0's frequency among the sweep labels of one length: the test's own
 * count over the data generator's sweep stream. */
static double label0(long seed, int tau, int len) {
  rt_ar_task t = {K, 1, tau, len};
  int32_t *tok = malloc(sizeof *tok * NSEQ * (size_t)len), lab[NSEQ];
  assert_int_equal(rt_ar_batch((uint64_t)seed, RT_STREAM_SWEEP + (uint64_t)len, 0, NSEQ,
                               &t, tok, lab), 0);
  free(tok);
  int c = 0;
  for (int i = 0; i < NSEQ; i++) c += lab[i] == 0;
  return (double)c / NSEQ;
}

static double fixture_acc(const char *model, int tau, long seed, int len) {
  if (!strcmp(model, "mamba") && tau == 1) return seed == 0 || len <= 20 ? 1.0 : 0.84;
  if (!strcmp(model, "mamba")) return len <= 16 ? 1.0 : seed == 0 ? 0.6 : 0.7;
  if (!strcmp(model, "transformer-rope"))
    return len <= 10 ? (seed == 0 ? 1.0 : 0.9) : (seed == 0 ? 0.5 : 0.3);
  return label0(seed, tau, len);
}

/* Test accuracy at steps 100, 200, ... (the run's convergence.csv rows). */
static int fixture_conv(const char *model, int tau, long seed, double *acc) {
  static const double m0[] = {0.1, 0.5, 0.96, 0.99};               /* 0.95 at 300 */
  static const double m1[] = {0.1, 0.3, 0.6, 0.9, 0.97, 0.99};     /* at 500 */
  static const double m2[] = {0.1, 0.2, 0.3, 0.5, 0.7, 0.96, 0.99}; /* at 600 */
  static const double m3[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.95, 0.99}; /* 800 */
  static const double r0[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.95, 0.99}; /* at 700 */
  const double *src = NULL;
  int n = 10;
  if (!strcmp(model, "mamba")) {
    src = tau == 1 ? (seed ? m1 : m0) : (seed ? m3 : m2);
    n = tau == 1 ? (seed ? 6 : 4) : (seed ? 9 : 7);
  } else if (!strcmp(model, "transformer-rope") && tau == 1 && seed == 0) {
    src = r0, n = 8;
  }
  for (int i = 0; i < n; i++)
    acc[i] = src ? src[i] : !strcmp(model, "transformer-rope") ? 0.09 * (i + 1) : 0.06;
  return n;
}

static const char *HEADER =
    "run,experiment,problem,model,spec,K,d,L,M,tau,seed,lr,batch,max_steps,"
    "steps,reached_step,status,length,accuracy,loss,n\n";
static const char *CHEADER =
    "run,experiment,problem,model,K,d,L,M,tau,seed,lr,batch,step,train_loss,"
    "test_loss,test_acc\n";

/* Appends one run's rows; acc(key, tau, seed, len) for lengths tau+2..3L
 * (key: the model unless given). */
static void add_run_key(rt_buf *res, rt_buf *conv, const char *exp, const char *model,
                        const char *key, int d, int M, int tau, long seed,
                        double (*acc)(const char *, int, long, int)) {
  double cv[16];
  int n = conv ? fixture_conv(model, tau, seed, cv) : 0;
  bool reached = false;
  for (int i = 0; i < n; i++) reached |= cv[i] >= 0.99;
  char run[128];
  snprintf(run, sizeof run, "%s-M%d-tau%d-d%d-s%ld", model, M, tau, d, seed);
  for (int len = tau + 2; len <= 3 * L; len++)
    rt_buf_printf(res, "%s,%s,1,%s,specs/models/%s.lua,%d,%d,%d,%d,%d,%ld,0.001,32,1000,"
                  "%d,%s,%s,%d,%.4f,1.5,%d\n", run, exp, model, model, K, d, L, M, tau,
                  seed, n * 100, reached ? "400" : "", reached ? "reached" : "max_steps",
                  len, acc(key, tau, seed, len), NSEQ);
  for (int i = 0; i < n; i++)
    rt_buf_printf(conv, "%s,%s,1,%s,%d,%d,%d,%d,%d,%ld,0.001,32,%d,1.0,1.0,%.4f\n", run,
                  exp, model, K, d, L, M, tau, seed, (i + 1) * 100, cv[i]);
}

static void add_run(rt_buf *res, rt_buf *conv, const char *exp, const char *model,
                    int d, int M, int tau, long seed,
                    double (*acc)(const char *, int, long, int)) {
  add_run_key(res, conv, exp, model, model, d, M, tau, seed, acc);
}

static void write_experiment(const char *dir) {
  static const char *const models[] = {"mamba", "transformer-rope", "transformer-learned",
                                       "transformer-nope"};
  rt_buf res = {0}, conv = {0};
  rt_buf_printf(&res, "%s", HEADER);
  rt_buf_printf(&conv, "%s", CHEADER);
  for (int tau = 1; tau <= 2; tau++)
    for (int m = 0; m < (tau == 1 ? 4 : 2); m++)
      for (long seed = 0; seed < 2; seed++)
        add_run(&res, &conv, "exp", models[m], 8, 1, tau, seed, fixture_acc);
  put(path_of(dir, "results.csv"), res.s);
  put(path_of(dir, "convergence.csv"), conv.s);
  rt_buf_free(&res), rt_buf_free(&conv);
}

/* ---- reading the report ---- */

/* The section of md from the line "## title" to the next "## ". */
static char *section(const char *md, const char *title) {
  char head[256];
  snprintf(head, sizeof head, "\n## %s\n", title);
  const char *a = strstr(md, head);
  if (!a) fail_msg("no section \"%s\" in the report", title);
  a += 1;
  const char *b = strstr(a + 3, "\n## ");
  size_t n = b ? (size_t)(b - a) : strlen(a);
  char *s = malloc(n + 1);
  memcpy(s, a, n);
  s[n] = '\0';
  return s;
}

/* Cell `col` (0-based) of the table row starting "| model |" in sec. */
static void cell(const char *sec, const char *model, int col, char *out, size_t n) {
  char start[128];
  snprintf(start, sizeof start, "\n| %s |", model);
  const char *p = strstr(sec, start);
  if (!p) fail_msg("no table row for %s", model);
  p += 1;
  for (int i = 0; i <= col; i++) {
    p = strchr(p, '|');
    assert_non_null(p);
    p++;
  }
  while (*p == ' ') p++;
  size_t k = strcspn(p, "|");
  while (k > 0 && p[k - 1] == ' ') k--;
  snprintf(out, n, "%.*s", (int)k, p);
}

/* "0.950 (0.900–1.000)" -> mean, min, max. */
static void parse_acc(const char *c, double *mean, double *lo, double *hi) {
  char *end;
  *mean = strtod(c, &end);
  assert_true(end != c);
  assert_memory_equal(end, " (", 2);
  *lo = strtod(end + 2, &end);
  assert_memory_equal(end, "\u2013", strlen("\u2013"));
  *hi = strtod(end + strlen("\u2013"), &end);
  assert_int_equal(*end, ')');
}

static void check_acc(const char *sec, const char *model, int col, double mean, double lo,
                      double hi) {
  char c[128];
  double m, a, b;
  cell(sec, model, col, c, sizeof c);
  parse_acc(c, &m, &a, &b);
  if (fabs(m - mean) > 5e-4 || fabs(a - lo) > 5e-4 || fabs(b - hi) > 5e-4)
    fail_msg("%s column %d: \"%s\", expected %.3f (%.3f-%.3f)", model, col, c, mean, lo, hi);
}

static void check_cell(const char *sec, const char *model, int col, const char *want) {
  char c[128];
  cell(sec, model, col, c, sizeof c);
  if (strcmp(c, want)) fail_msg("%s column %d: \"%s\", expected \"%s\"", model, col, c, want);
}

static void check_has(const char *text, const char *want) {
  if (!strstr(text, want)) fail_msg("missing: \"%s\"\nin:\n%s", want, text);
}

/* Row `x` of block `label` in a .dat file: mean, min, max, seeds. */
static bool dat_row(const char *dat, const char *label, long x, double v[4]) {
  char head[160];
  snprintf(head, sizeof head, ": %s\n", label);
  const char *p = strstr(dat, "# block ");
  while (p && strncmp(strchr(p, ':'), head, strlen(head))) p = strstr(p + 1, "# block ");
  if (!p) fail_msg("no block %s", label);
  p = strchr(p, '\n') + 1;
  while (*p == '#') p = strchr(p, '\n') + 1;
  while (*p && *p != '\n') {
    long xx;
    int k;
    assert_int_equal(sscanf(p, "%ld %lf %lf %lf %d", &xx, &v[0], &v[1], &v[2], &k), 5);
    v[3] = k;
    if (xx == x) return true;
    p = strchr(p, '\n') + 1;
  }
  return false;
}

static void check_dat(const char *dat, const char *label, long x, double mean, double lo,
                      double hi, int seeds) {
  double v[4];
  if (!dat_row(dat, label, x, v)) fail_msg("%s: no row %ld", label, x);
  if (fabs(v[0] - mean) > 1e-6 || fabs(v[1] - lo) > 1e-6 || fabs(v[2] - hi) > 1e-6 ||
      (int)v[3] != seeds)
    fail_msg("%s at %ld: %g %g %g %d, expected %g %g %g %d", label, x, v[0], v[1], v[2],
             (int)v[3], mean, lo, hi, seeds);
}


/* Every figure of dir/figures has NAME.dat and NAME.gp, and, rendered,
 * NAME.png and NAME.svg; returns the number of figures. */
static int check_figures(const char *dir, bool rendered) {
  char *fd = strdup(path_of(dir, "figures"));
  DIR *d = opendir(fd);
  assert_non_null(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) {
    size_t k = strlen(e->d_name);
    /* figures render to temporary names, renamed when complete */
    if (strstr(e->d_name, ".tmp.")) fail_msg("temporary file left: %s", e->d_name);
    if (k < 4 || strcmp(e->d_name + k - 3, ".gp")) continue;
    char stem[256], f[300];
    snprintf(stem, sizeof stem, "%.*s", (int)(k - 3), e->d_name);
    snprintf(f, sizeof f, "%s.dat", stem);
    assert_true(exists(path_of(fd, f)));
    snprintf(f, sizeof f, "%s.png", stem);
    assert_int_equal(exists(path_of(fd, f)), rendered);
    if (rendered) check_png(path_of(fd, f), 200);
    snprintf(f, sizeof f, "%s.svg", stem);
    assert_int_equal(exists(path_of(fd, f)), rendered);
    if (rendered) check_svg(path_of(fd, f));
    snprintf(f, sizeof f, "%s.log", stem);
    assert_false(exists(path_of(fd, f))); /* gnuplot said nothing wrong */
    n++;
  }
  closedir(d);
  free(fd);
  return n;
}

static int meta_cb(void *ctx, const char *dir, rt_report_meta *out, ir_error *err) {
  (void)err, (void)dir;
  int *calls = ctx;
  (*calls)++;
  out->title = strdup("Fixture experiment");
  out->keys = malloc(sizeof *out->keys), out->values = malloc(sizeof *out->values);
  out->keys[0] = strdup("eval_every"), out->values[0] = strdup("100");
  out->n = 1;
  return 0;
}

/* ---- tests ---- */

static void test_experiment(void **state) {
  (void)state;
  char *dir = tmpdir();
  write_experiment(dir);
  int calls = 0;
  rt_report_options o = {.meta = meta_cb, .ctx = &calls};
  rt_report_info info;
  ir_error err;
  if (rt_report(dir, &o, &info, &err) < 0) fail_msg("%s", err.msg);
  assert_int_equal(calls, 1);
  assert_false(info.study);
  assert_int_equal(info.experiments, 1);
  bool gp = have_gnuplot();
  assert_int_equal(info.gnuplot_missing, !gp);
  /* acc + conv for 2 groups, one tau comparison */
  assert_int_equal(info.figures, 5);
  assert_int_equal(info.rendered, gp ? 5 : 0);
  assert_int_equal(check_figures(dir, gp), 5);

  char *md = read_file(path_of(dir, "report.md"), NULL);
  assert_non_null(md);
  check_has(md, "# Fixture experiment\n");
  check_has(md, "| eval_every | 100 |");
  check_has(md, "| tau | 1, 2 (varies) |");

  /* table columns: 0 model, 1 seeds, 2 L/2, 3 L, 4 2L, 5 3L, 6 longest, 7 steps */
  char *t1 = section(md, "M 1, tau 1, d 8");
  check_has(t1, "| L/2 = 4 | L = 8 | 2L = 16 | 3L = 24 |");
  check_cell(t1, "mamba", 1, "2");
  check_acc(t1, "mamba", 2, 1.0, 1.0, 1.0);
  check_acc(t1, "mamba", 3, 1.0, 1.0, 1.0);
  check_acc(t1, "mamba", 4, 1.0, 1.0, 1.0);
  check_acc(t1, "mamba", 5, 0.92, 0.84, 1.0);
  check_cell(t1, "mamba", 6, "24 (3L)");
  check_cell(t1, "mamba", 7, "400 (2 of 2)");
  check_acc(t1, "transformer-rope", 2, 0.95, 0.9, 1.0);
  check_acc(t1, "transformer-rope", 3, 0.95, 0.9, 1.0);
  check_acc(t1, "transformer-rope", 4, 0.4, 0.3, 0.5);
  check_acc(t1, "transformer-rope", 5, 0.4, 0.3, 0.5);
  check_cell(t1, "transformer-rope", 6, "10");
  check_cell(t1, "transformer-rope", 7, "700 (1 of 2)");
  double f0 = label0(0, 1, 8), f1 = label0(1, 1, 8);
  check_acc(t1, "transformer-learned", 3, (f0 + f1) / 2, fmin(f0, f1), fmax(f0, f1));
  check_cell(t1, "transformer-learned", 6, "none");
  check_cell(t1, "transformer-nope", 7, "not reached (0 of 2)");
  /* findings */
  check_has(t1, "mamba holds accuracy >= 0.9 up to length 24 (3L), the longest evaluated");
  check_has(t1, "transformer-rope holds accuracy >= 0.9 up to length 10 and drops below "
                "0.9 at length 11 (0.400)");
  check_has(t1, "transformer-learned and transformer-nope are predicting a constant");
  check_has(t1, "equal the frequency of label 0");
  check_has(t1, "mamba up to 24 (3L), 0.920 at 3L; transformer-rope up to 10");
  check_has(t1, "Fastest to reach 0.95 test accuracy at L: mamba (400 steps, mean over 2 "
                "of 2 seeds), then transformer-rope (700 steps, in 1 of 2 seeds); "
                "transformer-learned and transformer-nope did not reach it within 1000 steps");
  check_has(t1, "](figures/acc_M1-tau1-d8.png)");
  check_has(t1, "](figures/conv_M1-tau1-d8.png)");
  assert_null(strstr(t1, "No model learned"));

  char *t2 = section(md, "M 1, tau 2, d 8");
  check_has(t2, "lengths 4 to 24");
  check_acc(t2, "mamba", 4, 1.0, 1.0, 1.0);
  check_acc(t2, "mamba", 5, 0.65, 0.6, 0.7);
  check_cell(t2, "mamba", 6, "16 (2L)");
  check_cell(t2, "mamba", 7, "700 (2 of 2)");
  check_has(t2, "mamba holds accuracy >= 0.9 up to length 16 (2L) and drops below 0.9 at "
                "length 17 (0.650)");

  char *cmp = section(md, "Comparisons");
  check_has(cmp, "](figures/cmp_tau.png)");
  /* beyond L: tau 1 (12 x 1.0 + 4 x 0.92) / 16, tau 2 (8 x 1.0 + 8 x 0.65) / 16 */
  check_has(cmp, "mamba at M 1, d 8: raising tau from 1 to 2 lowers the mean accuracy "
                 "beyond L from 0.980 to 0.825");
  /* lengths 9, 10 at 0.95 and 11..24 at 0.4: (2 x 0.95 + 14 x 0.4) / 16 */
  check_has(cmp, "transformer-rope at M 1, d 8: raising tau from 1 to 2 leaves the mean "
                 "accuracy beyond L unchanged (0.469 and 0.469)");

  /* the data behind the figures */
  char *dat = read_file(path_of(dir, "figures/acc_M1-tau1-d8.dat"), NULL);
  assert_non_null(dat);
  check_dat(dat, "mamba", 24, 0.92, 0.84, 1.0, 2);
  check_dat(dat, "mamba", 3, 1.0, 1.0, 1.0, 2);
  check_dat(dat, "transformer-rope", 10, 0.95, 0.9, 1.0, 2);
  check_dat(dat, "transformer-rope", 11, 0.4, 0.3, 0.5, 2);
  double g0 = label0(0, 1, 17), g1 = label0(1, 1, 17);
  check_dat(dat, "transformer-nope", 17, (g0 + g1) / 2, fmin(g0, g1), fmax(g0, g1), 2);
  double v[4];
  assert_false(dat_row(dat, "mamba", 2, v)); /* lengths start at tau + 2 */
  char *cdat = read_file(path_of(dir, "figures/conv_M1-tau1-d8.dat"), NULL);
  assert_non_null(cdat);
  check_dat(cdat, "mamba", 100, 0.1, 0.1, 0.1, 2);
  check_dat(cdat, "mamba", 300, 0.78, 0.6, 0.96, 2);
  /* seed 0 stopped at 400 having reached its target: it keeps 0.99 */
  check_dat(cdat, "mamba", 500, 0.98, 0.97, 0.99, 2);
  /* seed 1 ran to 1000 (0.9); seed 0 reached at 800 (0.99) and carries it */
  check_dat(cdat, "transformer-rope", 1000, 0.945, 0.9, 0.99, 2);
  check_dat(cdat, "transformer-learned", 1000, 0.06, 0.06, 0.06, 2);
  char *gp_text = read_file(path_of(dir, "figures/acc_M1-tau1-d8.gp"), NULL);
  assert_non_null(gp_text);
  check_has(gp_text, "set terminal pngcairo");
  check_has(gp_text, "set terminal svg");
  check_has(gp_text, "filledcurves");
  check_has(gp_text, "set arrow from 8, graph 0 to 8, graph 1");
  check_has(gp_text, "0.0625 with lines dt 2");
  check_has(gp_text, "title 'transformer-rope'");
  char *conv_gp = read_file(path_of(dir, "figures/conv_M1-tau1-d8.gp"), NULL);
  check_has(conv_gp, "batch 32");

  free(t1), free(t2), free(cmp), free(md), free(dat), free(cdat), free(gp_text), free(conv_gp);
  rm_rf(dir);
  free(dir);
}

static double flat_acc(const char *model, int tau, long seed, int len) {
  (void)tau, (void)seed, (void)len;
  return !strcmp(model, "a") ? 0.06 : 0.08;
}

static void test_nothing_learned(void **state) {
  (void)state;
  char *dir = tmpdir();
  rt_buf res = {0};
  rt_buf_printf(&res, "%s", HEADER);
  add_run(&res, NULL, "exp", "a", 8, 1, 1, 0, flat_acc);
  add_run(&res, NULL, "exp", "b", 8, 1, 1, 0, flat_acc);
  put(path_of(dir, "results.csv"), res.s);
  rt_buf_free(&res);
  rt_report_options o = {.gnuplot = ""};
  rt_report_info info;
  ir_error err;
  if (rt_report(dir, &o, &info, &err) < 0) fail_msg("%s", err.msg);
  assert_false(info.gnuplot_missing); /* not asked to render */
  assert_int_equal(info.rendered, 0);
  assert_int_equal(info.figures, 1); /* no convergence.csv: no convergence figure */
  char *md = read_file(path_of(dir, "report.md"), NULL);
  check_has(md, "No model learned: accuracies within 0.05 of chance 1/K = 0.0625 at every "
                "length (a and b)");
  char *sec = section(md, "M 1, tau 1, d 8");
  check_cell(sec, "a", 7, "\u2013");
  check_cell(sec, "b", 6, "none");
  assert_null(strstr(md, "holds accuracy"));
  free(sec), free(md);
  rm_rf(dir);
  free(dir);
}

/* Study: p2 (d 8, M 4 and 8) and p3 (d 64, M 4 and 8), mamba, one seed. */
static double study_acc(const char *model, int tau, long seed, int len) {
  (void)tau, (void)seed;
  return model[0] == 'x' && len > 12 ? 0.5 : 1.0; /* "x": mamba at M 8, d 8 */
}

static void write_study(const char *dir) {
  const char *sub[2] = {"p2", "p3"};
  for (int i = 0; i < 2; i++) {
    char *d = strdup(path_of(dir, sub[i]));
    assert_int_equal(mkdir(d, 0777), 0);
    rt_buf res = {0};
    rt_buf_printf(&res, "%s", HEADER);
    for (int M = 4; M <= 8; M += 4)
      add_run_key(&res, NULL, sub[i], "mamba", i == 0 && M == 8 ? "x" : "mamba",
                  i ? 64 : 8, M, 1, 0, study_acc);
    put(path_of(d, "results.csv"), res.s);
    put(path_of(d, "experiment.json"),
        i == 0 ? "{\"name\": \"p2\", \"title\": \"Problem 2\", \"problem\": \"2\", \"runs\": ["
                 "{\"name\": \"a\", \"options\": {\"eval_every\": 100, \"M\": 4}},"
                 "{\"name\": \"b\", \"options\": {\"eval_every\": 100, \"M\": 8}}]}"
               : "{\"name\": \"p3\", \"title\": \"Problem 3\", \"problem\": \"3\"}");
    rt_buf_free(&res);
    free(d);
  }
}

static void test_study(void **state) {
  (void)state;
  char *dir = tmpdir();
  write_study(dir);
  rt_report_info info;
  ir_error err;
  if (rt_report(dir, NULL, &info, &err) < 0) fail_msg("%s", err.msg);
  assert_true(info.study);
  assert_int_equal(info.experiments, 2);
  bool gp = have_gnuplot();
  /* p2, p3: 2 acc figures + the M grid each; the study: d */
  assert_int_equal(info.figures, 7);
  assert_int_equal(check_figures(dir, gp), 1);
  assert_int_equal(check_figures(path_of(dir, "p2"), gp), 3);
  assert_int_equal(check_figures(path_of(dir, "p3"), gp), 3);
  assert_true(exists(path_of(dir, "p2/figures/cmp_M_tau1-d8.dat")));
  char *md = read_file(path_of(dir, "report.md"), NULL);
  assert_non_null(md);
  check_has(md, "[report](p2/report.md)");
  check_has(md, "[report](p3/report.md)");
  char *across = section(md, "Across experiments");
  check_has(across, "](figures/cmp_d.png)");
  /* M 8 beyond L at d 8: (4 x 1.0 + 12 x 0.5) / 16 */
  check_has(across, "mamba at M 8, tau 1: raising d from 8 to 64 raises the mean accuracy "
                    "beyond L from 0.625 to 1.000");
  check_has(across, "mamba at M 4, tau 1: raising d from 8 to 64 leaves the mean accuracy "
                    "beyond L unchanged (1.000 and 1.000)");
  char *p2 = read_file(path_of(dir, "p2/report.md"), NULL);
  check_has(p2, "mamba holds accuracy >= 0.9 up to length 12 and drops below 0.9 at length "
                "13 (0.500)");
  check_has(p2, "mamba at tau 1, d 8: raising M from 4 to 8 lowers the mean accuracy beyond "
                "L from 1.000 to 0.625");
  char *dat = read_file(path_of(dir, "figures/cmp_d.dat"), NULL);
  check_dat(dat, "d 8 [mamba, M 8, tau 1]", 13, 0.5, 0.5, 0.5, 1);
  check_dat(dat, "d 8 [mamba, M 4, tau 1]", 13, 1.0, 1.0, 1.0, 1);
  check_dat(dat, "d 64 [mamba, M 8, tau 1]", 24, 1.0, 1.0, 1.0, 1);
  free(across), free(md), free(p2), free(dat);
  rm_rf(dir);
  free(dir);
}

static void test_without_gnuplot(void **state) {
  (void)state;
  char *dir = tmpdir(), *empty = tmpdir();
  write_experiment(dir);
  char *old = strdup(getenv("PATH") ? getenv("PATH") : "");
  setenv("PATH", empty, 1);
  rt_report_info info;
  ir_error err;
  int rc = rt_report(dir, NULL, &info, &err);
  setenv("PATH", old, 1);
  if (rc < 0) fail_msg("%s", err.msg);
  assert_true(info.gnuplot_missing);
  assert_int_equal(info.rendered, 0);
  assert_int_equal(check_figures(dir, false), 5);
  char *md = read_file(path_of(dir, "report.md"), NULL);
  check_has(md, "Figures are not rendered (gnuplot not found)");
  check_has(md, "mamba holds accuracy >= 0.9 up to length 24 (3L)");
  free(md);
  free(old);
  rm_rf(dir), rm_rf(empty);
  free(dir), free(empty);
}

/* `recall report` as a command: experiment.json is read, and without
 * gnuplot the skip is said once for a whole study. */
static char *run_cli(const char *env, const char *args, int *status) {
  const char *bin = getenv("RECALL_BIN");
  if (!bin) return NULL;
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s %s %s 2>&1", env, bin, args);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  rt_buf out = {0};
  char buf[4096];
  size_t k;
  rt_buf_printf(&out, "%s", "");
  while ((k = fread(buf, 1, sizeof buf, p)) > 0) rt_buf_printf(&out, "%.*s", (int)k, buf);
  int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out.s;
}

static void test_cli(void **state) {
  (void)state;
  if (!getenv("RECALL_BIN")) skip();
  char *dir = tmpdir(), *empty = tmpdir(), args[512], env[512];
  write_study(dir);
  snprintf(env, sizeof env, "PATH='%s'", empty);
  snprintf(args, sizeof args, "report '%s'", dir);
  int st;
  char *out = run_cli(env, args, &st);
  assert_int_equal(st, 0);
  const char *msg = "gnuplot not found: figures skipped (scripts in ";
  char *first = strstr(out, msg);
  if (!first) fail_msg("no skip message in:\n%s", out);
  assert_null(strstr(first + 1, msg));
  char *p2 = read_file(path_of(dir, "p2/report.md"), NULL);
  check_has(p2, "# Problem 2\n");
  check_has(p2, "| eval_every | 100 |");
  assert_null(strstr(p2, "| M | 4 |")); /* differs between runs: not a shared option */
  free(p2), free(out);
  /* errors: no results, a malformed line, bad usage */
  snprintf(args, sizeof args, "report '%s'", empty);
  out = run_cli("", args, &st);
  assert_int_equal(st, 1);
  check_has(out, "no results.csv and no experiment directories");
  free(out);
  put(path_of(empty, "results.csv"), "run,model,K,L,length,accuracy\nr,m,16,8,3\n");
  out = run_cli("", args, &st);
  assert_int_equal(st, 1);
  check_has(out, "results.csv:2: 5 fields, the header has 6");
  free(out);
  out = run_cli("", "report", &st);
  assert_int_equal(st, 2);
  free(out);
  rm_rf(dir), rm_rf(empty);
  free(dir), free(empty);
}

/* A renderer that fails: the error names the script, the rest is written. */
static void test_render_failure(void **state) {
  (void)state;
  char *dir = tmpdir();
  write_experiment(dir);
  char prog[1100];
  snprintf(prog, sizeof prog, "%s/bad-gnuplot", dir);
  /* gnuplot's message names the script, its last argument */
  put(prog, "#!/bin/sh\nfor a; do gp=$a; done\necho \"plot x\" >&2\n"
            "echo \"\\\"$gp\\\" line 3: no such terminal\" >&2\nexit 1\n");
  assert_int_equal(chmod(prog, 0755), 0);
  rt_report_options o = {.gnuplot = prog};
  rt_report_info info;
  ir_error err;
  assert_int_equal(rt_report(dir, &o, &info, &err), -1);
  check_has(err.msg, "gnuplot failed on ");
  check_has(err.msg, "/figures/");
  check_has(err.msg, ".log): \"acc_M1-tau1-d8.gp\" line 3: no such terminal");
  assert_int_equal(info.rendered, 0);
  assert_true(exists(path_of(dir, "report.md")));
  assert_true(exists(path_of(dir, "figures/acc_M1-tau1-d8.gp")));
  assert_true(exists(path_of(dir, "figures/acc_M1-tau1-d8.log"))); /* kept */
  /* a failed render leaves neither a figure nor its temporary files */
  DIR *d = opendir(path_of(dir, "figures"));
  assert_non_null(d);
  for (struct dirent *e; (e = readdir(d));) {
    size_t k = strlen(e->d_name);
    if (strstr(e->d_name, ".tmp.") || (k > 4 && (!strcmp(e->d_name + k - 4, ".png") ||
                                                 !strcmp(e->d_name + k - 4, ".svg"))))
      fail_msg("left by a failed render: %s", e->d_name);
  }
  closedir(d);
  rm_rf(dir);
  free(dir);
}

static void test_errors(void **state) {
  (void)state;
  char *dir = tmpdir();
  ir_error err;
  rt_report_options o = {.gnuplot = ""};
  put(path_of(dir, "results.csv"), "run,model,K,L,length\n");
  assert_int_equal(rt_report(dir, &o, NULL, &err), -1);
  check_has(err.msg, "results.csv: no column \"accuracy\" in the header");
  put(path_of(dir, "results.csv"), "run,model,K,L,length,accuracy\nr,m,sixteen,8,3,0.5\n");
  assert_int_equal(rt_report(dir, &o, NULL, &err), -1);
  check_has(err.msg, "results.csv:2: column K: \"sixteen\" is not an integer");
  put(path_of(dir, "results.csv"), "run,model,K,L,length,accuracy\n\"r,m,16,8,3,0.5\n");
  assert_int_equal(rt_report(dir, &o, NULL, &err), -1);
  check_has(err.msg, "results.csv:2: unterminated quoted field");
  /* a diverged run: a row without a length */
  put(path_of(dir, "results.csv"), "run,model,K,L,status,length,accuracy\n"
                                   "r,m,16,8,diverged,,\n");
  if (rt_report(dir, &o, NULL, &err) < 0) fail_msg("%s", err.msg);
  char *md = read_file(path_of(dir, "report.md"), NULL);
  check_has(md, "m has no sweep in any of its 1 seeds (diverged)");
  free(md);
  rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_experiment),  cmocka_unit_test(test_nothing_learned),
      cmocka_unit_test(test_study),       cmocka_unit_test(test_without_gnuplot),
      cmocka_unit_test(test_cli),         cmocka_unit_test(test_errors),
      cmocka_unit_test(test_render_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
