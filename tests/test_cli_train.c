/* test_cli_train.c — `recall train`, `eval` and `data` end to end: the
 * files a run writes, identical results for 1 and 2 threads, a NaN stop,
 * option errors, a checkpoint rebuilt by eval, data files. */
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
#include <unistd.h>

#include "runtime.h"

static char tmpdir[64];

/* train.csv without its elapsed_s column (wall time differs run to run). */
static void strip_time(char *csv) {
  char *w = csv;
  for (char *line = csv; *line;) {
    char *nl = strchr(line, '\n'), *comma = NULL;
    for (char *c = line; c < nl; c++)
      if (*c == ',') comma = c;
    size_t keep = (size_t)((comma ? comma : nl) - line);
    memmove(w, line, keep);
    w += keep;
    *w++ = '\n';
    line = nl + 1;
  }
  *w = 0;
}

static const char *MODEL = "specs/models/mamba.lua";
#define SMALL "--set L=8 --set layers=1 --set steps=60 --set eval_every=20 --set batch=16 --set test_size=100"

static int setup(void **state) {
  (void)state;
  strcpy(tmpdir, "/tmp/recall_train_XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void train_writes_run_and_eval_reproduces_sweep(void **state) {
  (void)state;
  char *out, dir[128];
  snprintf(dir, sizeof dir, "%s/a", tmpdir);
  int rc = run_recall(&out, "train %s " SMALL " --set sweep_n=30 -o %s", MODEL, dir);
  if (rc != 0) fail_msg("%s", out);
  /* not a terminal: one summary line */
  assert_int_equal(count_lines(out), 1);
  assert_non_null(strstr(out, "recall train: mamba: stopped at max steps 60"));
  free(out);
  char *csv = read_in(dir, "train.csv", NULL), *sweep = read_in(dir, "sweep.csv", NULL);
  char *cfg = read_in(dir, "config.json", NULL);
  assert_non_null(csv), assert_non_null(sweep), assert_non_null(cfg);
  assert_int_equal(count_lines(csv), 4); /* header, steps 20 40 60 */
  assert_true(!strncmp(csv, "step,train_loss,test_loss,test_acc,elapsed_s\n20,", 48));
  assert_int_equal(count_lines(sweep), 1 + 24 - 3 + 1); /* lengths 3..3L */
  assert_true(!strncmp(sweep, "length,accuracy,n,loss\n3,", 25));
  assert_non_null(strstr(cfg, "\"model\": \"mamba\""));
  assert_non_null(strstr(cfg, "\"layers\": 1"));
  assert_non_null(strstr(cfg, "\"lr\": 0.001"));
  assert_non_null(strstr(cfg, "\"status\": \"max_steps\""));

  char ck[160];
  snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", dir);
  ir_error err;
  rt_tensors *t = rt_checkpoint_read(ck, &err);
  if (!t) fail_msg("%s", err.msg);
  assert_non_null(rt_tensors_find(t, "layers.0.mixer.A_log"));
  assert_non_null(strstr(rt_meta_get(t, "config"), "\"model_options\""));
  assert_string_equal(rt_meta_get(t, "model"), "mamba");
  assert_non_null(strstr(rt_meta_get(t, "spec"), "specs/models/mamba.lua"));

  /* eval rebuilds the model from the checkpoint: the same sweep */
  rc = run_recall(&out, "eval %s -n 30", ck);
  if (rc != 0) fail_msg("%s", out);
  assert_string_equal(out, sweep);
  free(out);
  rc = run_recall(&out, "eval %s -n 30 --lengths 5..7 --threads 2", ck);
  assert_int_equal(rc, 0);
  assert_int_equal(count_lines(out), 4);
  assert_true(!strncmp(out, "length,accuracy,n,loss\n5,", 25));
  free(out);

  /* a checkpoint whose config describes another model: a clear error */
  const char *c0 = rt_meta_get(t, "config");
  char *c1 = malloc(strlen(c0) + 8), *at = strstr(c0, "\"d\": 8");
  assert_non_null(at);
  sprintf(c1, "%.*s\"d\": 16%s", (int)(at - c0), c0, at + 6);
  rt_meta_set(t, "config", c1);
  char bad[160];
  snprintf(bad, sizeof bad, "%s/other.safetensors", tmpdir);
  assert_int_equal(rt_st_write(bad, t, &err), 0);
  rc = run_recall(&out, "eval %s -n 10", bad);
  assert_int_equal(rc, 1);
  if (!strstr(out, "not a checkpoint of this model: parameter \"layers.0.norm.weight\" is F32[8] there, the model's is F32[16]"))
    fail_msg("%s", out);
  free(out);
  free(c1);
  rt_tensors_free(t);
  free(csv), free(sweep), free(cfg);
}

static void threads_give_identical_runs(void **state) {
  (void)state;
  char *out, d1[128], d2[128];
  snprintf(d1, sizeof d1, "%s/t1", tmpdir);
  snprintf(d2, sizeof d2, "%s/t2", tmpdir);
  assert_int_equal(run_recall(&out, "train %s " SMALL " --set sweep_n=0 -o %s", MODEL, d1), 0);
  free(out);
  assert_int_equal(run_recall(&out, "train %s " SMALL " --set sweep_n=0 --threads 2 -o %s", MODEL, d2), 0);
  free(out);
  char *a = read_in(d1, "train.csv", NULL), *b = read_in(d2, "train.csv", NULL);
  strip_time(a), strip_time(b);
  assert_string_equal(a, b);
  free(a), free(b);
  char p1[160], p2[160];
  snprintf(p1, sizeof p1, "%s/checkpoint.safetensors", d1);
  snprintf(p2, sizeof p2, "%s/checkpoint.safetensors", d2);
  ir_error err;
  rt_tensors *t1 = rt_st_read(p1, &err), *t2 = rt_st_read(p2, &err);
  assert_non_null(t1), assert_non_null(t2);
  assert_int_equal(t1->n, t2->n);
  for (int i = 0; i < t1->n; i++) {
    rt_tensor *u = rt_tensors_find(t2, t1->t[i]->name);
    assert_non_null(u);
    assert_memory_equal(t1->t[i]->data, u->data, (size_t)u->numel * 4);
  }
  rt_tensors_free(t1), rt_tensors_free(t2);
  assert_null(read_in(d1, "sweep.csv", NULL)); /* sweep_n=0: no sweep */
}

static void nan_stops_with_a_message(void **state) {
  (void)state;
  char *out, dir[128];
  snprintf(dir, sizeof dir, "%s/nan", tmpdir);
  int rc = run_recall(&out, "train specs/models/transformer.lua " SMALL " --set lr=1e38 --set eval_every=1 -o %s", dir);
  assert_int_equal(rc, 1);
  if (!strstr(out, "loss is NaN; stopping (lower the learning rate?)")) fail_msg("%s", out);
  free(out);
  char *cfg = read_in(dir, "config.json", NULL), *csv = read_in(dir, "train.csv", NULL);
  assert_non_null(strstr(cfg, "\"status\": \"diverged\""));
  assert_non_null(csv); /* the rows written before the NaN stay */
  assert_true(!strncmp(csv, "step,", 5));
  assert_null(read_in(dir, "checkpoint.safetensors", NULL));
  free(cfg), free(csv);
}

static void option_errors(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run_recall(&out, "train %s --set lrr=0.1", MODEL), 1);
  assert_non_null(strstr(out, "--set lrr: unknown option (did you mean 'lr'?)"));
  free(out);
  assert_int_equal(run_recall(&out, "train %s --set layer=1", MODEL), 1);
  assert_non_null(strstr(out, "did you mean 'layers'?"));
  free(out);
  assert_int_equal(run_recall(&out, "train %s --set n=5", MODEL), 1);
  assert_non_null(strstr(out, "n is the graph's length"));
  free(out);
  assert_int_equal(run_recall(&out, "train %s --set steps=1.5", MODEL), 1);
  assert_non_null(strstr(out, "steps takes an integer"));
  free(out);
  assert_int_equal(run_recall(&out, "train %s --set tau=63 --set L=64", MODEL), 1);
  assert_non_null(strstr(out, "too short for tau = 63"));
  free(out);
  assert_int_equal(run_recall(&out, "train %s --backend gpu", MODEL), 2);
  free(out);
  assert_int_equal(run_recall(&out, "train --help"), 0);
  assert_non_null(strstr(out, "sweep_n"));
  assert_non_null(strstr(out, "eval_every"));
  free(out);
}

