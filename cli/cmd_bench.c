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
 * (on a loaded machine it is the steadier figure with one thread). */
#include "cmd_model.h"
#include "codegen.h"

#include <math.h>
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

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
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
    o->step_ms = median(wall, o->steps);
    o->step_cpu_ms = median(cpu, o->steps);
    o->step_min_ms = cpu[0]; /* sorted by median() */
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

/* --profile: the training kernel (fwd: the forward kernel at L) compiled
 * with cycle counters, run on one batch; the nodes that took the most
 * time, with their share. With --ab VAR[=VALUE]: built (IR passes
 * included) and compiled twice in this process, VAR unset (A) and set (B,
 * to VALUE or 1), for a change put behind getenv(VAR) while it is
 * measured; the two run batch by batch in turn, --rounds times, and each
 * node keeps its fastest batch: on a shared machine whose speed drifts by
 * 10-30% between runs, this resolves differences of a few percent that
 * separate runs cannot. Node by node where both have the same IR. */
typedef struct {
  uint64_t cycles;
  int node;
} hot;

static int cmp_hot(const void *a, const void *b) {
  uint64_t x = ((const hot *)a)->cycles, y = ((const hot *)b)->cycles;
  return (x < y) - (x > y);
}

typedef struct { /* one compiled variant of the kernel and its buffers */
  ir_func *g;
  cg_module *cg;
  void *arena;
  void **ov;
  const void **lv;
  uint64_t *last;
} variant;

typedef struct { /* the batch every variant runs */
  cm_run *r;
  int B, L;
  int32_t *tok, *lab, pos;
  float *V, seed;
  double *per; /* [node][example] */
} batch;

/* v's leaves for example b */
static void set_leaves(batch *t, variant *v, int b) {
  for (int i = 0; i < cg_n_leaves(v->cg); i++) {
    const ir_node *n = &v->g->nodes[cg_leaf_node(v->cg, i)];
    if (n->op == IR_OP_PARAM) {
      v->lv[i] = rt_model_param_data(t->r->rm, n->name);
    } else if (n->op == IR_OP_CONST && !n->data) { /* embedding.weight */
      if (!t->V) {
        t->V = malloc(sizeof *t->V * (size_t)ir_numel(&n->type));
        if (!t->V) abort();
        rt_embedding_V(n->type.dim[0], n->type.dim[1], t->V);
      }
      v->lv[i] = t->V;
    } else if (n->op == IR_OP_INPUT) {
      v->lv[i] = !strcmp(n->name, "tokens") ? (const void *)(t->tok + (size_t)b * (size_t)t->L)
                 : !strcmp(n->name, "pos")   ? (const void *)&t->pos
                 : !strcmp(n->name, "label") ? (const void *)&t->lab[b]
                                             : (const void *)&t->seed;
    }
  }
}

/* The batch through v; med[node] = its median cycles per example (robust
 * to preemption, which charges a whole time slice to one node). */
static void run_profiled(batch *t, variant *v, double *med) {
  const ir_func *g = v->g;
  uint64_t *pc = cg_profile(v->cg);
  for (int b = 0; b < t->B; b++) {
    set_leaves(t, v, b);
    cg_run(v->cg, v->lv, v->ov, v->arena);
    for (int n = 0; n < g->n_nodes; n++) {
      t->per[(size_t)n * (size_t)t->B + (size_t)b] = (double)(pc[n] - v->last[n]);
      v->last[n] = pc[n];
    }
  }
  for (int n = 0; n < g->n_nodes; n++) med[n] = median(t->per + (size_t)n * (size_t)t->B, t->B);
}

/* The kernel function of r (training or forward) compiled with cycle
 * counters, and its buffers. */
