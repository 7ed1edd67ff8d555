/* cmd_data.c — `recall data`: associative-recall sequences exactly as
 * training, the test batch or a sweep draws them, to safetensors or CSV
 * (the bridge for checking the data against another implementation). */
#include "cmd_model.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
  fputs("usage: recall data [--set k=v ...] --length N [-n COUNT]\n"
        "                   [--stream train|test|sweep] -o FILE.safetensors|FILE.csv\n"
        "Writes COUNT (default 1000) sequences of length N with their labels and\n"
        "the first query position i. Keys (default): K (16), M (1), tau (1),\n"
        "seed (0), step (0). --stream train: the examples of training step\n"
        "`step` (the first `batch` of them are that step's batch); test: the\n"
        "fixed test batch; sweep: the sweep's sequences of length N.\n"
        "safetensors: tokens I32[COUNT,N], labels I32[COUNT], i I32[COUNT];\n"
        "CSV: example,label,i,x0..x{N-1}.\n", out);
}

static const char *const keys[] = {"K", "M", "tau", "seed", "step"};
enum { N_KEYS = 5 };

int cmd_data(int argc, char **argv) {
  const char *outp = NULL, *stream = "train";
  long val[N_KEYS] = {16, 1, 1, 0, 0}, length = 0, count = 1000;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    char *end;
    if (!strcmp(a, "--set") && i + 1 < argc) {
      char *s = argv[++i], *eq = strchr(s, '=');
      int k = -1;
      if (eq) {
        *eq = 0;
        for (int j = 0; j < N_KEYS; j++)
          if (!strcmp(keys[j], s)) k = j;
      }
      if (!eq || k < 0) {
        const char *best = NULL;
        int bd = 3;
        for (int j = 0; eq && j < N_KEYS; j++) {
          int d = cm_distance(s, keys[j]);
          if (d < bd) bd = d, best = keys[j];
        }
        if (!eq) cli_error("data", "--set expects k=v, got '%s'", s);
        else if (best) cli_error("data", "--set %s: unknown key (did you mean '%s'?); keys: K, M, tau, seed, step", s, best);
        else cli_error("data", "--set %s: unknown key; keys: K, M, tau, seed, step", s);
        return 2;
      }
      val[k] = strtol(eq + 1, &end, 10);
      if (!eq[1] || *end || val[k] < 0 || val[k] > 0x7fffffffL) {
        cli_error("data", "--set %s=%s: %s takes an integer >= 0", s, eq + 1, s);
        return 2;
      }
    } else if (!strcmp(a, "--length") && i + 1 < argc) {
      length = strtol(argv[++i], &end, 10);
      if (*end || length < 1 || length > 1000000) {
        cli_error("data", "--length takes a length >= 1, got '%s'", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "-n") && i + 1 < argc) {
      count = strtol(argv[++i], &end, 10);
      if (*end || count < 1 || count > 100000000) {
        cli_error("data", "-n takes a count >= 1, got '%s'", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--stream") && i + 1 < argc) {
      stream = argv[++i];
      if (strcmp(stream, "train") && strcmp(stream, "test") && strcmp(stream, "sweep")) {
        cli_error("data", "--stream is train, test or sweep, got '%s'", stream);
        return 2;
      }
    } else if (!strcmp(a, "-o") && i + 1 < argc) {
      outp = argv[++i];
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else {
      cli_error("data", "unexpected argument '%s'", a);
      usage(stderr);
      return 2;
    }
  }
  if (!outp || !length) {
    cli_error("data", "%s is required", !length ? "--length" : "-o FILE");
    usage(stderr);
    return 2;
  }
  bool csv = cli_has_suffix(outp, ".csv");
  if (!csv && !cli_has_suffix(outp, ".safetensors")) {
    cli_error("data", "%s: the output is FILE.safetensors or FILE.csv", outp);
    return 2;
  }
  ir_error err;
  rt_ar_task task = {(int)val[0], (int)val[1], (int)val[2], (int)length};
  if (rt_ar_validate(task.K, task.M, task.tau, task.n, &err) < 0) {
    cli_error("data", "%s", err.msg);
    return 1;
  }
  uint64_t st = !strcmp(stream, "test") ? RT_STREAM_TEST
              : !strcmp(stream, "sweep") ? RT_STREAM_SWEEP + (uint64_t)length
              : (uint64_t)val[4];
  int32_t *tok = malloc(sizeof *tok * (size_t)count * (size_t)length);
  int32_t *lab = malloc(sizeof *lab * (size_t)count), *pos = malloc(sizeof *pos * (size_t)count);
  if (!tok || !lab || !pos) abort();
  for (long b = 0; b < count; b++)
    rt_ar_example((uint64_t)val[3], st, (uint32_t)b, &task, tok + b * length, lab + b, pos + b);
  int status = 1;
  if (csv) {
    rt_buf b = {0};
    rt_buf_printf(&b, "example,label,i");
    for (long t = 0; t < length; t++) rt_buf_printf(&b, ",x%ld", t);
    rt_buf_printf(&b, "\n");
    for (long e = 0; e < count; e++) {
      rt_buf_printf(&b, "%ld,%d,%d", e, lab[e], pos[e]);
      for (long t = 0; t < length; t++) rt_buf_printf(&b, ",%d", tok[e * length + t]);
      rt_buf_printf(&b, "\n");
    }
    if (rt_write_atomic(outp, b.s, b.len, &err) == 0) status = 0;
    rt_buf_free(&b);
  } else {
    rt_tensors *ts = rt_tensors_new();
    int64_t d2[2] = {count, length}, d1[1] = {count};
    char num[32];
    if (rt_tensors_add(ts, "tokens", RT_I32, 2, d2, tok, &err) &&
        rt_tensors_add(ts, "labels", RT_I32, 1, d1, lab, &err) &&
        rt_tensors_add(ts, "i", RT_I32, 1, d1, pos, &err)) {
      const char *names[] = {"K", "M", "tau", "seed", "step"};
      for (int k = 0; k < N_KEYS; k++) {
        snprintf(num, sizeof num, "%ld", val[k]);
        if (k < 4 || !strcmp(stream, "train")) rt_meta_set(ts, names[k], num);
      }
      snprintf(num, sizeof num, "%ld", length);
      rt_meta_set(ts, "n", num);
      rt_meta_set(ts, "stream", stream);
      if (rt_st_write(outp, ts, &err) == 0) status = 0;
    }
    rt_tensors_free(ts);
  }
  if (status) cli_error("data", "%s", err.msg);
  free(tok);
  free(lab);
  free(pos);
  return status;
}
