/* report_findings.c — findings: sentences built from the measured values
 * of a group's curves, and the comparisons of one model across M, tau and
 * d (their figures, markdown and findings). */
#include "report_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------
 * Findings: sentences built from the measured values
 * --------------------------------------------------------------------- */

static void bullet(rt_buf *b, const rt_buf *s) {
  if (s->s && s->len) rt_buf_printf(b, "- %s\n", s->s);
}

/* "0.973" for the mean at len, or "n/a". */
static const char *fmt_acc(char *buf, size_t n, const curve *c, long len) {
  const agg *a = rp_acc_at(c, len);
  if (a) snprintf(buf, n, "%.3f", a->mean);
  else snprintf(buf, n, "n/a");
  return buf;
}

/* "a, b and c" of the given labels. */
static void list_labels(rt_buf *b, const char *const *l, int n) {
  for (int i = 0; i < n; i++)
    rt_buf_printf(b, "%s%s", i == 0 ? "" : i == n - 1 ? " and " : ", ", l[i]);
}

static bool same_sweep(const run *a, const run *b) {
  if (a->n_sw != b->n_sw) return false;
  for (int i = 0; i < a->n_sw; i++)
    if (a->sw[i].len != b->sw[i].len || fabs(a->sw[i].acc - b->sw[i].acc) > 1e-12)
      return false;
  return true;
}

/* Curves whose runs have identical accuracies at every length, seed by
 * seed (at least one seed in common). */
static bool identical(const curve *a, const curve *b) {
  int shared = 0;
  for (int i = 0; i < a->n_runs; i++)
    for (int j = 0; j < b->n_runs; j++) {
      if (a->runs[i]->seed != b->runs[j]->seed) continue;
      if (!same_sweep(a->runs[i], b->runs[j])) return false;
      shared++;
    }
  return shared > 0;
}

/* Every mean within what a constant answer scores: about 1/K. */
static bool chance_like(const curve *c, int K) {
  for (int i = 0; i < c->n_acc; i++)
    if (fabs(c->acc[i].mean - 1.0 / K) > 2 * NEAR) return false;
  return c->n_acc > 0;
}

