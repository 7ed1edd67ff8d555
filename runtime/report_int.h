/* report_int.h — internal to recall's reports (not public: the API is
 * rt_report in runtime.h). The report is cut along its stages:
 *   report_load.c     small shared helpers; results.csv and convergence.csv
 *                     read into runs; the experiment directories of a study
 *   report_scope.c    runs grouped by task into curves (seeds pooled) with
 *                     their statistics; constant predictors
 *   report_figures.c  figures as gnuplot data + scripts, rendered to PNG
 *                     and SVG (the rt_gp_ part is shared with `recall
 *                     inspect`, cli/cmd_inspect.c)
 *   report_findings.c findings written from the measured values, and the
 *                     comparisons across M, tau and d
 *   report.c          report.md (tables, sections) and rt_report
 */
#ifndef RECALL_REPORT_INT_H
#define RECALL_REPORT_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime.h"

/* The gnuplot helpers (rt_gp_*) are public: runtime.h. */

/* ======================================================================
 * Thresholds of the findings and tables
 * ====================================================================== */

#define HOLD 0.9 /* a curve "holds" a length when its mean is >= HOLD */
#define FAST 0.95 /* convergence: first evaluation at or above FAST */
#define NEAR 0.05 /* "at chance": within NEAR of 1/K */
#define SAME 0.02 /* differences below this are "no effect" */

/* ======================================================================
 * Small helpers (report_load.c)
 * ====================================================================== */

void *rp_xrealloc(void *p, size_t n); /* aborts when out of memory */
char *rp_xstrndup(const char *s, size_t n);
char *rp_xstrdup(const char *s);
char *rp_join(const char *a, const char *b); /* "a/b", malloc'd */
bool rp_eq(const char *a, const char *b);    /* NULL equals "" */
/* The whole file, NUL-terminated; NULL with *missing set when it does not
 * exist, NULL with a message on any other failure. */
char *rp_slurp(const char *path, bool *missing, ir_error *err);
/* qsort, which must not see a NULL base even for no elements. */
void rp_sort_n(void *base, size_t n, size_t size,
               int (*cmp)(const void *, const void *));
/* "192 (3L)" for the round multiples of L, else "71". */
const char *rp_fmt_len(char *buf, size_t n, int len, int L);
/* printf into a new malloc'd string. */
char *rp_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

#define PUSH(arr, n, cap, v)                                              \
  do {                                                                    \
    if ((n) == (cap)) {                                                   \
      (cap) = (cap) ? 2 * (cap) : 8;                                      \
      (arr) = rp_xrealloc((arr), sizeof *(arr) * (size_t)(cap));          \
    }                                                                     \
    (arr)[(n)++] = (v);                                                   \
  } while (0)

/* ======================================================================
 * Runs: one per `run` of results.csv, with its sweep and its convergence
 * (report_load.c)
 * ====================================================================== */

typedef struct {
  int len, n;
  double acc;
} sw_pt;

typedef struct {
  long step;
  double acc;
} cv_pt;

typedef struct {
  char *name;
  int exp;                    /* its experiment, in a study */
  char **keys, **vals;        /* its run-level columns */
  int nkv;
  const char *model, *status; /* in vals */
  int K, L, M, tau, d, batch; /* d 0: not given */
  long seed, max_steps;
  sw_pt *sw;
  int n_sw, cap_sw;
  cv_pt *cv;
  int n_cv, cap_cv;
  long first_fast; /* first step with test accuracy >= FAST, or -1 */
  int constant;    /* the label it predicts at every length, or -1 */
} run;

typedef struct {
  char *dir, *name; /* the directory and its base name */
  rt_report_meta meta;
  char **cols; /* run-level columns of results.csv, in order */
  int n_cols, cap_cols;
  run **runs;
  int n_runs, cap_runs;
  bool has_conv;
  char *findings; /* summary bullets, kept for the study report */
} expdata;

const char *rp_run_get(const run *r, const char *key); /* column or NULL */
void rp_exp_free(expdata *e);
/* Reads e->dir's results.csv (required) and convergence.csv (optional),
 * sorts each run's points and asks o->meta for the metadata. */
int rp_load_experiment(expdata *e, const rt_report_options *o, ir_error *err);
bool rp_has_file(const char *dir, const char *file); /* a regular file */
/* Sub-directories of dir holding results.csv, sorted (malloc'd). */
char **rp_experiment_dirs(const char *dir, int *n_out);
char *rp_base_name(const char *dir); /* malloc'd */

/* ======================================================================
 * Scope: the runs one report covers, grouped by task and cut into curves
 * (one per model, seeds pooled), with their statistics (report_scope.c)
 * ====================================================================== */

