/* test_inspect.c — `recall inspect` end to end on tiny trained models:
 * the files it writes (valid PNG and SVG when gnuplot is installed, else
 * data and scripts and one "skipped" message), attention rows that sum to
 * 1 with exact zeros above the diagonal, positive dt, the example being
 * the run's sweep sequence (tokens from the data generator, prediction and
 * probability equal to the JIT model's on the same checkpoint), the
 * measured scores in inspect.md equal to the .dat's, determinism, and the
 * errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli_util.h"
#include "figure_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend.h"
#include "runtime.h"

static char tmp[64];
enum { K = 8, L = 8, E = 16, NSEQ = 20 };

/* ---- helpers ---- */

/* Runs `[env] recall ARGS`; stdout and stderr to *out (2>&1) or stderr to
 * *err separately when err is non-NULL. Returns the exit status. */
static int run(char **out, char **err, const char *env, const char *fmt, ...) {
  const char *bin = getenv("RECALL_BIN");
  assert_non_null(bin);
  char args[2048], cmd[4096], errf[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(errf, sizeof errf, "%s/stderr.txt", tmp);
  if (err) snprintf(cmd, sizeof cmd, "%s %s %s 2>%s", env ? env : "", bin, args, errf);
  else snprintf(cmd, sizeof cmd, "%s %s %s 2>&1", env ? env : "", bin, args);
  int rc = capture_command(out, cmd);
  if (err) {
    FILE *f = fopen(errf, "rb");
    assert_non_null(f);
    char *s = calloc(1, 1 << 16);
    size_t n = fread(s, 1, (1 << 16) - 1, f);
    s[n] = 0;
    fclose(f);
    *err = s;
  }
  return rc;
}

static bool exists(const char *dir, const char *file) {
  char path[512];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  return stat(path, &st) == 0;
}

static void check_has(const char *text, const char *want) {
  if (!text || !strstr(text, want)) fail_msg("\"%s\" not in:\n%s", want, text ? text : "(null)");
}

/* dir/file as a real PNG / SVG (figure_check.h). */
static void check_png_in(const char *dir, const char *file) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  check_png(path, 300);
}

static void check_svg_in(const char *dir, const char *file) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  check_svg(path);
}

/* The .dat's blocks of "a b value" lines (comments skipped; blocks split
 * at blank lines). vals[block][a * cols + b]; returns the block count. */
static int read_dat(const char *text, int rows, int cols, double vals[][64 * 64]) {
  int block = -1, count = 0;
  bool blank = true;
  for (const char *p = text; *p;) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    if (len == 0) {
      blank = true;
    } else if (*p != '#') {
      if (blank) block++, count = 0;
      blank = false;
      int a, b;
      double v;
      assert_int_equal(sscanf(p, "%d %d %lf", &a, &b, &v), 3);
      assert_true(a >= 0 && a < rows && b >= 0 && b < cols);
      assert_int_equal(a * cols + b, count); /* row-major, complete */
      vals[block][count++] = v;
    }
    p += len + (nl != NULL);
  }
  return block + 1;
}

/* The number after `key` in text. */
static double number_after(const char *text, const char *key) {
  const char *p = strstr(text, key);
  if (!p) fail_msg("\"%s\" not in:\n%s", key, text);
  return strtod(p + strlen(key), NULL);
}

/* ---- the fixture: tiny trained runs ---- */

static char run_dir[128], ck[160], tr_ck[160];

static int setup(void **state) {
  (void)state;
  strcpy(tmp, "/tmp/recall_inspect_XXXXXX");
  assert_non_null(mkdtemp(tmp));
  snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
  snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", run_dir);
  char *out;
  int rc = run(&out, NULL, NULL, "train specs/models/hybrid.lua --set K=%d --set d=8 "
               "--set L=%d --set steps=30 --set eval_every=30 --set batch=16 "
               "--set test_size=50 --set sweep_n=%d -o %s", K, L, NSEQ, run_dir);
  if (rc != 0) fprintf(stderr, "%s", out);
  free(out);
  if (rc != 0) return -1;
  char dir[128];
  snprintf(dir, sizeof dir, "%s/tr", tmp);
  snprintf(tr_ck, sizeof tr_ck, "%s/checkpoint.safetensors", dir);
  rc = run(&out, NULL, NULL, "train specs/models/transformer.lua --set K=%d --set d=8 "
           "--set heads=2 --set L=%d --set steps=5 --set eval_every=5 --set batch=8 "
           "--set test_size=20 --set sweep_n=0 -o %s", K, L, dir);
  if (rc != 0) fprintf(stderr, "%s", out);
  free(out);
  return rc == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  return system(cmd) == 0 ? 0 : -1;
}

