/* cmd_check.c — `recall check MODEL.lua`: is the model's gradient right,
 * and does the machine code compute what the reference interpreter does?
 *
 * With the spec's own initialisation and a few random AR examples:
 *  1. the IR verifier on every stage the runtime builds (the spec at L,
 *     its autodiff, the training and evaluation kernels' functions, the
 *     spec at a padded length and at its bucket);
 *  2. autodiff against finite differences of the mean loss, both on the
 *     interpreter in float64, for every parameter (a sample of entries of
 *     the big ones);
 *  3. the optimised training function against the autodiff function, on
 *     the interpreter in float64 (the compiler's passes);
 *  4. the JIT kernels the runtime really runs (rt_model_train_batch, and
 *     rt_model_eval_batch at L and at a length run padded on its bucket)
 *     against the interpreter in float32 on the unoptimised functions.
 * Prints a table; exit 0 when everything is within tolerance, 1 naming
 * each failure. */
#include "cmd_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
  fputs(
      "usage: recall check MODEL.lua [--set k=v ...] [--seed S] [--examples B]\n"
      "                    [--samples N] [--tol fd|jit|passes=R ...]\n"
      "Checks MODEL.lua with its own initialisation on B random AR examples\n"
      "(default 4) at the sizes `recall train` would use (--set as there):\n"
      "  verifier  the IR verifier on every stage (frontend, autodiff, kernels)\n"
      "  gradient  autodiff vs central finite differences (Richardson-\n"
      "            extrapolated) of the mean loss, float64 interpreter, for\n"
      "            every parameter: all entries, or N of them (default 16:\n"
      "            the largest gradients and a random rest; 0: all)\n"
      "  passes    the optimised training function vs the autodiff one\n"
      "            (float64 interpreter)\n"
      "  jit       the JIT kernels the runtime runs (training; evaluation at\n"
      "            L and at a length padded to its bucket) vs the float32\n"
      "            interpreter: logits, loss and every gradient\n"
      "Errors are relative to each tensor's size: finite differences\n"
      "|ad - fd|_2 / |fd|_2 over the entries checked (pass if |ad - fd|_2 <=\n"
      "fd * |fd|_2 + 1e-10 * max(1, loss) * sqrt(entries / 16), a floor for the\n"
      "rounding of the float64 loss), JIT and passes max |a - b| / max(max |b|,\n"
      "1e-6). Tolerances (--tol): fd 1e-6, jit 1e-5, passes 1e-9.\n"
      "Exit 0 when all pass, 1 otherwise (each failure named on stderr).\n",
      out);
}

enum { MAX_FAILS = 64 };

typedef struct {
  cm_run r;
  rt_model *rm;
  int L, K, B, samples;
  double tol_fd, tol_jit, tol_passes;
  int32_t *tok, *lab;   /* [B, L] */
  int n_pad, bucket;    /* a padded evaluation length and its bucket; 0: none */
  int32_t *ptok, *plab; /* [B, n_pad] */
  double *theta;        /* the params as doubles (finite differences move them) */
  double *V;            /* embedding.weight, as the runtime binds it */
  ir_func *g, *train, *fpad; /* autodiff at L, the training function, spec at n_pad */
  int name_w;           /* width of the name column */
  int n_fail;
  char *fails[MAX_FAILS];
  int n_checked;        /* comparisons made */
  double worst_fd, worst_jit;
  int n_noise;          /* finite-difference rows passed by the noise floor */
} checker;

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) abort();
  return p;
}

/* Records a failure: the tables say FAIL, stderr gets each message at the
 * end. */
