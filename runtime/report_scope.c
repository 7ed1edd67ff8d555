/* report_scope.c — the runs one report covers, grouped by task (problem,
 * K, L, M, tau, d) and cut into curves, one per model with its seeds
 * pooled: accuracy by length and test accuracy by step as mean, min and
 * max, the lengths a curve holds, steps to converge, and whether a model
 * only predicts a constant. */
#include "report_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------
 * Constant predictors. A model that always answers label c scores, at
 * each length, exactly the frequency of c among that length's sweep
 * labels; the sweep data are regenerated here (rt_ar_batch with the
 * run's seed on stream RT_STREAM_SWEEP + length) to check for it.
 * --------------------------------------------------------------------- */

static const int *label_counts(label_cache *lc, const run *r, int len, int nseq) {
  labels *l = NULL;
  for (int i = 0; i < lc->n && !l; i++) {
    labels *x = &lc->l[i];
    if (x->seed == r->seed && x->K == r->K && x->M == r->M &&
        x->tau == r->tau && x->nseq == nseq)
      l = x;
  }
  if (!l) {
    labels x = {r->seed, r->K, r->M, r->tau, nseq, -1, NULL};
    PUSH(lc->l, lc->n, lc->cap, x);
    l = &lc->l[lc->n - 1];
  }
  if (len > l->cap) {
    l->count = rp_xrealloc(l->count, sizeof *l->count * (size_t)(len + 1) * (size_t)l->K);
    for (int i = (l->cap + 1) * l->K; i < (len + 1) * l->K; i++) l->count[i] = -1;
    l->cap = len;
  }
  int *cnt = l->count + (size_t)len * (size_t)l->K;
  if (cnt[0] < 0) {
    rt_ar_task task = {r->K, r->M, r->tau, len};
    ir_error e;
    if (r->seed < 0 || rt_ar_validate(r->K, r->M, r->tau, len, &e) < 0) return NULL;
    int32_t *tok = rp_xrealloc(NULL, sizeof *tok * (size_t)nseq * (size_t)len);
    int32_t *lab = rp_xrealloc(NULL, sizeof *lab * (size_t)nseq);
    rt_ar_batch((uint64_t)r->seed, RT_STREAM_SWEEP + (uint64_t)len, 0, nseq,
                &task, tok, lab);
    memset(cnt, 0, sizeof *cnt * (size_t)l->K);
    for (int i = 0; i < nseq; i++) cnt[lab[i]]++;
    free(tok), free(lab);
  }
  return cnt;
}

void rp_label_cache_free(label_cache *lc) {
  for (int i = 0; i < lc->n; i++) free(lc->l[i].count);
  free(lc->l);
}

/* The label r predicts at every length, or -1. Only runs scoring near
 * chance everywhere are checked (the others cannot be constant). */
static int constant_label(label_cache *lc, const run *r) {
  if (r->n_sw == 0 || r->sw[0].n <= 0) return -1;
  int K = r->K, nseq = r->sw[0].n, left = K;
  for (int i = 0; i < r->n_sw; i++)
    if (r->sw[i].acc > 1.0 / K + 0.2 || r->sw[i].n != nseq) return -1;
  bool *cand = rp_xrealloc(NULL, (size_t)K);
  memset(cand, 1, (size_t)K);
  for (int i = 0; i < r->n_sw && left > 0; i++) {
    double hits = r->sw[i].acc * nseq;
    const int *cnt = label_counts(lc, r, r->sw[i].len, nseq);
    if (!cnt || fabs(hits - round(hits)) > 1e-6) left = 0;
    for (int c = 0; c < K && left > 0; c++)
      if (cand[c] && cnt[c] != (int)round(hits)) cand[c] = false, left--;
  }
  int c = 0;
  while (left > 0 && !cand[c]) c++;
  free(cand);
  return left > 0 ? c : -1;
}

/* ---------------------------------------------------------------------
 * Scope: the runs one report covers, grouped by task and cut into curves
 * (one per model, seeds pooled), with their statistics
 * --------------------------------------------------------------------- */

typedef struct {
  long x;
  double y;
} xy;

static const agg *agg_at(const agg *a, int n, long x) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (a[mid].x == x) return &a[mid];
    if (a[mid].x < x) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

const agg *rp_acc_at(const curve *c, long len) {
  return agg_at(c->acc, c->n_acc, len);
}

static int cmp_xy(const void *a, const void *b) {
  long x = ((const xy *)a)->x, y = ((const xy *)b)->x;
  return (x > y) - (x < y);
}

/* Mean, min and max of y at each x (pts sorted here). */
static agg *aggregate(xy *pts, int n, int *n_out) {
  rp_sort_n(pts, (size_t)n, sizeof *pts, cmp_xy);
  agg *a = rp_xrealloc(NULL, sizeof *a * (size_t)n);
  int m = 0;
  for (int i = 0; i < n;) {
    agg g = {pts[i].x, 0, pts[i].y, pts[i].y, 0};
    for (; i < n && pts[i].x == g.x; i++) {
      g.mean += pts[i].y, g.k++;
      if (pts[i].y < g.lo) g.lo = pts[i].y;
      if (pts[i].y > g.hi) g.hi = pts[i].y;
    }
    g.mean /= g.k;
    a[m++] = g;
  }
  *n_out = m;
  return a;
}

/* Convergence: a run that stopped because it reached its target keeps its
 * last accuracy for the later steps of the other seeds, so the mean does
 * not dip when the fastest seed stops. */
static void conv_curve(curve *c) {
  int n = 0, cap = 0, n_steps = 0, cap_steps = 0;
  xy *pts = NULL;
  long *steps = NULL;
  for (int i = 0; i < c->n_runs; i++)
    for (int j = 0; j < c->runs[i]->n_cv; j++) {
      xy p = {c->runs[i]->cv[j].step, c->runs[i]->cv[j].acc};
      PUSH(pts, n, cap, p);
      PUSH(steps, n_steps, cap_steps, p.x);
    }
  for (int i = 0; i < c->n_runs; i++) {
    const run *r = c->runs[i];
    if (!r->n_cv || !rp_eq(r->status, "reached")) continue;
    const cv_pt *last = &r->cv[r->n_cv - 1];
    for (int j = 0; j < n_steps; j++) {
      bool dup = false; /* each later step once */
      for (int k = 0; k < j && !dup; k++) dup = steps[k] == steps[j];
      if (steps[j] > last->step && !dup) {
        xy p = {steps[j], last->acc};
        PUSH(pts, n, cap, p);
      }
    }
  }
  c->conv = n ? aggregate(pts, n, &c->n_conv) : NULL;
  free(pts), free(steps);
}

static void curve_stats(curve *c, int K, int L) {
  int n = 0, cap = 0;
  xy *pts = NULL;
  for (int i = 0; i < c->n_runs; i++)
    for (int j = 0; j < c->runs[i]->n_sw; j++) {
      xy p = {c->runs[i]->sw[j].len, c->runs[i]->sw[j].acc};
      PUSH(pts, n, cap, p);
    }
  c->acc = aggregate(pts, n, &c->n_acc);
  free(pts);
  conv_curve(c);
  /* The run of lengths around L where the mean holds HOLD. */
  const agg *aL = rp_acc_at(c, L);
  c->hold_hi = c->hold_lo = -1, c->drop = c->below = 0;
  if (aL && aL->mean >= HOLD) {
    int i = (int)(aL - c->acc), j = i;
    while (j + 1 < c->n_acc && c->acc[j + 1].mean >= HOLD) j++;
    c->hold_hi = (int)c->acc[j].x;
    c->drop = j + 1 < c->n_acc ? (int)c->acc[j + 1].x : 0;
    j = i;
    while (j > 0 && c->acc[j - 1].mean >= HOLD) j--;
    c->hold_lo = (int)c->acc[j].x;
    c->below = j > 0 ? (int)c->acc[j - 1].x : 0;
  }
  c->chance = c->n_acc > 0;
  double sum = 0;
  int nb = 0;
  for (int i = 0; i < c->n_acc; i++) {
    if (fabs(c->acc[i].mean - 1.0 / K) > NEAR) c->chance = false;
    if (c->acc[i].x > L) sum += c->acc[i].mean, nb++;
  }
  c->beyond = nb ? sum / nb : NAN;
  c->fast_mean = 0, c->fast_n = 0, c->max_steps = 0;
  for (int i = 0; i < c->n_runs; i++) {
    const run *r = c->runs[i];
    if (r->first_fast >= 0) c->fast_mean += (double)r->first_fast, c->fast_n++;
    long ms = r->max_steps ? r->max_steps : r->n_cv ? r->cv[r->n_cv - 1].step : 0;
    if (ms > c->max_steps) c->max_steps = ms;
  }
  if (c->fast_n) c->fast_mean /= c->fast_n;
  c->constant = -1, c->n_constant = 0;
  for (int i = 0; i < c->n_runs; i++) {
    int t = c->runs[i]->constant;
    if (t < 0) continue;
    c->constant = c->n_constant++ == 0 ? t : c->constant == t ? t : -2;
  }
  if (c->n_constant < c->n_runs) c->constant = -1;
}

/* Columns that key a group, or that seeds pool over: not part of a label. */
static bool label_col(const char *k) {
  static const char *const skip[] = {"run", "experiment", "problem", "model", "spec",
                                     "K", "L", "M", "tau", "d", "seed", "steps",
                                     "reached_step", "status"};
  for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
    if (!strcmp(k, skip[i])) return false;
  return true;
}

/* The model's name, plus "col=value" for each other option that varies
 * among the model's runs in this group (an lr sweep: "mamba lr=0.003"). */
static char *run_label(const scope *s, const run *r, run *const *in_group, int n) {
  rt_buf b = {0};
  rt_buf_printf(&b, "%s", r->model ? r->model : "?");
  for (int i = 0; i < s->n_cols; i++) {
    const char *k = s->cols[i], *v = rp_run_get(r, k);
    if (!label_col(k)) continue;
    bool varies = false;
    for (int j = 0; j < n && !varies; j++)
      varies = rp_eq(in_group[j]->model, r->model) && !rp_eq(rp_run_get(in_group[j], k), v);
    if (varies) rt_buf_printf(&b, " %s=%s", k, v ? v : "");
  }
  return b.s;
}

static int cmp_group(const void *a, const void *b) {
  const group *x = *(group *const *)a, *y = *(group *const *)b;
  int c = strcmp(x->problem ? x->problem : "", y->problem ? y->problem : "");
  if (c) return c;
  int kx[5] = {x->K, x->L, x->d, x->M, x->tau}, ky[5] = {y->K, y->L, y->d, y->M, y->tau};
  for (int i = 0; i < 5; i++)
    if (kx[i] != ky[i]) return kx[i] < ky[i] ? -1 : 1;
  return 0;
}

static const char *const PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                      "#7f7f7f", "#bcbd22"};
enum { N_PALETTE = sizeof PALETTE / sizeof *PALETTE, N_KNOWN = 5 };
/* The study's models keep their colour in every figure. */
static const char *const KNOWN[N_KNOWN] = {"mamba", "transformer-rope", "hybrid",
                                           "transformer-nope", "transformer-learned"};

