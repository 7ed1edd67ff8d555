/* test_interrupt.c — SIGINT and SIGTERM. The runtime's stop flag (the
 * training loop and the sweep return RT_STOPPED at the next step or
 * length), then the binary ($RECALL_BIN) killed in the middle of `recall
 * run`: the exit status is 130 / 143, every file left is complete (CSV
 * rows whole, checkpoints loadable, no temporary files), results.csv is
 * not written, and `--resume` finishes the experiment with the same
 * results, byte for byte, as an uninterrupted run. Also `recall train`.
 *
 * The runs use the interpreter backend: no JIT compile, so a run starts
 * at once and lasts about a second on a busy machine, and the kill lands
 * while one run is done and another is training. Every wait is a poll
 * with a timeout, never a fixed sleep. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model_util.h"

#define assert_contains(hay, needle)                                         \
  do {                                                                       \
    if (!strstr((hay), (needle)))                                            \
      fail_msg("expected \"%s\" in:\n%s", (needle), (hay));                  \
  } while (0)

/* ---- the runtime's stop flag ---- */

typedef struct {
  volatile sig_atomic_t *stop;
  long steps, raise_at;
  int evals, lengths;
} flag_ctx;

static void raise_on_step(void *p, long step, double loss, double acc, double el) {
  flag_ctx *c = p;
  (void)loss, (void)acc, (void)el;
  c->steps = step;
  if (step == c->raise_at) *c->stop = SIGINT;
}

static int count_eval(void *p, const rt_train_row *row, ir_error *err) {
  (void)row, (void)err;
  ((flag_ctx *)p)->evals++;
  return 0;
}

static void raise_on_length(void *p, int done, int total) {
  flag_ctx *c = p;
  (void)total;
  c->lengths = done;
  if (done == c->raise_at) *c->stop = SIGTERM;
}

static rt_model *tiny_model(spec_ctx *c) {
  const char *sets[] = {"K=8", "d=8", "L=8", "layers=1", NULL};
  return spec_model(c, "transformer.lua", sets, 8, RT_BACKEND_INTERP, 1);
}

/* Raised in the hook after step 7: no step 8; raised before the call: no
 * step at all. Without the flag the same config runs to the end. */
static void train_stops_at_the_flag(void **state) {
  (void)state;
  spec_ctx sc;
  rt_model *m = tiny_model(&sc);
  volatile sig_atomic_t stop = 0;
  rt_train_config tc;
  rt_train_defaults(&tc);
  tc.batch = 4, tc.test_size = 10, tc.eval_every = 5, tc.max_steps = 40, tc.target = 1;
  tc.stop = &stop;
  flag_ctx fc = {.stop = &stop, .raise_at = 7};
  rt_train_hooks h = {raise_on_step, count_eval, &fc};
  rt_train_result res;
  ir_error err;
  assert_int_equal(rt_train(m, &tc, &h, &res, &err), RT_STOPPED);
  assert_int_equal(fc.steps, 7);
  assert_int_equal(res.steps, 7);
  assert_int_equal(fc.evals, 1); /* step 5 only */
  assert_contains(err.msg, "interrupted after 7 of 40 steps");

  fc = (flag_ctx){.stop = &stop, .raise_at = -1}; /* stop is still raised */
  assert_int_equal(rt_train(m, &tc, &h, &res, &err), RT_STOPPED);
  assert_int_equal(fc.steps, 0);
  assert_int_equal(res.steps, 0);
  assert_int_equal(fc.evals, 0);

  stop = 0;
  assert_int_equal(rt_train(m, &tc, &h, &res, &err), 0);
  assert_int_equal(res.steps, 40);
  rt_model_free(m);
}

/* Raised after the third length: RT_STOPPED, no rows. */
static void sweep_stops_at_the_flag(void **state) {
  (void)state;
  spec_ctx sc;
  rt_model *m = tiny_model(&sc);
  volatile sig_atomic_t stop = 0;
  rt_sweep_config c = {.M = 1, .tau = 1, .seed = 3, .n_seq = 4, .stop = &stop};
  flag_ctx fc = {.stop = &stop, .raise_at = 3};
  rt_sweep_row *rows = (rt_sweep_row *)&fc; /* must become NULL */
  int n = -1;
  ir_error err;
  assert_int_equal(rt_sweep(m, &c, &rows, &n, raise_on_length, &fc, &err), RT_STOPPED);
  assert_int_equal(fc.lengths, 3);
  assert_null(rows);
  assert_int_equal(n, 0);
  assert_contains(err.msg, "interrupted after 3 of 22 lengths");
  stop = 0;
  fc = (flag_ctx){.stop = &stop, .raise_at = -1};
  assert_int_equal(rt_sweep(m, &c, &rows, &n, raise_on_length, &fc, &err), 0);
  assert_int_equal(n, 22); /* tau+2 = 3 .. 3L = 24 */
  free(rows);
  rt_model_free(m);
}

