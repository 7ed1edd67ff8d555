/* cmd_train.c — `recall train`: one training run of a model spec on
 * associative recall, then a length sweep; writes config.json, train.csv,
 * sweep.csv and checkpoint.safetensors into the run's directory, each
 * atomically. Progress on one updating line when stderr is a terminal;
 * otherwise quiet but for one summary line. SIGINT/SIGTERM stop it at the
 * next step or sweep length with status 130/143, the files so far intact. */
#include "cmd_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
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
} progress;

static void fmt_eta(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
  else if (s < 60) snprintf(buf, n, "%.0fs", s);
  else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static void on_compile(void *ctx) {
  progress *p = ctx;
  if (p->tty) fprintf(stderr, "%s: compiling...", p->r->model);
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

static void on_eval(void *ctx, const rt_train_row *row) {
  ((progress *)ctx)->test_acc = row->test_acc;
}

static void on_sweep(void *ctx, int done, int total) {
  progress *p = ctx;
  if (p->tty) {
    fprintf(stderr, "\r\033[K%s: sweep %d/%d lengths", p->r->model, done, total);
    fflush(stderr);
  }
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
    } else {
      int k = cli_positional("train", a, &spec, usage);
      if (k) {
        status = k > 0 ? 0 : 2;
        goto out;
      }
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
  progress p = {.r = &r, .tty = isatty(2), .test_acc = NAN};
  cr_hooks hooks = {on_compile, on_step, on_eval, on_sweep, &p};
  cr_outcome o;
  int rc = cr_train_run(&r, dir, backend, threads, &hooks, &o);
  if (p.tty) fprintf(stderr, "\r\033[K");
  const rt_train_result *tr = &o.train;
  if (rc == RT_STOPPED) {
    if (o.trained)
      cli_error("train", "interrupted in the sweep; %s/checkpoint.safetensors is written "
                "(recall eval sweeps it)", dir);
    else
      cli_error("train", "interrupted after %ld steps; %s has config.json and the train.csv "
                "of the steps so far, no checkpoint", tr->steps, dir);
    status = cli_stop_status();
  } else if (rc == 0 && tr->status == RT_TRAIN_DIVERGED) {
    cli_error("train", "%s: %s", r.model, tr->message);
  } else if (rc == 0) {
    double t = tr->elapsed_s;
    fprintf(stderr, "recall train: %s: %s; %ld steps in %.1f s (%.1f steps/s)", r.model,
            tr->message, tr->steps, t, t > 0 ? tr->steps / t : 0.0);
    if (o.swept)
      fprintf(stderr, "; sweep %d..%d mean accuracy %.3f", o.lo, o.hi, o.mean_acc);
    fprintf(stderr, "; wrote %s\n", dir);
    status = 0;
  }
done:
  cm_free(&r);
out:
  cli_settings_free(&set);
  return status;
}
