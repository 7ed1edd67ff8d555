/* test_cli_llvm.c — `recall llvm` (the kernels' LLVM IR and machine code)
 * and `recall bench` end to end, and the FLOP count they report
 * (cg_flops) against hand-computed values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "codegen.h"

/* Runs `recall ARGS`; stdout (and stderr if both) into a malloc'd string. */
static int run(char **out, const char *args, bool both) {
  const char *bin = getenv("RECALL_BIN");
  assert_non_null(bin);
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "%s %s %s", bin, args, both ? "2>&1" : "2>/dev/null");
  return capture_command(out, cmd);
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
  return n;
}

/* The text of the first LLVM function whose body contains `opcode`
 * ("" if none). */
static char *function_text(const char *ir, const char *opcode) {
  for (const char *d = strstr(ir, "\ndefine "); d; d = strstr(d + 1, "\ndefine ")) {
    const char *end = strstr(d, "\n}\n");
    if (!end) break;
    size_t n = (size_t)(end - d);
    char *f = malloc(n + 1);
    memcpy(f, d, n);
    f[n] = 0;
    if (strstr(f, opcode)) return f;
    free(f);
  }
  return strdup("");
}

/* At x86-64-v3 (AVX2) the optimised kernels compute with <8 x float> in
 * their loops: the elementwise groups, matmul tiles, the scan. */
static void llvm_ir_has_vectors(void **state) {
  (void)state;
  const char *models[] = {"transformer.lua", "mamba.lua"};
  for (int m = 0; m < 2; m++) {
    for (int k = 0; k < 2; k++) {
      char args[256], *out;
      snprintf(args, sizeof args, "llvm specs/models/%s --set L=16 --kernel %s --cpu x86-64-v3",
               models[m], k ? "fwd" : "bwd");
      assert_int_equal(run(&out, args, false), 0);
      assert_non_null(strstr(out, "define i32 @recall_kernel("));
      int fma = count(out, "<8 x float> @llvm.fmuladd.v8f32");
      int vmul = count(out, "fmul <8 x float>") + count(out, "fmul contract <8 x float>");
      print_message("%s %s: %d vector FMAs, %d vector multiplies\n", models[m],
                    k ? "fwd" : "bwd", fma, vmul);
      assert_true(fma > 0);
      assert_true(vmul > 0);
      /* inside a loop: a vector op in a block that branches back */
      char *f = function_text(out, "<8 x float> @llvm.fmuladd.v8f32");
      assert_true(strstr(f, "br i1") != NULL);
      free(f);
      free(out);
    }
  }
  /* the exp of the scan (and of silu, softplus) on 8 lanes: its 2^k */
  char *out;
  assert_int_equal(run(&out, "llvm specs/models/mamba.lua --set L=16 --kernel fwd --cpu x86-64-v3", false), 0);
  assert_true(count(out, "shl <8 x i32>") > 0);
  free(out);
}

static void asm_has_ymm(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(&out, "llvm specs/models/transformer.lua --set L=16 --asm --cpu x86-64-v3", false), 0);
  assert_true(count(out, "%ymm") > 10);
  assert_true(count(out, "vfmadd") > 0);
  assert_non_null(strstr(out, "recall_kernel:"));
  free(out);
  /* an older CPU gets no ymm registers */
  assert_int_equal(run(&out, "llvm specs/models/transformer.lua --set L=16 --asm --cpu x86-64", false), 0);
  assert_int_equal(count(out, "%ymm"), 0);
  free(out);
}

static void llvm_usage_errors(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(&out, "llvm specs/models/mamba.lua --kernel sideways", true), 2);
  assert_non_null(strstr(out, "--kernel is fwd or bwd"));
  free(out);
  assert_int_equal(run(&out, "llvm", true), 2);
  free(out);
  assert_int_equal(run(&out, "llvm --asm --stage lowered specs/models/mamba.lua", true), 2);
  free(out);
  assert_int_equal(run(&out, "llvm specs/models/nonexistent.lua", true), 1);
  free(out);
  /* the lowered stage: before any pass, still a kernel */
  assert_int_equal(run(&out, "llvm specs/models/mamba.lua --set L=8 --stage lowered", false), 0);
  assert_non_null(strstr(out, "define i32 @recall_kernel("));
  free(out);
}

