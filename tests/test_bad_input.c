/* test_bad_input.c — what `recall` does with bad input: every case ends
 * with a non-zero exit status and a message in the user's terms (file and
 * line for specs, the option's name for --set, the file for a malformed
 * safetensors), quickly, never a crash, hang or OOM kill. Runs $RECALL_BIN. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"

/* Runs `recall ARGS` with stderr merged; the exit status (-1 if killed). */
static int run(char **out, const char *fmt, ...) {
  const char *bin = getenv("RECALL_BIN");
  assert_non_null(bin);
  char args[4096], cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "timeout 60 %s %s 2>&1", bin, args);
  return capture_command(out, cmd);
}

/* Fails with the output when it lacks want. */
static void expect(const char *out, const char *want) {
  if (!strstr(out, want)) {
    print_error("expected \"%s\" in:\n%s\n", want, out);
    fail();
  }
}

/* A failure that is not a crash: status 1 or 2 with a message. */
static void expect_fail(int st, const char *out) {
  if (st != 1 && st != 2) print_error("status %d:\n%s\n", st, out);
  assert_true(st == 1 || st == 2);
  assert_null(strstr(out, "Sanitizer"));
  assert_null(strstr(out, "Segmentation"));
}

static char *write_tmp(const char *suffix, const void *data, size_t n) {
  static char path[8][64];
  static int k;
  char *p = path[k++ % 8];
  snprintf(p, 64, "/tmp/recall_bad_XXXXXX%s", suffix);
  int fd = mkstemps(p, (int)strlen(suffix));
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  close(fd);
  return p;
}

static char *spec(const char *code) { return write_tmp(".lua", code, strlen(code)); }

/* `recall ir` of code fails and the output holds "FILE:LINE:" and want. */
static void spec_fails(const char *code, int line, const char *want) {
  char *path = spec(code), *out, loc[128];
  int st = run(&out, "ir %s", path);
  expect_fail(st, out);
  snprintf(loc, sizeof loc, "%s:%d:", path, line);
  if (line) expect(out, loc);
  if (want) expect(out, want);
  free(out);
  unlink(path);
}

static void lua_errors_name_file_and_line(void **state) {
  (void)state;
  spec_fails("local x = 1\nlocal y = = 2\n", 2, NULL);     /* syntax */
  spec_fails("local t = nil\n\nlocal y = t.x\n", 3, "nil"); /* runtime */
  spec_fails("error('my message')\n", 1, "my message");
}

static void nn_wrong_argument_types(void **state) {
  (void)state;
  spec_fails("local nn = require 'nn'\nlocal y = nn.linear('abc', 'l', 4)\n", 2, NULL);
  spec_fails("local nn = require 'nn'\nlocal y = nn.layernorm(3, 'n')\n", 2, NULL);
  spec_fails("local nn = require 'nn'\nlocal x = input('x', 'f32', {4})\n"
             "local y = nn.linear(x, 'l', 'many')\n", 3, NULL);
}

static void shape_mismatch_names_sizes(void **state) {
  (void)state;
  spec_fails("local a = input('a', 'f32', {2, 8})\nlocal b = input('b', 'f32', {16, 4})\n"
             "output('y', a:matmul(b))\n", 3, "8 vs 16");
}