static int variant_new(variant *v, cm_run *r, bool train, ir_error *err) {
  if (!(v->g = rt_model_kernel_function(rt_model_function(r->rm), train, err))) return -1;
  const ir_func *g = v->g;
  cg_options co = {.profile = true};
  if (!(v->cg = cg_compile(g, &co, err))) return -1;
  v->arena = cg_arena_new(v->cg);
  v->lv = calloc((size_t)cg_n_leaves(v->cg) + 1, sizeof *v->lv);
  v->ov = calloc((size_t)g->n_outs + 1, sizeof *v->ov);
  v->last = calloc((size_t)g->n_nodes, sizeof *v->last);
  if (!v->lv || !v->ov || !v->last) abort();
  for (int j = 0; j < g->n_outs; j++) {
    v->ov[j] = calloc((size_t)ir_numel(&g->nodes[g->outs[j].node].type) + 1, sizeof(float));
    if (!v->ov[j]) abort();
  }
  return 0;
}

static void variant_free(variant *v) {
  if (v->cg) {
    for (int j = 0; j < v->g->n_outs; j++) free(v->ov[j]);
    free(v->ov), free(v->lv), free(v->last), free(v->arena);
    cg_free(v->cg);
  }
  ir_func_free(v->g);
}

/* Do a and b have the same nodes (op, type, inputs)? */
static bool same_ir(const ir_func *a, const ir_func *b) {
  if (a->n_nodes != b->n_nodes) return false;
  for (int i = 0; i < a->n_nodes; i++) {
    const ir_node *x = &a->nodes[i], *y = &b->nodes[i];
    if (x->op != y->op || x->n_in != y->n_in || !ir_type_eq(&x->type, &y->type) ||
        memcmp(x->in, y->in, sizeof(int) * (size_t)x->n_in))
      return false;
  }
  return true;
}

/* Sets or unsets var (value NULL) */
static void set_env(const char *var, const char *value) {
  if (value) setenv(var, value, 1);
  else unsetenv(var);
}

static void print_by_op(const ir_func *g, const hot *h, uint64_t total) {
  double by_op[IR_OP_COUNT] = {0};
  for (int i = 0; i < g->n_nodes; i++) by_op[g->nodes[h[i].node].op] += (double)h[i].cycles;
  printf("  by op:");
  for (int k = 0; k < 8; k++) {
    int best = -1;
    for (int op = 0; op < IR_OP_COUNT; op++)
      if (by_op[op] > 0 && (best < 0 || by_op[op] > by_op[best])) best = op;
    if (best < 0) break;
    printf(" %s %.0f%%", ir_op_name((ir_op)best), 100 * by_op[best] / (double)(total ? total : 1));
    by_op[best] = 0;
  }
  printf("\n");
}

