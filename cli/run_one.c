/* run_one.c — one training run written to a directory the way `recall
 * train` writes it (config.json, train.csv, checkpoint.safetensors,
 * sweep.csv), callable from any thread with progress hooks. */
#include "cmd_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *cr_status_name(rt_train_status s) {
  return s == RT_TRAIN_REACHED ? "reached" : s == RT_TRAIN_DIVERGED ? "diverged" : "max_steps";
}

typedef struct {
  const cr_hooks *h;
  const char *csv_path;
  rt_buf csv;
} ctx;

static void on_step(void *c, long step, double loss, double acc, double el) {
  const cr_hooks *h = ((ctx *)c)->h;
  if (h && h->on_step) h->on_step(h->ctx, step, loss, acc, el);
}

/* train.csv gets its row and is rewritten whole: a crash leaves a valid
 * file with the rows so far. */
static int on_eval(void *c, const rt_train_row *row, ir_error *err) {
  ctx *p = c;
  rt_buf_printf(&p->csv, "%ld,%.9g,%.9g,%.9g,%.3f\n", row->step, row->train_loss,
                row->test_loss, row->test_acc, row->elapsed_s);
  if (p->h && p->h->on_eval) p->h->on_eval(p->h->ctx, row);
  return rt_write_atomic(p->csv_path, p->csv.s, p->csv.len, err);
}

static void on_sweep(void *c, int done, int total) {
  const cr_hooks *h = ((ctx *)c)->h;
  if (h && h->on_sweep) h->on_sweep(h->ctx, done, total);
}

static char *path_in(const char *dir, const char *file) {
  size_t n = strlen(dir) + strlen(file) + 2;
  char *s = malloc(n);
  if (!s) abort();
  snprintf(s, n, "%s/%s", dir, file);
  return s;
}

static int write_config(const cm_run *r, const char *path, const char *backend,
                        int threads, const char *result) {
  rt_buf b = {0};
  cm_config_json(r, &b, backend, threads, result);
  ir_error err;
  int rc = rt_write_atomic(path, b.s, b.len, &err);
  if (rc < 0) cli_error(r->cmd, "%s", err.msg);
  rt_buf_free(&b);
  return rc;
}

/* The `result` object of config.json, as `recall train` writes it. */
static void result_json(rt_buf *res, const rt_train_result *tr) {
  rt_buf_printf(res, "{\"status\": \"%s\", \"message\": ", cr_status_name(tr->status));
  rt_buf_json_str(res, tr->message);
  rt_buf_printf(res, ", \"steps\": %ld, \"reached_step\": ", tr->steps);
  if (tr->reached_step >= 0) rt_buf_printf(res, "%ld", tr->reached_step);
  else rt_buf_printf(res, "null");
  if (isfinite(tr->test_acc))
    rt_buf_printf(res, ", \"test_acc\": %.9g, \"test_loss\": %.9g", tr->test_acc, tr->test_loss);
  rt_buf_printf(res, ", \"train_s\": %.3f, \"steps_per_s\": %.3f", tr->elapsed_s,
                tr->elapsed_s > 0 ? tr->steps / tr->elapsed_s : 0.0);
}

static int sweep(cm_run *r, ctx *p, const char *path, rt_buf *res, cr_outcome *out) {
  rt_sweep_config sc = {.M = r->train.M, .tau = r->train.tau, .seed = r->train.seed,
                        .n_seq = r->sweep_n, .stop = r->train.stop};
  rt_sweep_row *rows;
  int n;
  ir_error err;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  int rc = rt_sweep(r->rm, &sc, &rows, &n, on_sweep, p, &err);
  if (rc == RT_STOPPED) return rc;
  if (rc < 0) {
    cli_error(r->cmd, "sweep: %s", err.msg);
    return -1;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  rt_buf sw = {0};
  rt_buf_printf(&sw, "length,accuracy,n,loss\n");
  double mean = 0;
  for (int i = 0; i < n; i++) {
    rt_buf_printf(&sw, "%d,%.9g,%d,%.9g\n", rows[i].length, rows[i].acc, rows[i].n, rows[i].loss);
    mean += rows[i].acc / n;
  }
  out->lo = n ? rows[0].length : 0;
  out->hi = n ? rows[n - 1].length : 0;
  out->mean_acc = mean;
  free(rows);
  rc = rt_write_atomic(path, sw.s, sw.len, &err);
  if (rc < 0) cli_error(r->cmd, "%s", err.msg);
  else out->swept = true;
  rt_buf_free(&sw);
  rt_buf_printf(res, ", \"sweep_s\": %.3f, \"sweep_mean_acc\": %.9g",
                (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9, mean);
  return rc;
}

int cr_train_run(cm_run *r, const char *dir, const char *backend, int threads,
                 const cr_hooks *h, cr_outcome *out) {
  memset(out, 0, sizeof *out);
  if (cm_mkdirs(r->cmd, dir) < 0) return -1;
  char *cfg_path = path_in(dir, "config.json"), *csv_path = path_in(dir, "train.csv");
  char *sweep_path = path_in(dir, "sweep.csv"), *ck_path = path_in(dir, "checkpoint.safetensors");
  ctx p = {.h = h, .csv_path = csv_path};
  rt_buf_printf(&p.csv, "step,train_loss,test_loss,test_acc,elapsed_s\n");
  rt_buf res = {0}, cfg = {0}, pre = {0};
  ir_error err;
  int rc = -1;
  if (write_config(r, cfg_path, backend, threads, NULL) < 0) goto out;
  if (h && h->on_compile) h->on_compile(h->ctx);
  if (cm_model(r, strcmp(backend, "jit") ? RT_BACKEND_INTERP : RT_BACKEND_JIT, threads, true) < 0)
    goto out;
  rt_train_hooks hooks = {on_step, on_eval, &p};
  int trc = rt_train(r->rm, &r->train, &hooks, &out->train, &err);
  if (trc == RT_STOPPED) {
    rc = trc;
    goto out;
  }
  if (trc < 0) {
    cli_error(r->cmd, "%s", err.msg);
    goto out;
  }
  result_json(&res, &out->train);
  if (out->train.status == RT_TRAIN_DIVERGED) {
    rt_buf_printf(&res, "}");
    rc = write_config(r, cfg_path, backend, threads, res.s);
    goto out;
  }
  /* The checkpoint's config is the run's config with the training result. */
  rt_buf_printf(&pre, "%s}", res.s);
  cm_config_json(r, &cfg, backend, threads, pre.s);
  if (rt_checkpoint_save(r->rm, ck_path, r->model, r->spec, cfg.s, &err) < 0) {
    cli_error(r->cmd, "%s", err.msg);
    goto out;
  }
  out->trained = true;
  if (r->sweep_n > 0 && (rc = sweep(r, &p, sweep_path, &res, out)) < 0) goto out;
  rt_buf_printf(&res, "}");
  rc = write_config(r, cfg_path, backend, threads, res.s);
out:
  rt_buf_free(&p.csv);
  rt_buf_free(&res);
  rt_buf_free(&cfg);
  rt_buf_free(&pre);
  free(cfg_path);
  free(csv_path);
  free(sweep_path);
  free(ck_path);
  return rc;
}