/* ---- files ---- */

static char tmp[64];

static bool has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

/* A CSV file as recall writes it: a header, then rows with as many
 * fields, each ending in a newline (no quoted fields in these files). */
static void check_csv(const char *path) {
  char *s = read_file(path, NULL);
  assert_non_null(s);
  size_t len = strlen(s);
  if (len == 0 || s[len - 1] != '\n') fail_msg("%s: empty or a cut last row", path);
  int want = -1;
  for (char *line = s; *line;) {
    char *end = strchr(line, '\n');
    int fields = 1;
    for (char *p = line; p < end; p++) fields += *p == ',';
    if (want < 0) want = fields;
    else if (fields != want) fail_msg("%s: a row with %d fields, the header has %d", path, fields, want);
    line = end + 1;
  }
  free(s);
}

/* JSON as recall writes it: one object, braces and brackets balanced
 * outside strings, ending "}\n". */
static void check_json(const char *path) {
  char *s = read_file(path, NULL);
  assert_non_null(s);
  int depth = 0;
  bool in_str = false;
  for (const char *p = s; *p; p++) {
    if (in_str) {
      if (*p == '\\' && p[1]) p++;
      else if (*p == '"') in_str = false;
    } else if (*p == '"') {
      in_str = true;
    } else if (*p == '{' || *p == '[') {
      depth++;
    } else if (*p == '}' || *p == ']') {
      depth--;
    }
  }
  if (s[0] != '{' || depth != 0 || in_str || !has_suffix(s, "}\n"))
    fail_msg("%s: not one whole JSON object:\n%s", path, s);
  free(s);
}

/* NAME.tmp.PID.N: a temporary file of rt_write_atomic / rt_st_write. */
static bool is_temp(const char *name) {
  const char *t = strstr(name, ".tmp.");
  unsigned long a, b;
  char end;
  return t && sscanf(t, ".tmp.%lu.%lu%c", &a, &b, &end) == 2;
}

/* Every file under dir is complete: whole CSV rows, loadable safetensors,
 * whole JSON, a done marker with a status; no temporary files unless
 * `temps` (a command killed at once may leave one, never a cut file under
 * a real name). Returns how many files it checked. */
static int check_complete(const char *dir, bool temps) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *de; (de = readdir(d));) {
    if (de->d_name[0] == '.') continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if (S_ISDIR(st.st_mode)) {
      n += check_complete(path, temps);
      continue;
    }
    if (temps && is_temp(de->d_name)) continue;
    n++;
    if (strstr(de->d_name, ".tmp")) fail_msg("a temporary file is left: %s", path);
    if (has_suffix(de->d_name, ".csv")) {
      check_csv(path);
    } else if (has_suffix(de->d_name, ".json")) {
      check_json(path);
    } else if (has_suffix(de->d_name, ".safetensors")) {
      ir_error err;
      rt_tensors *t = rt_st_read(path, &err);
      if (!t) fail_msg("%s", err.msg);
      assert_true(t->n > 0);
      rt_tensors_free(t);
    } else if (!strcmp(de->d_name, "done")) {
      char *s = read_file(path, NULL);
      if (strcmp(s, "max_steps\n") && strcmp(s, "reached\n") && strcmp(s, "diverged\n"))
        fail_msg("%s: '%s'", path, s);
      free(s);
    }
  }
  closedir(d);
  return n;
}

/* ---- the binary ---- */

static const char *bin(void) {
  const char *b = getenv("RECALL_BIN");
  return b ? b : "build/recall";
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void pause_ms(int ms) {
  struct timespec t = {0, ms * 1000000L};
  nanosleep(&t, NULL);
}

/* Starts recall with args (NULL-terminated), stdout and stderr to log. */
static pid_t spawn(const char *log, const char *const *args) {
  const char *argv[32] = {"recall"};
  int n = 1;
  for (; args[n - 1]; n++) argv[n] = args[n - 1];
  argv[n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) _exit(126);
    dup2(fd, 1), dup2(fd, 2);
    close(fd);
    signal(SIGINT, SIG_DFL), signal(SIGTERM, SIG_DFL);
    execv(bin(), (char *const *)argv);
    _exit(127);
  }
  return pid;
}

