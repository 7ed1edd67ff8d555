/* bench_profile.c — `recall bench --profile [--ab VAR]`: cycles per IR
 * node of a model's training or forward kernel, and the same for two
 * builds of it in one process (cmd_bench.c parses the command). */
#include "cmd_model.h"
#include "codegen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double cm_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
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
 * to preemption, which charges a whole time slice to one node), plus its
 * share of cg_prepare's once per batch (hoisted work). */
static void run_profiled(batch *t, variant *v, double *med) {
  const ir_func *g = v->g;
  uint64_t *pc = cg_profile(v->cg);
  set_leaves(t, v, 0);
  cg_prepare(v->cg, v->lv, v->arena);
  for (int n = 0; n < g->n_nodes; n++) {
    med[n] = (double)(pc[n] - v->last[n]) / t->B;
    v->last[n] = pc[n];
  }
  for (int b = 0; b < t->B; b++) {
    set_leaves(t, v, b);
    cg_run(v->cg, v->lv, v->ov, v->arena);
    for (int n = 0; n < g->n_nodes; n++) {
      t->per[(size_t)n * (size_t)t->B + (size_t)b] = (double)(pc[n] - v->last[n]);
      v->last[n] = pc[n];
    }
  }
  for (int n = 0; n < g->n_nodes; n++) med[n] += cm_median(t->per + (size_t)n * (size_t)t->B, t->B);
}

/* The kernel function of r (training or forward) compiled with cycle
 * counters, and its buffers. */
static int variant_new(variant *v, cm_run *r, bool train, ir_error *err) {
  if (!(v->g = rt_model_kernel_function(rt_model_function(r->rm), train, err))) return -1;
  const ir_func *g = v->g;
  cg_options co = {.profile = true, .rows_to_pos = !train, .hoist = true}; /* as model.c */
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

int cm_bench_profile(cm_run *r, bool train, int top, const char *ab, int rounds) {
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
