/* cmd_bench.c — `recall bench`: how fast a model compiles, trains and
 * evaluates, and the GFLOP/s that is, on the FLOPs the kernels need
 * (counted from their IR by cg_flops).
 *
 * Measured, in this order:
 *  - compile: the training kernel (rt_model_new: spec, autodiff, passes,
 *    codegen; split into lower/opt/jit by compiling it once more), the
 *    forward kernel at L, and every bucket kernel a sweep uses;
 *  - training step: a fresh AR batch (M 1, tau 1 unless --set), forward,
 *    backward, optimiser update; median over --steps after --warmup;
 *  - evaluation at 3L: forward passes of sequences of length 3L;
 *  - the sweep: every length tau+2..3L, sweep_n sequences each.
 * Times are wall-clock; the CPU time of the process is shown beside them
 * (on a loaded machine it is the steadier figure with one thread).
 * --profile (and its A/B) is bench_profile.c. */
#include "cmd_model.h"
#include "codegen.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out) {
  fputs("usage: recall bench MODEL.lua [--set k=v ...] [--threads N] [--steps N]\n"
        "                    [--warmup N] [--eval-n N] [--no-sweep] [--json]\n"
        "                    [--profile fwd|bwd [--top N] [--ab VAR[=VALUE] [--rounds N]]]\n"
        "Times compilation, the training step (batch from --set batch, 64),\n"
        "evaluation at length 3L and the length sweep (--set sweep_n, 1000).\n"
        "  --threads N   worker threads (default 1)\n"
        "  --steps N     timed training steps (default 30), after --warmup (5)\n"
        "  --eval-n N    sequences of length 3L timed (default 512)\n"
        "  --no-sweep    skip the sweep\n"
        "  --profile K   instead: cycles per IR node of kernel K (bwd: training,\n"
        "                fwd: forward at L) over one batch, the top 25\n"
        "  --top N       with --profile: the top N nodes (0: all)\n"
        "  --ab VAR[=V]  with --profile: the kernel built and compiled with VAR\n"
        "                unset and set (to V, default 1) in this process, run in\n"
        "                turn --rounds N times (8); per node the fastest, A and B\n"
        "  --json        one JSON object on stdout (bench/README.md; keys: impl,\n"
        "                model, K, d, L, batch, threads, train_step_ms (wall),\n"
        "                train_step_cpu_ms, train_step_min_ms, sweep_s,\n"
        "                sweep_cpu_s, compile_ms (training kernel), compile_cpu_ms\n"
        "                (training and forward kernel), compile_all_ms, gflops,\n"
        "                flops_per_step, eval_seq_per_s, eval_gflops, ...)\n", out);
}

typedef struct {
  double wall, cpu; /* ms */
} stamp;

static stamp now(void) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
  return (stamp){a.tv_sec * 1e3 + a.tv_nsec / 1e6, b.tv_sec * 1e3 + b.tv_nsec / 1e6};
}

static stamp since(stamp t0) {
  stamp t = now();
  return (stamp){t.wall - t0.wall, t.cpu - t0.cpu};
}

typedef struct {
  char label[96];
  int d, batch, threads, steps, sweep_lo, sweep_hi, sweep_n, eval_n;
  double compile_ms, compile_fwd_ms, compile_all_ms, lower_ms, opt_ms, jit_ms;
  double compile_cpu_ms, compile_all_cpu_ms; /* CPU time of the same */
  int n_buckets;
  double step_ms, step_cpu_ms, step_min_ms, flops_step, gflops;
  double eval_seq_s, eval_gflops, flops_eval;
  double sweep_s, sweep_cpu_s; /* < 0: not run */
} result;

