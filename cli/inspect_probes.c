/* inspect_probes.c — what one example's probes show (`recall inspect`,
 * cmd_inspect.h): measurements of attention heads (previous-token,
 * copy) and of per-position values such as Mamba's dt, their heatmaps as
 * gnuplot data and scripts, and their sections of inspect.md. */
#include "cmd_inspect.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define STRONG 0.5 /* a head "is" a previous-token / copy head above this */
enum { TOKEN_TICKS = 32 }; /* up to this length, axes are labelled by token */

/* ---- measurements ---- */

static const double *head_w(const probe_val *p, int h, int n) {
  return p->v + (size_t)h * (size_t)n * (size_t)n;
}

/* Mean over t of w[t][t-back] (the weight on `back` positions earlier). */
static double back_score(const double *w, int n, int back) {
  double s = 0;
  for (int t = back; t < n; t++) s += w[(size_t)t * n + (t - back)];
  return n > back ? s / (n - back) : NAN;
}

/* The same for uniform causal attention: row t spreads 1/(t+1). */
static double back_uniform(int n, int back) {
  double s = 0;
  for (int t = back; t < n; t++) s += 1.0 / (t + 1);
  return n > back ? s / (n - back) : NAN;
}

int ci_row_argmax(const double *row, int n) {
  int a = 0;
  for (int k = 1; k < n; k++)
    if (row[k] > row[a]) a = k;
  return a;
}

/* Mean over channels of a P_SEQ probe at position t. */
static double seq_mean(const probe_val *p, int t) {
  double s = 0;
  for (int c = 0; c < p->cols; c++) s += p->v[(size_t)t * p->cols + c];
  return s / p->cols;
}

static double seq_overall(const probe_val *p, int n) {
  double s = 0;
  for (int t = 0; t < n; t++) s += seq_mean(p, t);
  return s / n;
}

/* ---- figures ---- */

static void token_tics(rt_buf *gp, const char *axis, const example *ex) {
  if (ex->n > TOKEN_TICKS) {
    rt_buf_printf(gp, "  set %s auto\n", axis);
    return;
  }
  rt_buf_printf(gp, "  set %s (", axis);
  for (int t = 0; t < ex->n; t++)
    rt_buf_printf(gp, "%s'%d' %d", t ? ", " : "", ex->tokens[t], t);
  rt_buf_printf(gp, ") font ',8'\n");
}

static const char *axis_note(const example *ex) {
  return ex->n > TOKEN_TICKS ? "" : " (tick: its token)";
}

/* Query x key heatmaps, a panel per head. Outlined: the last row's cells
 * on the value (i+tau) and on the query's first occurrence (i), and the
 * value's row on the query (i): the cells an induction circuit uses. */
void ci_attn_figure(const probe_val *p, const example *ex, rt_buf *dat, rt_buf *gp) {
  int n = ex->n, H = p->heads, iv = ex->i + ex->tau;
  rt_buf_printf(dat, "# %s: attention weights of example %ld (length %d), a block per "
                "head\n# (gnuplot `index`, separated by two blank lines); columns: "
                "query key weight\n# (row = query position, causal: key <= query).\n",
                p->name, ex->index, n);
  for (int h = 0; h < H; h++) {
    rt_buf_printf(dat, "%s# head %d\n# query key weight\n", h ? "\n\n" : "", h);
    const double *w = head_w(p, h, n);
    for (int a = 0; a < n; a++)
      for (int b = 0; b < n; b++)
        rt_buf_printf(dat, "%d %d %.9g\n", a, b, w[(size_t)a * n + b]);
  }
  char title[512];
  snprintf(title, sizeof title, "%s: attention weights, example %ld (q %d at i = %d and "
           "n-1 = %d; v %d at i+tau = %d)", p->name, ex->index, ex->q, ex->i, n - 1, ex->v,
           iv);
  int cols = H < 4 ? H : 4, rows = (H + cols - 1) / cols;
  int w = 300 + 500 * cols, hgt = 90 + 470 * rows;
  rt_gp_begin(gp, "recall inspect", p->slug, title, w, hgt);
  rt_buf_printf(gp, "  unset key\n  set border lc rgb '#444444'\n"
                "  set palette defined (0 '#ffffff', 0.25 '#c6dbef', 0.5 '#6baed6', "
                "0.75 '#2171b5', 1 '#08306b')\n  set cbrange [0:1]\n"
                "  set cblabel 'weight'\n  set xrange [-0.5:%g]\n  set yrange [%g:-0.5]\n",
                n - 0.5, n - 0.5);
  rt_buf_printf(gp, "  set xlabel 'key position%s'\n  set ylabel 'query position%s'\n",
                axis_note(ex), axis_note(ex));
  token_tics(gp, "xtics", ex);
  token_tics(gp, "ytics", ex);
  rt_buf_printf(gp, "  set link x2\n  set x2tics ('q' %d, 'v' %d) nomirror font ',8'\n"
                "  set link y2\n  set y2tics ('v' %d, 'read' %d) nomirror font ',8'\n",
                ex->i, iv, iv, n - 1);
  rt_buf_printf(gp, "  set object 1 rect from %g,%g to %g,%g fs empty border lc rgb "
                "'#d62728' lw 2 front\n", iv - 0.5, n - 1.5, iv + 0.5, n - 0.5);
  rt_buf_printf(gp, "  set object 2 rect from %g,%g to %g,%g fs empty border lc rgb "
                "'#ff7f0e' lw 2 dt 2 front\n", ex->i - 0.5, n - 1.5, ex->i + 0.5, n - 0.5);
  rt_buf_printf(gp, "  set object 3 rect from %g,%g to %g,%g fs empty border lc rgb "
                "'#2ca02c' lw 2 front\n", ex->i - 0.5, iv - 0.5, ex->i + 0.5, iv + 0.5);
  if (H > 1) {
    rt_buf_printf(gp, "  set multiplot layout %d,%d title ", rows, cols);
    rt_gp_str(gp, title);
    rt_buf_printf(gp, "\n");
  }
  for (int h = 0; h < H; h++) {
    rt_buf_printf(gp, "  set title ");
    if (H > 1) {
      char t[32];
      snprintf(t, sizeof t, "head %d", h);
      rt_gp_str(gp, t);
    } else {
      rt_gp_str(gp, title);
    }
    rt_buf_printf(gp, "\n  plot dat index %d using 2:1:3 with image\n", h);
  }
  if (H > 1) rt_buf_printf(gp, "  unset multiplot\n");
  rt_gp_end(gp);
}