static void set_errors(void **state) {
  (void)state;
  char *out;
  const char *T = "train specs/models/transformer.lua -o /tmp/recall_bad_never";
  int st = run(&out, "%s --set lrr=0.1", T);
  expect_fail(st, out);
  expect(out, "--set lrr: unknown option (did you mean 'lr'?)");
  free(out);
  st = run(&out, "%s --set M=17", T);
  expect_fail(st, out);
  expect(out, "M = 17 must be in 1..K");
  free(out);
  st = run(&out, "%s --set tau=63", T);
  expect_fail(st, out);
  expect(out, "too short for tau = 63");
  free(out);
  static const char *const cases[][2] = {
      {"d=0", "--set d=0: d must be >= 1"},
      {"K=-4", "--set K=-4: K must be >= 2"},
      {"batch=0", "--set batch=0: batch must be >= 1"},
      {"steps=0", "--set steps=0: steps must be >= 1"},
      {"L=100000000", "--set L=100000000: L too large (at most"},
      {"batch=1e12", "--set batch=1000000000000: batch too large"},
      {"tau=1e300", "--set tau=1e300: tau takes an integer"},
      {"mem_limit_gb=-1", "mem_limit_gb must be > 0"},
      {"d=8192", "raise the limit with --set mem_limit_gb"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    time_t t0 = time(NULL);
    st = run(&out, "%s --set %s", T, cases[i][0]);
    expect_fail(st, out);
    expect(out, cases[i][1]);
    assert_true(time(NULL) - t0 < 20); /* refused before any work */
    free(out);
  }
  assert_int_not_equal(access("/tmp/recall_bad_never", F_OK), 0);
}

/* ---- malformed safetensors ---- */

static size_t st_image(char *buf, const char *json, size_t data_bytes) {
  uint64_t n = strlen(json);
  for (int i = 0; i < 8; i++) buf[i] = (char)(n >> (8 * i));
  memcpy(buf + 8, json, n);
  memset(buf + 8 + n, 0, data_bytes);
  return 8 + n + data_bytes;
}

static void malformed_safetensors(void **state) {
  (void)state;
  static const char *const headers[] = {
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]",   /* bad JSON */
      "{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", /* dtype */
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,2], \"data_offsets\": [0, 8]}}",
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}",
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 800]}}",
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
      "\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
      "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [1e400], \"data_offsets\": [0, 8]}}",
  };
  char buf[1024], *out;
  size_t nh = sizeof headers / sizeof headers[0];
  for (size_t i = 0; i < nh + 2; i++) {
    size_t n;
    if (i == nh) n = 3, memcpy(buf, "\x10\0\0", 3);                      /* too short */
    else if (i == nh + 1) n = st_image(buf, "{}", 0), buf[0] = 100;     /* length past end */
    else n = st_image(buf, headers[i], 16);
    char *w = write_tmp(".safetensors", buf, n);
    int st = run(&out, "exec specs/models/transformer.lua --weights %s --tokens %s "
                 "-o /tmp/recall_bad_never.safetensors", w, w);
    expect_fail(st, out);
    expect(out, w);
    free(out);
    st = run(&out, "eval %s", w);
    expect_fail(st, out);
    expect(out, w);
    free(out);
    unlink(w);
  }
}

/* A copy of ck at bad whose metadata has every `from` replaced by `to`. */
static void edit_checkpoint(const char *ck, const char *bad, const char *from,
                            const char *to) {
  ir_error err;
  rt_tensors *ts = rt_st_read(ck, &err);
  assert_non_null(ts);
  for (int i = 0; i < ts->n_meta; i++) {
    char *p;
    while ((p = strstr(ts->meta[i].value, from))) {
      const char *v = ts->meta[i].value;
      char *nv = malloc(strlen(v) + strlen(to) + 1);
      sprintf(nv, "%.*s%s%s", (int)(p - v), v, to, p + strlen(from));
      rt_meta_set(ts, ts->meta[i].key, nv);
      free(nv);
    }
  }
  assert_int_equal(rt_st_write(bad, ts, &err), 0);
  rt_tensors_free(ts);
}

/* A transformer checkpoint whose metadata claims another model: d = 16
 * (the tensors are d = 8), or the mamba spec (whose options differ). */