static int measure_compile(cm_run *r, int threads, result *o) {
  stamp t0 = now();
  if (cm_model(r, RT_BACKEND_JIT, threads, true) < 0) return -1;
  stamp dt = since(t0);
  o->compile_ms = dt.wall, o->compile_cpu_ms = dt.cpu;
  ir_error err;
  /* forward kernel at L: the first evaluation compiles it */
  int32_t *tok = calloc((size_t)3 * (size_t)r->L + 1, sizeof *tok), lab = 0;
  if (!tok) abort();
  t0 = now();
  if (rt_model_eval_batch(r->rm, r->L, r->L, tok, &lab, 1, NULL, NULL, &err) < 0) {
    free(tok);
    cli_error("bench", "%s", err.msg);
    return -1;
  }
  dt = since(t0);
  o->compile_fwd_ms = dt.wall;
  o->compile_all_ms = o->compile_ms + o->compile_fwd_ms;
  o->compile_cpu_ms += dt.cpu;
  o->compile_all_cpu_ms = o->compile_cpu_ms;
  o->n_buckets = 1;
  t0 = now();
  for (int n = o->sweep_lo, last = r->L; n <= o->sweep_hi; n++) {
    int b = rt_model_bucket(r->rm, n);
    if (b == last || b == r->L) continue;
    last = b;
    o->n_buckets++;
    if (rt_model_eval_batch(r->rm, b, b, tok, &lab, 1, NULL, NULL, &err) < 0) {
      free(tok);
      cli_error("bench", "%s", err.msg);
      return -1;
    }
  }
  dt = since(t0);
  o->compile_all_ms += dt.wall, o->compile_all_cpu_ms += dt.cpu;
  free(tok);
  /* the phases of the training kernel, compiled once more on its own */
  ir_func *g = rt_model_kernel_function(rt_model_function(r->rm), true, &err);
  cg_module *cg = g ? cg_compile(g, NULL, &err) : NULL;
  if (!cg) {
    ir_func_free(g);
    cli_error("bench", "%s", err.msg);
    return -1;
  }
  const cg_stats *st = cg_module_stats(cg);
  o->lower_ms = st->lower_ms, o->opt_ms = st->opt_ms, o->jit_ms = st->jit_ms;
  o->flops_step = cg_flops(g) * o->batch + 12.0 * (double)rt_model_size(r->rm);
  cg_free(cg);
  ir_func_free(g);
  return 0;
}

static int measure_steps(cm_run *r, int warmup, result *o) {
  int B = o->batch, L = r->L;
  rt_ar_task task = {r->K, r->train.M, r->train.tau, L};
  int32_t *tok = malloc(sizeof *tok * (size_t)B * (size_t)L);
  int32_t *lab = malloc(sizeof *lab * (size_t)B);
  double *wall = malloc(sizeof *wall * (size_t)o->steps);
  double *cpu = malloc(sizeof *cpu * (size_t)o->steps);
  if (!tok || !lab || !wall || !cpu) abort();
  rt_optim *opt = rt_optim_new(&r->train.opt, rt_model_size(r->rm));
  int rc = 0;
  for (int s = 0; s < warmup + o->steps && rc == 0; s++) {
    stamp t0 = now();
    rt_ar_batch(r->train.seed, (uint64_t)s, 0, B, &task, tok, lab);
    rt_batch_stats st;
    ir_error err;
    if ((rc = rt_model_train_batch(r->rm, tok, lab, B, &st, &err)) < 0) {
      cli_error("bench", "%s", err.msg);
      break;
    }
    rt_optim_step(opt, rt_model_params(r->rm), rt_model_grads(r->rm));
    stamp dt = since(t0);
    if (s >= warmup) wall[s - warmup] = dt.wall, cpu[s - warmup] = dt.cpu;
  }
  if (rc == 0) {
    o->step_ms = cm_median(wall, o->steps);
    o->step_cpu_ms = cm_median(cpu, o->steps);
    o->step_min_ms = cpu[0]; /* sorted by cm_median() */
    double t = o->threads == 1 ? o->step_cpu_ms : o->step_ms;
    o->gflops = o->flops_step / (t * 1e6);
  }
  rt_optim_free(opt);
  free(tok), free(lab), free(wall), free(cpu);
  return rc;
}

static int measure_eval(cm_run *r, result *o) {
  int n = 3 * r->L, B = o->eval_n;
  ir_error err;
  ir_func *f = cm_spec_at(r, n, &err);
  if (!f) {
    cli_error("bench", "%s", err.msg);
    return -1;
  }
  ir_func *k = rt_model_kernel_function(f, false, &err);
  ir_func_free(f);
  if (!k) {
    cli_error("bench", "%s", err.msg);
    return -1;
  }
  o->flops_eval = cg_flops(k);
  ir_func_free(k);
  rt_ar_task task = {r->K, r->train.M, r->train.tau, n};
  int32_t *tok = malloc(sizeof *tok * (size_t)B * (size_t)n);
  int32_t *lab = malloc(sizeof *lab * (size_t)B);
  if (!tok || !lab) abort();
  rt_ar_batch(r->train.seed, RT_STREAM_TEST, 0, B, &task, tok, lab);
  int rc = rt_model_eval_batch(r->rm, n, n, tok, lab, B < 8 ? B : 8, NULL, NULL, &err);
  stamp t0 = now();
  if (rc == 0) rc = rt_model_eval_batch(r->rm, n, n, tok, lab, B, NULL, NULL, &err);
  stamp dt = since(t0);
  if (rc < 0) cli_error("bench", "%s", err.msg);
  double t = o->threads == 1 ? dt.cpu : dt.wall;
  o->eval_seq_s = B / (t / 1e3);
  o->eval_gflops = o->flops_eval * B / (t * 1e6);
  free(tok), free(lab);
  return rc;
}