/* Position x channel heatmap; the rows of the query (i), the value
 * (i+tau) and the read position (n-1) are outlined. */
void ci_seq_figure(const probe_val *p, const example *ex, rt_buf *dat, rt_buf *gp) {
  int n = ex->n, C = p->cols, iv = ex->i + ex->tau;
  rt_buf_printf(dat, "# %s of example %ld (length %d); columns: position channel "
                "value\n", p->name, ex->index, n);
  for (int t = 0; t < n; t++)
    for (int c = 0; c < C; c++)
      rt_buf_printf(dat, "%d %d %.9g\n", t, c, p->v[(size_t)t * C + c]);
  char title[512];
  snprintf(title, sizeof title, "%s by position and channel, example %ld (q %d at i = %d "
           "and n-1 = %d; v %d at i+tau = %d)", p->name, ex->index, ex->q, ex->i, n - 1,
           ex->v, iv);
  rt_gp_begin(gp, "recall inspect", p->slug, title, 1000, 120 + (n > 40 ? 600 : 15 * n + 300));
  rt_buf_printf(gp, "  unset key\n  set border lc rgb '#444444'\n"
                "  set palette defined (0 '#ffffcc', 0.5 '#41b6c4', 1 '#0c2c84')\n"
                "  set cbrange [0:*]\n  set cblabel ");
  rt_gp_str(gp, p->name);
  rt_buf_printf(gp, "\n  set xrange [-0.5:%g]\n  set yrange [%g:-0.5]\n"
                "  set xlabel 'channel'\n  set ylabel 'position%s'\n", C - 0.5, n - 0.5,
                axis_note(ex));
  token_tics(gp, "ytics", ex);
  rt_buf_printf(gp, "  set link y2\n  set y2tics ('q (i)' %d, 'v (i+tau)' %d, 'read (n-1)' "
                "%d) nomirror font ',8'\n", ex->i, iv, n - 1);
  const int rows[3] = {ex->i, iv, n - 1};
  static const char *const col[3] = {"#ff7f0e", "#d62728", "#555555"};
  for (int k = 0; k < 3; k++)
    rt_buf_printf(gp, "  set object %d rect from -0.5,%g to %g,%g fs empty border lc rgb "
                  "'%s' lw 1.5 front\n", k + 1, rows[k] - 0.5, C - 0.5, rows[k] + 0.5, col[k]);
  rt_buf_printf(gp, "  set title ");
  rt_gp_str(gp, title);
  rt_buf_printf(gp, "\n  plot dat using 2:1:3 with image\n");
  rt_gp_end(gp);
}

/* ---- inspect.md and the summary ---- */

