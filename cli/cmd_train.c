/* cmd_train.c — `recall train`: one training run of a model spec on
 * associative recall, then a length sweep; writes config.json, train.csv,
 * sweep.csv and checkpoint.safetensors into the run's directory, each
 * atomically. Progress on one updating line when stderr is a terminal;
 * otherwise quiet but for one summary line. SIGINT/SIGTERM stop it at the
 * next step or sweep length with status 130/143, the files so far intact. */
#include "cmd_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out) {
  fputs("usage: recall train MODEL.lua [--set k=v ...] [-o DIR] [--threads N]\n"
        "                    [--backend jit|interp]\n"
        "Trains MODEL.lua on associative recall and writes DIR/config.json,\n"
        "train.csv, sweep.csv and checkpoint.safetensors (DIR: runs/MODEL).\n"
        "  --threads N   worker threads (default 1; results are identical for any N)\n"
        "  --backend B   jit (default) or interp (the reference interpreter, slow)\n"
        "  --set k=v     one namespace of options: the task and training keys\n"
        "                below, and the spec's own (d, layers, pe, ...: see the\n"
        "                spec's options{}); K and L are both. The spec's d\n"
        "                defaults to 8.\n"
        "task and training keys (default):\n", out);
  cm_print_train_keys(out);
}

typedef struct {
  cm_run *r;
  bool tty;
  double last_draw, test_acc;
  const char *csv_path;
  rt_buf csv;
} progress;

