/* test_cli_check.c — `recall check` end to end: every model spec of
 * specs/models passes at a small size with a table covering each of its
 * parameters; a spec whose gradient is wrong (relu on its kink) fails
 * naming the parameter; a broken spec fails with FILE:LINE; bad usage is
 * exit 2. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend.h"

static const char *root(void) {
  const char *r = getenv("RECALL_ROOT");
  return r ? r : ".";
}

/* `recall check ARGS` with stdout and stderr captured together. */
static int run_check(char **out, const char *args) {
  const char *bin = getenv("RECALL_BIN");
  assert_non_null(bin);
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "%s check %s 2>&1", bin, args);
  return capture_command(out, cmd);
}

/* The line of out (after `from`) that starts, after its indentation, with
 * `name` followed by a space; NULL if none. Copies it into line. */
static const char *find_row(const char *out, const char *from, const char *name,
                            char *line, size_t n) {
  const char *p = strstr(out, from);
  if (!p) return NULL;
  size_t k = strlen(name);
  while ((p = strchr(p, '\n'))) {
    p++;
    const char *s = p;
    while (*s == ' ') s++;
    if (s == p || strncmp(s, name, k) || s[k] != ' ') continue;
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len >= n) len = n - 1;
    memcpy(line, p, len);
    line[len] = 0;
    return line;
  }
  return NULL;
}

static bool ends_with_ok(const char *line) {
  size_t n = strlen(line);
  return n >= 4 && !strcmp(line + n - 4, "  ok");
}

/* The spec's parameters, from the frontend (independently of recall check). */
static fe_model *load(const char *spec, const char *const *keys,
                      const char *const *values, int n) {
  fe_options o = {.root = root(), .keys = keys, .values = values, .n_sets = n};
  fe_model *m = NULL;
  fe_error *e = calloc(1, sizeof *e);
  if (fe_load_model(spec, &o, &m, e) < 0) fail_msg("%s", e->msg);
  free(e);
  return m;
}

/* check passes, and every param has an ok row in the finite-difference
 * table and its gradient an ok row in the JIT table. */
static void check_passes(const char *file, const char *extra_key,
                         const char *extra_value) {
  char spec[512], args[1024], line[512];
  snprintf(spec, sizeof spec, "%s/specs/models/%s", root(), file);
  snprintf(args, sizeof args, "%s --set L=8 --examples 2 --samples 6%s%s%s%s", spec,
           extra_key ? " --set " : "", extra_key ? extra_key : "",
           extra_key ? "=" : "", extra_key ? extra_value : "");
  char *out;
  int st = run_check(&out, args);
  if (st != 0) fail_msg("recall check %s: exit %d\n%s", args, st, out);
  assert_non_null(strstr(out, "\ncheck passed: "));
  assert_null(strstr(out, "FAIL"));
  /* L = 8: buckets q = 2, 4, 6, 8, then 12; 9 is the first padded length */
  assert_non_null(strstr(out, "evaluation kernel, n = 9 padded to 12"));
  assert_non_null(strstr(out, "evaluation kernel function, n = 12"));
  const char *stages[] = {"frontend, n = 8", "autodiff", "training kernel function",
                          "evaluation kernel function, n = 8", "frontend, n = 9"};
  for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
    if (!find_row(out, "\nverifier", stages[i], line, sizeof line) || !strstr(line, " ok "))
      fail_msg("%s: no ok verifier row \"%s\"\n%s", file, stages[i], out);
  }
  const char *keys[] = {"L", extra_key}, *values[] = {"8", extra_value};
  fe_model *m = load(spec, keys, values, extra_key ? 2 : 1);
  assert_true(m->n_params >= 4);
  for (int i = 0; i < m->n_params; i++) {
    const char *name = m->params[i].name;
    if (!find_row(out, "\ngradient:", name, line, sizeof line))
      fail_msg("%s: no finite-difference row for %s\n%s", file, name, out);
    if (!strstr(line, "  ok")) fail_msg("%s: %s", file, line);
    char gname[300];
    snprintf(gname, sizeof gname, "grad.%s", name);
    if (!find_row(out, "\njit:", gname, line, sizeof line) || !ends_with_ok(line))
      fail_msg("%s: no ok JIT row for %s\n%s", file, gname, out);
    if (!find_row(out, "\npasses:", gname, line, sizeof line) || !ends_with_ok(line))
      fail_msg("%s: no ok passes row for %s\n%s", file, gname, out);
    /* entries: all of a param with at most 6, else 6 of them */
    char want[64];
    size_t numel = (size_t)ir_numel(&m->f->nodes[m->params[i].node].type);
    snprintf(want, sizeof want, " %zu/%zu ", numel <= 6 ? numel : 6, numel);
    if (!find_row(out, "\ngradient:", name, line, sizeof line) || !strstr(line, want))
      fail_msg("%s: expected \"%s\" in: %s", file, want, line);
  }
  fe_model_free(m);
  free(out);
}

/* Every spec in specs/models, so that a new model is checked too. */
static void every_model_passes(void **state) {
  (void)state;
  char dir[512];
  snprintf(dir, sizeof dir, "%s/specs/models", root());
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) {
    size_t k = strlen(e->d_name);
    if (k < 5 || strcmp(e->d_name + k - 4, ".lua")) continue;
    check_passes(e->d_name, NULL, NULL);
    n++;
  }
  closedir(d);
  assert_true(n >= 4); /* transformer, mamba, hybrid, linear_attention */
}