/* The number after "key": in a one-line JSON object, or NAN. */
static double json_num(const char *line, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  const char *p = strstr(line, pat);
  if (!p) return NAN;
  char *end;
  double v = strtod(p + strlen(pat), &end);
  return end == p + strlen(pat) ? NAN : v;
}

static void bench_json(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(&out,
                       "bench specs/models/transformer.lua --set L=8 --set sweep_n=2 "
                       "--steps 3 --warmup 1 --eval-n 4 --json",
                       false),
                   0);
  /* exactly one line, one object */
  size_t n = strlen(out);
  assert_true(n > 2 && out[0] == '{' && out[n - 1] == '\n' && out[n - 2] == '}');
  assert_true(strchr(out, '\n') == out + n - 1);
  assert_non_null(strstr(out, "\"model\": \"transformer-rope\""));
  const char *keys[] = {"d", "L", "threads", "train_step_ms", "sweep_s", "compile_ms", "gflops"};
  for (int i = 0; i < 7; i++) {
    double v = json_num(out, keys[i]);
    if (!(v > 0)) fail_msg("key %s: %g in\n%s", keys[i], v, out);
  }
  assert_true(json_num(out, "L") == 8 && json_num(out, "d") == 8 && json_num(out, "threads") == 1);
  free(out);
  /* human-readable by default, and no sweep when asked */
  assert_int_equal(run(&out,
                       "bench specs/models/mamba.lua --set L=8 --steps 2 --warmup 0 "
                       "--eval-n 2 --no-sweep",
                       false),
                   0);
  assert_non_null(strstr(out, "ms/step"));
  assert_non_null(strstr(out, "GFLOP/s"));
  assert_null(strstr(out, "  sweep    lengths"));
  free(out);
}

static int node_lines(const char *out) {
  int n = 0;
  for (const char *p = out; (p = strstr(p, " cyc  %")); p++) n++;
  return n;
}

/* --profile lists the top 25 nodes, --top N the top N, --top 0 all */
static void bench_profile_top(void **state) {
  (void)state;
  const char *cmd = "bench specs/models/mamba.lua --set L=8 --profile bwd";
  char *out;
  assert_int_equal(run(&out, cmd, false), 0);
  assert_non_null(strstr(out, "profile of the training kernel"));
  assert_int_equal(node_lines(out), 25);
  free(out);
  char c2[200];
  snprintf(c2, sizeof c2, "%s --top 3", cmd);
  assert_int_equal(run(&out, c2, false), 0);
  assert_int_equal(node_lines(out), 3);
  free(out);
  snprintf(c2, sizeof c2, "%s --top 0", cmd);
  assert_int_equal(run(&out, c2, false), 0);
  assert_true(node_lines(out) > 25);
  free(out);
}

/* --ab: two compiles of the kernel in one process, VAR unset and set (a
 * variable nothing reads gives equal outputs, RECALL_PASSES reaches B's
 * compile); --ab wants --profile */
static void bench_profile_ab(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(&out, "bench specs/models/mamba.lua --set L=8 --profile bwd --top 3 "
                             "--ab RECALL_TEST_UNREAD=7 --rounds 2", false), 0);
  assert_non_null(strstr(out, "A/B of the training kernel, RECALL_TEST_UNREAD unset (A) and "
                              "RECALL_TEST_UNREAD=7 (B), one process: 2 rounds"));
  assert_non_null(strstr(out, "outputs differ by at most 0\n"));
  assert_int_equal(count(out, "%  %"), 3);
  free(out);
  /* B is compiled with the variable set: a pipeline that does not parse */
  assert_int_equal(run(&out, "bench specs/models/mamba.lua --set L=8 --profile fwd "
                             "--ab RECALL_PASSES=no-such-pass", true), 1);
  assert_non_null(strstr(out, "running passes"));
  free(out);
  assert_int_equal(run(&out, "bench specs/models/mamba.lua --set L=8 --ab X", false), 2);
  free(out);
  assert_int_equal(run(&out, "bench specs/models/mamba.lua --set L=8 --profile fwd --ab =1", false), 1);
  free(out);
}