/* Rows of causal attention weights: each sums to 1, keys after the query
 * are exactly 0, the others positive. */
static void check_attention(const double *w, int n) {
  for (int q = 0; q < n; q++) {
    double sum = 0;
    for (int k = 0; k < n; k++) {
      double x = w[q * n + k];
      if (k > q) assert_true(x == 0.0);
      else assert_true(x > 0 && x <= 1);
      sum += x;
    }
    assert_true(fabs(sum - 1) < 1e-5);
  }
}

/* The run's model at length n on the JIT with the checkpoint's params:
 * logits of one sequence (an independent path to the prediction). */
static ir_func *build(void *ctx, int n, ir_error *err) {
  (void)ctx;
  char nb[16], full[1024];
  snprintf(nb, sizeof nb, "%d", n);
  const char *root = getenv("RECALL_ROOT") ? getenv("RECALL_ROOT") : ".";
  snprintf(full, sizeof full, "%s/specs/models/hybrid.lua", root);
  const char *keys[] = {"K", "L", "d", "n"}, *vals[] = {"8", "8", "8", nb};
  fe_options o = {.root = root, .keys = keys, .values = vals, .n_sets = 4};
  fe_model *m;
  fe_error *e = calloc(1, sizeof *e);
  if (fe_load_model(full, &o, &m, e) < 0) {
    ir_err(err, "%.400s", e->msg);
    free(e);
    return NULL;
  }
  free(e);
  ir_func *f = m->f;
  m->f = NULL;
  fe_model_free(m);
  return f;
}

static void jit_logits(const int32_t *tokens, int n, int32_t label, float *logits) {
  rt_model_options o = {.build = build, .L = L};
  ir_error err;
  rt_model *m = rt_model_new(&o, &err);
  if (!m) fail_msg("%s", err.msg);
  rt_tensors *t = rt_checkpoint_read(ck, &err);
  if (!t || rt_checkpoint_load(m, t, &err) < 0) fail_msg("%s", err.msg);
  rt_batch_stats st;
  if (rt_model_eval_batch(m, n, n, tokens, &label, 1, logits, &st, &err) < 0)
    fail_msg("%s", err.msg);
  rt_tensors_free(t);
  rt_model_free(m);
}

/* ---- tests ---- */