void ci_describe_example(rt_buf *md, const example *ex, const char *ck,
                             const cm_run *r) {
  int n = ex->n;
  rt_buf_printf(md, "# Inspecting %s on one example\n\nWritten by `recall inspect` from "
                "`%s` (spec `%s`).\n\n", r->model, ck, r->spec);
  rt_buf_printf(md, "Example %ld of the sweep data at length n = %d (data seed %llu: the "
                "sequences `recall eval` scores at this length); K %d, M %d, tau %d, "
                "trained at L %d.\n\n", ex->index, n, (unsigned long long)ex->seed, ex->K,
                ex->M, ex->tau, r->L);
  rt_buf_printf(md, "| position |");
  for (int t = 0; t < n; t++) rt_buf_printf(md, " %d |", t);
  rt_buf_printf(md, "\n|---|");
  for (int t = 0; t < n; t++) rt_buf_printf(md, "---:|");
  rt_buf_printf(md, "\n| token |");
  for (int t = 0; t < n; t++) rt_buf_printf(md, " %d |", ex->tokens[t]);
  rt_buf_printf(md, "\n| role |");
  for (int t = 0; t < n; t++)
    rt_buf_printf(md, " %s |", t == ex->i ? "q (i)" : t == ex->i + ex->tau ? "v (i+tau)"
                               : t == n - 1 ? "q, read (n-1)" : "");
  rt_buf_printf(md, "\n\nThe query q = %d first occurs at i = %d; its value v = %d is at "
                "i+tau = %d; q comes again at the last position n-1 = %d, where the "
                "model answers. Label: %d.\n\n", ex->q, ex->i, ex->v, ex->i + ex->tau,
                n - 1, ex->v);
  rt_buf_printf(md, "Prediction: token %d with probability %.4f (%s); the label %d has "
                "probability %.4f; loss %.4f.\n\n", ex->pred, ex->p_pred,
                ex->pred == ex->v ? "correct" : "wrong", ex->v, ex->p_label, ex->loss);
}

/* A table of the measured facts per head, then bullets for what passes
 * STRONG; a line per head to stdout. *prev_head: a head moves q into the
 * value's position (previous-token, tau-back or v-on-q); *copy_head: a
 * head copies the value at the last position. */
void ci_attn_section(rt_buf *md, const probe_val *p, const example *ex, bool *prev_head,
                         bool *copy_head) {
  int n = ex->n, iv = ex->i + ex->tau, last = n - 1;
  char shape[64];
  ir_type_str(&p->type, shape, sizeof shape);
  rt_buf_printf(md, "## %s: attention weights %s\n\n![%s](%s.png)\n\n", p->name, shape,
                p->name, p->slug);
  rt_buf_printf(md, "Rows are query positions, columns key positions (causal: a row "
                "sees keys up to itself). Outlined: the last row's cells on the value "
                "(i+tau = %d, red) and on the query's first occurrence (i = %d, orange "
                "dashed), and the value's row on the query (green). An induction circuit "
                "first moves q into the value's position (a previous-token head when tau "
                "= 1: green), then at the last position attends to where q was moved "
                "(red) and copies the value.\n\n", iv, ex->i);
  double base = back_uniform(n, 1), base_t = back_uniform(n, ex->tau);
  rt_buf_printf(md, "| head | previous-token score |%s v's row: on q (i) | last row: on v "
                "(i+tau = %d) | on q (i = %d) | on itself (n-1) | argmax (position: token, "
                "weight) |\n|---:|---:|%s---:|---:|---:|---:|---|\n",
                ex->tau > 1 ? " tau-back score |" : "", iv, ex->i, ex->tau > 1 ? "---:|" : "");
  rt_buf find = {0};
  for (int h = 0; h < p->heads; h++) {
    const double *w = head_w(p, h, n), *row = w + (size_t)last * n;
    double prev = back_score(w, n, 1), back = back_score(w, n, ex->tau);
    double vq = w[(size_t)iv * n + ex->i];
    int a = ci_row_argmax(row, n);
    rt_buf_printf(md, "| %d | %.3f |", h, prev);
    if (ex->tau > 1) rt_buf_printf(md, " %.3f |", back);
    rt_buf_printf(md, " %.3f | %.3f | %.3f | %.3f | %d: %d, %.3f |\n", vq, row[iv], row[ex->i],
                  row[last], a, ex->tokens[a], row[a]);
    const char *who = p->heads > 1 ? "head" : "the layer";
    char hn[16] = "";
    if (p->heads > 1) snprintf(hn, sizeof hn, " %d", h);
    if (prev >= STRONG) {
      rt_buf_printf(&find, "- %s%s is a previous-token head: on average %.3f of a "
                    "position's weight is on the position before it (uniform causal "
                    "attention: %.3f).\n", who, hn, prev, base);
      *prev_head = true;
    }
    if (ex->tau > 1 && back >= STRONG) {
      rt_buf_printf(&find, "- %s%s looks tau = %d positions back: on average %.3f of a "
                    "position's weight is there (uniform: %.3f).\n", who, hn, ex->tau,
                    back, base_t);
      *prev_head = true;
    }
    if (vq >= STRONG && vq >= 1.5 / (iv + 1) && prev < STRONG && back < STRONG) {
      rt_buf_printf(&find, "- at the value's position (i+tau = %d) %s%s puts %.3f of its "
                    "weight on the query's first occurrence (i = %d): it moves q next to "
                    "its value, the first half of an induction circuit.\n", iv, who, hn,
                    vq, ex->i);
      *prev_head = true;
    }
    if (a == iv && row[iv] >= STRONG) {
      rt_buf_printf(&find, "- at the last position %s%s puts %.3f of its weight on the "
                    "value (position i+tau = %d): it copies the value, as the second "
                    "head of an induction circuit does.\n", who, hn, row[iv], iv);
      *copy_head = true;
    } else if (a == iv) {
      rt_buf_printf(&find, "- at the last position %s%s attends most to the value "
                    "(position i+tau = %d), with %.3f of its weight (uniform: %.3f).\n",
                    who, hn, iv, row[iv], 1.0 / n);
    } else {
      rt_buf_printf(&find, "- at the last position %s%s attends most to position %d "
                    "(token %d, weight %.3f), not to the value at i+tau = %d (%.3f).\n",
                    who, hn, a, ex->tokens[a], row[a], iv, row[iv]);
    }
    printf("  %s head %d: previous-token %.3f, v's row on q %.3f, last row on v %.3f "
           "(argmax %d%s)\n", p->name, h, prev, vq, row[iv], a, a == iv ? " = i+tau" : "");
  }
  rt_buf_printf(md, "\nPrevious-token score: the mean over positions t >= 1 of the "
                "weight on t-1 (uniform causal attention gives %.3f)%s. v's row on q: "
                "the weight the value's position i+tau puts on the query's first "
                "occurrence i (uniform: %.3f).\n\n", base,
                ex->tau > 1 ? "; tau-back score: the same for t-tau" : "", 1.0 / (iv + 1));
  rt_buf_printf(md, "%s\n", find.s ? find.s : "");
  rt_buf_free(&find);
}