static void fail(checker *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(checker *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (c->n_fail < MAX_FAILS && !(c->fails[c->n_fail] = strdup(buf))) abort();
  c->n_fail++;
}

/* ---- the interpreter over a batch ---- */

/* A function's leaves bound for ir_interp: params point into c->theta. */
typedef struct {
  const ir_func *f;
  double **leaves; /* by node id */
  double *tok, pos, label, seed;
  int n;           /* tokens' length */
} ibind;

static void ibind_free(ibind *b) {
  free(b->leaves);
  free(b->tok);
  memset(b, 0, sizeof *b);
}

static int ibind_init(ibind *b, checker *c, const ir_func *f, ir_error *err) {
  memset(b, 0, sizeof *b);
  b->f = f;
  b->leaves = xcalloc((size_t)f->n_nodes, sizeof *b->leaves);
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *nd = &f->nodes[v];
    if (nd->op == IR_OP_PARAM) {
      int p = rt_model_find_param(c->rm, nd->name);
      if (p < 0 || !ir_type_eq(&nd->type, &rt_model_param(c->rm, p)->type)) {
        ir_err(err, "param \"%s\" is not the model's at L", nd->name);
        goto fail;
      }
      b->leaves[v] = c->theta + rt_model_param(c->rm, p)->offset;
    } else if (nd->op == IR_OP_CONST && !nd->data) {
      if (strcmp(nd->name, "embedding.weight") || !c->V) {
        ir_err(err, "const \"%s\" has no data", nd->name);
        goto fail;
      }
      b->leaves[v] = c->V;
    } else if (nd->op == IR_OP_INPUT) {
      if (!strcmp(nd->name, "tokens")) {
        b->n = (int)ir_numel(&nd->type);
        b->tok = xcalloc((size_t)b->n, sizeof *b->tok);
        b->leaves[v] = b->tok;
      } else if (!strcmp(nd->name, "pos")) {
        b->leaves[v] = &b->pos;
      } else if (!strcmp(nd->name, "label")) {
        b->leaves[v] = &b->label;
      } else if (!strcmp(nd->name, "grad.loss")) {
        b->leaves[v] = &b->seed;
      } else {
        ir_err(err, "unexpected input \"%s\"", nd->name);
        goto fail;
      }
    }
  }
  return 0;
fail:
  ibind_free(b);
  return -1;
}

/* Runs B examples (tokens [B, n], read at n-1, upstream gradient 1/B)
 * through b->f. sums[j] (numel of output j, zeroed here) gets output j
 * summed over the batch, so grad.* are gradients of the mean loss;
 * logits [B, K] per example if non-NULL. */
static int interp_batch(ibind *b, ir_precision prec, const int32_t *tok,
                        const int32_t *lab, int B, int n, double **sums,
                        double *logits, ir_error *err) {
  const ir_func *f = b->f;
  int jl = ir_find_output(f, "logits");
  for (int j = 0; j < f->n_outs; j++)
    memset(sums[j], 0, sizeof(double) * (size_t)ir_numel(&f->nodes[f->outs[j].node].type));
  for (int e = 0; e < B; e++) {
    for (int t = 0; t < b->n; t++) b->tok[t] = t < n ? tok[(size_t)e * (size_t)n + (size_t)t] : 0;
    b->pos = n - 1, b->label = lab[e], b->seed = 1.0 / B;
    double **v = ir_interp(f, prec, (const double *const *)b->leaves, err);
    if (!v) return -1;
    for (int j = 0; j < f->n_outs; j++) {
      const double *x = v[f->outs[j].node];
      int64_t k = ir_numel(&f->nodes[f->outs[j].node].type);
      for (int64_t i = 0; i < k; i++) sums[j][i] += x[i];
      if (j == jl && logits) memcpy(logits + (size_t)e * (size_t)k, x, sizeof(double) * (size_t)k);
    }
    ir_values_free(f, v);
  }
  return 0;
}

static double **outs_new(const ir_func *f) {
  double **s = xcalloc((size_t)f->n_outs, sizeof *s);
  for (int j = 0; j < f->n_outs; j++)
    s[j] = xcalloc((size_t)ir_numel(&f->nodes[f->outs[j].node].type), sizeof(double));
  return s;
}

static void outs_free(const ir_func *f, double **s) {
  for (int j = 0; s && j < f->n_outs; j++) free(s[j]);
  free(s);
}