static void constant_findings(rt_buf *out, const group *g) {
  int n = g->n_c, *cls = rp_xrealloc(NULL, sizeof *cls * (size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) {
    cls[i] = i;
    for (int j = 0; j < i && cls[i] == i; j++)
      if (cls[j] == j && identical(g->c[i], g->c[j])) cls[i] = j;
  }
  for (int i = 0; i < n; i++) {
    const curve *c = g->c[i];
    const char **names = rp_xrealloc(NULL, sizeof *names * (size_t)n);
    int k = 0, token = c->constant;
    for (int j = i; j < n; j++)
      if (cls[j] == i) {
        names[k++] = g->c[j]->label;
        if (g->c[j]->constant != token) token = -1;
      }
    rt_buf s = {0};
    bool low = true; /* identical good curves are fine: both may be perfect */
    for (int j = i; j < n; j++)
      if (cls[j] == i) low &= chance_like(g->c[j], g->K);
    if (cls[i] != i) { /* reported with its class */
    } else if (k >= 2 && (token >= 0 || low)) {
      list_labels(&s, names, k);
      rt_buf_printf(&s, " are predicting a constant: their accuracies are identical at "
                    "every length (seed by seed)");
      if (token >= 0) rt_buf_printf(&s, " and equal the frequency of label %d", token);
      else rt_buf_printf(&s, " and near chance");
      rt_buf_printf(&s, ", %.3f at L", rp_acc_at(c, g->L) ? rp_acc_at(c, g->L)->mean : NAN);
    } else if (c->constant >= 0) {
      rt_buf_printf(&s, "%s is predicting a constant: in %s its accuracy equals the "
                    "frequency of label %d at every length", c->label,
                    c->n_runs == 1 ? "its one seed" : "every seed", c->constant);
    } else if (c->constant == -2 || c->n_constant > 0) {
      rt_buf_printf(&s, "%s is predicting a constant in %d of %d seeds (its accuracy "
                    "equals the frequency of one label at every length)", c->label,
                    c->n_constant, c->n_runs);
    }
    bullet(out, &s);
    rt_buf_free(&s);
    free(names);
  }
  free(cls);
}

static void generalisation(rt_buf *out, const group *g, const curve *c) {
  char b1[32], b2[32], a1[16], a2[16], a3[16];
  int L = g->L;
  rt_buf s = {0};
  const agg *aL = rp_acc_at(c, L);
  int swept = 0;
  for (int i = 0; i < c->n_runs; i++) swept += c->runs[i]->n_sw > 0;
  if (swept == 0) {
    rt_buf_printf(&s, "%s has no sweep in any of its %d seeds (diverged)", c->label, c->n_runs);
  } else if (!aL) {
    rt_buf_printf(&s, "%s has no accuracy at L = %d", c->label, L);
  } else if (c->chance) {
    rt_buf_printf(&s, "%s did not learn: its accuracy is within %.2f of chance "
                  "(1/K = %.4g) at every length (%.3f at L)", c->label, NEAR,
                  1.0 / g->K, aL->mean);
  } else if (aL->mean < HOLD) {
    rt_buf_printf(&s, "%s reaches only %.3f at L = %d (below %.1f); %s at 2L, %s "
                  "at 3L", c->label, aL->mean, L, HOLD, fmt_acc(a2, sizeof a2, c, 2L * L),
                  fmt_acc(a3, sizeof a3, c, 3L * L));
  } else {
    if (c->drop == 0) {
      rt_buf_printf(&s, "%s holds accuracy >= %.1f up to length %s, the longest "
                    "evaluated (%.3f there)", c->label, HOLD,
                    rp_fmt_len(b1, sizeof b1, c->hold_hi, L), rp_acc_at(c, c->hold_hi)->mean);
    } else {
      rt_buf_printf(&s, "%s holds accuracy >= %.1f up to length %s and drops below "
                    "%.1f at length %s (%.3f); %s at 2L, %s at 3L", c->label, HOLD,
                    rp_fmt_len(b1, sizeof b1, c->hold_hi, L), HOLD,
                    rp_fmt_len(b2, sizeof b2, c->drop, L), rp_acc_at(c, c->drop)->mean,
                    fmt_acc(a2, sizeof a2, c, 2L * L), fmt_acc(a3, sizeof a3, c, 3L * L));
      if (c->hold_hi == L) rt_buf_printf(&s, ": it does not generalise beyond L");
    }
    if (c->below > 0) {
      const agg *half = rp_acc_at(c, L / 2);
      rt_buf_printf(&s, ". Below L it first drops under %.1f at length %s (%.3f); %s at "
                    "L/2", HOLD, rp_fmt_len(b1, sizeof b1, c->below, L),
                    rp_acc_at(c, c->below)->mean, fmt_acc(a1, sizeof a1, c, L / 2));
      if (half && half->mean < 0.5) rt_buf_printf(&s, ": it fails on shorter sequences too");
    }
  }
  if (swept > 0 && swept < c->n_runs)
    rt_buf_printf(&s, " (%d of %d seeds have no sweep (diverged) and are left out)",
                  c->n_runs - swept, c->n_runs);
  bullet(out, &s);
  rt_buf_free(&s);
}

static const group *sort_g; /* qsort context: curves of one group */

static int cmp_reach(const void *a, const void *b) {
  const curve *x = *(curve *const *)a, *y = *(curve *const *)b;
  if (x->hold_hi != y->hold_hi) return x->hold_hi > y->hold_hi ? -1 : 1;
  const agg *ax = rp_acc_at(x, 3L * sort_g->L), *ay = rp_acc_at(y, 3L * sort_g->L);
  double vx = ax ? ax->mean : 0, vy = ay ? ay->mean : 0;
  return (vx < vy) - (vx > vy);
}

static int cmp_fast(const void *a, const void *b) {
  const curve *x = *(curve *const *)a, *y = *(curve *const *)b;
  return (x->fast_mean > y->fast_mean) - (x->fast_mean < y->fast_mean);
}

static void ranking(rt_buf *out, const group *g) {
  curve **l = rp_xrealloc(NULL, sizeof *l * (size_t)(g->n_c ? g->n_c : 1));
  int n = 0;
  for (int i = 0; i < g->n_c; i++)
    if (g->c[i]->hold_hi > 0) l[n++] = g->c[i];
  if (n >= 2) {
    sort_g = g;
    rp_sort_n(l, (size_t)n, sizeof *l, cmp_reach);
    rt_buf s = {0};
    char b[32], a[16];
    rt_buf_printf(&s, "Furthest beyond L (the longest length holding >= %.1f, then "
                  "the accuracy at 3L): ", HOLD);
    for (int i = 0; i < n; i++)
      rt_buf_printf(&s, "%s%s up to %s, %s at 3L", i ? "; " : "", l[i]->label,
                    rp_fmt_len(b, sizeof b, l[i]->hold_hi, g->L),
                    fmt_acc(a, sizeof a, l[i], 3L * g->L));
    bullet(out, &s);
    rt_buf_free(&s);
  }
  free(l);
}

static void convergence_findings(rt_buf *out, const group *g) {
  curve **fast = rp_xrealloc(NULL, sizeof *fast * (size_t)(g->n_c ? g->n_c : 1));
  const char **slow = rp_xrealloc(NULL, sizeof *slow * (size_t)(g->n_c ? g->n_c : 1));
  int nf = 0, ns = 0;
  long max_steps = 0;
  bool any = false;
  for (int i = 0; i < g->n_c; i++) {
    curve *c = g->c[i];
    any |= c->n_conv > 0;
    if (c->fast_n) fast[nf++] = c;
    else if (c->n_conv) {
      slow[ns++] = c->label;
      if (c->max_steps > max_steps) max_steps = c->max_steps;
    }
  }
  rt_buf s = {0};
  if (any && nf == 0) {
    rt_buf_printf(&s, "No model reached %.2f test accuracy at L within %ld steps",
                  FAST, max_steps);
  } else if (any) {
    rp_sort_n(fast, (size_t)nf, sizeof *fast, cmp_fast);
    if (nf > 1) rt_buf_printf(&s, "Fastest to reach %.2f test accuracy at L: ", FAST);
    for (int i = 0; i < nf; i++)
      rt_buf_printf(&s, "%s%s (%.0f steps, %s %d of %d seeds)",
                    i == 0 ? "" : i == 1 ? ", then " : ", ", fast[i]->label,
                    fast[i]->fast_mean, fast[i]->fast_n == 1 ? "in" : "mean over",
                    fast[i]->fast_n, fast[i]->n_runs);
    if (nf == 1) rt_buf_printf(&s, " is the only one to reach %.2f test accuracy at L", FAST);
    if (ns) {
      rt_buf_printf(&s, "; ");
      list_labels(&s, slow, ns);
      rt_buf_printf(&s, " did not reach it within %ld steps", max_steps);
    }
  }
  bullet(out, &s);
  rt_buf_free(&s);
  free(fast), free(slow);
}

void rp_group_findings(rt_buf *out, const group *g) {
  bool all_chance = g->n_c > 0;
  for (int i = 0; i < g->n_c; i++) all_chance &= g->c[i]->chance;
  if (all_chance) {
    rt_buf s = {0};
    const char **names = rp_xrealloc(NULL, sizeof *names * (size_t)g->n_c);
    for (int i = 0; i < g->n_c; i++) names[i] = g->c[i]->label;
    rt_buf_printf(&s, "No model learned: accuracies within %.2f of chance 1/K = %.4g "
                  "at every length (", NEAR, 1.0 / g->K);
    list_labels(&s, names, g->n_c);
    rt_buf_printf(&s, ")");
    bullet(out, &s);
    rt_buf_free(&s);
    free(names);
  }
  constant_findings(out, g);
  if (!all_chance) {
    for (int i = 0; i < g->n_c; i++) generalisation(out, g, g->c[i]);
    ranking(out, g);
  }
  convergence_findings(out, g);
}

/* ---------------------------------------------------------------------
 * Comparisons: the effect of M, tau and d on one model, the other task
 * settings fixed
 * --------------------------------------------------------------------- */

static const char *const FNAME[N_F] = {"M", "tau", "d"};

static int fval(const group *g, int f) {
  return f == F_M ? g->M : f == F_TAU ? g->tau : g->d;
}

typedef struct {
  int val;
  const group *g;
  const curve *c;
} cmp_pt;

/* One model at fixed (K, L, the other two factors), across the factor. */
typedef struct {
  const char *label;
  int K, L, o[2];
  cmp_pt *p;
  int n, cap;
} bucket;

static void others(int f, int o[2]) {
  o[0] = f == F_M ? F_TAU : F_M;
  o[1] = f == F_D ? F_TAU : F_D;
}

static int cmp_pt_val(const void *a, const void *b) {
  return ((const cmp_pt *)a)->val - ((const cmp_pt *)b)->val;
}

/* Buckets holding >= 2 values of factor f (from >= 2 experiments when
 * cross_exp). */
static bucket *find_buckets(const scope *s, int f, bool cross_exp, int *n_out) {
  bucket *b = NULL;
  int n = 0, cap = 0, o[2];
  others(f, o);
  for (int li = 0; li < s->n_labels; li++)
    for (int gi = 0; gi < s->n_g; gi++) {
      const group *g = s->g[gi];
      if (f == F_D && !g->d) continue;
      for (int ci = 0; ci < g->n_c; ci++) {
        const curve *c = g->c[ci];
        if (strcmp(c->label, s->labels[li])) continue;
        int bi = 0, ov[2] = {fval(g, o[0]), fval(g, o[1])};
        while (bi < n && !(b[bi].label == s->labels[li] && b[bi].K == g->K &&
                           b[bi].L == g->L && b[bi].o[0] == ov[0] && b[bi].o[1] == ov[1]))
          bi++;
        if (bi == n) {
          bucket nb = {s->labels[li], g->K, g->L, {ov[0], ov[1]}, NULL, 0, 0};
          PUSH(b, n, cap, nb);
        }
        bool dup = false;
        for (int k = 0; k < b[bi].n; k++) dup |= b[bi].p[k].val == fval(g, f);
        cmp_pt p = {fval(g, f), g, c};
        if (!dup) PUSH(b[bi].p, b[bi].n, b[bi].cap, p);
      }
    }
  int m = 0;
  for (int i = 0; i < n; i++) {
    bool keep = b[i].n >= 2;
    if (keep && cross_exp) {
      keep = false;
      for (int k = 1; k < b[i].n; k++)
        keep |= b[i].p[k].c->runs[0]->exp != b[i].p[0].c->runs[0]->exp;
    }
    if (keep) {
      rp_sort_n(b[i].p, (size_t)b[i].n, sizeof *b[i].p, cmp_pt_val);
      b[m++] = b[i];
    } else {
      free(b[i].p);
    }
  }
  *n_out = m;
  return b;
}

static void bucket_desc(rt_buf *d, const scope *s, int f, const bucket *b) {
  int o[2];
  others(f, o);
  rt_buf_printf(d, "%s %d", FNAME[o[0]], b->o[0]);
  if (b->o[1] || o[1] != F_D) rt_buf_printf(d, ", %s %d", FNAME[o[1]], b->o[1]);
  if (s->vary_K) rt_buf_printf(d, ", K %d", b->K);
  if (s->vary_L) rt_buf_printf(d, ", L %d", b->L);
}

static char *bucket_slug(const scope *s, int f, const bucket *b) {
  int o[2];
  others(f, o);
  rt_buf d = {0};
  rt_buf_printf(&d, "%s%d", FNAME[o[0]], b->o[0]);
  if (b->o[1] || o[1] != F_D) rt_buf_printf(&d, "-%s%d", FNAME[o[1]], b->o[1]);
  if (s->vary_K) rt_buf_printf(&d, "-K%d", b->K);
  if (s->vary_L) rt_buf_printf(&d, "-L%d", b->L);
  return d.s;
}


static void effect_finding(rt_buf *out, const scope *s, int f, const bucket *b) {
  rt_buf t = {0}, d = {0};
  bucket_desc(&d, s, f, b);
  const cmp_pt *p0 = &b->p[0], *p1 = &b->p[b->n - 1];
  const char *fn = FNAME[f];
  rt_buf_printf(&t, "%s at %s: ", b->label, d.s);
  if (isnan(p0->c->beyond) || isnan(p1->c->beyond)) {
    rt_buf_printf(&t, "no lengths beyond L to compare");
  } else {
    double x = p0->c->beyond, y = p1->c->beyond;
    rt_buf_printf(&t, "raising %s from %d to %d ", fn, p0->val, p1->val);
    if (fabs(y - x) < SAME)
      rt_buf_printf(&t, "leaves the mean accuracy beyond L unchanged (%.3f and %.3f)", x, y);
    else
      rt_buf_printf(&t, "%s the mean accuracy beyond L from %.3f to %.3f",
                    y > x ? "raises" : "lowers", x, y);
  }
  rt_buf_printf(&t, ". By %s (", fn);
  for (int i = 0; i < b->n; i++) rt_buf_printf(&t, "%s%d", i ? " / " : "", b->p[i].val);
  rt_buf_printf(&t, "): accuracy at L ");
  char a[16], l[32];
  for (int i = 0; i < b->n; i++)
    rt_buf_printf(&t, "%s%s", i ? " / " : "", fmt_acc(a, sizeof a, b->p[i].c, b->p[i].g->L));
  rt_buf_printf(&t, ", at 3L ");
  for (int i = 0; i < b->n; i++)
    rt_buf_printf(&t, "%s%s", i ? " / " : "", fmt_acc(a, sizeof a, b->p[i].c, 3L * b->p[i].g->L));
  rt_buf_printf(&t, "; longest length at >= %.1f ", HOLD);
  for (int i = 0; i < b->n; i++) {
    const curve *c = b->p[i].c;
    if (c->hold_hi > 0) rt_buf_printf(&t, "%s%s", i ? " / " : "", rp_fmt_len(l, sizeof l, c->hold_hi, b->p[i].g->L));
    else rt_buf_printf(&t, "%snone", i ? " / " : "");
  }
  bool conv = false;
  for (int i = 0; i < b->n; i++) conv |= b->p[i].c->n_conv > 0;
  if (conv) {
    rt_buf_printf(&t, "; steps to %.2f ", FAST);
    for (int i = 0; i < b->n; i++) {
      const curve *c = b->p[i].c;
      if (c->fast_n) rt_buf_printf(&t, "%s%.0f", i ? " / " : "", c->fast_mean);
      else rt_buf_printf(&t, "%snot reached", i ? " / " : "");
    }
  }
  bullet(out, &t);
  rt_buf_free(&t), rt_buf_free(&d);
}

void rp_acc_panel_style(panel *p, const group *g) {
  p->xlo = g->min_len, p->xhi = g->max_len, p->vline = g->L, p->chance = 1.0 / g->K;
}

/* Figures and findings of the comparisons of factor f; the markdown goes
 * to md (one subsection when there is anything to compare). */
void rp_comparisons(const scope *s, int f, bool cross_exp, figures *fs,
                    rt_buf *md, rt_buf *findings) {
  static const char *const CMP_COLORS[] = {"#1f77b4", "#d62728", "#2ca02c",
                                           "#ff7f0e", "#9467bd", "#8c564b"};
  int n;
  bucket *b = find_buckets(s, f, cross_exp, &n);
  if (n == 0) {
    free(b);
    return;
  }
  rt_buf_printf(md, "\n### Effect of %s\n\n", FNAME[f]);
  if (f == F_M) {
    /* One grid per (K, L, tau, d): a row per model, a column per M. */
    bool *done = rp_xrealloc(NULL, (size_t)n);
    memset(done, 0, (size_t)n);
    for (int i = 0; i < n; i++) {
      if (done[i]) continue;
      int ms[64], n_ms = 0, rows = 0;
      for (int j = i; j < n; j++) {
        if (b[j].K != b[i].K || b[j].L != b[i].L || b[j].o[0] != b[i].o[0] ||
            b[j].o[1] != b[i].o[1])
          continue;
        rows++;
        for (int k = 0; k < b[j].n; k++) {
          int m = 0;
          while (m < n_ms && ms[m] != b[j].p[k].val) m++;
          if (m == n_ms && n_ms < 64) ms[n_ms++] = b[j].p[k].val;
        }
      }
      for (int a = 0; a < n_ms; a++) /* insertion sort: few values */
        for (int c = a; c > 0 && ms[c - 1] > ms[c]; c--) {
          int t = ms[c];
          ms[c] = ms[c - 1], ms[c - 1] = t;
        }
      rt_buf d = {0};
      bucket_desc(&d, s, f, &b[i]);
      char *slug = bucket_slug(s, f, &b[i]);
      figure *fg = rp_fig_new(fs, "length", rp_fmt("cmp_M_%s", slug),
                           rp_fmt("Accuracy against length by M (%s; band: min to max over "
                               "seeds; dashed: chance 1/K)", d.s),
                           rp_fmt("Accuracy against length, one panel per model and M (%s)", d.s));
      fg->rows = rows, fg->cols = n_ms;
      for (int j = i; j < n; j++) {
        if (b[j].K != b[i].K || b[j].L != b[i].L || b[j].o[0] != b[i].o[0] ||
            b[j].o[1] != b[i].o[1])
          continue;
        done[j] = true;
        for (int m = 0; m < n_ms; m++) {
          const cmp_pt *p = NULL;
          for (int k = 0; k < b[j].n; k++)
            if (b[j].p[k].val == ms[m]) p = &b[j].p[k];
          if (!p) {
            rp_fig_hole(fg);
            continue;
          }
          panel *pn = rp_fig_panel(fg, rp_fmt("%s, M %d", b[j].label, ms[m]), "context length",
                                "accuracy");
          rp_acc_panel_style(pn, p->g);
          rp_fig_series(fg, pn, b[j].label, p->c->color, true, p->c->acc, p->c->n_acc);
        }
        effect_finding(findings, s, f, &b[j]);
      }
      rt_buf_printf(md, "![%s](figures/%s.png)\n\n", fg->caption, fg->name);
      free(slug);
      rt_buf_free(&d);
    }
    free(done);
  } else {
    /* One figure: a panel per model and setting of the others, a curve per value. */
    figure *fg = rp_fig_new(fs, "length", rp_fmt("cmp_%s", FNAME[f]),
                         rp_fmt("Accuracy against length by %s (band: min to max over "
                             "seeds; dashed: chance 1/K)", FNAME[f]),
                         rp_fmt("Accuracy against length for each %s, one panel per model "
                             "and setting", FNAME[f]));
    fg->cols = n < 3 ? n : 3, fg->rows = (n + fg->cols - 1) / fg->cols;
    for (int j = 0; j < n; j++) {
      rt_buf d = {0};
      bucket_desc(&d, s, f, &b[j]);
      panel *pn = rp_fig_panel(fg, rp_fmt("%s, %s", b[j].label, d.s), "context length", "accuracy");
      rp_acc_panel_style(pn, b[j].p[0].g);
      for (int k = 0; k < b[j].n; k++) {
        char t[64];
        snprintf(t, sizeof t, "%s %d", FNAME[f], b[j].p[k].val);
        const group *g = b[j].p[k].g;
        if (g->min_len < pn->xlo) pn->xlo = g->min_len;
        if (g->max_len > pn->xhi) pn->xhi = g->max_len;
        rp_fig_series(fg, pn, t, CMP_COLORS[k % 6], true, b[j].p[k].c->acc, b[j].p[k].c->n_acc);
      }
      effect_finding(findings, s, f, &b[j]);
      rt_buf_free(&d);
    }
    rt_buf_printf(md, "![%s](figures/%s.png)\n\n", fg->caption, fg->name);
  }
  for (int i = 0; i < n; i++) free(b[i].p);
  free(b);
}