static bool is_dt(const char *name) {
  const char *dot = strrchr(name, '.');
  return !strcmp(dot ? dot + 1 : name, "dt");
}

void ci_seq_section(rt_buf *md, const probe_val *p, const example *ex) {
  int n = ex->n, iv = ex->i + ex->tau;
  char shape[64];
  ir_type_str(&p->type, shape, sizeof shape);
  double mean = seq_overall(p, n), lo = INFINITY, hi = -INFINITY;
  for (size_t j = 0; j < (size_t)n * p->cols; j++) {
    if (p->v[j] < lo) lo = p->v[j];
    if (p->v[j] > hi) hi = p->v[j];
  }
  int top = 0;
  for (int t = 1; t < n; t++)
    if (seq_mean(p, t) > seq_mean(p, top)) top = t;
  rt_buf_printf(md, "## %s: %s by position and channel %s\n\n![%s](%s.png)\n\n", p->name,
                is_dt(p->name) ? "Mamba's dt (\u0394)" : "values", shape,
                p->name, p->slug);
  rt_buf_printf(md, "Mean over the %d channels and %d positions: %.4g (min %.4g, max "
                "%.4g). A large dt lets a position write into the state (and forget "
                "what was there); a small one lets the state pass by.\n\n", p->cols, n,
                mean, lo, hi);
  rt_buf_printf(md, "| position | token | role | mean over channels | / overall mean |\n"
                "|---:|---:|---|---:|---:|\n");
  const int pos[3] = {ex->i, iv, n - 1};
  static const char *const role[3] = {"q (i)", "v (i+tau)", "q, read (n-1)"};
  for (int k = 0; k < 3; k++) {
    double m = seq_mean(p, pos[k]);
    rt_buf_printf(md, "| %d | %d | %s | %.4g | %.2f |\n", pos[k], ex->tokens[pos[k]],
                  role[k], m, m / mean);
  }
  rt_buf_printf(md, "\nThe largest mean over channels is at position %d (token %d%s): "
                "%.2f times the overall mean.\n\n", top, ex->tokens[top],
                top == ex->i ? ", the query's first occurrence" : top == iv ? ", the value"
                : top == n - 1 ? ", the read position" : "", seq_mean(p, top) / mean);
  printf("  %s: at i %.2fx, i+tau %.2fx, n-1 %.2fx the mean (%.4g)\n", p->name,
         seq_mean(p, ex->i) / mean, seq_mean(p, iv) / mean, seq_mean(p, n - 1) / mean, mean);
}