/* ---- comparisons ---- */

typedef struct {
  double abs, rel; /* max |a - b|, that over max(max |b|, 1e-6) */
  int64_t at;      /* where the max is */
} diff;

static diff compare(const double *a, const double *b, int64_t n) {
  diff d = {0, 0, 0};
  double scale = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs(a[i] - b[i]);
    if (isnan(e)) return (diff){NAN, NAN, i}; /* a NaN fails, named */
    if (e > d.abs) d.abs = e, d.at = i;
    scale = fmax(scale, fabs(b[i]));
  }
  d.rel = d.abs / fmax(scale, 1e-6);
  return d;
}

/* One row of the JIT or passes table; records a failure. */
static void report(checker *c, const char *what, const char *name,
                   const double *got, const double *want, int64_t n, double tol,
                   bool jit) {
  diff d = compare(got, want, n);
  bool ok = d.rel <= tol;
  c->n_checked++;
  if (jit) c->worst_jit = fmax(c->worst_jit, isnan(d.rel) ? INFINITY : d.rel);
  printf("  %-*s %10.2e %10.2e  %s\n", c->name_w, name, d.abs, d.rel, ok ? "ok" : "FAIL");
  if (!ok)
    fail(c, "%s: %s: relative error %.3g > %g (worst at [%lld]: %.9g, interpreter %.9g)",
         what, name, d.rel, tol, (long long)d.at, got[d.at], want[d.at]);
  fflush(stdout);
}

/* ---- 1. the verifier on every stage ---- */

static void verify_row(checker *c, const char *stage, const ir_func *f,
                       const char *why) {
  ir_error err = {{0}};
  if (!f) {
    printf("  %-34s FAIL: %s\n", stage, why);
    fail(c, "verifier: %s could not be built: %s", stage, why);
    return;
  }
  if (ir_verify(f, &err) < 0) {
    printf("  %-34s FAIL: %s\n", stage, err.msg);
    fail(c, "verifier: %s: %s", stage, err.msg);
    return;
  }
  printf("  %-34s ok  %6d nodes\n", stage, f->n_nodes);
}

static void stage_verify(checker *c) {
  const ir_func *f = rt_model_function(c->rm);
  ir_error err = {{0}};
  char s[96];
  printf("verifier (ir_verify on each stage)\n");
  snprintf(s, sizeof s, "frontend, n = %d", c->L);
  verify_row(c, s, f, NULL);
  c->g = ad_grad(f, "loss", &err);
  verify_row(c, "autodiff", c->g, err.msg);
  c->train = rt_model_kernel_function(f, true, &err);
  verify_row(c, "training kernel function", c->train, err.msg);
  ir_func *k = rt_model_kernel_function(f, false, &err);
  snprintf(s, sizeof s, "evaluation kernel function, n = %d", c->L);
  verify_row(c, s, k, err.msg);
  ir_func_free(k);
  if (!c->n_pad) return;
  c->fpad = cm_spec_at(&c->r, c->n_pad, &err);
  snprintf(s, sizeof s, "frontend, n = %d", c->n_pad);
  verify_row(c, s, c->fpad, err.msg);
  ir_func *fb = cm_spec_at(&c->r, c->bucket, &err);
  snprintf(s, sizeof s, "frontend, n = %d (bucket)", c->bucket);
  verify_row(c, s, fb, err.msg);
  if (fb) {
    k = rt_model_kernel_function(fb, false, &err);
    snprintf(s, sizeof s, "evaluation kernel function, n = %d", c->bucket);
    verify_row(c, s, k, err.msg);
    ir_func_free(k);
  }
  ir_func_free(fb);
}

/* ---- 2. autodiff against finite differences ---- */

/* The mean loss of the batch at L through the forward function. */
static double mean_loss(checker *c, ibind *fb, double **sums, int jo, ir_error *err) {
  if (interp_batch(fb, IR_PREC_F64, c->tok, c->lab, c->B, c->L, sums, NULL, err) < 0)
    return NAN;
  return sums[jo][0] / c->B;
}

