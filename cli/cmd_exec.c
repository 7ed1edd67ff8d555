/* cmd_exec.c — `recall exec`: one forward+backward of a model spec on given
 * weights and tokens, written as logits, loss and grad.<param> — the bridge
 * for checking recall against any other implementation. The JIT backend
 * runs the kernel training runs (rt_model_kernel_function: the demand pass
 * and the optimiser included), so golden files test what training does;
 * --backend interp runs the unoptimised autodiff function, the reference. */
#include "cli.h"
#include "codegen.h"
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const usage_text =
    "usage: recall exec MODEL.lua --weights W.safetensors --tokens T.safetensors\n"
    "                   [-o OUT.safetensors] [--set k=v ...] [--backend jit|interp]\n"
    "  W holds every parameter by name (embedding.weight optional: numpy's V\n"
    "  otherwise); T holds tokens i32[B,n] and labels i32[B]. Writes logits\n"
    "  [B,K], loss (mean cross-entropy) and grad.<name> of the mean loss.\n"
    "  jit (default) runs the training kernel the runtime compiles; interp the\n"
    "  unoptimised gradient function on the reference interpreter.\n";

static void usage(FILE *out) { fputs(usage_text, out); }

/* Where each leaf of the gradient function gets its data. */
typedef struct {
  const ir_func *g;
  const void **fixed;  /* per node: params/consts, NULL for per-example */
  int tok, pos, label, seed; /* input node ids */
  int n_out_grads;
} binding;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Binds every param and const of g from the weights file (converted to
 * F32 and shape-checked); embedding.weight falls back to numpy's V. */
static int bind_weights(binding *b, rt_tensors *w, const fe_model *m,
                        float **owned_v, ir_error *err) {
  const ir_func *g = b->g;
  for (int i = 0; i < g->n_nodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_OP_PARAM && n->op != IR_OP_CONST) continue;
    int64_t dim[IR_MAX_RANK];
    for (int k = 0; k < n->type.rank; k++) dim[k] = n->type.dim[k];
    rt_tensor *t = rt_tensors_find(w, n->name);
    if (t) {
      t = rt_tensors_expect(w, n->name, RT_F32, n->type.rank, dim, err);
      if (!t) return -1;
      b->fixed[i] = t->data;
    } else if (n->op == IR_OP_CONST && n->data) {
      b->fixed[i] = n->data;
    } else if (n->op == IR_OP_CONST && !strcmp(n->name, "embedding.weight") &&
               n->type.rank == 2) {
      *owned_v = malloc(sizeof(float) * (size_t)ir_numel(&n->type));
      rt_embedding_V(n->type.dim[0], n->type.dim[1], *owned_v);
      b->fixed[i] = *owned_v;
    } else {
      char s[64];
      ir_err(err, "%s: no tensor \"%s\" (%s %s of %s)", w->source, n->name,
             ir_op_name(n->op), ir_type_str(&n->type, s, sizeof s), m->path);
      return -1;
    }
  }
  return 0;
}

/* Runs example e through the interpreter; adds its outputs. */
static int run_interp(const binding *b, const int32_t *tokens, int n,
                      int32_t label, double seed, double **vals_out,
                      ir_error *err) {
  const ir_func *g = b->g;
  double **leaves = calloc((size_t)g->n_nodes, sizeof *leaves);
  double *tok = malloc(sizeof(double) * (size_t)n);
  double pos = n - 1, lab = label;
  for (int t = 0; t < n; t++) tok[t] = tokens[t];
  int status = 0;
  for (int i = 0; i < g->n_nodes && !status; i++) {
    const ir_node *nd = &g->nodes[i];
    if (b->fixed[i]) {
      int64_t k = ir_numel(&nd->type);
      leaves[i] = malloc(sizeof(double) * (size_t)k);
      for (int64_t j = 0; j < k; j++)
        leaves[i][j] = ((const float *)b->fixed[i])[j];
    }
  }
  leaves[b->tok] = tok;
  if (b->pos >= 0) leaves[b->pos] = &pos;
  leaves[b->label] = &lab;
  leaves[b->seed] = &seed;
  double **v = ir_interp(g, IR_PREC_F32, (const double *const *)leaves, err);
  if (!v) status = -1;
  for (int i = 0; i < g->n_nodes; i++)
    if (b->fixed[i]) free(leaves[i]);
  free(leaves);
  free(tok);
  if (v) {
    for (int o = 0; o < g->n_outs; o++) {
      const ir_node *nd = &g->nodes[g->outs[o].node];
      int64_t k = ir_numel(&nd->type);
      for (int64_t j = 0; j < k; j++) vals_out[o][j] += v[g->outs[o].node][j];
    }
    ir_values_free(g, v);
  }
  return status;
}