static int measure_sweep(cm_run *r, result *o) {
  rt_sweep_config sc = {.M = r->train.M, .tau = r->train.tau, .seed = r->train.seed,
                        .lo = o->sweep_lo, .hi = o->sweep_hi, .n_seq = o->sweep_n};
  rt_sweep_row *rows;
  int n;
  ir_error err;
  stamp t0 = now();
  if (rt_sweep(r->rm, &sc, &rows, &n, NULL, NULL, &err) < 0) {
    cli_error("bench", "sweep: %s", err.msg);
    return -1;
  }
  stamp dt = since(t0);
  free(rows);
  o->sweep_s = dt.wall / 1e3;
  o->sweep_cpu_s = dt.cpu / 1e3;
  return 0;
}

static void print_human(const cm_run *r, const result *o) {
  printf("recall bench: %s (K %d, d %d, L %d, batch %d, %d thread%s)\n", o->label,
         r->K, o->d, r->L, o->batch, o->threads, o->threads == 1 ? "" : "s");
  printf("  compile  training kernel %.0f ms (codegen: lower %.0f, opt %.0f, jit %.0f ms),\n"
         "           forward at L %.0f ms; both %.0f ms cpu; with all %d sweep buckets\n"
         "           %.0f ms (cpu %.0f)\n",
         o->compile_ms, o->lower_ms, o->opt_ms, o->jit_ms, o->compile_fwd_ms,
         o->compile_cpu_ms, o->n_buckets, o->compile_all_ms, o->compile_all_cpu_ms);
  printf("  train    %.3f ms/step (cpu %.3f, fastest %.3f; median of %d), %.2f MFLOP/step,\n"
         "           %.2f GFLOP/s\n", o->step_ms, o->step_cpu_ms, o->step_min_ms, o->steps,
         o->flops_step / 1e6, o->gflops);
  printf("  eval 3L  %.0f sequences/s of length %d, %.3f MFLOP each, %.2f GFLOP/s\n",
         o->eval_seq_s, 3 * r->L, o->flops_eval / 1e6, o->eval_gflops);
  if (o->sweep_s >= 0)
    printf("  sweep    lengths %d..%d x %d: %.2f s (cpu %.2f s)\n", o->sweep_lo,
           o->sweep_hi, o->sweep_n, o->sweep_s, o->sweep_cpu_s);
}

static void print_json(const cm_run *r, const result *o) {
  rt_buf b = {0};
  rt_buf_printf(&b, "{\"impl\": \"recall\", \"model\": ");
  rt_buf_json_str(&b, o->label);
  rt_buf_printf(&b, ", \"K\": %d, \"d\": %d, \"L\": %d, \"batch\": %d, \"threads\": %d, "
                "\"train_step_ms\": %.4f, \"train_step_cpu_ms\": %.4f, \"train_step_min_ms\": %.4f, "
                "\"steps\": %d, ", r->K, o->d, r->L, o->batch, o->threads, o->step_ms,
                o->step_cpu_ms, o->step_min_ms, o->steps);
  if (o->sweep_s >= 0)
    rt_buf_printf(&b, "\"sweep_s\": %.4f, \"sweep_cpu_s\": %.4f, \"sweep_n\": %d, "
                  "\"lengths\": \"%d..%d\", ", o->sweep_s, o->sweep_cpu_s, o->sweep_n,
                  o->sweep_lo, o->sweep_hi);
  else
    rt_buf_printf(&b, "\"sweep_s\": null, ");
  rt_buf_printf(&b, "\"compile_ms\": %.1f, \"compile_cpu_ms\": %.1f, \"compile_all_cpu_ms\": %.1f, ",
                o->compile_ms, o->compile_cpu_ms, o->compile_all_cpu_ms);
  rt_buf_printf(&b, "\"compile_train_fwd_ms\": %.1f, \"compile_fwd_ms\": %.1f, \"compile_all_ms\": %.1f, "
                "\"lower_ms\": %.1f, \"opt_ms\": %.1f, \"jit_ms\": %.1f, "
                "\"gflops\": %.4f, \"flops_per_step\": %.0f, \"eval_seq_per_s\": %.1f, "
                "\"eval_gflops\": %.4f}\n",
                o->compile_ms + o->compile_fwd_ms, o->compile_fwd_ms, o->compile_all_ms, o->lower_ms,
                o->opt_ms, o->jit_ms, o->gflops, o->flops_step, o->eval_seq_s,
                o->eval_gflops);
  fputs(b.s, stdout);
  fflush(stdout);
  rt_buf_free(&b);
}