/* Entries of a param to check: all of them, or the samples/2 with the
 * largest |gradient| and a random rest (so a wrong gradient that is large
 * somewhere cannot hide, and zero regions are visited too). */
static int pick_entries(checker *c, const double *ad, int64_t numel, int pidx, int64_t *out) {
  if (c->samples <= 0 || numel <= c->samples) {
    for (int64_t i = 0; i < numel; i++) out[i] = i;
    return (int)numel;
  }
  int64_t *idx = xcalloc((size_t)numel, sizeof *idx);
  for (int64_t i = 0; i < numel; i++) idx[i] = i;
  int k = 0, top = c->samples / 2;
  for (; k < top; k++) { /* selection of the largest */
    int64_t best = k;
    for (int64_t i = k + 1; i < numel; i++)
      if (fabs(ad[idx[i]]) > fabs(ad[idx[best]])) best = i;
    int64_t t = idx[k]; idx[k] = idx[best]; idx[best] = t;
  }
  rt_rng g;
  rt_rng_init(&g, c->r.train.seed, RT_STREAM_INIT + 0x1000000u + (uint64_t)pidx, 0);
  for (; k < c->samples; k++) { /* partial Fisher-Yates over the rest */
    int64_t j = k + (int64_t)rt_rng_below(&g, (uint32_t)(numel - k));
    int64_t t = idx[k]; idx[k] = idx[j]; idx[j] = t;
  }
  memcpy(out, idx, sizeof *out * (size_t)c->samples);
  free(idx);
  return c->samples;
}

static void stage_fd(checker *c) {
  const ir_func *f = rt_model_function(c->rm);
  ir_error err = {{0}};
  printf("\ngradient: autodiff vs finite differences (float64 interpreter, "
         "tolerance %g)\n", c->tol_fd);
  if (!c->g) {
    printf("  skipped: no autodiff function\n");
    return;
  }
  ibind gb, fb;
  if (ibind_init(&gb, c, c->g, &err) < 0 || ibind_init(&fb, c, f, &err) < 0) {
    fail(c, "gradient: %s", err.msg);
    return;
  }
  double **gs = outs_new(c->g), **fs = outs_new(f);
  int jo = ir_find_output(f, "loss");
  int64_t *pick = NULL;
  if (interp_batch(&gb, IR_PREC_F64, c->tok, c->lab, c->B, c->L, gs, NULL, &err) < 0) {
    fail(c, "gradient: interpreter: %s", err.msg);
    goto out;
  }
  double loss = gs[ir_find_output(c->g, "loss")][0] / c->B;
  printf("  %-*s %-12s %9s %10s %10s\n", c->name_w, "parameter", "shape", "entries",
         "|fd|", "rel err");
  int np = rt_model_n_params(c->rm);
  for (int p = 0; p < np; p++) {
    const rt_param *rp = rt_model_param(c->rm, p);
    char gname[300], shape[64];
    snprintf(gname, sizeof gname, "grad.%s", rp->name);
    int jg = ir_find_output(c->g, gname);
    if (jg < 0) {
      fail(c, "gradient: autodiff has no output %s", gname);
      continue;
    }
    const double *ad = gs[jg];
    free(pick);
    pick = xcalloc(rp->numel, sizeof *pick);
    int k = pick_entries(c, ad, (int64_t)rp->numel, p, pick);
    double num = 0, den = 0, worst = -1, wfd = 0, wad = 0;
    int64_t wat = 0;
    for (int s = 0; s < k; s++) {
      double *x = c->theta + rp->offset + pick[s], x0 = *x;
      double h = 1e-3 * fmax(1, fabs(x0)), D[2];
      for (int r = 0; r < 2; r++, h /= 2) {
        *x = x0 + h;
        double lp = mean_loss(c, &fb, fs, jo, &err);
        *x = x0 - h;
        double lm = mean_loss(c, &fb, fs, jo, &err);
        D[r] = (lp - lm) / (2 * h);
      }
      *x = x0;
      double fd = (4 * D[1] - D[0]) / 3, a = ad[pick[s]];
      num += (a - fd) * (a - fd);
      den += fd * fd;
      if (!(fabs(a - fd) <= worst) && !isnan(worst))
        worst = fabs(a - fd), wat = pick[s], wfd = fd, wad = a;
    }
    if (err.msg[0]) {
      fail(c, "gradient: interpreter: %s", err.msg);
      break;
    }
    /* The floor: far above the float64 loss's rounding seen through the
     * differences (about 1e-12 here), far below a wrong gradient. */
    double e = sqrt(num), nf = sqrt(den), rel = nf > 0 ? e / nf : e > 0 ? INFINITY : 0;
    double floor_ = 1e-10 * fmax(1, fabs(loss)) * sqrt(k / 16.0);
    bool ok = e <= c->tol_fd * nf + floor_, noise = ok && !(rel <= c->tol_fd);
    c->n_checked++;
    c->n_noise += noise;
    if (!noise) c->worst_fd = fmax(c->worst_fd, isnan(rel) ? INFINITY : rel);
    char cnt[32];
    snprintf(cnt, sizeof cnt, "%d/%zu", k, rp->numel);
    printf("  %-*s %-12s %9s %10.2e %10.2e  %s\n", c->name_w, rp->name,
           ir_type_str(&rp->type, shape, sizeof shape), cnt, nf, rel,
           noise ? "ok (rounding noise)" : ok ? "ok" : "FAIL");
    fflush(stdout);
    if (!ok)
      fail(c, "gradient of %s: autodiff and finite differences differ, relative "
           "error %.3g > %g (worst at [%lld]: autodiff %.9g, finite difference %.9g; "
           "a relu or max exactly at its kink also does this: try another --seed)",
           rp->name, rel, c->tol_fd, (long long)wat, wad, wfd);
  }
out:
  free(pick);
  outs_free(c->g, gs);
  outs_free(f, fs);
  ibind_free(&gb);
  ibind_free(&fb);
}

