/* test_run.c — experiment specs and `recall run`: expansion of lists into
 * the cartesian product with the right run names, the sandbox, and a tiny
 * experiment end to end through the binary ($RECALL_BIN): the files and
 * their columns, refusing to overwrite, --resume, and -j independence. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend.h"

/* ---- helpers ---- */

static fe_experiment *expand(const char *code, const char *const *keys,
                             const char *const *values, int n, fe_error *err) {
  fe_options o = {.root = "/r", .keys = keys, .values = values, .n_sets = n};
  fe_experiment *e = NULL;
  if (fe_load_experiment_string(code, "/x/exp.lua", &o, &e, err) < 0) return NULL;
  return e;
}

static fe_experiment *expand_ok(const char *code, const char *const *keys,
                                const char *const *values, int n) {
  fe_error *err = calloc(1, sizeof *err);
  fe_experiment *e = expand(code, keys, values, n, err);
  if (!e) fail_msg("%s", err->msg);
  free(err);
  return e;
}

/* The error message of a spec that must fail. */
static char *expand_err(const char *code) {
  fe_error *err = calloc(1, sizeof *err);
  fe_experiment *e = expand(code, NULL, NULL, 0, err);
  if (e) fail_msg("expected an error from:\n%s", code);
  char *m = strdup(err->msg);
  free(err);
  return m;
}

#define assert_contains(hay, needle)                                         \
  do {                                                                       \
    if (!strstr((hay), (needle)))                                            \
      fail_msg("expected \"%s\" in:\n%s", (needle), (hay));                  \
  } while (0)

/* ---- expansion ---- */

/* Two lists (M, lr) and two seeds give 2*2*2 runs for the first entry,
 * seed fastest, then lr, then M; the second entry fixes lr, so lr is not
 * in its names. */
static void lists_expand_to_the_product(void **state) {
  (void)state;
  fe_experiment *e = expand_ok(
      "return {\n"
      "  name = 'x1', title = 'T', problem = 2,\n"
      "  task = {K = 8, M = {1, 2}, tau = 1},\n"
      "  train = {lr = {1e-3, 3e-3}, steps = 10},\n"
      "  seeds = 2,\n"
      "  models = {\n"
      "    {label = 'a', spec = 'transformer', set = {pe = 'rope'}},\n"
      "    {label = 'b', spec = 'mamba', lr = 0.01},\n"
      "  },\n"
      "}\n", NULL, NULL, 0);
  const char *names[] = {
      "a-M1-tau1-lr0.001-s0", "a-M1-tau1-lr0.001-s1", "a-M1-tau1-lr0.003-s0",
      "a-M1-tau1-lr0.003-s1", "a-M2-tau1-lr0.001-s0", "a-M2-tau1-lr0.001-s1",
      "a-M2-tau1-lr0.003-s0", "a-M2-tau1-lr0.003-s1", "b-M1-tau1-s0",
      "b-M1-tau1-s1",         "b-M2-tau1-s0",         "b-M2-tau1-s1"};
  assert_int_equal(e->n_runs, 12);
  for (int i = 0; i < 12; i++) assert_string_equal(e->runs[i].name, names[i]);
  assert_string_equal(e->name, "x1");
  assert_string_equal(e->title, "T");
  assert_string_equal(e->problem, "2");
  assert_false(e->study);
  /* every run carries every option, sorted by key */
  const fe_run *r = &e->runs[5]; /* a, M 2, lr 1e-3, seed 1 */
  const char *keys[] = {"K", "M", "lr", "pe", "seed", "steps", "tau"};
  const char *vals[] = {"8", "2", "0.001", "rope", "1", "10", "1"};
  assert_int_equal(r->n, 7);
  for (int i = 0; i < 7; i++) {
    assert_string_equal(r->keys[i], keys[i]);
    assert_string_equal(r->values[i], vals[i]);
  }
  assert_string_equal(r->label, "a");
  assert_string_equal(r->spec, "/r/specs/models/transformer.lua");
  assert_string_equal(fe_run_get(&e->runs[9], "lr"), "0.01");
  assert_null(fe_run_get(&e->runs[9], "pe"));
  assert_string_equal(e->runs[9].spec, "/r/specs/models/mamba.lua");
  fe_experiment_free(e);
}