/* ---- cg_flops against hand counts ---- */

static ir_error E;

static void flops_counted(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  int a = ir_leaf(f, IR_OP_INPUT, "a", ir_type_make(IR_F32, 2, (int[]){2, 3}), &E);
  int b = ir_leaf(f, IR_OP_INPUT, "b", ir_type_make(IR_F32, 2, (int[]){3, 4}), &E);
  int in[2] = {a, b};
  int m = ir_add(f, IR_OP_MATMUL, in, 2, &(ir_attrs){0}, NULL, NULL, &E); /* 2*2*4*3 = 48 */
  int e = ir_unary(f, IR_OP_EXP, m, &E);                                  /* 8 * 10 = 80 */
  int s = ir_add(f, IR_OP_SUM, &e, 1, &(ir_attrs){.axis = 1}, NULL, NULL, &E); /* 8 */
  ir_add_output(f, "s", s, &E);
  int dead = ir_unary(f, IR_OP_EXP, a, &E); /* not an output's: not counted */
  (void)dead;
  assert_true(cg_flops(f) == 48 + 80 + 8);
  ir_func_free(f);

  /* causal softmax [3,3]: 6 unmasked of 9, 14 each; P V only the triangle */
  f = ir_func_new();
  int x = ir_leaf(f, IR_OP_INPUT, "x", ir_type_make(IR_F32, 2, (int[]){3, 3}), &E);
  int v = ir_leaf(f, IR_OP_INPUT, "v", ir_type_make(IR_F32, 2, (int[]){3, 2}), &E);
  int p = ir_add(f, IR_OP_SOFTMAX, &x, 1, &(ir_attrs){.causal = true}, NULL, NULL, &E);
  int pv[2] = {p, v};
  int y = ir_add(f, IR_OP_MATMUL, pv, 2, &(ir_attrs){0}, NULL, NULL, &E);
  ir_add_output(f, "y", y, &E);
  /* softmax 6 * 14 = 84; matmul 2*3*2*3 = 36 scaled by 6/9 = 24 */
  assert_true(fabs(cg_flops(f) - (84 + 24)) < 1e-9);
  ir_func_free(f);

  /* scan L 2, E 1, N 1: 2 * 16 + 2 */
  f = ir_func_new();
  int u = ir_leaf(f, IR_OP_INPUT, "u", ir_type_make(IR_F32, 2, (int[]){2, 1}), &E);
  int dl = ir_leaf(f, IR_OP_INPUT, "d", ir_type_make(IR_F32, 2, (int[]){2, 1}), &E);
  int A = ir_leaf(f, IR_OP_INPUT, "A", ir_type_make(IR_F32, 2, (int[]){1, 1}), &E);
  int bc = ir_leaf(f, IR_OP_INPUT, "bc", ir_type_make(IR_F32, 2, (int[]){2, 2}), &E);
  int sin[4] = {u, dl, A, bc};
  int sc = ir_add(f, IR_OP_SCAN, sin, 4, NULL, NULL, NULL, &E);
  ir_add_output(f, "y", sc, &E);
  assert_true(cg_flops(f) == 34);
  ir_func_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(flops_counted),
      cmocka_unit_test(llvm_ir_has_vectors),
      cmocka_unit_test(asm_has_ymm),
      cmocka_unit_test(llvm_usage_errors),
      cmocka_unit_test(bench_json),
      cmocka_unit_test(bench_profile_top),
      cmocka_unit_test(bench_profile_ab),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