static void transformer_encodings_pass(void **state) {
  (void)state;
  check_passes("transformer.lua", "pe", "learned"); /* pos_emb: 3L rows */
  check_passes("transformer.lua", "pe", "nope");
}

/* A spec in a temp dir; returns its path (static buffer). */
static const char *write_spec(const char *name, const char *text) {
  static char path[600];
  static char dir[64];
  strcpy(dir, "/tmp/recall_check_XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static void remove_spec(const char *path) {
  char dir[600];
  snprintf(dir, sizeof dir, "%s", path);
  remove(path);
  *strrchr(dir, '/') = 0;
  rmdir(dir);
}

/* relu(gate) with gate = 0: the derivative does not exist there; autodiff
 * takes one side, central differences average both (1/2 of the upstream
 * gradient), so the check must fail and name the parameter. */
static void kink_fails_naming_the_param(void **state) {
  (void)state;
  const char *path = write_spec("kink.lua",
      "local nn = require \"nn\"\n"
      "local o = options{K = 16, d = 8, L = 8, n = nn.default_n}\n"
      "local tokens, pos, label = nn.inputs(o)\n"
      "local h = nn.embedding(tokens, o.K, o.d)\n"
      "local gate = param(\"gate\", {o.d}, init.constant(0))\n"
      "h = h + relu(gate)\n"
      "nn.readout(h, pos, label, nn.layernorm, o.K)\n");
  char args[1024], line[512], *out;
  snprintf(args, sizeof args, "%s --set L=8 --examples 2", path);
  assert_int_equal(run_check(&out, args), 1);
  if (!find_row(out, "\ngradient:", "gate", line, sizeof line) || !strstr(line, "FAIL"))
    fail_msg("no failing row for gate:\n%s", out);
  if (!strstr(out, "recall check: ") || !strstr(out, "gradient of gate: autodiff and finite "
                                                       "differences differ"))
    fail_msg("failure not named:\n%s", out);
  assert_non_null(strstr(out, "\ncheck FAILED: 1 problem\n"));
  /* the other params are fine */
  assert_non_null(find_row(out, "\ngradient:", "lm_head.weight", line, sizeof line));
  assert_non_null(strstr(line, "  ok"));
  free(out);
  remove_spec(path);
}

/* A shape error in the spec: exit 1, FILE:LINE and the op's message. */
static void bad_spec_names_file_and_line(void **state) {
  (void)state;
  const char *path = write_spec("bad.lua",
      "local nn = require \"nn\"\n"
      "local o = options{K = 16, d = 8, L = 8, n = nn.default_n}\n"
      "local tokens, pos, label = nn.inputs(o)\n"
      "local h = nn.embedding(tokens, o.K, o.d)\n"
      "local w = param(\"w\", {16, 16}, init.constant(0))\n"
      "h = h:matmul(w)\n"
      "nn.readout(h, pos, label, nn.layernorm, o.K)\n");
  char args[1024], want[700], *out;
  snprintf(args, sizeof args, "%s", path);
  assert_int_equal(run_check(&out, args), 1);
  snprintf(want, sizeof want, "%s:6: matmul: inner sizes differ, 8 vs 16", path);
  if (!strstr(out, want)) fail_msg("want \"%s\" in:\n%s", want, out);
  free(out);
  remove_spec(path);
}

/* A JIT tolerance of 0 makes float32 accumulation differences failures:
 * the tolerance reaches the JIT rows, and each failure is named. */
static void tolerance_is_applied(void **state) {
  (void)state;
  char args[1024], *out;
  snprintf(args, sizeof args, "%s/specs/models/mamba.lua --set L=8 --set layers=1 "
           "--examples 2 --samples 2 --tol jit=0 --seed 3", root());
  assert_int_equal(run_check(&out, args), 1);
  assert_non_null(strstr(out, "seed 3, 2 AR examples"));
  assert_non_null(strstr(out, "recall check: "));
  assert_non_null(strstr(out, ": relative error "));
  assert_non_null(strstr(out, " > 0 (worst at ["));
  assert_non_null(strstr(out, "check FAILED"));
  /* finite differences still pass */
  assert_null(strstr(out, "gradient of "));
  free(out);
}

static void usage_errors(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run_check(&out, ""), 2);
  assert_non_null(strstr(out, "usage: recall check"));
  free(out);
  assert_int_equal(run_check(&out, "--help"), 0);
  assert_non_null(strstr(out, "finite differences"));
  free(out);
  assert_int_equal(run_check(&out, "specs/models/mamba.lua --tol nope=1"), 2);
  assert_non_null(strstr(out, "--tol expects fd=R, jit=R or passes=R"));
  free(out);
  assert_int_equal(run_check(&out, "specs/models/mamba.lua --tol fd=-1"), 2);
  free(out);
  assert_int_equal(run_check(&out, "specs/models/mamba.lua --examples 0"), 2);
  assert_non_null(strstr(out, "--examples takes a count"));
  free(out);
  assert_int_equal(run_check(&out, "specs/models/mamba.lua --set nonsense=3"), 1);
  assert_non_null(strstr(out, "nonsense"));
  free(out);
  assert_int_equal(run_check(&out, "specs/models/no_such_model.lua"), 1);
  assert_non_null(strstr(out, "no_such_model.lua"));
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(usage_errors),
      cmocka_unit_test(bad_spec_names_file_and_line),
      cmocka_unit_test(kink_fails_naming_the_param),
      cmocka_unit_test(tolerance_is_applied),
      cmocka_unit_test(every_model_passes),
      cmocka_unit_test(transformer_encodings_pass),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