/* --set beats the model entry, which beats the experiment; a value with
 * commas is a list that sweeps; set={} and the entry's own keys merge. */
static void set_overrides_every_level(void **state) {
  (void)state;
  const char *code =
      "return {\n"
      "  task = {K = 16, M = 1, tau = {1, 5}, d = 8},\n"
      "  seeds = {0, 1, 2},\n"
      "  models = {\n"
      "    {label = 'm', spec = 'mamba', lr = 0.002, set = {d = 16}},\n"
      "    {spec = 'other/thing.lua'},\n"
      "  },\n"
      "}\n";
  const char *k[] = {"tau", "seed", "lr"};
  const char *v[] = {"3", "7", "1e-3,3e-3"};
  fe_experiment *e = expand_ok(code, k, v, 3);
  assert_string_equal(e->name, "exp"); /* from the file name */
  assert_int_equal(e->n_runs, 4);
  assert_string_equal(e->runs[0].name, "m-M1-tau3-lr1e-3-s7");
  assert_string_equal(e->runs[1].name, "m-M1-tau3-lr3e-3-s7");
  assert_string_equal(fe_run_get(&e->runs[0], "d"), "16");
  assert_string_equal(fe_run_get(&e->runs[0], "K"), "16");
  assert_string_equal(e->runs[2].label, "thing"); /* default label */
  assert_string_equal(e->runs[2].name, "thing-M1-tau3-lr1e-3-s7");
  assert_string_equal(fe_run_get(&e->runs[2], "d"), "8");
  /* a relative path that exists nowhere is kept as given */
  assert_string_equal(e->runs[2].spec, "other/thing.lua");
  fe_experiment_free(e);
}

/* Names: characters outside [A-Za-z0-9._-] become _, keys other than M,
 * tau, d, lr that vary follow in name order, and d comes before lr. */
static void names_sanitised_and_ordered(void **state) {
  (void)state;
  fe_experiment *e = expand_ok(
      "return { task = {M = 4, tau = 2}, seeds = 1, models = {\n"
      "  {label = 'my model', spec = 'mamba', d = {8, 64}, lr = {0.1, 0.2},\n"
      "   batch = {16, 32}} } }\n", NULL, NULL, 0);
  assert_int_equal(e->n_runs, 8);
  assert_string_equal(e->runs[0].name, "my_model-M4-tau2-d8-lr0.1-batch16-s0");
  assert_string_equal(e->runs[7].name, "my_model-M4-tau2-d64-lr0.2-batch32-s0");
  fe_experiment_free(e);
}

static void study_lists_experiments(void **state) {
  (void)state;
  fe_experiment *e = expand_ok(
      "return {name = 'st', experiments = {'p1.lua', 'sub/p2.lua', 'p3'}}\n", NULL, NULL, 0);
  assert_true(e->study);
  assert_int_equal(e->n_experiments, 3);
  assert_int_equal(e->n_runs, 0);
  assert_string_equal(e->experiments[0], "p1.lua"); /* not found: as given */
  assert_string_equal(e->experiments[2], "/r/specs/experiments/p3.lua");
  fe_experiment_free(e);
}