static int parse_count(const char *flag, const char *s, int lo, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v < lo || v > 1000000) {
    cli_error("bench", "%s takes a count >= %d, got '%s'", flag, lo, s);
    return -1;
  }
  *out = (int)v;
  return 0;
}

int cmd_bench(int argc, char **argv) {
  const char *spec = NULL, *prof = NULL, *ab = NULL;
  int threads = 1, steps = 30, warmup = 5, eval_n = 512, top = 25, rounds = 8, status = 2;
  bool json = false, sweep = true;
  cli_settings set = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--set") && i + 1 < argc) {
      if (!cli_add_setting(&set, argv[++i])) {
        cli_error("bench", "--set expects k=v, got '%s'", argv[i]);
        goto out;
      }
    } else if (!strcmp(a, "--threads") && i + 1 < argc) {
      if (parse_count(a, argv[++i], 1, &threads) < 0) goto out;
    } else if (!strcmp(a, "--steps") && i + 1 < argc) {
      if (parse_count(a, argv[++i], 1, &steps) < 0) goto out;
    } else if (!strcmp(a, "--warmup") && i + 1 < argc) {
      if (parse_count(a, argv[++i], 0, &warmup) < 0) goto out;
    } else if (!strcmp(a, "--eval-n") && i + 1 < argc) {
      if (parse_count(a, argv[++i], 1, &eval_n) < 0) goto out;
    } else if (!strcmp(a, "--json")) {
      json = true;
    } else if (!strcmp(a, "--profile") && i + 1 < argc) {
      prof = argv[++i];
      if (strcmp(prof, "fwd") && strcmp(prof, "bwd")) {
        cli_error("bench", "--profile is fwd or bwd, got '%s'", prof);
        goto out;
      }
    } else if (!strcmp(a, "--top") && i + 1 < argc) {
      if (parse_count(a, argv[++i], 0, &top) < 0) goto out;
    } else if (!strcmp(a, "--ab") && i + 1 < argc) {
      ab = argv[++i];
    } else if (!strcmp(a, "--rounds") && i + 1 < argc) {
      if (parse_count(a, argv[++i], 1, &rounds) < 0) goto out;
    } else if (!strcmp(a, "--no-sweep")) {
      sweep = false;
    } else {
      int k = cli_positional("bench", a, &spec, usage);
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
  if (ab && !prof) {
    cli_error("bench", "--ab needs --profile fwd|bwd");
    goto out;
  }
  status = 1;
  cm_run r;
  if (cm_setup(&r, "bench", spec, set.keys, set.values, set.n) < 0) goto done;
  result o = {.batch = r.train.batch, .threads = threads, .steps = steps,
              .eval_n = eval_n, .sweep_n = r.sweep_n, .sweep_s = -1,
              .sweep_lo = r.train.tau + 2, .sweep_hi = 3 * r.L};
  o.d = (int)fe_config_num(r.fm, "d", 0);
  const char *pe = fe_config_str(r.fm, "pe", NULL);
  snprintf(o.label, sizeof o.label, "%s%s%s", r.model, pe ? "-" : "", pe ? pe : "");
  if (prof) {
    if (cm_model(&r, RT_BACKEND_JIT, 1, true) == 0 && cm_bench_profile(&r, !strcmp(prof, "bwd"), top, ab, rounds) == 0)
      status = 0;
    goto done;
  }
  if (measure_compile(&r, threads, &o) < 0 || measure_steps(&r, warmup, &o) < 0 ||
      measure_eval(&r, &o) < 0)
    goto done;
  if (sweep && o.sweep_n > 0 && measure_sweep(&r, &o) < 0) goto done;
  if (json)
    print_json(&r, &o);
  else
    print_human(&r, &o);
  status = 0;
done:
  cm_free(&r);
out:
  cli_settings_free(&set);
  return status;
}