/* Waits for pid (killing it after `secs`): its exit status, or -1 if a
 * signal ended it. */
static int wait_exit(pid_t pid, double secs) {
  double t0 = now();
  int st;
  pid_t r;
  while ((r = waitpid(pid, &st, WNOHANG)) == 0) {
    if (now() - t0 > secs) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      fail_msg("recall (pid %ld) still running after %.0f s", (long)pid, secs);
    }
    pause_ms(5);
  }
  assert_int_equal(r, pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs recall to the end; its output in *log (malloc'd). */
static int run_sync(char **log, const char *const *args) {
  char path[256];
  snprintf(path, sizeof path, "%s/sync.log", tmp);
  int st = wait_exit(spawn(path, args), 600);
  *log = slurp("%s", path);
  return st;
}

/* ---- the experiment ---- */

/* One model x 4 seeds, K 8, d 8, L 8; 300 steps at lr 1e-3 stay short of
 * the target 1, so every run does all its steps (6 evaluations). */
static const char *spec =
    "return {\n"
    "  name = 'intr', title = 'interrupted', problem = 9,\n"
    "  task = {K = 8, d = 8, L = 8, M = 1, tau = 1},\n"
    "  train = {lr = 1e-3, steps = 300, batch = 16, eval_every = 50, test_size = 50,\n"
    "           target = 1, patience = 2},\n"
    "  eval = {n = 10},\n"
    "  seeds = 4,\n"
    "  models = {{label = 't', spec = 'transformer', set = {pe = 'rope'}}},\n"
    "}\n";
enum { RUNS = 4 };
static const char *const runs[RUNS] = {"t-M1-tau1-s0", "t-M1-tau1-s1", "t-M1-tau1-s2",
                                     "t-M1-tau1-s3"};

static int setup_runs(void **state) {
  (void)state;
  strcpy(tmp, "/tmp/recall_intr_XXXXXX");
  if (!mkdtemp(tmp)) return -1;
  char path[256];
  snprintf(path, sizeof path, "%s/x.lua", tmp);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(spec, f);
  fclose(f);
  char dir[256], *log;
  snprintf(dir, sizeof dir, "%s/A", tmp);
  const char *args[] = {"run", path, "-o", dir, "-j", "2", "--backend", "interp", NULL};
  int st = run_sync(&log, args);
  if (st != 0) fprintf(stderr, "uninterrupted run: status %d\n%s", st, log);
  free(log);
  return st == 0 ? 0 : -1;
}

static int teardown_runs(void **state) {
  (void)state;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  return system(cmd) == 0 ? 0 : -1;
}

/* The runs of dir/runs/ marked done, and those that have written a
 * train.csv row (one evaluation) but are not done. */
static void census(const char *dir, int *done, int *midway) {
  *done = *midway = 0;
  for (int i = 0; i < RUNS; i++) {
    if (path_exists("%s/runs/%s/done", dir, runs[i])) {
      ++*done;
      continue;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/runs/%s/train.csv", dir, runs[i]);
    char *s = read_file(path, NULL);
    if (s && count_lines(s) >= 2) ++*midway;
    free(s);
  }
}

/* The interrupted experiment in dir, finished by --resume, equals A:
 * results.csv and convergence.csv byte for byte, each run's sweep.csv,
 * done, checkpoint tensors and train.csv (but its elapsed_s column). */
static void resume_and_compare(const char *dir, int done_before) {
  char spec_path[256], *log;
  snprintf(spec_path, sizeof spec_path, "%s/x.lua", tmp);
  const char *args[] = {"run", spec_path, "-o", dir, "-j", "2", "--backend", "interp",
                        "--resume", NULL};
  int st = run_sync(&log, args);
  if (st != 0) fail_msg("--resume: status %d\n%s", st, log);
  char want[128];
  snprintf(want, sizeof want, "%d of %d runs are done; running the other %d", done_before, RUNS,
           RUNS - done_before);
  assert_contains(log, want);
  free(log);
  check_complete(dir, false);
  const char *files[] = {"results.csv", "convergence.csv"};
  for (int i = 0; i < 2; i++) {
    char *a = slurp("%s/A/%s", tmp, files[i]), *b = slurp("%s/%s", dir, files[i]);
    assert_string_equal(a, b);
    free(a), free(b);
  }
  for (int r = 0; r < RUNS; r++) {
    const char *same[] = {"sweep.csv", "done"};
    for (int i = 0; i < 2; i++) {
      char *a = slurp("%s/A/runs/%s/%s", tmp, runs[r], same[i]);
      char *b = slurp("%s/runs/%s/%s", dir, runs[r], same[i]);
      assert_string_equal(a, b);
      free(a), free(b);
    }
    /* train.csv: all but the wall time (the last field) */
    char *a = slurp("%s/A/runs/%s/train.csv", tmp, runs[r]);
    char *b = slurp("%s/runs/%s/train.csv", dir, runs[r]);
    assert_int_equal(count_lines(a), 7);
    assert_int_equal(count_lines(a), count_lines(b));
    for (char *pa = a, *pb = b; *pa; pa = strchr(pa, '\n') + 1, pb = strchr(pb, '\n') + 1) {
      size_t la = strcspn(pa, "\n"), lb = strcspn(pb, "\n");
      size_t ka = la, kb = lb;
      while (ka > 0 && pa[ka - 1] != ',') ka--;
      while (kb > 0 && pb[kb - 1] != ',') kb--;
      if (ka != kb || memcmp(pa, pb, ka)) fail_msg("train.csv of %s differs:\n%s\n%s", runs[r], a, b);
    }
    free(a), free(b);
    /* the checkpoint: the same tensors (its metadata has wall times) */
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/A/runs/%s/checkpoint.safetensors", tmp, runs[r]);
    snprintf(pb, sizeof pb, "%s/runs/%s/checkpoint.safetensors", dir, runs[r]);
    ir_error err;
    rt_tensors *ta = rt_st_read(pa, &err), *tb = rt_st_read(pb, &err);
    assert_non_null(ta);
    assert_non_null(tb);
    assert_int_equal(ta->n, tb->n);
    for (int i = 0; i < ta->n; i++) {
      rt_tensor *x = ta->t[i], *y = rt_tensors_find(tb, x->name);
      assert_non_null(y);
      assert_int_equal(x->dtype, y->dtype);
      assert_int_equal(x->numel, y->numel);
      assert_memory_equal(x->data, y->data, (size_t)x->numel * rt_dtype_size(x->dtype));
    }
    rt_tensors_free(ta), rt_tensors_free(tb);
  }
}

/* Starts the experiment into tmp/name, waits until a run is done and
 * another midway, then sends sig (twice if `twice`). Returns the number of
 * done runs the command reports; the exit status must be `status`. */
static int interrupt_run(const char *name, int sig, bool twice, int status) {
  char dir[256], spec_path[256], log[256];
  snprintf(dir, sizeof dir, "%s/%s", tmp, name);
  snprintf(spec_path, sizeof spec_path, "%s/x.lua", tmp);
  snprintf(log, sizeof log, "%s/%s.log", tmp, name);
  const char *args[] = {"run", spec_path, "-o", dir, "-j", "2", "--backend", "interp", NULL};
  pid_t pid = spawn(log, args);
  int done = 0, midway = 0;
  double t0 = now();
  while (!(done >= 1 && midway >= 1)) {
    if (waitpid(pid, NULL, WNOHANG) == pid)
      fail_msg("recall ended before it could be interrupted:\n%s", slurp("%s", log));
    if (now() - t0 > 300) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      fail_msg("no run done and another midway after 300 s");
    }
    pause_ms(2);
    census(dir, &done, &midway);
  }
  assert_int_equal(kill(pid, sig), 0);
  if (twice) kill(pid, sig);
  int st = wait_exit(pid, 120);
  char *out = slurp("%s", log);
  if (st != status) fail_msg("exit status %d, expected %d:\n%s", st, status, out);
  int reported = -1;
  if (!twice || strstr(out, "rerun with --resume")) {
    const char *at = strstr(out, "recall run: interrupted: ");
    if (!at) fail_msg("no summary in:\n%s", out);
    int total = 0;
    assert_int_equal(sscanf(at, "recall run: interrupted: %d of %d runs finished", &reported,
                            &total), 2);
    assert_int_equal(total, RUNS);
    assert_contains(at, "rerun with --resume to finish");
  }
  free(out);
  /* complete or absent, and no summary of a part */
  assert_true(check_complete(dir, twice) > 0);
  assert_false(path_exists("%s/results.csv", dir));
  assert_false(path_exists("%s/report.md", dir));
  census(dir, &done, &midway);
  assert_true(done >= 1 && done < RUNS);
  if (reported >= 0) assert_int_equal(reported, done);
  return done;
}

static void sigint_then_resume(void **state) {
  (void)state;
  int done = interrupt_run("B", SIGINT, false, 130);
  char dir[256];
  snprintf(dir, sizeof dir, "%s/B", tmp);
  resume_and_compare(dir, done);
}

static void sigterm_then_resume(void **state) {
  (void)state;
  int done = interrupt_run("C", SIGTERM, false, 143);
  char dir[256];
  snprintf(dir, sizeof dir, "%s/C", tmp);
  resume_and_compare(dir, done);
}

/* Two signals at once: the second may end the command before its writes
 * finish (a temporary file may stay); --resume removes what is left and
 * still finishes with A's results. */
static void second_signal_exits_at_once(void **state) {
  (void)state;
  char dir[256];
  snprintf(dir, sizeof dir, "%s/D", tmp);
  int done = interrupt_run("D", SIGINT, true, 130);
  /* leftovers as writes killed halfway leave them: in the experiment's
   * directory and in an unfinished run's */
  char path[2][512];
  snprintf(path[0], sizeof path[0], "%s/results.csv.tmp.99999.7", dir);
  /* the midway run may have finished before the signals arrived, and the
   * unfinished ones may not have started: then one gets its directory here */
  int r = -1;
  for (int i = 0; i < RUNS; i++)
    if (!path_exists("%s/runs/%s/done", dir, runs[i]) &&
        (r < 0 || path_exists("%s/runs/%s", dir, runs[i])))
      r = i;
  assert_true(r >= 0);
  char run_dir[320];
  snprintf(run_dir, sizeof run_dir, "%s/runs/%s", dir, runs[r]);
  if (!path_exists("%s", run_dir)) assert_int_equal(mkdir(run_dir, 0777), 0);
  snprintf(path[1], sizeof path[1], "%s/train.csv.tmp.99999.8", run_dir);
  for (int i = 0; i < 2; i++) {
    FILE *f = fopen(path[i], "w");
    if (!f) fail_msg("cannot write %s", path[i]);
    fputs("step,train", f);
    fclose(f);
  }
  resume_and_compare(dir, done);
  for (int i = 0; i < 2; i++) assert_false(path_exists("%s", path[i]));
}

/* `recall train` stopped by SIGTERM: status 143, train.csv and
 * config.json whole, no checkpoint. */
static void train_command_stops(void **state) {
  (void)state;
  char dir[256], log[256], spec_path[512];
  snprintf(dir, sizeof dir, "%s/T", tmp);
  snprintf(log, sizeof log, "%s/T.log", tmp);
  snprintf(spec_path, sizeof spec_path, "%s/specs/models/transformer.lua", test_root());
  const char *args[] = {"train", spec_path, "--set", "K=8", "--set", "L=8", "--set",
                        "steps=1000000", "--set", "eval_every=10", "--set", "batch=4",
                        "--set", "test_size=10", "--backend", "interp", "-o", dir, NULL};
  pid_t pid = spawn(log, args);
  double t0 = now();
  for (;;) {
    char p[512];
    snprintf(p, sizeof p, "%s/train.csv", dir);
    char *s = read_file(p, NULL);
    int n = s ? count_lines(s) : 0;
    free(s);
    if (n >= 3) break;
    if (waitpid(pid, NULL, WNOHANG) == pid) fail_msg("recall train ended:\n%s", slurp("%s", log));
    if (now() - t0 > 300) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      fail_msg("no train.csv rows after 300 s");
    }
    pause_ms(2);
  }
  assert_int_equal(kill(pid, SIGTERM), 0);
  int st = wait_exit(pid, 120);
  char *out = slurp("%s", log);
  if (st != 143) fail_msg("exit status %d:\n%s", st, out);
  assert_contains(out, "recall train: interrupted after ");
  free(out);
  check_complete(dir, false);
  assert_true(path_exists("%s/train.csv", dir));
  assert_true(path_exists("%s/config.json", dir));
  assert_false(path_exists("%s/checkpoint.safetensors", dir));
}

int main(void) {
  const struct CMUnitTest unit[] = {
      cmocka_unit_test(train_stops_at_the_flag),
      cmocka_unit_test(sweep_stops_at_the_flag),
  };
  const struct CMUnitTest e2e[] = {
      cmocka_unit_test(sigint_then_resume),
      cmocka_unit_test(sigterm_then_resume),
      cmocka_unit_test(second_signal_exits_at_once),
      cmocka_unit_test(train_command_stops),
  };
  int failed = cmocka_run_group_tests_name("stop flag", unit, NULL, NULL);
  return failed + cmocka_run_group_tests_name("interrupted commands", e2e, setup_runs,
                                              teardown_runs);
}