/* Label counts of the sweep data, regenerated to recognise constant
 * predictors; kept across the experiments of a study. */
typedef struct {
  long seed;
  int K, M, tau, nseq, cap;
  int *count; /* [(cap + 1) * K]; -1: length not counted yet */
} labels;

typedef struct {
  labels *l;
  int n, cap;
} label_cache;

void rp_label_cache_free(label_cache *lc);

typedef struct {
  long x;
  double mean, lo, hi;
  int k; /* seeds */
} agg;

typedef struct {
  char *label;
  run **runs;
  int n_runs, cap_runs;
  agg *acc; /* by length */
  int n_acc;
  agg *conv; /* test accuracy by step */
  int n_conv;
  int hold_hi, drop;  /* mean >= HOLD from L up to hold_hi; drop: next length (0: none) */
  int hold_lo, below; /* same going down from L; below: next length (0: none) */
  double fast_mean;   /* steps to FAST, over the fast_n seeds that reached it */
  int fast_n;
  long max_steps;
  int constant;       /* -1: not; -2: a different label per seed; else the label */
  int n_constant;     /* runs predicting a constant */
  bool chance;        /* mean within NEAR of 1/K at every length */
  double beyond;      /* mean accuracy over the lengths above L (NAN: none) */
  const char *color;
} curve;

typedef struct {
  const char *problem;
  int K, L, M, tau, d;
  curve **c;
  int n_c, cap_c;
  int min_len, max_len, batch_lo, batch_hi;
  char *slug, *desc;
} group;

typedef struct {
  run **runs;
  int n_runs;
  char **cols; /* run-level columns (not owned) */
  int n_cols;
  group **g;
  int n_g, cap_g;
  const char **labels; /* curve labels, first appearance first */
  int n_labels, cap_labels;
  bool vary_K, vary_L, vary_problem;
} scope;

/* The curve's mean accuracy at len, or NULL. */
const agg *rp_acc_at(const curve *c, long len);
/* Fills s (runs, cols given) with its groups, curves and statistics. */
void rp_scope_build(scope *s, label_cache *lc);
void rp_scope_free(scope *s);

/* ======================================================================
 * Figures: data blocks (.dat) and a gnuplot script (.gp) per figure
 * (report_figures.c)
 * ====================================================================== */

typedef struct {
  char *title;
  int block;
  const char *color;
  bool band;
} series;

typedef struct {
  char *title, *xlabel, *ylabel;
  long xlo, xhi;  /* xhi <= xlo: automatic */
  int vline;      /* dashed vertical line (the training length), 0: none */
  double chance;  /* dashed horizontal line, 0: none */
  double target;  /* dotted horizontal line, 0: none */
  series *s;
  int n_s, cap_s;
  bool empty;     /* a hole in the grid */
} panel;

typedef struct {
  char *name, *title, *caption;
  int rows, cols;
  panel *p;
  int n_p, cap_p;
  rt_buf dat;
  int n_blocks;
  const char *x_col;
} figure;

typedef struct {
  figure **f;
  int n, cap;
} figures;

/* A new figure in fs (name, title, caption: malloc'd, taken). */
figure *rp_fig_new(figures *fs, const char *x_col, char *name, char *title,
                   char *caption);
/* A panel (title malloc'd and taken, or NULL). */
panel *rp_fig_panel(figure *f, char *title, const char *xlabel,
                    const char *ylabel);
void rp_fig_hole(figure *f); /* an empty cell of the grid */
/* Adds the points as a data block and a series drawing it. */
void rp_fig_series(figure *f, panel *p, const char *title, const char *color,
                   bool band, const agg *a, int n);
void rp_figures_free(figures *fs);
/* Writes figdir/NAME.dat and NAME.gp. */
int rp_fig_write(const char *figdir, const figure *f, ir_error *err);
/* Renders every figure of fs (rt_gp_render). */
int rp_render(const char *prog, const char *figdir, const figures *fs,
              int *rendered, ir_error *err);

/* ======================================================================
 * Findings and comparisons (report_findings.c)
 * ====================================================================== */

enum { F_M, F_TAU, F_D, N_F }; /* the factors compared */

/* The bullets of one group: learned or not, constants, generalisation,
 * ranking, convergence. */
void rp_group_findings(rt_buf *out, const group *g);
/* The accuracy panel of a group: its lengths, L and chance marked. */
void rp_acc_panel_style(panel *p, const group *g);
/* Figures and findings of the comparisons of factor f; the markdown goes
 * to md (one subsection when there is anything to compare). */
void rp_comparisons(const scope *s, int f, bool cross_exp, figures *fs,
                    rt_buf *md, rt_buf *findings);

#endif
