/* cmd_eval.c — `recall eval`: a length sweep of a trained checkpoint. The
 * checkpoint's metadata names the spec and holds the run's options, so the
 * model is rebuilt exactly; the sweep's data stream is the run's.
 * SIGINT/SIGTERM stop the sweep (status 130/143) and nothing is written. */
#include "cmd_model.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
  fputs("usage: recall eval CHECKPOINT [--lengths A..B] [-n N] [-o FILE.csv]\n"
        "                   [--threads N] [--backend jit|interp]\n"
        "Accuracy at every length A..B (default tau+2..3L) on N sequences each\n"
        "(default: the run's sweep_n), data keyed by the run's seed; CSV rows\n"
        "length,accuracy,n,loss to FILE or standard output.\n", out);
}

/* "A..B" with 1 <= A <= B. */
static bool parse_range(const char *s, int *lo, int *hi) {
  char *end;
  long a = strtol(s, &end, 10);
  if (end == s || strncmp(end, "..", 2)) return false;
  const char *t = end + 2;
  long b = strtol(t, &end, 10);
  if (end == t || *end || a < 1 || b < a || b > 1000000) return false;
  *lo = (int)a, *hi = (int)b;
  return true;
}

int cmd_eval(int argc, char **argv) {
  const char *path = NULL, *outp = NULL, *backend = "jit";
  int lo = 0, hi = 0, n_seq = 0, threads = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    char *end;
    if (!strcmp(a, "--lengths") && i + 1 < argc) {
      if (!parse_range(argv[++i], &lo, &hi)) {
        cli_error("eval", "--lengths takes A..B with 1 <= A <= B, got '%s'", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "-n") && i + 1 < argc) {
      long n = strtol(argv[++i], &end, 10);
      if (*end || n < 1 || n > 100000000) {
        cli_error("eval", "-n takes a count >= 1, got '%s'", argv[i]);
        return 2;
      }
      n_seq = (int)n;
    } else if (!strcmp(a, "--threads") && i + 1 < argc) {
      long t = strtol(argv[++i], &end, 10);
      if (*end || t < 1 || t > 256) {
        cli_error("eval", "--threads takes a count 1..256, got '%s'", argv[i]);
        return 2;
      }
      threads = (int)t;
    } else if (!strcmp(a, "--backend") && i + 1 < argc) {
      backend = argv[++i];
      if (strcmp(backend, "jit") && strcmp(backend, "interp")) {
        cli_error("eval", "--backend is jit or interp, got '%s'", backend);
        return 2;
      }
    } else if (!strcmp(a, "-o") && i + 1 < argc) {
      outp = argv[++i];
    } else {
      int k = cli_positional("eval", a, &path, usage);
      if (k) return k > 0 ? 0 : 2;
    }
  }
  if (!path) {
    usage(stderr);
    return 2;
  }
  cli_catch_signals();
  ir_error err;
  rt_tensors *ck = rt_checkpoint_read(path, &err);
  if (!ck) {
    cli_error("eval", "%s", err.msg);
    return 1;
  }
  int status = 1;
  cm_run r = {0};
  if (cm_setup_checkpoint(&r, "eval", ck, path) < 0) goto out;
  if (cm_model(&r, strcmp(backend, "jit") ? RT_BACKEND_INTERP : RT_BACKEND_JIT, threads, false) < 0)
    goto out;
  if (rt_checkpoint_load(r.rm, ck, &err) < 0) {
    cli_error("eval", "%s", err.msg);
    goto out;
  }
  rt_sweep_config sc = {.M = r.train.M, .tau = r.train.tau, .seed = r.train.seed,
                        .lo = lo, .hi = hi, .n_seq = n_seq ? n_seq : r.sweep_n,
                        .stop = &cli_stop};
  rt_sweep_row *rows;
  int nr;
  int src = rt_sweep(r.rm, &sc, &rows, &nr, NULL, NULL, &err);
  if (src == RT_STOPPED) {
    cli_error("eval", "interrupted; nothing written");
    status = cli_stop_status();
    goto out;
  }
  if (src < 0) {
    cli_error("eval", "%s", err.msg);
    goto out;
  }
  rt_buf csv = {0};
  rt_buf_printf(&csv, "length,accuracy,n,loss\n");
  for (int i = 0; i < nr; i++)
    rt_buf_printf(&csv, "%d,%.9g,%d,%.9g\n", rows[i].length, rows[i].acc, rows[i].n, rows[i].loss);
  free(rows);
  if (!outp) {
    fputs(csv.s, stdout);
    status = fflush(stdout) == 0 ? 0 : 1;
  } else if (rt_write_atomic(outp, csv.s, csv.len, &err) < 0) {
    cli_error("eval", "%s", err.msg);
  } else {
    status = 0;
  }
  rt_buf_free(&csv);
out:
  cm_free(&r);
  rt_tensors_free(ck);
  return status;
}