/* ---- 3. the passes: optimised training function vs autodiff ---- */

static void stage_passes(checker *c) {
  ir_error err = {{0}};
  printf("\npasses: optimised training function vs autodiff (float64 "
         "interpreter, tolerance %g)\n", c->tol_passes);
  if (!c->g || !c->train) {
    printf("  skipped: a function is missing\n");
    return;
  }
  ibind gb, tb;
  if (ibind_init(&gb, c, c->g, &err) < 0 || ibind_init(&tb, c, c->train, &err) < 0) {
    fail(c, "passes: %s", err.msg);
    return;
  }
  double **gs = outs_new(c->g), **ts = outs_new(c->train);
  size_t nl = (size_t)c->B * (size_t)c->K;
  double *gl = xcalloc(nl, sizeof *gl), *tl = xcalloc(nl, sizeof *tl);
  if (interp_batch(&gb, IR_PREC_F64, c->tok, c->lab, c->B, c->L, gs, gl, &err) < 0 ||
      interp_batch(&tb, IR_PREC_F64, c->tok, c->lab, c->B, c->L, ts, tl, &err) < 0) {
    fail(c, "passes: interpreter: %s", err.msg);
  } else {
    printf("  %-*s %10s %10s\n", c->name_w, "output", "max abs", "rel err");
    for (int j = 0; j < c->g->n_outs; j++) {
      const char *name = c->g->outs[j].name;
      int jt = ir_find_output(c->train, name);
      if (jt < 0) {
        fail(c, "passes: the training function has no output %s", name);
        continue;
      }
      if (!strcmp(name, "logits")) /* per example, not their sum */
        report(c, "passes", "logits", tl, gl, (int64_t)nl, c->tol_passes, false);
      else
        report(c, "passes", name, ts[jt], gs[j],
               ir_numel(&c->g->nodes[c->g->outs[j].node].type), c->tol_passes, false);
    }
  }
  free(gl), free(tl);
  outs_free(c->g, gs);
  outs_free(c->train, ts);
  ibind_free(&gb);
  ibind_free(&tb);
}

