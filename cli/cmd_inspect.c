/* cmd_inspect.c — `recall inspect CHECKPOINT`: one AR example through a
 * trained model, with the values its spec probed (probe(name, x); nn.lua
 * probes every attention layer's weights and every Mamba layer's dt)
 * drawn as heatmaps and measured in inspect.md, so that a mechanism such
 * as the induction head (a previous-token head, then a head that copies
 * the value) can be seen.
 *
 * The example is sequence N of the run's sweep data at length n (what
 * `recall eval` scores there), and it runs on the reference interpreter:
 * exact, and fast enough for one sequence. */
#include "cmd_model.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* printf into a new malloc'd string. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  int n = vsnprintf(NULL, 0, f, ap);
  va_end(ap);
  char *s = malloc((size_t)n + 1);
  if (!s) abort();
  va_start(ap, f);
  vsnprintf(s, (size_t)n + 1, f, ap);
  va_end(ap);
  return s;
}

static char *xstrdup(const char *s) { return fmt("%s", s); }
static char *join(const char *dir, const char *file) { return fmt("%s/%s", dir, file); }


#define CMD "inspect"
#define STRONG 0.5 /* a head "is" a previous-token / copy head above this */
enum { TOKEN_TICKS = 32 }; /* up to this length, axes are labelled by token */

static void usage(FILE *out) {
  fputs("usage: recall inspect CHECKPOINT [--example N] [-o DIR] [--length n]\n"
        "                      [--seed s] [--no-render]\n"
        "Runs example N (default 0) of the run's sweep data at length n\n"
        "(default L; the sequences `recall eval` scores at that length, data\n"
        "seed s, default the run's) through the checkpoint's model and writes\n"
        "to DIR (default: inspect/ next to the checkpoint):\n"
        "  NAME.dat, NAME.gp, NAME.png, NAME.svg  a heatmap per probe: the\n"
        "      attention weights of every attention layer (query x key), Mamba's\n"
        "      dt of every Mamba layer (position x channel)\n"
        "  inspect.md  the example, the prediction and what each layer does\n"
        "      (previous-token score, weight on the value at the last position,\n"
        "      dt at the query, the value and the read position)\n"
        "  --no-render  write data and gnuplot scripts only\n", out);
}

typedef struct {
  const char *ck, *dir;
  long example, seed; /* seed -1: the run's */
  int length;         /* 0: L */
  bool render;
} opts;

/* The example and what the model made of it. */
typedef struct {
  int n, K, M, tau, q, i, v; /* q at i and n-1, v at i+tau, label v */
  long index;
  uint64_t seed;
  int32_t *tokens;
  int pred;                  /* argmax of the logits (first maximum) */
  double p_pred, p_label, loss;
} example;

typedef enum { P_ATTN, P_SEQ, P_OTHER } probe_kind;

/* One probe's values: P_ATTN [heads..., n, n] (query, key); P_SEQ [n, C]
 * (position, channel; [n] is [n, 1]). */
typedef struct {
  const char *name;
  char *slug; /* its files' base name */
  probe_kind kind;
  ir_type type;
  int heads, cols;
  const double *v;
} probe_val;

/* ---- arguments ---- */