int cmd_exec(int argc, char **argv) {
  const char *path = NULL, *wpath = NULL, *tpath = NULL, *opath = NULL;
  const char *backend = "jit";
  cli_settings set = {0};
  int status = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool more = i + 1 < argc;
    if (!strcmp(a, "--weights") && more)
      wpath = argv[++i];
    else if (!strcmp(a, "--tokens") && more)
      tpath = argv[++i];
    else if (!strcmp(a, "-o") && more)
      opath = argv[++i];
    else if (!strcmp(a, "--backend") && more)
      backend = argv[++i];
    else if (!strcmp(a, "--set") && more) {
      if (!cli_add_setting(&set, argv[++i])) {
        cli_error("exec", "--set expects k=v, got '%s'", argv[i]);
        goto out;
      }
    } else {
      int k = cli_positional("exec", a, &path, usage);
      if (k) {
        status = k > 0 ? 0 : 2;
        goto out;
      }
    }
  }
  if (!path || !wpath || !tpath) {
    usage(stderr);
    goto out;
  }
  if (strcmp(backend, "jit") && strcmp(backend, "interp")) {
    cli_error("exec", "unknown backend '%s' (jit or interp)", backend);
    goto out;
  }

  status = 1;
  ir_error err = {{0}};
  fe_model *m = NULL;
  rt_tensors *w = NULL, *tk = NULL, *out = NULL;
  ir_func *g = NULL;
  cg_module *cg = NULL;
  float *owned_v = NULL;
  double **acc = NULL;
  binding b = {0};

  if (!(tk = rt_st_read(tpath, &err)) || !(w = rt_st_read(wpath, &err)))
    goto fail;
  rt_tensor *tokens = rt_tensors_find(tk, "tokens");
  if (!tokens || tokens->rank != 2) {
    ir_err(&err, "%s: needs a tensor \"tokens\" of shape [B, n]", tpath);
    goto fail;
  }
  int B = (int)tokens->dim[0], n = (int)tokens->dim[1];
  int64_t bdim[1] = {B}, tdim[2] = {B, n};
  rt_tensor *labels;
  if (!(tokens = rt_tensors_expect(tk, "tokens", RT_I32, 2, tdim, &err)) ||
      !(labels = rt_tensors_expect(tk, "labels", RT_I32, 1, bdim, &err)))
    goto fail;

  if (!(m = cli_load_model("exec", path, &set))) goto done;
  const ir_func *f = m->f;
  int tok_node = ir_find_leaf(f, "tokens");
  if (tok_node < 0 || f->nodes[tok_node].type.rank != 1 ||
      f->nodes[tok_node].type.dim[0] != n) {
    ir_err(&err,
           "%s: tokens are [%d, %d] but %s was built for another length "
           "(set its length with --set n=%d, or L)",
           tpath, B, n, path, n);
    goto fail;
  }
  if (ir_find_leaf(f, "pos") < 0 || ir_find_leaf(f, "label") < 0 ||
      ir_find_output(f, "logits") < 0 || ir_find_output(f, "loss") < 0) {
    ir_err(&err, "%s: a model needs inputs tokens, pos, label and outputs "
                 "logits, loss", path);
    goto fail;
  }
  /* The JIT runs what training runs: the runtime's training function (read
   * at n-1, cut down by the demand pass, optimised). The interpreter runs
   * the unoptimised gradient function, the reference. */
  g = strcmp(backend, "interp") ? rt_model_kernel_function(f, true, &err)
                                : ad_grad(f, "loss", &err);
  if (!g) goto fail;
  b.g = g;
  b.fixed = calloc((size_t)g->n_nodes, sizeof *b.fixed);
  b.tok = ir_find_leaf(g, "tokens");
  b.pos = ir_find_leaf(g, "pos"); /* -1 in the training function: bound */
  b.label = ir_find_leaf(g, "label");
  b.seed = ir_find_leaf(g, "grad.loss");
  int lg_out = ir_find_output(g, "logits"), loss_out = ir_find_output(g, "loss");
  if (b.label < 0 || b.seed < 0 || lg_out < 0 || loss_out < 0) {
    ir_err(&err, "%s: a model needs inputs tokens, pos, label and outputs "
                 "logits, loss", path);
    goto fail;
  }
  if (bind_weights(&b, w, m, &owned_v, &err)) goto fail;

  /* Sum of per-example outputs; the loss seed 1/B makes gradients those of
   * the mean loss. Logits are kept per example. */
  acc = calloc((size_t)g->n_outs, sizeof *acc);
  for (int o = 0; o < g->n_outs; o++)
    acc[o] = calloc((size_t)ir_numel(&g->nodes[g->outs[o].node].type),
                    sizeof(double));
  int K = g->nodes[g->outs[lg_out].node].type.dim[0];
  float *logits = calloc((size_t)B * (size_t)K, sizeof(float));
  double loss = 0, t0 = now_ms(), compile_ms = 0;
  const int32_t *tok = tokens->data, *lab = labels->data;
  if (!strcmp(backend, "interp")) {
    for (int e = 0; e < B; e++) {
      for (int k = 0; k < K; k++) acc[lg_out][k] = 0;
      if (run_interp(&b, tok + (size_t)e * n, n, lab[e], 1.0 / B, acc, &err)) {
        free(logits);
        goto fail;
      }
      for (int k = 0; k < K; k++) logits[e * K + k] = (float)acc[lg_out][k];
    }
    loss = acc[loss_out][0] / B;
  } else {
    if (!(cg = cg_compile(g, NULL, &err))) {
      free(logits);
      goto fail;
    }
    compile_ms = now_ms() - t0;
    t0 = now_ms();
    int nl = cg_n_leaves(cg);
    const void **lv = calloc((size_t)nl, sizeof *lv);
    void **ov = calloc((size_t)g->n_outs, sizeof *ov);
    float **ob = calloc((size_t)g->n_outs, sizeof *ob);
    for (int o = 0; o < g->n_outs; o++)
      ov[o] = ob[o] = calloc((size_t)ir_numel(&g->nodes[g->outs[o].node].type),
                             sizeof(float));
    void *arena = cg_arena_new(cg);
    int32_t pos = n - 1;
    float seed = 1.0f / (float)B;
    int bad = 0;
    for (int e = 0; e < B; e++) {
      for (int i = 0; i < nl; i++) {
        int id = cg_leaf_node(cg, i);
        lv[i] = id == b.tok     ? (const void *)(tok + (size_t)e * n)
                : id == b.pos   ? (const void *)&pos
                : id == b.label ? (const void *)&lab[e]
                : id == b.seed  ? (const void *)&seed
                                : b.fixed[id];
      }
      bad += cg_run(cg, lv, ov, arena);
      for (int o = 0; o < g->n_outs; o++) {
        int64_t k = ir_numel(&g->nodes[g->outs[o].node].type);
        for (int64_t j = 0; j < k; j++) acc[o][j] += ob[o][j];
      }
      for (int k = 0; k < K; k++) logits[e * K + k] = ob[lg_out][k];
    }
    loss = acc[loss_out][0] / B;
    for (int o = 0; o < g->n_outs; o++) free(ob[o]);
    free(ob), free(ov), free(lv), free(arena);
    if (bad) {
      ir_err(&err, "%s: %d token or label values are outside 0..K-1", tpath,
             bad);
      free(logits);
      goto fail;
    }
  }
  double ms = now_ms() - t0;

  out = rt_tensors_new();
  int64_t ldim[2] = {B, K};
  rt_tensors_add(out, "logits", RT_F32, 2, ldim, logits, &err);
  free(logits);
  float lossf = (float)loss;
  rt_tensors_add(out, "loss", RT_F32, 0, NULL, &lossf, &err);
  for (int o = 0; o < g->n_outs; o++) {
    if (strncmp(g->outs[o].name, "grad.", 5)) continue;
    const ir_type *t = &g->nodes[g->outs[o].node].type;
    int64_t k = ir_numel(t), dim[IR_MAX_RANK];
    for (int r = 0; r < t->rank; r++) dim[r] = t->dim[r];
    float *v = malloc(sizeof(float) * (size_t)(k ? k : 1));
    for (int64_t j = 0; j < k; j++) v[j] = (float)acc[o][j];
    rt_tensors_add(out, g->outs[o].name, RT_F32, t->rank, dim, v, &err);
    free(v);
  }
  rt_meta_set(out, "spec", path);
  rt_meta_set(out, "backend", backend);
  if (opath && rt_st_write(opath, out, &err)) goto fail;
  char timing[64] = "";
  if (cg) snprintf(timing, sizeof timing, "compile %.0f ms, ", compile_ms);
  printf("%s: B=%d n=%d loss %.6f, %d gradients (%s, %srun %.1f ms)%s%s\n",
         path, B, n, loss, m->n_params, backend, timing, ms,
         opath ? ", wrote " : "", opath ? opath : "");
  status = 0;
  goto done;
fail:
  fprintf(stderr, "recall exec: %s\n", err.msg);
done:
  if (acc)
    for (int o = 0; o < g->n_outs; o++) free(acc[o]);
  free(acc);
  free(b.fixed);
  free(owned_v);
  cg_free(cg);
  ir_func_free(g);
  fe_model_free(m);
  rt_tensors_free(w);
  rt_tensors_free(tk);
  rt_tensors_free(out);
out:
  cli_settings_free(&set);
  return status;
}