static const char *label_color(const scope *s, const char *label) {
  int other = 0;
  for (int i = 0; i < N_KNOWN; i++)
    if (!strcmp(label, KNOWN[i])) return PALETTE[i];
  for (int i = 0; i < s->n_labels; i++) {
    bool known = false;
    for (int k = 0; k < N_KNOWN; k++) known |= !strcmp(s->labels[i], KNOWN[k]);
    if (!strcmp(s->labels[i], label)) break;
    if (!known) other++;
  }
  return PALETTE[(N_KNOWN + other) % N_PALETTE];
}

static void group_names(scope *s) {
  for (int i = 0; i < s->n_g; i++) {
    group *g = s->g[i];
    rt_buf slug = {0}, desc = {0};
    if (s->vary_problem && g->problem) {
      rt_buf_printf(&desc, "%s, ", g->problem);
      for (const char *p = g->problem; *p; p++)
        rt_buf_printf(&slug, "%c", strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._", *p) ? *p : '-');
      rt_buf_printf(&slug, "_");
    }
    rt_buf_printf(&desc, "M %d, tau %d", g->M, g->tau);
    rt_buf_printf(&slug, "M%d-tau%d", g->M, g->tau);
    if (g->d) rt_buf_printf(&desc, ", d %d", g->d), rt_buf_printf(&slug, "-d%d", g->d);
    if (s->vary_K) rt_buf_printf(&desc, ", K %d", g->K), rt_buf_printf(&slug, "-K%d", g->K);
    if (s->vary_L) rt_buf_printf(&desc, ", L %d", g->L), rt_buf_printf(&slug, "-L%d", g->L);
    g->slug = slug.s, g->desc = desc.s;
  }
}

void rp_scope_build(scope *s, label_cache *lc) {
  for (int i = 0; i < s->n_runs; i++) s->runs[i]->constant = constant_label(lc, s->runs[i]);
  /* groups */
  run ***members = NULL;
  int *n_members = NULL;
  for (int i = 0; i < s->n_runs; i++) {
    run *r = s->runs[i];
    const char *problem = rp_run_get(r, "problem");
    int gi = 0;
    while (gi < s->n_g && !(rp_eq(s->g[gi]->problem, problem) && s->g[gi]->K == r->K &&
                            s->g[gi]->L == r->L && s->g[gi]->M == r->M &&
                            s->g[gi]->tau == r->tau && s->g[gi]->d == r->d))
      gi++;
    if (gi == s->n_g) {
      group *g = rp_xrealloc(NULL, sizeof *g);
      *g = (group){problem, r->K, r->L, r->M, r->tau, r->d, NULL, 0, 0,
                   0, 0, r->batch, r->batch, NULL, NULL};
      PUSH(s->g, s->n_g, s->cap_g, g);
      members = rp_xrealloc(members, sizeof *members * (size_t)s->n_g);
      n_members = rp_xrealloc(n_members, sizeof *n_members * (size_t)s->n_g);
      members[gi] = NULL, n_members[gi] = 0;
    }
    members[gi] = rp_xrealloc(members[gi], sizeof **members * (size_t)(n_members[gi] + 1));
    members[gi][n_members[gi]++] = r;
  }
  /* curves */
  for (int gi = 0; gi < s->n_g; gi++) {
    group *g = s->g[gi];
    for (int i = 0; i < n_members[gi]; i++) {
      run *r = members[gi][i];
      char *label = run_label(s, r, members[gi], n_members[gi]);
      int ci = 0;
      while (ci < g->n_c && strcmp(g->c[ci]->label, label)) ci++;
      if (ci == g->n_c) {
        curve *c = rp_xrealloc(NULL, sizeof *c);
        *c = (curve){.label = label};
        PUSH(g->c, g->n_c, g->cap_c, c);
      } else {
        free(label);
      }
      PUSH(g->c[ci]->runs, g->c[ci]->n_runs, g->c[ci]->cap_runs, r);
      if (r->batch < g->batch_lo) g->batch_lo = r->batch;
      if (r->batch > g->batch_hi) g->batch_hi = r->batch;
    }
    free(members[gi]);
    g->min_len = 0, g->max_len = 0;
    for (int ci = 0; ci < g->n_c; ci++) {
      curve *c = g->c[ci];
      curve_stats(c, g->K, g->L);
      if (c->n_acc && (!g->min_len || c->acc[0].x < g->min_len)) g->min_len = (int)c->acc[0].x;
      if (c->n_acc && c->acc[c->n_acc - 1].x > g->max_len) g->max_len = (int)c->acc[c->n_acc - 1].x;
    }
  }
  free(members), free(n_members);
  if (s->n_g) rp_sort_n(s->g, (size_t)s->n_g, sizeof *s->g, cmp_group);
  for (int gi = 0; gi < s->n_g; gi++) {
    const group *g = s->g[gi], *g0 = s->g[0];
    s->vary_K |= g->K != g0->K, s->vary_L |= g->L != g0->L;
    s->vary_problem |= !rp_eq(g->problem, g0->problem);
    for (int ci = 0; ci < g->n_c; ci++) {
      int li = 0;
      while (li < s->n_labels && strcmp(s->labels[li], g->c[ci]->label)) li++;
      if (li == s->n_labels) PUSH(s->labels, s->n_labels, s->cap_labels, g->c[ci]->label);
    }
  }
  for (int gi = 0; gi < s->n_g; gi++)
    for (int ci = 0; ci < s->g[gi]->n_c; ci++)
      s->g[gi]->c[ci]->color = label_color(s, s->g[gi]->c[ci]->label);
  group_names(s);
}

void rp_scope_free(scope *s) {
  for (int gi = 0; gi < s->n_g; gi++) {
    group *g = s->g[gi];
    for (int ci = 0; ci < g->n_c; ci++) {
      curve *c = g->c[ci];
      free(c->label), free(c->runs), free(c->acc), free(c->conv), free(c);
    }
    free(g->c), free(g->slug), free(g->desc), free(g);
  }
  free(s->g), free(s->labels);
}