static void data_files(void **state) {
  (void)state;
  char *out, st[160], csv[160];
  snprintf(st, sizeof st, "%s/d.safetensors", tmpdir);
  snprintf(csv, sizeof csv, "%s/d.csv", tmpdir);
  assert_int_equal(run_recall(&out, "data --set K=16 --set M=4 --set tau=5 --length 20 -n 100 -o %s", st), 0);
  free(out);
  assert_int_equal(run_recall(&out, "data --set K=16 --set M=4 --set tau=5 --length 20 -n 3 -o %s", csv), 0);
  free(out);
  ir_error err;
  rt_tensors *t = rt_st_read(st, &err);
  assert_non_null(t);
  int64_t d2[2] = {100, 20}, d1[1] = {100};
  rt_tensor *tok = rt_tensors_expect(t, "tokens", RT_I32, 2, d2, &err);
  rt_tensor *lab = rt_tensors_expect(t, "labels", RT_I32, 1, d1, &err);
  rt_tensor *pos = rt_tensors_expect(t, "i", RT_I32, 1, d1, &err);
  assert_non_null(tok), assert_non_null(lab), assert_non_null(pos);
  /* example e is training step 0's example e */
  rt_ar_task task = {16, 4, 5, 20};
  for (uint32_t e = 0; e < 100; e++) {
    int32_t x[20], y, i;
    rt_ar_example(0, 0, e, &task, x, &y, &i);
    assert_memory_equal(x, (int32_t *)tok->data + e * 20, sizeof x);
    assert_int_equal(y, ((int32_t *)lab->data)[e]);
    assert_int_equal(i, ((int32_t *)pos->data)[e]);
  }
  rt_tensors_free(t);
  char *c = read_in(tmpdir, "d.csv", NULL);
  assert_int_equal(count_lines(c), 4);
  assert_true(!strncmp(c, "example,label,i,x0,x1,", 22));
  free(c);
  assert_int_equal(run_recall(&out, "data --set tua=5 --length 20 -o %s", csv), 2);
  assert_non_null(strstr(out, "did you mean 'tau'?"));
  free(out);
  assert_int_equal(run_recall(&out, "data --set tau=19 --length 20 -o %s", csv), 1);
  assert_non_null(strstr(out, "too short"));
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(train_writes_run_and_eval_reproduces_sweep),
      cmocka_unit_test(threads_give_identical_runs),
      cmocka_unit_test(nan_stops_with_a_message),
      cmocka_unit_test(option_errors),
      cmocka_unit_test(data_files),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