static void checkpoint_of_another_model(void **state) {
  (void)state;
  char *out, dir[] = "/tmp/recall_bad_ckXXXXXX";
  assert_non_null(mkdtemp(dir));
  int st = run(&out, "train specs/models/transformer.lua --set steps=1 --set batch=2 "
               "--set test_size=2 --set sweep_n=0 -o %s", dir);
  assert_int_equal(st, 0);
  free(out);
  char ck[256], bad[300];
  snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/other.safetensors", dir);
  edit_checkpoint(ck, bad, "\"d\": 8", "\"d\": 16");
  st = run(&out, "eval %s --lengths 3..4 -n 2", bad);
  expect_fail(st, out);
  expect(out, "not a checkpoint of this model");
  free(out);
  edit_checkpoint(ck, bad, "transformer", "mamba");
  st = run(&out, "eval %s --lengths 3..4 -n 2", bad);
  expect_fail(st, out);
  expect(out, "mamba.lua");
  free(out);
  /* its spec gone, its config unreadable: eval and inspect say which */
  static const char *const cmds[] = {"eval %s --lengths 3..4 -n 2", "inspect %s -o /tmp"};
  for (int i = 0; i < 2; i++) {
    edit_checkpoint(ck, bad, "transformer.lua", "gone.lua");
    st = run(&out, cmds[i], bad);
    expect_fail(st, out);
    expect(out, "gone.lua cannot be read");
    free(out);
    edit_checkpoint(ck, bad, "\"d\": 8", "\"d\": [8");
    st = run(&out, cmds[i], bad);
    expect_fail(st, out);
    expect(out, "the config in its metadata");
    free(out);
  }
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void unwritable_outputs(void **state) {
  (void)state;
  char *out;
  int st = run(&out, "train specs/models/transformer.lua --set steps=1 -o /proc/nope");
  expect_fail(st, out);
  expect(out, "/proc/nope");
  free(out);
  st = run(&out, "data --length 8 -o /dev/full/x.csv");
  expect_fail(st, out);
  expect(out, "/dev/full/x.csv");
  free(out);
  /* a full disk: a .csv / .safetensors name that is /dev/full */
  static const char *const names[] = {"/tmp/recall_bad_full.csv",
                                      "/tmp/recall_bad_full.safetensors"};
  for (int i = 0; i < 2 && access("/dev/full", W_OK) == 0; i++) {
    unlink(names[i]);
    assert_int_equal(symlink("/dev/full", names[i]), 0);
    st = run(&out, "data --length 8 -o %s", names[i]);
    expect_fail(st, out);
    expect(out, names[i]);
    free(out);
    unlink(names[i]);
  }
}

static void nan_in_training(void **state) {
  (void)state;
  char *out;
  int st = run(&out, "train specs/models/transformer.lua --set steps=30 --set batch=8 "
               "--set test_size=16 --set sweep_n=0 --set optimizer=sgd --set lr=1e30 "
               "-o /tmp/recall_bad_nan");
  expect_fail(st, out);
  expect(out, "loss is NaN");
  expect(out, "lower the learning rate");
  free(out);
  assert_int_equal(system("rm -rf /tmp/recall_bad_nan"), 0);
}

static void sandbox(void **state) {
  (void)state;
  time_t t0 = time(NULL);
  spec_fails("local f = io.open('/etc/passwd')\n", 1, "io is not available in model specs");
  spec_fails("\nos.execute('true')\n", 2, "os is not available");
  spec_fails("local m = require 'recall_bad_outside'\n", 1, "model specs require only");
  spec_fails("local m = require '..etc.passwd'\n", 1, "a module name is");
  spec_fails("local f = load(string.dump(print))\n", 1, NULL);
  spec_fails("local f = load('return 1', 'x', 'b')\n", 1, "text chunks only");
  spec_fails("local x = debug.getinfo(1)\n", 1, "debug is not available");
  spec_fails("local i = 0\nwhile true do i = i + 1 end\n", 2, "runs too long");
  spec_fails("local function f() while true do end end\nwhile true do pcall(f) end\n", 0,
             "runs too long");
  spec_fails("xpcall(print, function() while true do end end)\n", 1,
             "xpcall is not available");
  spec_fails("local t = setmetatable({}, {__gc = function() while true do end end})\n", 1,
             "__gc is not available");
  spec_fails("local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 1e5) .. i end\n", 0,
             "spec exceeded its memory limit of 256 MiB");
  spec_fails("local s = string.rep('x', 1e12)\n", 1, "too large");
  assert_true(time(NULL) - t0 < 40);
}

int main(void) {
  /* a module outside specs/lib and the spec's folder (/tmp) */
  FILE *f = fopen("/var/tmp/recall_bad_outside.lua", "w");
  if (f) fputs("return 1\n", f), fclose(f);
  const char *root = getenv("RECALL_ROOT");
  if (root && chdir(root) != 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lua_errors_name_file_and_line),
      cmocka_unit_test(nn_wrong_argument_types),
      cmocka_unit_test(shape_mismatch_names_sizes),
      cmocka_unit_test(set_errors),
      cmocka_unit_test(malformed_safetensors),
      cmocka_unit_test(checkpoint_of_another_model),
      cmocka_unit_test(unwritable_outputs),
      cmocka_unit_test(nan_in_training),
      cmocka_unit_test(sandbox),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