static bool parse_count(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* 0, or the exit status of a bad command line (-1 for --help). */
static int parse_args(int argc, char **argv, opts *o) {
  *o = (opts){.seed = -1, .render = true};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    long v;
    if (!strcmp(a, "--example") && i + 1 < argc) {
      if (!parse_count(argv[++i], 0, 1L << 30, &o->example)) {
        cli_error(CMD, "--example takes an index >= 0, got '%s'", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--length") && i + 1 < argc) {
      if (!parse_count(argv[++i], 2, 1L << 16, &v)) {
        cli_error(CMD, "--length takes a sequence length 2..65536, got '%s'", argv[i]);
        return 2;
      }
      o->length = (int)v;
    } else if (!strcmp(a, "--seed") && i + 1 < argc) {
      if (!parse_count(argv[++i], 0, 1L << 53, &o->seed)) {
        cli_error(CMD, "--seed takes an integer >= 0, got '%s'", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "-o") && i + 1 < argc) {
      o->dir = argv[++i];
    } else if (!strcmp(a, "--no-render")) {
      o->render = false;
    } else {
      int k = cli_positional(CMD, a, &o->ck, usage);
      if (k) return k > 0 ? -1 : 2;
    }
  }
  if (!o->ck) {
    usage(stderr);
    return 2;
  }
  return 0;
}

/* ---- the run and its model ---- */

/* The leaves of f for the interpreter: the example's inputs, the
 * checkpoint's params, the embedding V (other consts carry their data).
 * NULL (printed) on a mismatch. */
static double **bind_leaves(const ir_func *f, rt_tensors *ck, const example *ex,
                            const char *spec) {
  double **lv = calloc((size_t)f->n_nodes, sizeof *lv);
  if (!lv) abort();
  ir_error err;
  for (int id = 0; id < f->n_nodes; id++) {
    const ir_node *nd = &f->nodes[id];
    int64_t numel = ir_numel(&nd->type);
    if (nd->op != IR_OP_INPUT && nd->op != IR_OP_PARAM &&
        !(nd->op == IR_OP_CONST && !nd->data))
      continue;
    double *x = lv[id] = calloc((size_t)(numel ? numel : 1), sizeof *x);
    if (!x) abort();
    if (nd->op == IR_OP_INPUT) {
      if (!strcmp(nd->name, "tokens") && numel == ex->n)
        for (int t = 0; t < ex->n; t++) x[t] = ex->tokens[t];
      else if (!strcmp(nd->name, "pos") && numel == 1)
        x[0] = ex->n - 1;
      else if (!strcmp(nd->name, "label") && numel == 1)
        x[0] = ex->v;
      else {
        cli_error(CMD, "%s: input \"%s\" is not part of the interface (tokens "
                  "i32[n], pos i32[], label i32[])", spec, nd->name);
        goto fail;
      }
    } else if (nd->op == IR_OP_PARAM) {
      int64_t dim[RT_MAX_RANK];
      for (int a = 0; a < nd->type.rank; a++) dim[a] = nd->type.dim[a];
      rt_tensor *t = rt_tensors_expect(ck, nd->name, RT_F32, nd->type.rank, dim, &err);
      if (!t) {
        cli_error(CMD, "%s (not a checkpoint of this model?)", err.msg);
        goto fail;
      }
      for (int64_t j = 0; j < numel; j++) x[j] = ((const float *)t->data)[j];
    } else if (!strcmp(nd->name, "embedding.weight") && nd->type.rank == 2) {
      float *V = malloc(sizeof *V * (size_t)numel);
      if (!V) abort();
      rt_embedding_V(nd->type.dim[0], nd->type.dim[1], V);
      for (int64_t j = 0; j < numel; j++) x[j] = V[j];
      free(V);
    } else {
      cli_error(CMD, "%s: const \"%s\" has no data to bind", spec, nd->name);
      goto fail;
    }
  }
  return lv;
fail:
  for (int id = 0; id < f->n_nodes; id++) free(lv[id]);
  free(lv);
  return NULL;
}

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

static int row_argmax(const double *row, int n) {
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
static void attn_figure(const probe_val *p, const example *ex, rt_buf *dat, rt_buf *gp) {
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
  char *title = fmt("%s: attention weights, example %ld (q %d at i = %d and n-1 = %d; "
                       "v %d at i+tau = %d)", p->name, ex->index, ex->q, ex->i, n - 1,
                       ex->v, iv);
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
  free(title);
}

/* Position x channel heatmap; the rows of the query (i), the value
 * (i+tau) and the read position (n-1) are outlined. */
static void seq_figure(const probe_val *p, const example *ex, rt_buf *dat, rt_buf *gp) {
  int n = ex->n, C = p->cols, iv = ex->i + ex->tau;
  rt_buf_printf(dat, "# %s of example %ld (length %d); columns: position channel "
                "value\n", p->name, ex->index, n);
  for (int t = 0; t < n; t++)
    for (int c = 0; c < C; c++)
      rt_buf_printf(dat, "%d %d %.9g\n", t, c, p->v[(size_t)t * C + c]);
  char *title = fmt("%s by position and channel, example %ld (q %d at i = %d and "
                       "n-1 = %d; v %d at i+tau = %d)", p->name, ex->index, ex->q, ex->i,
                       n - 1, ex->v, iv);
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
  free(title);
}

/* ---- inspect.md and the summary ---- */

static void describe_example(rt_buf *md, const example *ex, const char *ck,
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
static void attn_section(rt_buf *md, const probe_val *p, const example *ex, bool *prev_head,
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
    int a = row_argmax(row, n);
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

static void seq_section(rt_buf *md, const probe_val *p, const example *ex) {
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

/* ---- the command ---- */

/* Sequence ex->index of the sweep at length ex->n. */
static int make_example(example *ex, const cm_run *r, const opts *o, const char *path) {
  ir_error err;
  ex->K = r->K, ex->M = r->train.M, ex->tau = r->train.tau, ex->n = o->length ? o->length : r->L;
  ex->index = o->example;
  ex->seed = o->seed >= 0 ? (uint64_t)o->seed : r->train.seed;
  if (rt_ar_validate(ex->K, ex->M, ex->tau, ex->n, &err) < 0) {
    cli_error(CMD, "--length %d: %s", ex->n, err.msg);
    return -1;
  }
  long nseq = r->sweep_n > 0 ? r->sweep_n : 1000;
  if (o->example >= nseq) {
    cli_error(CMD, "%s: example %ld is out of range: the run's sweep has %ld sequences "
              "per length (examples 0..%ld)", path, o->example, nseq, nseq - 1);
    return -1;
  }
  rt_ar_task task = {ex->K, ex->M, ex->tau, ex->n};
  ex->tokens = malloc(sizeof *ex->tokens * (size_t)ex->n);
  if (!ex->tokens) abort();
  int32_t label, i;
  rt_ar_example(ex->seed, RT_STREAM_SWEEP + (uint64_t)ex->n, (uint32_t)ex->index, &task,
                ex->tokens, &label, &i);
  ex->v = label, ex->i = i, ex->q = ex->tokens[ex->n - 1];
  return 0;
}

static char *slug_of(const char *name) {
  char *s = xstrdup(name);
  for (char *p = s; *p; p++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p))
      *p = '_';
  return s;
}

static void classify(probe_val *p, int n) {
  const ir_type *t = &p->type;
  const char *dot = strrchr(p->name, '.');
  const char *base = dot ? dot + 1 : p->name;
  bool sq = t->rank >= 2 && t->dim[t->rank - 1] == n && t->dim[t->rank - 2] == n;
  p->kind = P_OTHER;
  if (t->dtype != IR_F32) return;
  if (sq && (!strcmp(base, "attn") || t->rank >= 3)) {
    p->kind = P_ATTN;
    p->heads = 1;
    for (int a = 0; a < t->rank - 2; a++) p->heads *= t->dim[a];
  } else if ((t->rank == 1 || t->rank == 2) && t->dim[0] == n) {
    p->kind = P_SEQ;
    p->cols = t->rank == 2 ? t->dim[1] : 1;
  }
}

/* Writes and renders the figures, inspect.md; prints the summary. */
static int report(const opts *o, const char *dir, const example *ex, const cm_run *r,
                  probe_val *pv, int np) {
  ir_error err;
  rt_buf md = {0};
  describe_example(&md, ex, o->ck, r);
  printf("recall inspect: %s, example %ld (length %d): q %d at %d, v %d at %d; "
         "predicted %d (p %.3f), label %d\n", r->model, ex->index, ex->n, ex->q, ex->i,
         ex->v, ex->i + ex->tau, ex->pred, ex->p_pred, ex->v);
  const char **names = malloc(sizeof *names * (size_t)(np ? np : 1));
  if (!names) abort();
  int nf = 0, rc = 0, n_attn = 0;
  bool prev_head = false, copy_head = false, copy_after_prev = false;
  for (int k = 0; k < np && rc == 0; k++) {
    probe_val *p = &pv[k];
    rt_buf dat = {0}, gp = {0};
    if (p->kind == P_ATTN) {
      attn_figure(p, ex, &dat, &gp);
      bool had_prev = prev_head, copy = false;
      attn_section(&md, p, ex, &prev_head, &copy);
      copy_after_prev |= copy && had_prev;
      copy_head |= copy;
      n_attn++;
    } else if (p->kind == P_SEQ) {
      seq_figure(p, ex, &dat, &gp);
      seq_section(&md, p, ex);
    }
    if (dat.len) {
      rc = rt_gp_write(dir, p->slug, &dat, &gp, &err);
      names[nf++] = p->slug;
    }
    rt_buf_free(&dat), rt_buf_free(&gp);
  }
  if (rc < 0) {
    cli_error(CMD, "%s", err.msg);
    free(names), rt_buf_free(&md);
    return -1;
  }
  bool other = false;
  for (int k = 0; k < np; k++) other |= pv[k].kind == P_OTHER;
  if (other) {
    rt_buf_printf(&md, "## Other probes (not drawn)\n\n");
    for (int k = 0; k < np; k++) {
      char shape[64];
      if (pv[k].kind == P_OTHER)
        rt_buf_printf(&md, "- %s %s: neither [..., n, n] attention weights nor [n, C] "
                      "values by position\n", pv[k].name,
                      ir_type_str(&pv[k].type, shape, sizeof shape));
    }
    rt_buf_printf(&md, "\n");
  }
  if (np == 0)
    rt_buf_printf(&md, "The spec marks no values to inspect: `probe(name, x)` in a spec "
                  "(specs/lib/nn.lua does it for attention weights and Mamba's dt) adds "
                  "one.\n\n");
  if (copy_after_prev)
    rt_buf_printf(&md, "## Mechanism\n\nA head that moves the query into the value's "
                  "position (a previous-token or tau-back head) comes before a head that "
                  "copies the value at the last position: the induction-head "
                  "mechanism.\n");
  else if (n_attn && copy_head)
    rt_buf_printf(&md, "## Mechanism\n\nAn attention head copies the value at the last "
                  "position; no attention layer before it is a previous-token head (in "
                  "a hybrid, the Mamba layer can do that part).\n");
  char *prog = o->render && nf ? rt_gp_find("gnuplot") : NULL;
  if (nf && !prog)
    rt_buf_printf(&md, "\n> Figures are not rendered%s: run `gnuplot NAME.gp` in this "
                  "directory to render NAME.png and NAME.svg from NAME.dat.\n",
                  o->render ? " (gnuplot not found)" : "");
  char *md_path = join(dir, "inspect.md");
  rc = rt_write_atomic(md_path, md.s, md.len, &err);
  if (rc < 0) cli_error(CMD, "%s", err.msg);
  int rendered = 0;
  if (rc == 0 && prog && rt_gp_render(prog, dir, names, nf, &rendered, &err) < 0) {
    cli_error(CMD, "%s", err.msg);
    rc = -1;
  }
  if (rc == 0 && o->render && nf && !prog)
    fprintf(stderr, "gnuplot not found: figures skipped (scripts in %s)\n", dir);
  if (rc == 0 && nf == 0)
    printf("wrote %s (the spec probes nothing to draw)\n", md_path);
  else if (rc == 0 && o->render && prog)
    printf("wrote %s and %d figure%s (%d rendered) in %s\n", md_path, nf, nf == 1 ? "" : "s",
           rendered, dir);
  else if (rc == 0)
    printf("wrote %s and %d figure%s (data and gnuplot scripts, not rendered) in %s\n",
           md_path, nf, nf == 1 ? "" : "s", dir);
  free(prog), free(md_path), free(names);
  rt_buf_free(&md);
  return rc;
}

/* Runs the example through the model at its length; fills the prediction
 * and the probes' values (owned by *vals). */
static int run_model(rt_tensors *ck, const cm_run *r, example *ex,
                     fe_model **fm, ir_func **f, double ***vals) {
  ir_error err;
  if (!(*fm = cm_load_at(r, ex->n, &err))) {
    cli_error(CMD, "%s", err.msg);
    return -1;
  }
  if (!(*f = fe_probe_function(*fm, &err))) {
    cli_error(CMD, "%s", err.msg);
    return -1;
  }
  int lo = ir_find_output(*f, "logits"), so = ir_find_output(*f, "loss");
  if (lo < 0 || so < 0) {
    cli_error(CMD, "%s: the model has no \"logits\" and \"loss\" outputs", r->spec);
    return -1;
  }
  double **lv = bind_leaves(*f, ck, ex, r->spec);
  if (!lv) return -1;
  *vals = ir_interp(*f, IR_PREC_F32, (const double *const *)lv, &err);
  for (int id = 0; id < (*f)->n_nodes; id++) free(lv[id]);
  free(lv);
  if (!*vals) {
    cli_error(CMD, "%s: %s", r->spec, err.msg);
    return -1;
  }
  const ir_node *ln = &(*f)->nodes[(*f)->outs[lo].node];
  int K = (int)ir_numel(&ln->type);
  if (K != ex->K || ex->v >= K) {
    cli_error(CMD, "%s: the logits have %d classes but the task has K = %d", r->spec, K, ex->K);
    return -1;
  }
  const double *lg = (*vals)[(*f)->outs[lo].node];
  ex->pred = row_argmax(lg, K);
  double z = 0;
  for (int k = 0; k < K; k++) z += exp(lg[k] - lg[ex->pred]);
  ex->p_pred = 1.0 / z;
  ex->p_label = exp(lg[ex->v] - lg[ex->pred]) / z;
  ex->loss = (*vals)[(*f)->outs[so].node][0];
  return 0;
}

int cmd_inspect(int argc, char **argv) {
  opts o;
  int st = parse_args(argc, argv, &o);
  if (st) return st < 0 ? 0 : st;
  ir_error err;
  rt_tensors *ck = rt_checkpoint_read(o.ck, &err);
  if (!ck) {
    cli_error(CMD, "%s", err.msg);
    return 1;
  }
  int status = 1;
  cm_run r = {0};
  example ex = {0};
  fe_model *fm = NULL;
  ir_func *f = NULL;
  double **vals = NULL;
  probe_val *pv = NULL;
  char *dir = NULL;
  if (cm_setup_checkpoint(&r, CMD, ck, o.ck) < 0 || make_example(&ex, &r, &o, o.ck) < 0 ||
      run_model(ck, &r, &ex, &fm, &f, &vals) < 0)
    goto out;
  pv = calloc((size_t)(fm->n_probes ? fm->n_probes : 1), sizeof *pv);
  if (!pv) abort();
  for (int k = 0; k < fm->n_probes; k++) {
    const fe_probe *p = &fm->probes[k];
    pv[k] = (probe_val){.name = p->name, .slug = slug_of(p->name),
                        .type = f->nodes[p->node].type, .v = vals[p->node]};
    classify(&pv[k], ex.n);
  }
  if (o.dir) {
    dir = xstrdup(o.dir);
  } else {
    const char *slash = strrchr(o.ck, '/');
    dir = slash ? fmt("%.*s/inspect", (int)(slash - o.ck), o.ck) : xstrdup("inspect");
  }
  if (cm_mkdirs(CMD, dir) < 0) goto out;
  if (report(&o, dir, &ex, &r, pv, fm->n_probes) == 0) status = fflush(stdout) == 0 ? 0 : 1;
out:
  for (int k = 0; pv && fm && k < fm->n_probes; k++) free(pv[k].slug);
  free(pv), free(dir), free(ex.tokens);
  if (f) ir_values_free(f, vals);
  ir_func_free(f);
  fe_model_free(fm);
  cm_free(&r);
  rt_tensors_free(ck);
  return status;
}