/* ---- 4. the runtime's JIT kernels vs the interpreter ---- */

static double *to_double(const float *x, size_t n) {
  double *d = xcalloc(n, sizeof *d);
  for (size_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}

/* Evaluation at length n (run on run_len) vs the interpreter on f. */
static void jit_eval(checker *c, const char *what, const ir_func *f, int n,
                     int run_len, const int32_t *tok, const int32_t *lab) {
  ir_error err = {{0}};
  ibind b;
  if (ibind_init(&b, c, f, &err) < 0) {
    fail(c, "%s: %s", what, err.msg);
    return;
  }
  size_t nl = (size_t)c->B * (size_t)c->K;
  float *lf = xcalloc(nl, sizeof *lf);
  double *want = xcalloc(nl, sizeof *want), **s = outs_new(f);
  rt_batch_stats st;
  if (rt_model_eval_batch(c->rm, n, run_len, tok, lab, c->B, lf, &st, &err) < 0) {
    fail(c, "%s: the kernel failed: %s", what, err.msg);
  } else if (interp_batch(&b, IR_PREC_F32, tok, lab, c->B, n, s, want, &err) < 0) {
    fail(c, "%s: interpreter: %s", what, err.msg);
  } else {
    double *got = to_double(lf, nl), loss = s[ir_find_output(f, "loss")][0] / c->B;
    char name[64];
    snprintf(name, sizeof name, "logits [%d,%d]", c->B, c->K);
    report(c, what, name, got, want, (int64_t)nl, c->tol_jit, true);
    report(c, what, "loss", &st.loss, &loss, 1, c->tol_jit, true);
    free(got);
  }
  free(lf), free(want);
  outs_free(f, s);
  ibind_free(&b);
}

static void stage_jit(checker *c) {
  ir_error err = {{0}};
  printf("\njit: the runtime's kernels vs the float32 interpreter (tolerance %g)\n",
         c->tol_jit);
  if (!c->g) {
    printf("  skipped: no autodiff function\n");
    return;
  }
  ibind b;
  if (ibind_init(&b, c, c->g, &err) < 0) {
    fail(c, "jit: %s", err.msg);
    return;
  }
  double **s = outs_new(c->g);
  rt_batch_stats st;
  printf("  %-*s %10s %10s\n", c->name_w, "training kernel", "max abs", "rel err");
  if (rt_model_train_batch(c->rm, c->tok, c->lab, c->B, &st, &err) < 0) {
    fail(c, "training kernel: %s", err.msg);
  } else if (interp_batch(&b, IR_PREC_F32, c->tok, c->lab, c->B, c->L, s, NULL, &err) < 0) {
    fail(c, "training kernel: interpreter: %s", err.msg);
  } else {
    double loss = s[ir_find_output(c->g, "loss")][0] / c->B;
    report(c, "training kernel", "loss", &st.loss, &loss, 1, c->tol_jit, true);
    for (int p = 0; p < rt_model_n_params(c->rm); p++) {
      const rt_param *rp = rt_model_param(c->rm, p);
      char gname[300];
      snprintf(gname, sizeof gname, "grad.%s", rp->name);
      int j = ir_find_output(c->g, gname);
      if (j < 0) continue; /* reported by the gradient stage */
      double *got = to_double(rt_model_grads(c->rm) + rp->offset, rp->numel);
      report(c, "training kernel", gname, got, s[j], (int64_t)rp->numel, c->tol_jit, true);
      free(got);
    }
  }
  outs_free(c->g, s);
  ibind_free(&b);
  char what[96];
  snprintf(what, sizeof what, "evaluation kernel, n = %d", c->L);
  printf("  %s\n", what);
  jit_eval(c, what, rt_model_function(c->rm), c->L, c->L, c->tok, c->lab);
  if (!c->n_pad || !c->fpad) return;
  snprintf(what, sizeof what, "evaluation kernel, n = %d padded to %d", c->n_pad, c->bucket);
  printf("  %s\n", what);
  jit_eval(c, what, c->fpad, c->n_pad, 0, c->ptok, c->plab);
}

/* ---- the command ---- */

static int parse_tol(checker *c, const char *arg) {
  const char *eq = strchr(arg, '=');
  char *end;
  double v = eq ? strtod(eq + 1, &end) : NAN;
  if (!eq || end == eq + 1 || *end || !(v >= 0) || isinf(v)) goto bad;
  size_t k = (size_t)(eq - arg);
  if (k == 2 && !strncmp(arg, "fd", 2)) c->tol_fd = v;
  else if (k == 3 && !strncmp(arg, "jit", 3)) c->tol_jit = v;
  else if (k == 6 && !strncmp(arg, "passes", 6)) c->tol_passes = v;
  else goto bad;
  return 0;
bad:
  cli_error("check", "--tol expects fd=R, jit=R or passes=R (R >= 0), got '%s'", arg);
  return -1;
}

static int parse_count(const char *opt, const char *s, int lo, int hi, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (end == s || *end || v < lo || v > hi) {
    cli_error("check", "%s takes a count %d..%d, got '%s'", opt, lo, hi, s);
    return -1;
  }
  *out = (int)v;
  return 0;
}

/* A length whose bucket is longer (the padded path): the first past L,
 * else the first below it; 0 if every length has its own bucket. */
static int padded_length(checker *c) {
  for (int n = c->L + 1; n <= 3 * c->L; n++)
    if (rt_model_bucket(c->rm, n) > n) return n;
  for (int n = c->r.train.tau + 2; n < c->L; n++)
    if (rt_model_bucket(c->rm, n) > n) return n;
  return 0;
}

static void checker_free(checker *c) {
  free(c->tok), free(c->lab), free(c->ptok), free(c->plab);
  free(c->theta), free(c->V);
  ir_func_free(c->g), ir_func_free(c->train), ir_func_free(c->fpad);
  for (int i = 0; i < c->n_fail && i < MAX_FAILS; i++) free(c->fails[i]);
  cm_free(&c->r);
}

static int setup(checker *c) {
  c->rm = c->r.rm;
  c->L = c->r.L, c->K = rt_model_K(c->rm);
  size_t np = rt_model_size(c->rm);
  c->theta = xcalloc(np, sizeof *c->theta);
  for (size_t i = 0; i < np; i++) c->theta[i] = rt_model_params(c->rm)[i];
  const ir_func *f = rt_model_function(c->rm);
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *nd = &f->nodes[v];
    if (nd->op == IR_OP_CONST && !nd->data && !strcmp(nd->name, "embedding.weight")) {
      int K = nd->type.dim[0], d = nd->type.dim[1];
      float *Vf = xcalloc((size_t)K * (size_t)d, sizeof *Vf);
      rt_embedding_V(K, d, Vf);
      c->V = to_double(Vf, (size_t)K * (size_t)d);
      free(Vf);
    }
  }
  c->name_w = 24;
  for (int p = 0; p < rt_model_n_params(c->rm); p++) {
    int w = (int)strlen(rt_model_param(c->rm, p)->name) + 5;
    if (w > c->name_w) c->name_w = w;
  }
  ir_error err;
  rt_ar_task task = {c->K, c->r.train.M, c->r.train.tau, c->L};
  c->tok = xcalloc((size_t)c->B * (size_t)c->L, sizeof *c->tok);
  c->lab = xcalloc((size_t)c->B, sizeof *c->lab);
  if (rt_ar_validate(task.K, task.M, task.tau, task.n, &err) < 0 ||
      rt_ar_batch(c->r.train.seed, RT_STREAM_TEST, 0, c->B, &task, c->tok, c->lab) < 0) {
    cli_error("check", "%s", err.msg);
    return -1;
  }
  if ((c->n_pad = padded_length(c))) {
    c->bucket = rt_model_bucket(c->rm, c->n_pad);
    task.n = c->n_pad;
    c->ptok = xcalloc((size_t)c->B * (size_t)c->n_pad, sizeof *c->ptok);
    c->plab = xcalloc((size_t)c->B, sizeof *c->plab);
    rt_ar_batch(c->r.train.seed, RT_STREAM_SWEEP + (uint64_t)c->n_pad, 0, c->B, &task,
                c->ptok, c->plab);
  }
  return 0;
}