static void fmt_eta(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
  else if (s < 60) snprintf(buf, n, "%.0fs", s);
  else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static void on_step(void *ctx, long step, double loss, double acc, double el) {
  progress *p = ctx;
  long max = p->r->train.max_steps;
  if (!p->tty || (el - p->last_draw < 0.1 && step != max)) return;
  p->last_draw = el;
  double rate = step / el;
  char eta[32], test[32] = "";
  fmt_eta((double)(max - step) / rate, eta, sizeof eta);
  if (!isnan(p->test_acc)) snprintf(test, sizeof test, "  test %.3f", p->test_acc);
  fprintf(stderr, "\r\033[K%s: step %ld/%ld  loss %.4f  acc %.3f%s  %.1f steps/s  ETA %s",
          p->r->model, step, max, loss, acc, test, rate, eta);
  fflush(stderr);
}

static int on_eval(void *ctx, const rt_train_row *row, ir_error *err) {
  progress *p = ctx;
  p->test_acc = row->test_acc;
  rt_buf_printf(&p->csv, "%ld,%.9g,%.9g,%.9g,%.3f\n", row->step, row->train_loss,
                row->test_loss, row->test_acc, row->elapsed_s);
  return rt_write_atomic(p->csv_path, p->csv.s, p->csv.len, err);
}

static void on_sweep(void *ctx, int done, int total) {
  progress *p = ctx;
  if (p->tty) {
    fprintf(stderr, "\r\033[K%s: sweep %d/%d lengths", p->r->model, done, total);
    fflush(stderr);
  }
}

static void clear_line(const progress *p) {
  if (p->tty) fprintf(stderr, "\r\033[K");
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

static const char *status_name(rt_train_status s) {
  return s == RT_TRAIN_REACHED ? "reached" : s == RT_TRAIN_DIVERGED ? "diverged" : "max_steps";
}

int cmd_train(int argc, char **argv) {
  const char *spec = NULL, *dir = NULL, *backend = "jit";
  int threads = 1, status = 2;
  cli_settings set = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--set") && i + 1 < argc) {
      if (!cli_add_setting(&set, argv[++i])) {
        cli_error("train", "--set expects k=v, got '%s'", argv[i]);
        goto out;
      }
    } else if (!strcmp(a, "-o") && i + 1 < argc) {
      dir = argv[++i];
    } else if (!strcmp(a, "--threads") && i + 1 < argc) {
      char *end;
      long t = strtol(argv[++i], &end, 10);
      if (*end || t < 1 || t > 256) {
        cli_error("train", "--threads takes a count 1..256, got '%s'", argv[i]);
        goto out;
      }
      threads = (int)t;
    } else if (!strcmp(a, "--backend") && i + 1 < argc) {
      backend = argv[++i];
      if (strcmp(backend, "jit") && strcmp(backend, "interp")) {
        cli_error("train", "--backend is jit or interp, got '%s'", backend);
        goto out;
      }
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      status = 0;
      goto out;
    } else if (a[0] == '-' || spec) {
      cli_error("train", "unexpected argument '%s'", a);
      usage(stderr);
      goto out;
    } else {
      spec = a;
    }
  }
  if (!spec) {
    usage(stderr);
    goto out;
  }
  status = 1;
  cli_catch_signals();
  cm_run r;
  if (cm_setup(&r, "train", spec, set.keys, set.values, set.n) < 0) goto done;
  r.train.stop = &cli_stop;
  char defdir[512];
  if (!dir) {
    snprintf(defdir, sizeof defdir, "runs/%s", r.model);
    dir = defdir;
  }
  if (cm_mkdirs("train", dir) < 0) goto done;
  char *cfg_path = path_in(dir, "config.json"), *csv_path = path_in(dir, "train.csv");
  char *sweep_path = path_in(dir, "sweep.csv"), *ck_path = path_in(dir, "checkpoint.safetensors");
  progress p = {.r = &r, .tty = isatty(2), .test_acc = NAN, .csv_path = csv_path};
  rt_buf_printf(&p.csv, "step,train_loss,test_loss,test_acc,elapsed_s\n");
  rt_buf res = {0}, cfg = {0}, sw = {0};
  ir_error err;
  if (write_config(&r, cfg_path, backend, threads, NULL) < 0) goto files;
  if (rt_write_atomic(csv_path, p.csv.s, p.csv.len, &err) < 0) {
    cli_error("train", "%s", err.msg);
    goto files;
  }
  if (p.tty) fprintf(stderr, "%s: compiling...", r.model);
  if (cm_model(&r, strcmp(backend, "jit") ? RT_BACKEND_INTERP : RT_BACKEND_JIT, threads, true) < 0) {
    clear_line(&p);
    goto files;
  }
  rt_train_hooks hooks = {on_step, on_eval, &p};
  rt_train_result tr;
  int trc = rt_train(r.rm, &r.train, &hooks, &tr, &err);
  if (trc < 0) {
    clear_line(&p);
    if (trc == RT_STOPPED) {
      cli_error("train", "interrupted after %ld steps; %s has config.json and the train.csv "
                "of the steps so far, no checkpoint", tr.steps, dir);
      status = cli_stop_status();
    } else {
      cli_error("train", "%s", err.msg);
    }
    goto files;
  }
  clear_line(&p);
  rt_buf_printf(&res, "{\"status\": \"%s\", \"message\": ", status_name(tr.status));
  rt_buf_json_str(&res, tr.message);
  rt_buf_printf(&res, ", \"steps\": %ld, \"reached_step\": ", tr.steps);
  if (tr.reached_step >= 0) rt_buf_printf(&res, "%ld", tr.reached_step);
  else rt_buf_printf(&res, "null");
  if (isfinite(tr.test_acc))
    rt_buf_printf(&res, ", \"test_acc\": %.9g, \"test_loss\": %.9g", tr.test_acc, tr.test_loss);
  rt_buf_printf(&res, ", \"train_s\": %.3f, \"steps_per_s\": %.3f", tr.elapsed_s,
                tr.elapsed_s > 0 ? tr.steps / tr.elapsed_s : 0.0);
  if (tr.status == RT_TRAIN_DIVERGED) {
    rt_buf_printf(&res, "}");
    write_config(&r, cfg_path, backend, threads, res.s);
    cli_error("train", "%s: %s", r.model, tr.message);
    goto files;
  }
  /* The checkpoint's config is the run's config with the training result. */
  rt_buf pre = {0};
  rt_buf_printf(&pre, "%s}", res.s);
  cm_config_json(&r, &cfg, backend, threads, pre.s);
  rt_buf_free(&pre);
  if (rt_checkpoint_save(r.rm, ck_path, r.model, r.spec, cfg.s, &err) < 0) {
    cli_error("train", "%s", err.msg);
    goto files;
  }
  double mean_acc = NAN, t0 = tr.elapsed_s;
  int lo = 0, hi = 0;
  if (r.sweep_n > 0) {
    rt_sweep_config sc = {.M = r.train.M, .tau = r.train.tau, .seed = r.train.seed,
                          .n_seq = r.sweep_n, .stop = &cli_stop};
    rt_sweep_row *rows;
    int n;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int src = rt_sweep(r.rm, &sc, &rows, &n, on_sweep, &p, &err);
    if (src < 0) {
      clear_line(&p);
      if (src == RT_STOPPED) {
        cli_error("train", "interrupted in the sweep; %s is written (recall eval sweeps it)",
                  ck_path);
        status = cli_stop_status();
      } else {
        cli_error("train", "sweep: %s", err.msg);
      }
      goto files;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    clear_line(&p);
    rt_buf_printf(&sw, "length,accuracy,n,loss\n");
    mean_acc = 0;
    for (int i = 0; i < n; i++) {
      rt_buf_printf(&sw, "%d,%.9g,%d,%.9g\n", rows[i].length, rows[i].acc, rows[i].n, rows[i].loss);
      mean_acc += rows[i].acc / n;
    }
    lo = rows[0].length, hi = rows[n - 1].length;
    free(rows);
    if (rt_write_atomic(sweep_path, sw.s, sw.len, &err) < 0) {
      cli_error("train", "%s", err.msg);
      goto files;
    }
    rt_buf_printf(&res, ", \"sweep_s\": %.3f, \"sweep_mean_acc\": %.9g",
                  (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9, mean_acc);
  }
  rt_buf_printf(&res, "}");
  if (write_config(&r, cfg_path, backend, threads, res.s) < 0) goto files;
  fprintf(stderr, "recall train: %s: %s; %ld steps in %.1f s (%.1f steps/s)", r.model,
          tr.message, tr.steps, t0, t0 > 0 ? tr.steps / t0 : 0.0);
  if (r.sweep_n > 0) fprintf(stderr, "; sweep %d..%d mean accuracy %.3f", lo, hi, mean_acc);
  fprintf(stderr, "; wrote %s\n", dir);
  status = 0;
files:
  rt_buf_free(&p.csv);
  rt_buf_free(&res);
  rt_buf_free(&cfg);
  rt_buf_free(&sw);
  free(cfg_path);
  free(csv_path);
  free(sweep_path);
  free(ck_path);
done:
  cm_free(&r);
out:
  cli_settings_free(&set);
  return status;
}
