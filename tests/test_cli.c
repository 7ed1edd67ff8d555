/* test_cli.c — the recall command end to end: exit status and output. */
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

#include "ir.h"

/* Runs `recall ARGS` (shell words), capturing stdout+stderr; returns the
 * exit status and a malloc'd output. */
static int run(char **out, const char *args) {
  const char *bin = getenv("RECALL_BIN");
  assert_non_null(bin);
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
  return capture_command(out, cmd);
}

static char *write_tmp(const char *text) {
  static char path[64];
  strcpy(path, "/tmp/recall_cli_XXXXXX.ir");
  int fd = mkstemps(path, 3);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

/* `recall ir FILE.ir` prints exactly what the library's printer prints. */
static void ir_prints_parsed_file(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(&out, "ir --stage frontend specs/ir/attention.ir"), 0);
  ir_error err;
  ir_func *f = ir_parse_file("specs/ir/attention.ir", &err);
  assert_non_null(f);
  char *want = ir_print_str(f);
  assert_string_equal(out, want);
  /* and the printed text parses back to the same text */
  ir_func *g = ir_parse(out, "printed", &err);
  assert_non_null(g);
  char *again = ir_print_str(g);
  assert_string_equal(again, want);
  free(again), free(want), free(out);
  ir_func_free(f), ir_func_free(g);
}

/* `--grad` prints a backward function: it parses, takes the upstream
 * gradient and saved values as inputs and outputs every param gradient. */
static void ir_grad_prints_backward(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(&out, "ir --grad specs/ir/attention.ir"), 0);
  ir_error err;
  ir_func *b = ir_parse(out, "bwd", &err);
  if (!b) fail_msg("%s\n%s", err.msg, out);
  assert_true(ir_find_leaf(b, "grad.loss") >= 0);
  const char *params[] = {"wq.weight", "wk.weight", "wv.weight",
                          "lm_head.weight"};
  for (int i = 0; i < 4; i++) {
    char name[64];
    snprintf(name, sizeof name, "grad.%s", params[i]);
    assert_true(ir_find_output(b, name) >= 0);
  }
  assert_int_equal(b->n_outs, 4);
  assert_non_null(strstr(out, "input \"saved."));
  ir_func_free(b);
  free(out);
}

static void ir_stages(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(&out, "ir --stage autodiff specs/ir/attention.ir"), 0);
  assert_non_null(strstr(out, "output \"loss\""));
  assert_non_null(strstr(out, "output \"grad.wq.weight\""));
  free(out);
  assert_int_equal(run(&out, "ir --stage opt specs/ir/attention.ir"), 0);
  assert_non_null(strstr(out, "output \"grad.lm_head.weight\""));
  free(out);
  assert_int_equal(run(&out, "ir specs/ir/attention.ir"), 0);
  assert_non_null(strstr(out, "# forward"));
  assert_non_null(strstr(out, "# backward"));
  free(out);
  assert_int_equal(run(&out, "ir --format dot specs/ir/attention.ir"), 0);
  assert_non_null(strstr(out, "digraph recall {"));
  free(out);
  /* the kernels' functions: parse; the training kernel's has the
   * gradients and (L 24 > K 16) the first layer on the embedding's rows
   * (ir/sink.c); the evaluation kernel's reads the row "pos" names */
  ir_error err;
  assert_int_equal(run(&out, "ir --stage kernel specs/models/mamba.lua --set L=24"), 0);
  ir_func *k = ir_parse(out, "kernel", &err);
  if (!k) fail_msg("%s\n%s", err.msg, out);
  assert_true(ir_find_output(k, "grad.layers.0.mixer.in_proj.weight") >= 0);
  assert_true(ir_find_leaf(k, "pos") < 0); /* bound to L - 1 */
  int w = ir_find_leaf(k, "layers.0.mixer.in_proj.weight"), rows = 0;
  for (int v = 0; v < k->n_nodes; v++) {
    const ir_node *n = &k->nodes[v];
    if (n->op == IR_OP_MATMUL && n->attr.tb && k->nodes[n->in[1]].op == IR_OP_SLICE &&
        k->nodes[n->in[1]].in[0] == w)
      rows = n->type.dim[0];
  }
  assert_int_equal(rows, 16);
  ir_func_free(k);
  free(out);
  assert_int_equal(run(&out, "ir --stage eval specs/models/mamba.lua --set L=24"), 0);
  k = ir_parse(out, "eval", &err);
  if (!k) fail_msg("%s\n%s", err.msg, out);
  assert_true(ir_find_leaf(k, "pos") >= 0);
  assert_int_equal(ir_find_output(k, "grad.layers.0.mixer.in_proj.weight"), -1);
  ir_func_free(k);
  free(out);
}