int cmd_check(int argc, char **argv) {
  const char *spec = NULL;
  cli_settings set = {0};
  checker c = {.B = 4, .samples = 16, .tol_fd = 1e-6, .tol_jit = 1e-5, .tol_passes = 1e-9};
  char seedset[64];
  int status = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool more = i + 1 < argc;
    if (!strcmp(a, "--set") && more) {
      if (!cli_add_setting(&set, argv[++i])) {
        cli_error("check", "--set expects k=v, got '%s'", argv[i]);
        goto out;
      }
    } else if (!strcmp(a, "--seed") && more) {
      snprintf(seedset, sizeof seedset, "seed=%s", argv[++i]);
      cli_add_setting(&set, seedset);
    } else if (!strcmp(a, "--examples") && more) {
      if (parse_count(a, argv[++i], 1, 4096, &c.B) < 0) goto out;
    } else if (!strcmp(a, "--samples") && more) {
      if (parse_count(a, argv[++i], 0, 1 << 30, &c.samples) < 0) goto out;
    } else if (!strcmp(a, "--tol") && more) {
      if (parse_tol(&c, argv[++i]) < 0) goto out;
    } else {
      int k = cli_positional("check", a, &spec, usage);
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
  if (cm_setup(&c.r, "check", spec, set.keys, set.values, set.n) < 0 ||
      cm_model(&c.r, RT_BACKEND_JIT, 1, true) < 0 || setup(&c) < 0)
    goto done;
  printf("recall check %s:", c.r.spec);
  for (int i = 0; i < c.r.n_m; i++) printf(" %s=%s", c.r.mkeys[i], c.r.mvals[i]);
  printf("\n  seed %llu, %d AR examples (M=%d, tau=%d) at L=%d", (unsigned long long)c.r.train.seed,
         c.B, c.r.train.M, c.r.train.tau, c.L);
  if (c.n_pad) printf(" and at n=%d (bucket %d)", c.n_pad, c.bucket);
  printf(", %d parameters (%zu values)\n\n", rt_model_n_params(c.rm), rt_model_size(c.rm));
  fflush(stdout);
  stage_verify(&c);
  stage_fd(&c);
  stage_passes(&c);
  stage_jit(&c);
  if (c.n_fail == 0) {
    printf("\ncheck passed: %d comparisons; worst relative error: finite differences "
           "%.2g (tolerance %g", c.n_checked, c.worst_fd, c.tol_fd);
    if (c.n_noise)
      printf("; %d tiny gradient%s within rounding noise", c.n_noise, c.n_noise > 1 ? "s" : "");
    printf("), JIT %.2g (tolerance %g)\n", c.worst_jit, c.tol_jit);
    status = 0;
  } else {
    printf("\ncheck FAILED: %d problem%s\n", c.n_fail, c.n_fail == 1 ? "" : "s");
    fflush(stdout);
    for (int i = 0; i < c.n_fail && i < MAX_FAILS; i++)
      fprintf(stderr, "recall check: %s: %s\n", c.r.spec, c.fails[i]);
    if (c.n_fail > MAX_FAILS)
      fprintf(stderr, "recall check: ... and %d more\n", c.n_fail - MAX_FAILS);
  }
done:
  checker_free(&c);
out:
  cli_settings_free(&set);
  return status;
}