static void test_hybrid(void **state) {
  (void)state;
  char dir[160], *out, *err;
  snprintf(dir, sizeof dir, "%s/a", tmp);
  int rc = run(&out, &err, NULL, "inspect %s --example 3 -o %s", ck, dir);
  if (rc != 0) fail_msg("%s%s", out, err);
  check_has(out, "recall inspect: hybrid, example 3 (length 8)");
  check_has(out, "layers.1.mixer.attn head 0: previous-token ");
  check_has(out, "layers.0.mixer.dt: at i ");
  static const char *const files[] = {"inspect.md", "layers.0.mixer.dt.dat",
                                      "layers.0.mixer.dt.gp", "layers.1.mixer.attn.dat",
                                      "layers.1.mixer.attn.gp"};
  for (int i = 0; i < 5; i++)
    if (!exists(dir, files[i])) fail_msg("%s/%s missing", dir, files[i]);
  if (have_gnuplot()) {
    assert_null(strstr(err, "skipped"));
    check_png_in(dir, "layers.1.mixer.attn.png"), check_svg_in(dir, "layers.1.mixer.attn.svg");
    check_png_in(dir, "layers.0.mixer.dt.png"), check_svg_in(dir, "layers.0.mixer.dt.svg");
    check_has(out, "2 figures (2 rendered)");
  } else {
    check_has(err, "gnuplot not found: figures skipped");
  }

  /* the example: sweep sequence 3 at length L of the run's seed (0) */
  rt_ar_task task = {K, 1, 1, L};
  int32_t tok[L], label, i;
  assert_int_equal(rt_ar_example(0, RT_STREAM_SWEEP + L, 3, &task, tok, &label, &i), 0);
  char *md = read_in(dir, "inspect.md", NULL), row[256] = "| token |";
  for (int t = 0; t < L; t++) snprintf(row + strlen(row), sizeof row - strlen(row), " %d |", tok[t]);
  check_has(md, row);
  char want[256];
  snprintf(want, sizeof want, "q = %d first occurs at i = %d; its value v = %d is at i+tau = %d",
           tok[L - 1], i, label, i + 1);
  check_has(md, want);

  /* the prediction equals the JIT model's on the same checkpoint */
  float lg[K];
  jit_logits(tok, L, label, lg);
  int best = 0;
  double z = 0;
  for (int k = 1; k < K; k++)
    if (lg[k] > lg[best]) best = k;
  for (int k = 0; k < K; k++) z += exp((double)lg[k] - lg[best]);
  snprintf(want, sizeof want, "Prediction: token %d with probability ", best);
  double p = number_after(md, want);
  assert_true(fabs(p - 1 / z) < 1e-3);

  /* attention: [1, 8, 8], causal rows summing to 1; its scores in the md */
  static double vals[4][64 * 64];
  char *dat = read_in(dir, "layers.1.mixer.attn.dat", NULL);
  assert_int_equal(read_dat(dat, L, L, vals), 1);
  check_attention(vals[0], L);
  double prev = 0;
  for (int t = 1; t < L; t++) prev += vals[0][t * L + t - 1];
  prev /= L - 1;
  snprintf(want, sizeof want, "| 0 | %.3f | %.3f | %.3f |", prev, vals[0][(i + 1) * L + i],
           vals[0][(L - 1) * L + i + 1]);
  check_has(md, want);
  free(dat);

  /* dt: [8, 16], every value > 0 (softplus) */
  dat = read_in(dir, "layers.0.mixer.dt.dat", NULL);
  assert_int_equal(read_dat(dat, L, E, vals), 1);
  double mean = 0;
  for (int j = 0; j < L * E; j++) {
    assert_true(vals[0][j] > 0 && isfinite(vals[0][j]));
    mean += vals[0][j];
  }
  mean /= L * E;
  check_has(md, "Mamba's dt");
  double at_i = 0;
  for (int c = 0; c < E; c++) at_i += vals[0][i * E + c];
  at_i /= E;
  snprintf(want, sizeof want, "| %d | %d | q (i) | %.4g | %.2f |", i, tok[i], at_i, at_i / mean);
  check_has(md, want);
  free(dat), free(md), free(out), free(err);
}

/* The same example gives the same files; another example or seed gives
 * the generator's other sequence. */
static void test_determinism(void **state) {
  (void)state;
  char a[160], b[160], c[160], *out;
  snprintf(a, sizeof a, "%s/d1", tmp);
  snprintf(b, sizeof b, "%s/d2", tmp);
  snprintf(c, sizeof c, "%s/d3", tmp);
  assert_int_equal(run(&out, NULL, NULL, "inspect %s --example 5 --no-render -o %s", ck, a), 0);
  free(out);
  assert_int_equal(run(&out, NULL, NULL, "inspect %s --example 5 --no-render -o %s", ck, b), 0);
  free(out);
  assert_int_equal(run(&out, NULL, NULL, "inspect %s --example 5 --seed 7 --length 11 "
                       "--no-render -o %s", ck, c), 0);
  check_has(out, "example 5 (length 11)");
  free(out);
  static const char *const files[] = {"inspect.md", "layers.1.mixer.attn.dat",
                                      "layers.0.mixer.dt.dat", "layers.1.mixer.attn.gp"};
  for (int f = 0; f < 4; f++) {
    char *x = read_in(a, files[f], NULL), *y = read_in(b, files[f], NULL);
    assert_non_null(x), assert_non_null(y);
    assert_string_equal(x, y);
    free(x), free(y);
  }
  assert_false(exists(a, "layers.1.mixer.attn.png")); /* --no-render */
  /* seed 7, length 11: that sweep's sequence 5 */
  rt_ar_task task = {K, 1, 1, 11};
  int32_t tok[11];
  assert_int_equal(rt_ar_example(7, RT_STREAM_SWEEP + 11, 5, &task, tok, NULL, NULL), 0);
  char *md = read_in(c, "inspect.md", NULL), row[256] = "| token |";
  for (int t = 0; t < 11; t++) snprintf(row + strlen(row), sizeof row - strlen(row), " %d |", tok[t]);
  check_has(md, row);
  check_has(md, "data seed 7");
  static double vals[2][64 * 64];
  char *dat = read_in(c, "layers.1.mixer.attn.dat", NULL);
  assert_int_equal(read_dat(dat, 11, 11, vals), 1);
  check_attention(vals[0], 11);
  free(dat), free(md);
}