static void ir_errors(void **state) {
  (void)state;
  char *out;
  const char *bad = write_tmp("%a = param \"a\" : f32[4,8]\n"
                              "%b = param \"b\" : f32[16,4]\n"
                              "%c = matmul %a, %b : f32[4,4]\n");
  char args[256];
  snprintf(args, sizeof args, "ir %s", bad);
  assert_int_equal(run(&out, args), 1);
  char want[256];
  snprintf(want, sizeof want, "%s:3: matmul: inner sizes differ, 8 vs 16", bad);
  if (!strstr(out, want)) fail_msg("got: %s", out);
  free(out);
  remove(bad);

  assert_int_equal(run(&out, "ir no/such/file.ir"), 1);
  assert_non_null(strstr(out, "no/such/file.ir"));
  free(out);
  assert_int_equal(run(&out, "ir --stage nonsense specs/ir/attention.ir"), 2);
  assert_non_null(strstr(out, "unknown stage 'nonsense'"));
  free(out);
  assert_int_equal(run(&out, "frobnicate"), 2);
  assert_non_null(strstr(out, "unknown command 'frobnicate'"));
  free(out);
  /* no loss output: --grad says so */
  const char *noloss = write_tmp("%a = param \"a\" : f32[4]\n"
                                 "%b = exp %a : f32[4]\noutput \"y\" = %b\n");
  snprintf(args, sizeof args, "ir --grad %s", noloss);
  assert_int_equal(run(&out, args), 1);
  assert_non_null(strstr(out, "no output named \"loss\""));
  free(out);
  remove(noloss);
}

/* exec: a missing or misshapen weight and a wrong length are clear errors. */
static void exec_errors(void **state) {
  (void)state;
  char *out, args[4096];
  const char *root = getenv("RECALL_ROOT");
  char gold[1024];
  snprintf(gold, sizeof gold,
           "%s/../shared/golden/mamba_K16_d8_L16.safetensors", root ? root : ".");
  /* the golden mamba weights do not fit a transformer */
  snprintf(args, sizeof args,
           "exec specs/models/transformer.lua --set L=16 --weights %s --tokens %s "
           "--backend interp", gold, gold);
  assert_int_equal(run(&out, args), 1);
  if (!strstr(out, "no tensor \"layers.0.norm.bias\" (param f32[8]"))
    fail_msg("got: %s", out);
  free(out);
  /* d=16 makes every weight the wrong shape */
  snprintf(args, sizeof args,
           "exec specs/models/mamba.lua --set L=16 --set d=16 --weights %s "
           "--tokens %s --backend interp", gold, gold);
  assert_int_equal(run(&out, args), 1);
  if (!strstr(out, "tensor \"embedding.weight\" is F32[16,8], expected F32[16,16]"))
    fail_msg("got: %s", out);
  free(out);
  /* built for L=64 but the tokens have 16 positions */
  snprintf(args, sizeof args,
           "exec specs/models/mamba.lua --weights %s --tokens %s", gold, gold);
  assert_int_equal(run(&out, args), 1);
  if (!strstr(out, "tokens are [4, 16]")) fail_msg("got: %s", out);
  free(out);
  /* a spec error names the spec's file and line */
  assert_int_equal(run(&out, "ir specs/models/mamba.lua --set d=0"), 1);
  assert_non_null(strstr(out, "specs/"));
  free(out);
  assert_int_equal(run(&out, "ir specs/models/mamba.lua --set nonsense=3"), 1);
  assert_non_null(strstr(out, "nonsense"));
  free(out);
}

/* Every model spec trains through the runtime, which re-runs the spec at
 * other lengths for the sweep with the options it reported: a spec whose
 * options do not round-trip (as hybrid's once did) fails here. */
static void every_model_trains(void **state) {
  (void)state;
  const char *specs[] = {"transformer.lua --set pe=learned",
                         "transformer.lua --set pe=rope",
                         "transformer.lua --set pe=nope", "mamba.lua",
                         "hybrid.lua", "linear_attention.lua"};
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    char dir[] = "/tmp/recall_train_XXXXXX", args[512], *out;
    assert_non_null(mkdtemp(dir));
    snprintf(args, sizeof args,
             "train specs/models/%s --set L=8 --set steps=3 --set eval_every=3 "
             "--set test_size=8 --set sweep_n=2 -o %s", specs[i], dir);
    int st = run(&out, args);
    if (st != 0) fail_msg("recall %s: exit %d\n%s", args, st, out);
    free(out);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test -s %s/sweep.csv && rm -rf %s", dir, dir);
    assert_int_equal(system(cmd), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ir_prints_parsed_file),
      cmocka_unit_test(ir_grad_prints_backward),
      cmocka_unit_test(ir_stages),
      cmocka_unit_test(ir_errors),
      cmocka_unit_test(exec_errors),
      cmocka_unit_test(every_model_trains),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