static int profile(cm_run *r, bool train, int top, const char *ab, int rounds) {
  ir_error err;
  /* --ab VAR[=VALUE] */
  char var[128] = "", *old = NULL;
  const char *value = "1";
  int nv = ab ? 2 : 1, status = -1;
  if (ab) {
    const char *eq = strchr(ab, '=');
    size_t n = eq ? (size_t)(eq - ab) : strlen(ab);
    if (n == 0 || n >= sizeof var) {
      cli_error("bench", "--ab takes VAR or VAR=VALUE, got '%s'", ab);
      return -1;
    }
    memcpy(var, ab, n);
    if (eq) value = eq + 1;
    if (getenv(var)) old = strdup(getenv(var));
  } else {
    rounds = 1;
  }
  variant v[2] = {{0}};
  batch t = {.r = r, .B = r->train.batch, .L = r->L, .pos = r->L - 1,
             .seed = 1.0f / (float)r->train.batch};
  double *med = NULL, *best[2] = {NULL, NULL};
  hot *h = NULL;
  for (int k = 0; k < nv; k++) {
    if (ab) set_env(var, k ? value : NULL);
    int rc = variant_new(&v[k], r, train, &err);
    if (ab) set_env(var, old);
    if (rc < 0) {
      cli_error("bench", "%s", err.msg);
      goto done;
    }
  }
  const ir_func *g = v[0].g;
  int nn = g->n_nodes;
  for (int k = 1; k < nv; k++)
    if (v[k].g->n_nodes > nn) nn = v[k].g->n_nodes;
  bool same = nv == 1 || same_ir(v[0].g, v[1].g);
  med = malloc(sizeof *med * (size_t)nn);
  for (int k = 0; k < nv; k++) best[k] = malloc(sizeof *best[k] * (size_t)nn);
  t.tok = malloc(sizeof *t.tok * (size_t)t.B * (size_t)t.L);
  t.lab = malloc(sizeof *t.lab * (size_t)t.B);
  t.per = malloc(sizeof *t.per * (size_t)nn * (size_t)t.B);
  h = calloc((size_t)nn, sizeof *h);
  if (!med || !best[0] || (nv > 1 && !best[1]) || !t.tok || !t.lab || !t.per || !h) abort();
  rt_ar_task task = {r->K, r->train.M, r->train.tau, t.L};
  rt_ar_batch(r->train.seed, 0, 0, t.B, &task, t.tok, t.lab);
  for (int k = 0; k < nv; k++)
    for (int i = 0; i < nn; i++) best[k][i] = INFINITY;
  for (int round = 0; round < rounds; round++)
    for (int k = 0; k < nv; k++) {
      run_profiled(&t, &v[k], med);
      for (int n = 0; n < v[k].g->n_nodes; n++)
        if (med[n] < best[k][n]) best[k][n] = med[n];
    }
  uint64_t total[2] = {0, 0};
  for (int k = 0; k < nv; k++)
    for (int n = 0; n < v[k].g->n_nodes; n++) total[k] += (uint64_t)best[k][n];
  const char *kname = train ? "training" : "forward";
  if (!ab) {
    printf("profile of the %s kernel: %d examples, %.3g cycles each (medians; %d IR nodes, %.3g FLOP)\n",
           kname, t.B, (double)total[0], g->n_nodes, cg_flops(g));
  } else {
    /* the last example's outputs: does the change alter results? */
    double diff = 0;
    for (int j = 0; j < g->n_outs; j++) {
      const float *a = v[0].ov[j], *b = v[1].ov[j];
      for (int64_t i = 0; i < ir_numel(&g->nodes[g->outs[j].node].type); i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e > diff || isnan(e)) diff = e;
      }
    }
    printf("A/B of the %s kernel, %s unset (A) and %s=%s (B), one process: %d rounds of %d\n"
           "examples in turn, per node its fastest round's median; cycles per example:\n"
           "A %.4g, B %.4g (%+.1f%%); outputs differ by at most %.3g%s\n",
           kname, var, var, value, rounds, t.B, (double)total[0], (double)total[1],
           100.0 * ((double)total[1] / (double)(total[0] ? total[0] : 1) - 1), diff,
           same ? "" : "\n(the IR differs: A's nodes, then B's)");
  }
  for (int k = 0; k < (same ? 1 : nv); k++) {
    const ir_func *gk = v[k].g;
    for (int n = 0; n < gk->n_nodes; n++) h[n] = (hot){(uint64_t)best[k][n], n};
    qsort(h, (size_t)gk->n_nodes, sizeof *h, cmp_hot);
    print_by_op(gk, h, total[k]);
    for (int i = 0; i < (top ? top : gk->n_nodes) && i < gk->n_nodes && h[i].cycles; i++) {
      int n = h[i].node;
      if (ab && same)
        printf("  %9.0f %9.0f %+6.1f%%  ", best[0][n], best[1][n],
               100.0 * (best[1][n] / (best[0][n] > 0 ? best[0][n] : 1) - 1));
      else
        printf("  %5.1f%%  %9.0f cyc  ", 100.0 * (double)h[i].cycles / (double)(total[k] ? total[k] : 1),
               (double)h[i].cycles);
      ir_print_node(stdout, gk, n);
      putchar('\n');
    }
  }
  status = 0;
done:
  for (int k = 0; k < nv; k++) variant_free(&v[k]);
  free(old), free(med), free(best[0]), free(best[1]), free(t.tok), free(t.lab), free(t.per),
      free(t.V), free(h);
  return status;
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
    if (cm_model(&r, RT_BACKEND_JIT, 1, true) == 0 && profile(&r, !strcmp(prof, "bwd"), top, ab, rounds) == 0)
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