/* Mistakes name the file, and the line when Lua knows it. */
static void errors_name_file_and_line(void **state) {
  (void)state;
  static const struct {
    const char *code, *want;
  } cases[] = {
      {"local x = 1\nlocal y = nil\nreturn y.z\n", "/x/exp.lua:3:"},
      {"return 5\n", "/x/exp.lua: the experiment spec must return a table"},
      {"return {models = {}}\n", "models: expected a non-empty list"},
      {"return {task = {K = {}}, models = {{spec = 'm'}}}\n", "task.K: a list must be"},
      {"return {task = {K = {1, {}}}, models = {{spec = 'm'}}}\n", "task.K[2]: list items"},
      {"return {task = {K = {1, 1}}, models = {{spec = 'm'}}}\n", "repeats the value 1"},
      {"return {modles = {}}\n", "unknown field 'modles'"},
      {"return {models = {{label = 'a'}}}\n", "models[1]: spec is missing"},
      {"return {task = {n = 3}, models = {{spec = 'm'}}}\n", "task.n: n is the graph's length"},
      {"return {task = {K = 1}, train = {K = 2}, models = {{spec = 'm'}}}\n", "given twice"},
      {"return {models = {{spec = 'm', lr = 1, set = {lr = 2}}}}\n",
       "lr is given both in set and in the entry"},
      {"return {models = {{spec = 'm', label = 'a'}, {spec = 'n', label = 'a'}}}\n",
       "two runs are both named a-s0"},
      {"return {task = {lr = print}, models = {{spec = 'm'}}}\n", "task.lr: expected a number"},
      {"return {seeds = 0, models = {{spec = 'm'}}}\n", "seeds: a count must be 1..100000"},
      {"return {seeds = 2, train = {seed = 1}, models = {{spec = 'm'}}}\n",
       "seed is also given as an option"},
      {"return {models = {{spec = {}}}}\n", "models[1].spec: expected a string, got table"},
      {"return {name = {}, models = {{spec = 'm'}}}\n", "name: expected a string, got table"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *m = expand_err(cases[i].code);
    assert_contains(m, cases[i].want);
    assert_contains(m, "/x/exp.lua");
    free(m);
  }
}

/* Only base, string, table and math: everything else is a clear error at
 * the line that used it. */
static void sandbox_has_no_io_or_os(void **state) {
  (void)state;
  const char *names[] = {"io", "os", "package", "require", "debug", "dofile", "loadfile",
                         "load"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char code[256];
    snprintf(code, sizeof code, "local a = 1\nlocal f = %s\nreturn {}\n", names[i]);
    char *m = expand_err(code);
    char want[128];
    snprintf(want, sizeof want, "/x/exp.lua:2: %s is not available in experiment specs",
             names[i]);
    assert_contains(m, want);
    free(m);
  }
  char *m = expand_err("io.open('/etc/passwd')\nreturn {}\n");
  assert_contains(m, "/x/exp.lua:1: io is not available");
  free(m);
  m = expand_err("while true do end\n");
  assert_contains(m, "runs too long");
  free(m);
  /* the limits are fe_options' */
  fe_options lim = {.root = "/r", .max_instructions = 1000000, .max_memory = 1 << 20};
  fe_error *err = calloc(1, sizeof *err);
  fe_experiment *x = NULL;
  assert_int_equal(fe_load_experiment_string("for i = 1, 1e7 do end\nreturn {}\n", "l.lua",
                                             &lim, &x, err), -1);
  assert_contains(err->msg, "runs too long");
  assert_int_equal(fe_load_experiment_string("local t = {}\nfor i = 1, 1e6 do t[i] = i end\n"
                                             "return {}\n", "l.lua", &lim, &x, err), -1);
  assert_contains(err->msg, "l.lua: spec exceeded its memory limit of 1 MiB");
  assert_null(x);
  /* what would escape the budget: a pcall swallowing its error, xpcall's
   * handler and __gc finalizers (both run with hooks off), string.dump */
  static const struct {
    const char *code, *want;
  } esc[] = {
      {"local function f() while true do end end\nwhile true do pcall(f) end\n",
       "runs too long"},
      {"xpcall(print, function() while true do end end)\nreturn {}\n",
       "l.lua:1: xpcall is not available in experiment specs"},
      {"local t = setmetatable({}, {__gc = function() while true do end end})\nreturn {}\n",
       "l.lua:1: setmetatable: __gc is not available in experiment specs"},
      {"local f = string.dump(print)\nreturn {}\n", "l.lua:1:"},
  };
  for (size_t i = 0; i < sizeof esc / sizeof esc[0]; i++) {
    assert_int_equal(fe_load_experiment_string(esc[i].code, "l.lua", &lim, &x, err), -1);
    assert_contains(err->msg, esc[i].want);
    assert_null(x);
  }
  free(err);
  /* what is there works */
  fe_experiment *e = expand_ok(
      "local lrs = {}\n"
      "for i = 1, 3 do lrs[#lrs + 1] = 10 ^ -i end\n"
      "return {name = string.format('e%d', math.floor(2.7)),\n"
      "        title = table.concat({'a', 'b'}, '-'),\n"
      "        train = {lr = lrs}, models = {{spec = 'mamba'}}}\n", NULL, NULL, 0);
  assert_string_equal(e->name, "e2");
  assert_string_equal(e->title, "a-b");
  assert_int_equal(e->n_runs, 3);
  assert_string_equal(fe_run_get(&e->runs[2], "lr"), "0.001");
  fe_experiment_free(e);
}

/* ---- end to end through the binary ---- */

static char tmp[64];

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* Field i of a CSV line (no quotes in these files) into buf. */
static const char *field(const char *line, int i, char *buf, size_t n) {
  for (; i > 0 && line; i--) {
    line = strchr(line, ',');
    if (line) line++;
  }
  if (!line) return NULL;
  size_t k = strcspn(line, ",\n");
  snprintf(buf, n, "%.*s", (int)(k < n ? k : n - 1), line);
  return buf;
}

/* The tiny experiment: 2 models x 2 seeds, K 8, d 8, L 8; target 1 with
 * patience 2 is out of reach in 20 steps, so every run does its 20 steps
 * and 2 evaluations, and sweeps lengths tau+2 = 3 .. 3L = 24. */
static const char *tiny =
    "return {\n"
    "  name = 'tiny', title = 'tiny', problem = 9,\n"
    "  task = {K = 8, d = 8, L = 8, M = 1, tau = 1},\n"
    "  train = {lr = 1e-2, steps = 20, batch = 8, eval_every = 10, test_size = 40,\n"
    "           target = 1, patience = 2},\n"
    "  eval = {n = 10},\n"
    "  seeds = 2,\n"
    "  models = {\n"
    "    {label = 'transformer-rope', spec = 'transformer', set = {pe = 'rope'}},\n"
    "    {label = 'mamba', spec = 'mamba'},\n"
    "  },\n"
    "}\n";
static const char *const tiny_runs[] = {"transformer-rope-M1-tau1-s0",
                                        "transformer-rope-M1-tau1-s1", "mamba-M1-tau1-s0",
                                        "mamba-M1-tau1-s1"};
enum { TINY_RUNS = 4, TINY_LENGTHS = 24 - 3 + 1, TINY_EVALS = 2 };

static int setup_tiny(void **state) {
  (void)state;
  strcpy(tmp, "/tmp/recall_run_XXXXXX");
  if (!mkdtemp(tmp)) return -1;
  char path[256];
  snprintf(path, sizeof path, "%s/tiny.lua", tmp);
  write_text(path, tiny);
  char *out;
  int st = run_recall(&out, "run %s/tiny.lua -o %s/A -j 2", tmp, tmp);
  if (st != 0) fprintf(stderr, "%s", out);
  free(out);
  return st == 0 ? 0 : -1;
}

static int teardown_tiny(void **state) {
  (void)state;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  return system(cmd) == 0 ? 0 : -1;
}

static void run_writes_every_file(void **state) {
  (void)state;
  assert_true(path_exists("%s/A/experiment.json", tmp));
  for (int i = 0; i < TINY_RUNS; i++) {
    const char *files[] = {"config.json", "train.csv", "sweep.csv", "checkpoint.safetensors",
                           "done"};
    for (int f = 0; f < 5; f++)
      if (!path_exists("%s/A/runs/%s/%s", tmp, tiny_runs[i], files[f]))
        fail_msg("missing %s/A/runs/%s/%s", tmp, tiny_runs[i], files[f]);
  }
  char *ej = slurp("%s/A/experiment.json", tmp);
  for (int i = 0; i < TINY_RUNS; i++) assert_contains(ej, tiny_runs[i]);
  assert_contains(ej, "\"name\": \"tiny\"");
  free(ej);

  /* results.csv: the fixed columns, pe (varies: rope / not set) before
   * steps, one row per run x length */
  char *res = slurp("%s/A/results.csv", tmp);
  const char *hdr = "run,experiment,problem,model,spec,K,d,L,M,tau,seed,lr,batch,max_steps,"
                    "pe,steps,reached_step,status,length,accuracy,loss,n\n";
  assert_memory_equal(res, hdr, strlen(hdr));
  assert_int_equal(count_lines(res), 1 + TINY_RUNS * TINY_LENGTHS);
  /* each row agrees with its run's sweep.csv (length,accuracy,n,loss) */
  const char *line = strchr(res, '\n') + 1;
  for (int i = 0; i < TINY_RUNS; i++) {
    char *sw = slurp("%s/A/runs/%s/sweep.csv", tmp, tiny_runs[i]);
    const char *sl = strchr(sw, '\n') + 1;
    for (int n = 3; n <= 24; n++) {
      char a[64], b[64];
      assert_string_equal(field(line, 0, a, sizeof a), tiny_runs[i]);
      assert_int_equal(atoi(field(line, 18, a, sizeof a)), n);
      assert_string_equal(field(line, 19, a, sizeof a), field(sl, 1, b, sizeof b));
      assert_string_equal(field(line, 20, a, sizeof a), field(sl, 3, b, sizeof b));
      assert_string_equal(field(line, 21, a, sizeof a), "10");
      assert_string_equal(field(line, 17, a, sizeof a), "max_steps");
      assert_string_equal(field(line, 15, a, sizeof a), "20");
      assert_string_equal(field(line, 14, a, sizeof a), i < 2 ? "rope" : "");
      assert_string_equal(field(line, 10, a, sizeof a), i % 2 ? "1" : "0");
      assert_string_equal(field(line, 3, a, sizeof a), i < 2 ? "transformer-rope" : "mamba");
      assert_string_equal(field(line, 4, a, sizeof a), i < 2 ? "transformer" : "mamba");
      assert_string_equal(field(line, 2, a, sizeof a), "9");
      line = strchr(line, '\n') + 1;
      sl = strchr(sl, '\n') + 1;
    }
    free(sw);
  }
  free(res);

  char *conv = slurp("%s/A/convergence.csv", tmp);
  const char *chdr = "run,experiment,problem,model,K,d,L,M,tau,seed,lr,batch,step,"
                     "train_loss,test_loss,test_acc\n";
  assert_memory_equal(conv, chdr, strlen(chdr));
  assert_int_equal(count_lines(conv), 1 + TINY_RUNS * TINY_EVALS);
  char a[64];
  line = strchr(conv, '\n') + 1;
  assert_string_equal(field(line, 12, a, sizeof a), "10");
  line = strchr(line, '\n') + 1;
  assert_string_equal(field(line, 12, a, sizeof a), "20");
  free(conv);
}

/* A second run into a directory with finished runs refuses and changes
 * nothing. */
static void run_refuses_without_resume(void **state) {
  (void)state;
  char *before = slurp("%s/A/results.csv", tmp);
  char *out;
  assert_int_equal(run_recall(&out, "run %s/tiny.lua -o %s/A", tmp, tmp), 1);
  assert_contains(out, "--resume");
  assert_contains(out, "4 finished runs");
  char *after = slurp("%s/A/results.csv", tmp);
  assert_string_equal(before, after);
  free(out), free(before), free(after);
}

/* -j 1 gives the same bytes as -j 2. */
static void jobs_do_not_change_results(void **state) {
  (void)state;
  char *out;
  int st = run_recall(&out, "run %s/tiny.lua -o %s/B -j 1", tmp, tmp);
  if (st) fail_msg("%s", out);
  free(out);
  const char *files[] = {"results.csv", "convergence.csv"};
  for (int i = 0; i < 2; i++) {
    char *a = slurp("%s/A/%s", tmp, files[i]), *b = slurp("%s/B/%s", tmp, files[i]);
    assert_string_equal(a, b);
    free(a), free(b);
  }
}

/* Deleting one run's done marker (and leaving a half-written train.csv):
 * --resume redoes that run only, and results.csv comes out byte for byte
 * as the uninterrupted run's. */
static void resume_redoes_only_unfinished(void **state) {
  (void)state;
  char cmd[512];
  snprintf(cmd, sizeof cmd, "cp -r %s/A %s/C", tmp, tmp);
  assert_int_equal(system(cmd), 0);
  const char *redo = tiny_runs[2];
  char path[512];
  snprintf(path, sizeof path, "%s/C/runs/%s/done", tmp, redo);
  assert_int_equal(unlink(path), 0);
  snprintf(path, sizeof path, "%s/C/runs/%s/train.csv", tmp, redo);
  write_text(path, "step,train_loss,test_loss,test_acc,elapsed_s\n10,9,9,0,1\n");
  snprintf(path, sizeof path, "%s/C/results.csv", tmp);
  unlink(path);
  /* config.json records wall times: a run that is redone gets a new one */
  char *cfg[TINY_RUNS];
  for (int i = 0; i < TINY_RUNS; i++) cfg[i] = slurp("%s/C/runs/%s/config.json", tmp, tiny_runs[i]);
  char *out;
  int st = run_recall(&out, "run %s/tiny.lua -o %s/C --resume -j 2", tmp, tmp);
  if (st) fail_msg("%s", out);
  assert_contains(out, "3 of 4 runs are done; running the other 1");
  assert_contains(out, redo);
  assert_null(strstr(out, tiny_runs[0]));
  free(out);
  assert_true(path_exists("%s/C/runs/%s/done", tmp, redo));
  for (int i = 0; i < TINY_RUNS; i++) {
    if (i == 2) {
      free(cfg[i]);
      continue;
    }
    char *now = slurp("%s/C/runs/%s/config.json", tmp, tiny_runs[i]);
    assert_string_equal(now, cfg[i]);
    free(now), free(cfg[i]);
  }
  const char *files[] = {"results.csv", "convergence.csv"};
  for (int i = 0; i < 2; i++) {
    char *a = slurp("%s/A/%s", tmp, files[i]), *c = slurp("%s/C/%s", tmp, files[i]);
    assert_string_equal(a, c);
    free(a), free(c);
  }
  /* --resume with an experiment that gives other runs refuses */
  st = run_recall(&out, "run %s/tiny.lua -o %s/C --resume --set seed=5", tmp, tmp);
  assert_int_equal(st, 1);
  assert_contains(out, "describes other runs");
  free(out);
}

/* A run that fails (its directory is a file) does not stop the others:
 * they finish, the failure is listed by name, the command exits 1 and
 * results.csv holds the finished runs; after the cause is removed,
 * --resume redoes only that run. */
static void failed_run_listed_others_finish(void **state) {
  (void)state;
  char cmd[512], path[512];
  snprintf(cmd, sizeof cmd, "cp -r %s/A %s/F", tmp, tmp);
  assert_int_equal(system(cmd), 0);
  const char *bad = tiny_runs[1], *redo = tiny_runs[3];
  snprintf(cmd, sizeof cmd, "rm -r %s/F/runs/%s %s/F/runs/%s && touch %s/F/runs/%s", tmp,
           bad, tmp, redo, tmp, bad);
  assert_int_equal(system(cmd), 0);
  char *out;
  assert_int_equal(run_recall(&out, "run %s/tiny.lua -o %s/F --resume -j 2", tmp, tmp), 1);
  assert_contains(out, "2 of 4 runs are done; running the other 2");
  snprintf(path, sizeof path, "recall run: failed: %s\n", bad);
  assert_contains(out, path);
  assert_contains(out, "3 of 4 runs finished");
  assert_contains(out, "1 failed");
  free(out);
  assert_true(path_exists("%s/F/runs/%s/done", tmp, redo));
  char *res = slurp("%s/F/results.csv", tmp);
  assert_null(strstr(res, bad));
  assert_non_null(strstr(res, redo));
  free(res);
  snprintf(path, sizeof path, "%s/F/runs/%s", tmp, bad);
  assert_int_equal(unlink(path), 0);
  int st = run_recall(&out, "run %s/tiny.lua -o %s/F --resume", tmp, tmp);
  if (st) fail_msg("%s", out);
  assert_contains(out, "3 of 4 runs are done; running the other 1");
  free(out);
  char *a = slurp("%s/A/results.csv", tmp), *f = slurp("%s/F/results.csv", tmp);
  assert_string_equal(a, f);
  free(a), free(f);
}

/* A study runs each experiment into DIR/<name>/ and concatenates their
 * results; the header is the union (pe only in the first). */
static void study_concatenates(void **state) {
  (void)state;
  char path[256];
  snprintf(path, sizeof path, "%s/e1.lua", tmp);
  write_text(path, "return {name = 'e1', task = {K = 8, d = 8, L = 8}, train = {steps = 10,\n"
                   "  batch = 8, eval_every = 10, test_size = 20}, eval = {n = 5},\n"
                   "  models = {{label = 't', spec = 'transformer', set = {pe = {'rope', 'nope'}}}}}\n");
  snprintf(path, sizeof path, "%s/e2.lua", tmp);
  write_text(path, "return {name = 'e2', task = {K = 8, d = 8, L = 8}, train = {steps = 10,\n"
                   "  batch = 8, eval_every = 10, test_size = 20}, eval = {n = 5},\n"
                   "  models = {{label = 'm', spec = 'mamba'}}}\n");
  snprintf(path, sizeof path, "%s/st.lua", tmp);
  write_text(path, "return {name = 'st', experiments = {'e1.lua', 'e2.lua'}}\n");
  char *out;
  int st = run_recall(&out, "run %s/st.lua -o %s/S -j 2 --set tau=2", tmp, tmp);
  if (st) fail_msg("%s", out);
  free(out);
  char *r1 = slurp("%s/S/e1/results.csv", tmp), *r2 = slurp("%s/S/e2/results.csv", tmp);
  char *all = slurp("%s/S/results.csv", tmp);
  /* lengths tau+2 = 4 .. 24: 21 per run; e1 has 2 runs, e2 one */
  assert_int_equal(count_lines(r1), 1 + 2 * 21);
  assert_int_equal(count_lines(r2), 1 + 21);
  assert_int_equal(count_lines(all), 1 + 3 * 21);
  const char *hdr = "run,experiment,problem,model,spec,K,d,L,M,tau,seed,lr,batch,max_steps,"
                    "pe,steps,";
  assert_memory_equal(r1, hdr, strlen(hdr));
  assert_memory_equal(all, hdr, strlen(hdr));
  assert_null(strstr(r2, ",pe,"));
  /* e1's rows verbatim, then e2's with an empty pe */
  const char *body1 = strchr(r1, '\n') + 1;
  assert_memory_equal(strchr(all, '\n') + 1, body1, strlen(body1));
  const char *row2 = strchr(all, '\n') + 1 + strlen(body1);
  assert_memory_equal(row2, "m-tau2-s0,e2,,m,mamba,8,8,8,", 28);
  char a[64];
  assert_string_equal(field(row2, 14, a, sizeof a), "");
  assert_string_equal(field(row2, 9, a, sizeof a), "2");
  assert_true(path_exists("%s/S/convergence.csv", tmp));
  char *sj = slurp("%s/S/experiment.json", tmp);
  assert_contains(sj, "\"study\": true");
  free(sj), free(r1), free(r2), free(all);
}

int main(void) {
  const struct CMUnitTest unit[] = {
      cmocka_unit_test(lists_expand_to_the_product),
      cmocka_unit_test(set_overrides_every_level),
      cmocka_unit_test(names_sanitised_and_ordered),
      cmocka_unit_test(study_lists_experiments),
      cmocka_unit_test(errors_name_file_and_line),
      cmocka_unit_test(sandbox_has_no_io_or_os),
  };
  const struct CMUnitTest e2e[] = {
      cmocka_unit_test(run_writes_every_file),
      cmocka_unit_test(run_refuses_without_resume),
      cmocka_unit_test(jobs_do_not_change_results),
      cmocka_unit_test(resume_redoes_only_unfinished),
      cmocka_unit_test(failed_run_listed_others_finish),
      cmocka_unit_test(study_concatenates),
  };
  int failed = cmocka_run_group_tests_name("experiment specs", unit, NULL, NULL);
  return failed + cmocka_run_group_tests_name("recall run", e2e, setup_tiny, teardown_tiny);
}