/* Without -o: DIR/inspect next to the checkpoint. Without gnuplot: data
 * and scripts, and the skip said once. */
static void test_default_dir_and_no_gnuplot(void **state) {
  (void)state;
  char env[200], *out, *err, empty[160];
  snprintf(empty, sizeof empty, "%s/empty", tmp);
  assert_int_equal(mkdir(empty, 0777), 0);
  snprintf(env, sizeof env, "PATH='%s'", empty);
  int rc = run(&out, &err, env, "inspect %s", ck);
  if (rc != 0) fail_msg("%s%s", out, err);
  char dir[160];
  snprintf(dir, sizeof dir, "%s/inspect", run_dir);
  assert_true(exists(dir, "inspect.md"));
  assert_true(exists(dir, "layers.1.mixer.attn.gp"));
  assert_false(exists(dir, "layers.1.mixer.attn.png"));
  const char *msg = "gnuplot not found: figures skipped (scripts in ";
  char *first = strstr(err, msg);
  if (!first) fail_msg("no skip message in:\n%s", err);
  assert_null(strstr(first + 1, msg));
  check_has(out, "not rendered");
  char *md = read_in(dir, "inspect.md", NULL);
  check_has(md, "Figures are not rendered (gnuplot not found)");
  free(md), free(out), free(err);
}

/* Two heads: a block per head in the .dat, each a causal softmax. */
static void test_heads(void **state) {
  (void)state;
  char dir[160], *out;
  snprintf(dir, sizeof dir, "%s/h", tmp);
  int rc = run(&out, NULL, NULL, "inspect %s --example 2 --length 12 -o %s", tr_ck, dir);
  if (rc != 0) fail_msg("%s", out);
  check_has(out, "layers.0.mixer.attn head 1: ");
  check_has(out, "layers.1.mixer.attn head 1: ");
  static double vals[4][64 * 64];
  for (int l = 0; l < 2; l++) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.mixer.attn.dat", l);
    char *dat = read_in(dir, name, NULL);
    assert_int_equal(read_dat(dat, 12, 12, vals), 2);
    check_attention(vals[0], 12), check_attention(vals[1], 12);
    free(dat);
  }
  if (have_gnuplot()) check_png_in(dir, "layers.0.mixer.attn.png"), check_svg_in(dir, "layers.0.mixer.attn.svg");
  free(out);
}

static void test_errors(void **state) {
  (void)state;
  char *out, path[192];
  assert_int_equal(run(&out, NULL, NULL, "inspect %s/missing.safetensors", tmp), 1);
  check_has(out, "recall inspect: ");
  check_has(out, "missing.safetensors: cannot open");
  free(out);
  snprintf(path, sizeof path, "%s/text.safetensors", tmp);
  FILE *f = fopen(path, "w");
  fputs("not a tensor file\n", f);
  fclose(f);
  assert_int_equal(run(&out, NULL, NULL, "inspect %s", path), 1);
  check_has(out, "text.safetensors: ");
  free(out);
  /* a safetensors file that is no checkpoint */
  snprintf(path, sizeof path, "%s/data.safetensors", tmp);
  assert_int_equal(run(&out, NULL, NULL, "data --length 8 -n 2 -o %s", path), 0);
  free(out);
  assert_int_equal(run(&out, NULL, NULL, "inspect %s", path), 1);
  check_has(out, "data.safetensors: not a recall checkpoint");
  free(out);
  assert_int_equal(run(&out, NULL, NULL, "inspect %s --example %d", ck, NSEQ), 1);
  check_has(out, "checkpoint.safetensors: example 20 is out of range: the run's sweep "
                 "has 20 sequences per length (examples 0..19)");
  free(out);
  assert_int_equal(run(&out, NULL, NULL, "inspect %s --length 2", ck), 1);
  check_has(out, "--length 2: ");
  check_has(out, "too short");
  free(out);
  assert_int_equal(run(&out, NULL, NULL, "inspect %s --example x", ck), 2);
  check_has(out, "--example takes an index >= 0, got 'x'");
  free(out);
  assert_int_equal(run(&out, NULL, NULL, "inspect"), 2);
  check_has(out, "usage: recall inspect CHECKPOINT");
  free(out);
  assert_int_equal(run(&out, NULL, NULL, "inspect --help"), 0);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hybrid),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_default_dir_and_no_gnuplot),
      cmocka_unit_test(test_heads),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
