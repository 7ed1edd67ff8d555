/* report.c — `recall report`: an experiment directory's results.csv and
 * convergence.csv turned into curves (mean, min and max over seeds),
 * gnuplot figures and report.md with tables and findings built from the
 * numbers; a study directory gets one report per experiment plus its own.
 *
 * Flow: load (CSV -> runs) -> scope (runs -> groups of curves, stats) ->
 * figures (.dat/.gp, rendered by gnuplot) -> markdown. */
#include "runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HOLD 0.9 /* a curve "holds" a length when its mean is >= HOLD */
#define FAST 0.95 /* convergence: first evaluation at or above FAST */
#define NEAR 0.05 /* "at chance": within NEAR of 1/K */
#define SAME 0.02 /* differences below this are "no effect" */

/* ---------------------------------------------------------------------
 * Small helpers
 * --------------------------------------------------------------------- */

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) abort();
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *d = xrealloc(NULL, n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

#define PUSH(arr, n, cap, v)                                              \
  do {                                                                    \
    if ((n) == (cap)) {                                                   \
      (cap) = (cap) ? 2 * (cap) : 8;                                      \
      (arr) = xrealloc((arr), sizeof *(arr) * (size_t)(cap));             \
    }                                                                     \
    (arr)[(n)++] = (v);                                                   \
  } while (0)

static char *join(const char *a, const char *b) {
  rt_buf p = {0};
  rt_buf_printf(&p, "%s/%s", a, b);
  return p.s;
}

static bool eq(const char *a, const char *b) {
  return !strcmp(a ? a : "", b ? b : "");
}

/* The whole file, NUL-terminated; NULL with *missing set when it does not
 * exist, NULL with a message on any other failure. */
static char *slurp(const char *path, bool *missing, ir_error *err) {
  FILE *f = fopen(path, "rb");
  *missing = false;
  if (!f) {
    if (errno == ENOENT) *missing = true;
    else ir_err(err, "%s: cannot read: %s", path, strerror(errno));
    return NULL;
  }
  size_t n = 0, cap = 1 << 16, k;
  char *s = xrealloc(NULL, cap);
  while ((k = fread(s + n, 1, cap - n - 1, f)) > 0)
    if ((n += k) + 1 == cap) s = xrealloc(s, cap *= 2);
  bool bad = ferror(f);
  fclose(f);
  if (bad) {
    ir_err(err, "%s: read failed", path);
    free(s);
    return NULL;
  }
  s[n] = '\0';
  return s;
}

/* qsort, which must not see a NULL base even for no elements. */
static void sort_n(void *base, size_t n, size_t size,
                   int (*cmp)(const void *, const void *)) {
  if (n > 1) qsort(base, n, size, cmp);
}

static bool parse_long(const char *s, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno) return false;
  *out = v;
  return true;
}

static bool parse_double(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (!*s || *end) return false;
  *out = v;
  return true;
}

/* "192 (3L)" for the round multiples of L, else "71". */
static const char *fmt_len(char *buf, size_t n, int len, int L) {
  const char *rel = len == L ? "L" : len == 2 * L ? "2L" : len == 3 * L ? "3L"
                  : len * 2 == L ? "L/2" : len == 4 * L ? "4L" : NULL;
  if (rel) snprintf(buf, n, "%d (%s)", len, rel);
  else snprintf(buf, n, "%d", len);
  return buf;
}

/* ---------------------------------------------------------------------
 * CSV (RFC 4180: quoted fields may hold commas, quotes and newlines)
 * --------------------------------------------------------------------- */

typedef struct {
  char **f;
  int n, cap, line;
} csv_rec;

typedef struct {
  csv_rec *r;
  int n, cap;
} csv;

static void csv_free(csv *c) {
  for (int i = 0; i < c->n; i++) {
    for (int j = 0; j < c->r[i].n; j++) free(c->r[i].f[j]);
    free(c->r[i].f);
  }
  free(c->r);
  *c = (csv){0};
}

static int csv_parse(csv *c, const char *path, const char *p, ir_error *err) {
  int line = 1;
  while (*p) {
    if (*p == '\n' || *p == '\r') { /* blank line */
      if (*p == '\n') line++;
      p++;
      continue;
    }
    csv_rec rec = {.line = line};
    for (;;) {
      char *field;
      if (*p == '"') {
        size_t n = 0, cap = 16;
        field = xrealloc(NULL, cap);
        for (p++;; p++) {
          if (!*p) {
            ir_err(err, "%s:%d: unterminated quoted field", path, rec.line);
            free(field);
            c->n++, c->r = xrealloc(c->r, sizeof *c->r * (size_t)c->n);
            c->r[c->n - 1] = rec; /* freed with the rest */
            return -1;
          }
          if (*p == '"' && p[1] != '"') break;
          if (*p == '"') p++;
          if (*p == '\n') line++;
          if (n + 1 == cap) field = xrealloc(field, cap *= 2);
          field[n++] = *p;
        }
        field[n] = '\0';
        p++;
      } else {
        size_t n = strcspn(p, ",\r\n");
        field = xstrndup(p, n);
        p += n;
      }
      PUSH(rec.f, rec.n, rec.cap, field);
      if (*p != ',') break;
      p++;
    }
    PUSH(c->r, c->n, c->cap, rec);
    if (*p == '\r') p++;
    if (*p == '\n') p++, line++;
    else if (*p) {
      ir_err(err, "%s:%d: text after a quoted field", path, rec.line);
      return -1;
    }
  }
  return 0;
}

static int csv_col(const csv_rec *h, const char *name) {
  for (int i = 0; i < h->n; i++)
    if (!strcmp(h->f[i], name)) return i;
  return -1;
}

/* ---------------------------------------------------------------------
 * Runs: one per `run` of results.csv, with its sweep and its convergence
 * --------------------------------------------------------------------- */

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

static const char *run_get(const run *r, const char *key) {
  for (int i = 0; i < r->nkv; i++)
    if (!strcmp(r->keys[i], key)) return r->vals[i];
  return NULL;
}

static void run_free(run *r) {
  for (int i = 0; i < r->nkv; i++) free(r->keys[i]), free(r->vals[i]);
  free(r->keys), free(r->vals), free(r->name), free(r->sw), free(r->cv);
  free(r);
}

void rt_report_meta_free(rt_report_meta *m) {
  free(m->name), free(m->title), free(m->problem);
  for (int i = 0; i < m->n; i++) free(m->keys[i]), free(m->values[i]);
  free(m->keys), free(m->values);
  *m = (rt_report_meta){0};
}

static void exp_free(expdata *e) {
  for (int i = 0; i < e->n_runs; i++) run_free(e->runs[i]);
  for (int i = 0; i < e->n_cols; i++) free(e->cols[i]);
  free(e->runs), free(e->cols), free(e->dir), free(e->name), free(e->findings);
  rt_report_meta_free(&e->meta);
}

static bool row_col(const char *c) {
  return !strcmp(c, "length") || !strcmp(c, "accuracy") || !strcmp(c, "loss") ||
         !strcmp(c, "n");
}

static run *find_run(expdata *e, const char *name, int *hint) {
  if (*hint < e->n_runs && !strcmp(e->runs[*hint]->name, name))
    return e->runs[*hint];
  for (int i = 0; i < e->n_runs; i++)
    if (!strcmp(e->runs[i]->name, name)) return e->runs[*hint = i];
  return NULL;
}

/* An integer column of a run (dflt when the column is absent). */
static int int_field(const run *r, const char *key, long dflt, long *out,
                     const char *path, int line, ir_error *err) {
  const char *v = run_get(r, key);
  if (!v) {
    *out = dflt;
    return 0;
  }
  if (!parse_long(v, out)) {
    ir_err(err, "%s:%d: column %s: \"%s\" is not an integer", path, line,
           key, v);
    return -1;
  }
  return 0;
}

static run *new_run(expdata *e, const csv_rec *h, const csv_rec *rec,
                    const char *path, ir_error *err) {
  run *r = xrealloc(NULL, sizeof *r);
  *r = (run){.first_fast = -1, .constant = -1};
  r->name = xstrdup(rec->f[csv_col(h, "run")]);
  for (int j = 0; j < h->n; j++) {
    if (row_col(h->f[j])) continue;
    int n = r->nkv++;
    r->keys = xrealloc(r->keys, sizeof *r->keys * (size_t)r->nkv);
    r->vals = xrealloc(r->vals, sizeof *r->vals * (size_t)r->nkv);
    r->keys[n] = xstrdup(h->f[j]);
    r->vals[n] = xstrdup(rec->f[j]);
  }
  r->model = run_get(r, "model");
  r->status = run_get(r, "status");
  long v[7];
  static const char *const keys[7] = {"K", "L", "M", "tau", "d", "batch", "max_steps"};
  static const long dflt[7] = {0, 0, 1, 1, 0, 0, 0};
  for (int i = 0; i < 7; i++)
    if (int_field(r, keys[i], dflt[i], &v[i], path, rec->line, err) < 0) goto fail;
  if (int_field(r, "seed", 0, &r->seed, path, rec->line, err) < 0) goto fail;
  if (v[0] < 2 || v[1] < 1 || v[2] < 1 || v[3] < 1 || v[0] > 1 << 20 ||
      v[1] > 1 << 20) {
    ir_err(err, "%s:%d: K %ld, L %ld, M %ld, tau %ld: not a valid task", path,
           rec->line, v[0], v[1], v[2], v[3]);
    goto fail;
  }
  r->K = (int)v[0], r->L = (int)v[1], r->M = (int)v[2], r->tau = (int)v[3];
  r->d = (int)v[4], r->batch = (int)v[5], r->max_steps = v[6];
  PUSH(e->runs, e->n_runs, e->cap_runs, r);
  return r;
fail:
  run_free(r);
  return NULL;
}

static int take_results(expdata *e, const csv *c, const char *path,
                        ir_error *err) {
  if (c->n == 0) {
    ir_err(err, "%s: empty file (no header)", path);
    return -1;
  }
  const csv_rec *h = &c->r[0];
  static const char *const need[] = {"run", "model", "K", "L", "length", "accuracy"};
  for (size_t i = 0; i < sizeof need / sizeof *need; i++)
    if (csv_col(h, need[i]) < 0) {
      ir_err(err, "%s: no column \"%s\" in the header", path, need[i]);
      return -1;
    }
  for (int j = 0; j < h->n; j++)
    if (!row_col(h->f[j])) PUSH(e->cols, e->n_cols, e->cap_cols, xstrdup(h->f[j]));
  int i_run = csv_col(h, "run"), i_len = csv_col(h, "length");
  int i_acc = csv_col(h, "accuracy"), i_n = csv_col(h, "n"), hint = 0;
  for (int i = 1; i < c->n; i++) {
    const csv_rec *rec = &c->r[i];
    if (rec->n != h->n) {
      ir_err(err, "%s:%d: %d fields, the header has %d", path, rec->line,
             rec->n, h->n);
      return -1;
    }
    run *r = find_run(e, rec->f[i_run], &hint);
    if (!r && !(r = new_run(e, h, rec, path, err))) return -1;
    if (!*rec->f[i_len]) continue; /* a diverged run: no sweep */
    long len, n = 0;
    double acc;
    if (!parse_long(rec->f[i_len], &len) || len < 1 ||
        !parse_double(rec->f[i_acc], &acc) ||
        (i_n >= 0 && *rec->f[i_n] && !parse_long(rec->f[i_n], &n))) {
      ir_err(err, "%s:%d: bad length, accuracy or n (\"%s\", \"%s\")", path,
             rec->line, rec->f[i_len], rec->f[i_acc]);
      return -1;
    }
    sw_pt p = {(int)len, (int)n, acc};
    PUSH(r->sw, r->n_sw, r->cap_sw, p);
  }
  return 0;
}

static int cmp_sw(const void *a, const void *b) {
  return ((const sw_pt *)a)->len - ((const sw_pt *)b)->len;
}

static int cmp_cv(const void *a, const void *b) {
  long x = ((const cv_pt *)a)->step, y = ((const cv_pt *)b)->step;
  return (x > y) - (x < y);
}

static int take_convergence(expdata *e, const csv *c, const char *path,
                            ir_error *err) {
  if (c->n == 0) return 0;
  const csv_rec *h = &c->r[0];
  int i_run = csv_col(h, "run"), i_step = csv_col(h, "step");
  int i_acc = csv_col(h, "test_acc"), hint = 0;
  if (i_run < 0 || i_step < 0 || i_acc < 0) {
    ir_err(err, "%s: the header needs run, step and test_acc", path);
    return -1;
  }
  for (int i = 1; i < c->n; i++) {
    const csv_rec *rec = &c->r[i];
    if (rec->n != h->n) {
      ir_err(err, "%s:%d: %d fields, the header has %d", path, rec->line,
             rec->n, h->n);
      return -1;
    }
    run *r = find_run(e, rec->f[i_run], &hint);
    if (!r) continue; /* a run not finished yet */
    cv_pt p;
    if (!parse_long(rec->f[i_step], &p.step) ||
        !parse_double(rec->f[i_acc], &p.acc)) {
      ir_err(err, "%s:%d: bad step or test_acc (\"%s\", \"%s\")", path,
             rec->line, rec->f[i_step], rec->f[i_acc]);
      return -1;
    }
    PUSH(r->cv, r->n_cv, r->cap_cv, p);
    e->has_conv = true;
  }
  return 0;
}

/* Reads DIR/NAME into e with take(); a missing file is an error only when
 * required. */
static int load_csv(expdata *e, const char *file, bool required,
                    int (*take)(expdata *, const csv *, const char *, ir_error *),
                    ir_error *err) {
  char *path = join(e->dir, file);
  bool missing;
  char *text = slurp(path, &missing, err);
  int rc = 0;
  if (!text) {
    if (missing && required) ir_err(err, "%s: not found", path);
    rc = missing && !required ? 0 : -1;
  } else {
    csv c = {0};
    rc = csv_parse(&c, path, text, err);
    if (rc == 0) rc = take(e, &c, path, err);
    csv_free(&c);
    free(text);
  }
  free(path);
  return rc;
}

static int load_experiment(expdata *e, const rt_report_options *o,
                           ir_error *err) {
  if (load_csv(e, "results.csv", true, take_results, err) < 0 ||
      load_csv(e, "convergence.csv", false, take_convergence, err) < 0)
    return -1;
  for (int i = 0; i < e->n_runs; i++) {
    run *r = e->runs[i];
    sort_n(r->sw, (size_t)r->n_sw, sizeof *r->sw, cmp_sw);
    sort_n(r->cv, (size_t)r->n_cv, sizeof *r->cv, cmp_cv);
    for (int j = 0; j < r->n_cv && r->first_fast < 0; j++)
      if (r->cv[j].acc >= FAST) r->first_fast = r->cv[j].step;
  }
  if (o && o->meta && o->meta(o->ctx, e->dir, &e->meta, err) < 0) return -1;
  return 0;
}

/* ---------------------------------------------------------------------
 * Constant predictors. A model that always answers label c scores, at
 * each length, exactly the frequency of c among that length's sweep
 * labels; the sweep data are regenerated here (rt_ar_batch with the
 * run's seed on stream RT_STREAM_SWEEP + length) to check for it.
 * --------------------------------------------------------------------- */

typedef struct {
  long seed;
  int K, M, tau, nseq, cap;
  int *count; /* [(cap + 1) * K]; -1: length not counted yet */
} labels;

typedef struct {
  labels *l;
  int n, cap;
} label_cache;

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
    l->count = xrealloc(l->count, sizeof *l->count * (size_t)(len + 1) * (size_t)l->K);
    for (int i = (l->cap + 1) * l->K; i < (len + 1) * l->K; i++) l->count[i] = -1;
    l->cap = len;
  }
  int *cnt = l->count + (size_t)len * (size_t)l->K;
  if (cnt[0] < 0) {
    rt_ar_task task = {r->K, r->M, r->tau, len};
    ir_error e;
    if (r->seed < 0 || rt_ar_validate(r->K, r->M, r->tau, len, &e) < 0) return NULL;
    int32_t *tok = xrealloc(NULL, sizeof *tok * (size_t)nseq * (size_t)len);
    int32_t *lab = xrealloc(NULL, sizeof *lab * (size_t)nseq);
    rt_ar_batch((uint64_t)r->seed, RT_STREAM_SWEEP + (uint64_t)len, 0, nseq,
                &task, tok, lab);
    memset(cnt, 0, sizeof *cnt * (size_t)l->K);
    for (int i = 0; i < nseq; i++) cnt[lab[i]]++;
    free(tok), free(lab);
  }
  return cnt;
}

static void label_cache_free(label_cache *lc) {
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
  bool *cand = xrealloc(NULL, (size_t)K);
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
  double mean, lo, hi;
  int k; /* seeds */
} agg;

typedef struct {
  long x;
  double y;
} xy;

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

static const agg *acc_at(const curve *c, long len) {
  return agg_at(c->acc, c->n_acc, len);
}

static int cmp_xy(const void *a, const void *b) {
  long x = ((const xy *)a)->x, y = ((const xy *)b)->x;
  return (x > y) - (x < y);
}

/* Mean, min and max of y at each x (pts sorted here). */
static agg *aggregate(xy *pts, int n, int *n_out) {
  sort_n(pts, (size_t)n, sizeof *pts, cmp_xy);
  agg *a = xrealloc(NULL, sizeof *a * (size_t)n);
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
    if (!r->n_cv || !eq(r->status, "reached")) continue;
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
  const agg *aL = acc_at(c, L);
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
    const char *k = s->cols[i], *v = run_get(r, k);
    if (!label_col(k)) continue;
    bool varies = false;
    for (int j = 0; j < n && !varies; j++)
      varies = eq(in_group[j]->model, r->model) && !eq(run_get(in_group[j], k), v);
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

static void scope_build(scope *s, label_cache *lc) {
  for (int i = 0; i < s->n_runs; i++) s->runs[i]->constant = constant_label(lc, s->runs[i]);
  /* groups */
  run ***members = NULL;
  int *n_members = NULL;
  for (int i = 0; i < s->n_runs; i++) {
    run *r = s->runs[i];
    const char *problem = run_get(r, "problem");
    int gi = 0;
    while (gi < s->n_g && !(eq(s->g[gi]->problem, problem) && s->g[gi]->K == r->K &&
                            s->g[gi]->L == r->L && s->g[gi]->M == r->M &&
                            s->g[gi]->tau == r->tau && s->g[gi]->d == r->d))
      gi++;
    if (gi == s->n_g) {
      group *g = xrealloc(NULL, sizeof *g);
      *g = (group){problem, r->K, r->L, r->M, r->tau, r->d, NULL, 0, 0,
                   0, 0, r->batch, r->batch, NULL, NULL};
      PUSH(s->g, s->n_g, s->cap_g, g);
      members = xrealloc(members, sizeof *members * (size_t)s->n_g);
      n_members = xrealloc(n_members, sizeof *n_members * (size_t)s->n_g);
      members[gi] = NULL, n_members[gi] = 0;
    }
    members[gi] = xrealloc(members[gi], sizeof **members * (size_t)(n_members[gi] + 1));
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
        curve *c = xrealloc(NULL, sizeof *c);
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
  if (s->n_g) sort_n(s->g, (size_t)s->n_g, sizeof *s->g, cmp_group);
  for (int gi = 0; gi < s->n_g; gi++) {
    const group *g = s->g[gi], *g0 = s->g[0];
    s->vary_K |= g->K != g0->K, s->vary_L |= g->L != g0->L;
    s->vary_problem |= !eq(g->problem, g0->problem);
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

static void scope_free(scope *s) {
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

/* ---------------------------------------------------------------------
 * Figures: data blocks (.dat), a gnuplot script (.gp) rendering PNG and
 * SVG, and the run of gnuplot
 * --------------------------------------------------------------------- */

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

static figure *fig_new(figures *fs, const char *x_col, char *name, char *title,
                       char *caption) {
  figure *f = xrealloc(NULL, sizeof *f);
  *f = (figure){.name = name, .title = title, .caption = caption, .rows = 1,
                .cols = 1, .x_col = x_col};
  rt_buf_printf(&f->dat, "# %s\n# Written by recall report. Blocks (gnuplot `index`) "
                "are separated by two blank lines;\n# columns: %s mean min max seeds "
                "(mean, min and max over seeds).\n", title, x_col);
  PUSH(fs->f, fs->n, fs->cap, f);
  return f;
}

static panel *fig_panel(figure *f, char *title, const char *xlabel,
                        const char *ylabel) {
  panel p = {.title = title, .xlabel = xstrdup(xlabel), .ylabel = xstrdup(ylabel)};
  PUSH(f->p, f->n_p, f->cap_p, p);
  return &f->p[f->n_p - 1];
}

static void fig_hole(figure *f) {
  panel p = {.empty = true};
  PUSH(f->p, f->n_p, f->cap_p, p);
}

/* Adds the points as a data block and a series drawing it. */
static void fig_series(figure *f, panel *p, const char *title, const char *color,
                       bool band, const agg *a, int n) {
  rt_buf_printf(&f->dat, "%s# block %d: %s", f->n_blocks ? "\n\n" : "\n", f->n_blocks,
                title);
  if (p->title) rt_buf_printf(&f->dat, " [%s]", p->title); /* the panel */
  rt_buf_printf(&f->dat, "\n# %s mean min max seeds\n", f->x_col);
  for (int i = 0; i < n; i++)
    rt_buf_printf(&f->dat, "%ld %.6f %.6f %.6f %d\n", a[i].x, a[i].mean, a[i].lo,
                  a[i].hi, a[i].k);
  series s = {xstrdup(title), f->n_blocks++, color, band};
  PUSH(p->s, p->n_s, p->cap_s, s);
}

static void fig_free(figure *f) {
  for (int i = 0; i < f->n_p; i++) {
    panel *p = &f->p[i];
    for (int j = 0; j < p->n_s; j++) free(p->s[j].title);
    free(p->s), free(p->title), free(p->xlabel), free(p->ylabel);
  }
  free(f->p), free(f->name), free(f->title), free(f->caption);
  rt_buf_free(&f->dat);
  free(f);
}

static void figures_free(figures *fs) {
  for (int i = 0; i < fs->n; i++) fig_free(fs->f[i]);
  free(fs->f);
  *fs = (figures){0};
}

/* A gnuplot string literal (single quotes, '' for a quote). */
static void gp_str(rt_buf *b, const char *s) {
  rt_buf_printf(b, "'");
  for (; *s; s++) rt_buf_printf(b, *s == '\'' ? "''" : "%c", *s);
  rt_buf_printf(b, "'");
}

static void gp_panel(rt_buf *b, const panel *p, const char *title, bool multi) {
  if (p->empty) {
    rt_buf_printf(b, "  set multiplot next\n");
    return;
  }
  rt_buf_printf(b, "  set title ");
  gp_str(b, title);
  rt_buf_printf(b, " offset 0,%s\n  set xlabel ", p->vline > 0 ? "0.6" : "0");
  gp_str(b, p->xlabel);
  rt_buf_printf(b, "\n  set ylabel ");
  gp_str(b, p->ylabel);
  if (p->xhi > p->xlo) rt_buf_printf(b, "\n  set xrange [%ld:%ld]\n", p->xlo, p->xhi);
  else rt_buf_printf(b, "\n  set xrange [*:*]\n  set autoscale xfix\n");
  /* Panels keep their key in a row above accuracy 1. */
  rt_buf_printf(b, "  set yrange [0:%s]\n  set ytics 0, 0.2, 1\n", multi ? "1.22" : "1.05");
  /* The training length: a dotted line, labelled on the top axis. */
  rt_buf_printf(b, "  unset arrow\n");
  if (p->vline > 0)
    rt_buf_printf(b, "  set arrow from %d, graph 0 to %d, graph 1 nohead dt 3 lw 1.5 "
                  "lc rgb '#555555'\n  set link x2\n  set x2tics ('L = %d' %d) nomirror "
                  "tc rgb '#555555'\n", p->vline, p->vline, p->vline, p->vline);
  else
    rt_buf_printf(b, "  unset x2tics\n");
  if (!multi)
    rt_buf_printf(b, "  set key outside right top Left reverse\n");
  else if (p->n_s > 1)
    rt_buf_printf(b, "  set key top left horizontal maxrows 1 Left reverse font ',9' samplen 2\n");
  else
    rt_buf_printf(b, "  unset key\n");
  rt_buf_printf(b, "  plot");
  const char *sep = " ";
  for (int i = 0; i < p->n_s; i++)
    if (p->s[i].band) {
      rt_buf_printf(b, "%sdat index %d using 1:3:4 with filledcurves fc rgb '%s' "
                    "fs transparent solid 0.2 noborder notitle", sep, p->s[i].block,
                    p->s[i].color);
      sep = ", \\\n       ";
    }
  for (int i = 0; i < p->n_s; i++) {
    rt_buf_printf(b, "%sdat index %d using 1:2 with lines lw 2 lc rgb '%s' title ",
                  sep, p->s[i].block, p->s[i].color);
    gp_str(b, p->s[i].title);
    sep = ", \\\n       ";
  }
  if (p->chance > 0)
    rt_buf_printf(b, "%s%.10g with lines dt 2 lw 1.5 lc rgb '#000000' title "
                  "'chance 1/K'", sep, p->chance);
  if (p->target > 0)
    rt_buf_printf(b, "%s%.10g with lines dt 3 lw 1.5 lc rgb '#888888' title "
                  "'accuracy %.2f'", sep, p->target, p->target);
  rt_buf_printf(b, "\n");
}

static void gp_script(rt_buf *b, const figure *f) {
  bool multi = f->n_p > 1;
  int w = multi ? 440 * f->cols : 960, h = multi ? 350 * f->rows + 90 : 600;
  rt_buf_printf(b, "# %s\n# Written by recall report. Re-render from this directory with\n"
                "#   gnuplot %s.gp\n# which writes %s.png and %s.svg from %s.dat.\n\n",
                f->title, f->name, f->name, f->name, f->name);
  rt_buf_printf(b, "dat = '%s.dat'\ndo for [t = 1:2] {\n  if (t == 1) {\n"
                "    set terminal pngcairo size %d,%d noenhanced font 'Sans,10'\n"
                "    set output '%s.png'\n  } else {\n"
                "    set terminal svg size %d,%d noenhanced font 'Sans,10' "
                "background '#ffffff'\n    set output '%s.svg'\n  }\n"
                "  set grid lc rgb '#dddddd'\n  set border lc rgb '#444444'\n"
                "  set xtics nomirror\n",
                f->name, w, h, f->name, w, h, f->name);
  if (multi) { /* fixed margins (in pixels) leave room for titles and labels */
    rt_buf_printf(b, "  set multiplot layout %d,%d title ", f->rows, f->cols);
    gp_str(b, f->title);
    rt_buf_printf(b, " margins %.4f, %.4f, %.4f, %.4f spacing %.4f, %.4f\n", 70.0 / w,
                  1 - 20.0 / w, 50.0 / h, 1 - 100.0 / h, 85.0 / w, 125.0 / h);
  }
  for (int i = 0; i < f->n_p; i++)
    gp_panel(b, &f->p[i], multi ? f->p[i].title : f->title, multi);
  if (multi) rt_buf_printf(b, "  unset multiplot\n");
  rt_buf_printf(b, "}\nset output\n");
}

static int fig_write(const char *figdir, const figure *f, ir_error *err) {
  rt_buf gp = {0};
  gp_script(&gp, f);
  char file[512];
  snprintf(file, sizeof file, "%s.dat", f->name);
  char *dat_path = join(figdir, file);
  snprintf(file, sizeof file, "%s.gp", f->name);
  char *gp_path = join(figdir, file);
  int rc = rt_write_atomic(dat_path, f->dat.s, f->dat.len, err);
  if (rc == 0) rc = rt_write_atomic(gp_path, gp.s, gp.len, err);
  free(dat_path), free(gp_path);
  rt_buf_free(&gp);
  return rc;
}

/* The program's path: as given when it has a slash, else searched on PATH. */
static char *find_program(const char *name) {
  if (strchr(name, '/')) return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
  const char *path = getenv("PATH");
  while (path && *path) {
    size_t n = strcspn(path, ":");
    rt_buf b = {0};
    rt_buf_printf(&b, "%.*s/%s", (int)n, n ? path : ".", name);
    struct stat st;
    if (stat(b.s, &st) == 0 && S_ISREG(st.st_mode) && access(b.s, X_OK) == 0) return b.s;
    rt_buf_free(&b);
    path += n + (path[n] == ':');
  }
  return NULL;
}

/* Runs `gnuplot NAME.gp` in figdir with stderr to NAME.log (removed on
 * success). Everything the child needs is built before fork. */
static pid_t spawn_gnuplot(const char *prog, const char *figdir, const char *gp,
                           const char *log) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int null = open("/dev/null", O_RDWR);
  if (chdir(figdir) < 0) _exit(126);
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (null >= 0) dup2(null, 0), dup2(null, 1);
  if (fd >= 0) dup2(fd, 2);
  execl(prog, prog, gp, (char *)NULL);
  _exit(127);
}

/* Renders every figure, at most 8 gnuplots at a time. On a failure, the
 * first error line of the script goes into err and -1 is returned. */
static int render(const char *prog, const char *figdir, const figures *fs,
                  int *rendered, ir_error *err) {
  enum { PAR = 8 };
  pid_t pid[PAR];
  int which[PAR], running = 0, next = 0, rc = 0;
  while (next < fs->n || running > 0) {
    if (next < fs->n && running < PAR) {
      char gp[600], log[600];
      snprintf(gp, sizeof gp, "%s.gp", fs->f[next]->name);
      snprintf(log, sizeof log, "%s.log", fs->f[next]->name);
      pid_t p = spawn_gnuplot(prog, figdir, gp, log);
      if (p < 0) {
        ir_err(err, "cannot start %s: %s", prog, strerror(errno));
        rc = -1;
        next = fs->n;
        continue;
      }
      pid[running] = p, which[running++] = next++;
      continue;
    }
    /* Oldest first, by pid: never reap a child of the caller's. */
    int st;
    pid_t p;
    while ((p = waitpid(pid[0], &st, 0)) < 0 && errno == EINTR) {}
    if (p < 0) st = 127 << 8;
    const figure *f = fs->f[which[0]];
    running--;
    memmove(pid, pid + 1, sizeof *pid * (size_t)running);
    memmove(which, which + 1, sizeof *which * (size_t)running);
    char file[600];
    snprintf(file, sizeof file, "%s.log", f->name);
    char *log = join(figdir, file);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      unlink(log);
      (*rendered)++;
    } else if (rc == 0) {
      bool missing;
      ir_error e2;
      char *text = slurp(log, &missing, &e2);
      char *line = text ? text : "", *at = strstr(line, "\" line ");
      if (at) { /* gnuplot's message: "NAME.gp" line 12: ... */
        while (at > line && at[-1] != '\n') at--;
        line = at;
      }
      while (*line == '\n' || *line == ' ') line++;
      ir_err(err, "gnuplot failed on %s/%s.gp (see %s): %.*s", figdir, f->name, log,
             (int)strcspn(line, "\n"), line);
      free(text);
      rc = -1;
    }
    free(log);
  }
  return rc;
}

/* ---------------------------------------------------------------------
 * Findings: sentences built from the measured values
 * --------------------------------------------------------------------- */

static void bullet(rt_buf *b, const rt_buf *s) {
  if (s->s && s->len) rt_buf_printf(b, "- %s\n", s->s);
}

/* "0.973" for the mean at len, or "n/a". */
static const char *fmt_acc(char *buf, size_t n, const curve *c, long len) {
  const agg *a = acc_at(c, len);
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
  int n = g->n_c, *cls = xrealloc(NULL, sizeof *cls * (size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) {
    cls[i] = i;
    for (int j = 0; j < i && cls[i] == i; j++)
      if (cls[j] == j && identical(g->c[i], g->c[j])) cls[i] = j;
  }
  for (int i = 0; i < n; i++) {
    const curve *c = g->c[i];
    const char **names = xrealloc(NULL, sizeof *names * (size_t)n);
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
      rt_buf_printf(&s, ", %.3f at L", acc_at(c, g->L) ? acc_at(c, g->L)->mean : NAN);
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
  const agg *aL = acc_at(c, L);
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
                    fmt_len(b1, sizeof b1, c->hold_hi, L), acc_at(c, c->hold_hi)->mean);
    } else {
      rt_buf_printf(&s, "%s holds accuracy >= %.1f up to length %s and drops below "
                    "%.1f at length %s (%.3f); %s at 2L, %s at 3L", c->label, HOLD,
                    fmt_len(b1, sizeof b1, c->hold_hi, L), HOLD,
                    fmt_len(b2, sizeof b2, c->drop, L), acc_at(c, c->drop)->mean,
                    fmt_acc(a2, sizeof a2, c, 2L * L), fmt_acc(a3, sizeof a3, c, 3L * L));
      if (c->hold_hi == L) rt_buf_printf(&s, ": it does not generalise beyond L");
    }
    if (c->below > 0) {
      const agg *half = acc_at(c, L / 2);
      rt_buf_printf(&s, ". Below L it first drops under %.1f at length %s (%.3f); %s at "
                    "L/2", HOLD, fmt_len(b1, sizeof b1, c->below, L),
                    acc_at(c, c->below)->mean, fmt_acc(a1, sizeof a1, c, L / 2));
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
  const agg *ax = acc_at(x, 3L * sort_g->L), *ay = acc_at(y, 3L * sort_g->L);
  double vx = ax ? ax->mean : 0, vy = ay ? ay->mean : 0;
  return (vx < vy) - (vx > vy);
}

static int cmp_fast(const void *a, const void *b) {
  const curve *x = *(curve *const *)a, *y = *(curve *const *)b;
  return (x->fast_mean > y->fast_mean) - (x->fast_mean < y->fast_mean);
}

static void ranking(rt_buf *out, const group *g) {
  curve **l = xrealloc(NULL, sizeof *l * (size_t)(g->n_c ? g->n_c : 1));
  int n = 0;
  for (int i = 0; i < g->n_c; i++)
    if (g->c[i]->hold_hi > 0) l[n++] = g->c[i];
  if (n >= 2) {
    sort_g = g;
    sort_n(l, (size_t)n, sizeof *l, cmp_reach);
    rt_buf s = {0};
    char b[32], a[16];
    rt_buf_printf(&s, "Furthest beyond L (the longest length holding >= %.1f, then "
                  "the accuracy at 3L): ", HOLD);
    for (int i = 0; i < n; i++)
      rt_buf_printf(&s, "%s%s up to %s, %s at 3L", i ? "; " : "", l[i]->label,
                    fmt_len(b, sizeof b, l[i]->hold_hi, g->L),
                    fmt_acc(a, sizeof a, l[i], 3L * g->L));
    bullet(out, &s);
    rt_buf_free(&s);
  }
  free(l);
}

static void convergence_findings(rt_buf *out, const group *g) {
  curve **fast = xrealloc(NULL, sizeof *fast * (size_t)(g->n_c ? g->n_c : 1));
  const char **slow = xrealloc(NULL, sizeof *slow * (size_t)(g->n_c ? g->n_c : 1));
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
    sort_n(fast, (size_t)nf, sizeof *fast, cmp_fast);
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

static void group_findings(rt_buf *out, const group *g) {
  bool all_chance = g->n_c > 0;
  for (int i = 0; i < g->n_c; i++) all_chance &= g->c[i]->chance;
  if (all_chance) {
    rt_buf s = {0};
    const char **names = xrealloc(NULL, sizeof *names * (size_t)g->n_c);
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

enum { F_M, F_TAU, F_D, N_F };
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
      sort_n(b[i].p, (size_t)b[i].n, sizeof *b[i].p, cmp_pt_val);
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
    if (c->hold_hi > 0) rt_buf_printf(&t, "%s%s", i ? " / " : "", fmt_len(l, sizeof l, c->hold_hi, b->p[i].g->L));
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

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, f, ap);
  va_end(ap);
  char *s = xrealloc(NULL, (size_t)n + 1);
  vsnprintf(s, (size_t)n + 1, f, ap2);
  va_end(ap2);
  return s;
}

static void acc_panel_style(panel *p, const group *g) {
  p->xlo = g->min_len, p->xhi = g->max_len, p->vline = g->L, p->chance = 1.0 / g->K;
}

/* Figures and findings of the comparisons of factor f; the markdown goes
 * to md (one subsection when there is anything to compare). */
static void comparisons(const scope *s, int f, bool cross_exp, figures *fs,
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
    bool *done = xrealloc(NULL, (size_t)n);
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
      figure *fg = fig_new(fs, "length", fmt("cmp_M_%s", slug),
                           fmt("Accuracy against length by M (%s; band: min to max over "
                               "seeds; dashed: chance 1/K)", d.s),
                           fmt("Accuracy against length, one panel per model and M (%s)", d.s));
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
            fig_hole(fg);
            continue;
          }
          panel *pn = fig_panel(fg, fmt("%s, M %d", b[j].label, ms[m]), "context length",
                                "accuracy");
          acc_panel_style(pn, p->g);
          fig_series(fg, pn, b[j].label, p->c->color, true, p->c->acc, p->c->n_acc);
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
    figure *fg = fig_new(fs, "length", fmt("cmp_%s", FNAME[f]),
                         fmt("Accuracy against length by %s (band: min to max over "
                             "seeds; dashed: chance 1/K)", FNAME[f]),
                         fmt("Accuracy against length for each %s, one panel per model "
                             "and setting", FNAME[f]));
    fg->cols = n < 3 ? n : 3, fg->rows = (n + fg->cols - 1) / fg->cols;
    for (int j = 0; j < n; j++) {
      rt_buf d = {0};
      bucket_desc(&d, s, f, &b[j]);
      panel *pn = fig_panel(fg, fmt("%s, %s", b[j].label, d.s), "context length", "accuracy");
      acc_panel_style(pn, b[j].p[0].g);
      for (int k = 0; k < b[j].n; k++) {
        char t[64];
        snprintf(t, sizeof t, "%s %d", FNAME[f], b[j].p[k].val);
        const group *g = b[j].p[k].g;
        if (g->min_len < pn->xlo) pn->xlo = g->min_len;
        if (g->max_len > pn->xhi) pn->xhi = g->max_len;
        fig_series(fg, pn, t, CMP_COLORS[k % 6], true, b[j].p[k].c->acc, b[j].p[k].c->n_acc);
      }
      effect_finding(findings, s, f, &b[j]);
      rt_buf_free(&d);
    }
    rt_buf_printf(md, "![%s](figures/%s.png)\n\n", fg->caption, fg->name);
  }
  for (int i = 0; i < n; i++) free(b[i].p);
  free(b);
}

/* ---------------------------------------------------------------------
 * Markdown
 * --------------------------------------------------------------------- */

typedef struct {
  label_cache lc;
  char *gnuplot; /* resolved program, NULL: do not render */
  rt_report_info *info;
  ir_error first; /* the first rendering failure */
  bool failed;
} report_ctx;

static void acc_cell(rt_buf *b, const curve *c, long len) {
  const agg *a = len > 0 ? acc_at(c, len) : NULL;
  if (a) rt_buf_printf(b, " %.3f (%.3f\u2013%.3f) |", a->mean, a->lo, a->hi);
  else rt_buf_printf(b, " \u2013 |");
}

static void longest_cell(rt_buf *b, const curve *c, int L) {
  char l[32];
  if (c->hold_hi > 0) rt_buf_printf(b, " %s |", fmt_len(l, sizeof l, c->hold_hi, L));
  else rt_buf_printf(b, " none |");
}

static void steps_cell(rt_buf *b, const curve *c) {
  if (!c->n_conv) rt_buf_printf(b, " \u2013 |");
  else if (c->fast_n) rt_buf_printf(b, " %.0f (%d of %d) |", c->fast_mean, c->fast_n, c->n_runs);
  else rt_buf_printf(b, " not reached (0 of %d) |", c->n_runs);
}

/* The table of a group: accuracy at L/2, L, 2L, 3L, the longest length
 * held, the steps to FAST. */
static void group_table(rt_buf *md, const group *g) {
  int L = g->L;
  rt_buf_printf(md, "| model | seeds | L/2 = %d | L = %d | 2L = %d | 3L = %d | "
                "longest >= %.1f | steps to %.2f |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
                L / 2, L, 2 * L, 3 * L, HOLD, FAST);
  for (int i = 0; i < g->n_c; i++) {
    const curve *c = g->c[i];
    rt_buf_printf(md, "| %s | %d |", c->label, c->n_runs);
    acc_cell(md, c, L / 2 >= 1 ? L / 2 : -1);
    acc_cell(md, c, L);
    acc_cell(md, c, 2L * L);
    acc_cell(md, c, 3L * L);
    longest_cell(md, c, L);
    steps_cell(md, c);
    rt_buf_printf(md, "\n");
  }
}

static void group_figures(const group *g, figures *fs, rt_buf *md) {
  figure *f = fig_new(fs, "length", fmt("acc_%s", g->slug),
                      fmt("Accuracy against context length (%s; K %d, L %d)", g->desc, g->K, g->L),
                      fmt("Accuracy against context length, %s: mean over seeds, band min to max", g->desc));
  panel *p = fig_panel(f, NULL, "context length", "accuracy");
  acc_panel_style(p, g);
  for (int i = 0; i < g->n_c; i++)
    fig_series(f, p, g->c[i]->label, g->c[i]->color, true, g->c[i]->acc, g->c[i]->n_acc);
  rt_buf_printf(md, "![%s](figures/%s.png)\n\n", f->caption, f->name);
  bool conv = false;
  for (int i = 0; i < g->n_c; i++) conv |= g->c[i]->n_conv > 0;
  if (!conv) return;
  char batch[48];
  if (g->batch_lo == g->batch_hi) snprintf(batch, sizeof batch, "batch %d", g->batch_lo);
  else snprintf(batch, sizeof batch, "batch %d to %d", g->batch_lo, g->batch_hi);
  f = fig_new(fs, "step", fmt("conv_%s", g->slug),
              fmt("Test accuracy at L = %d during training (%s; %s)", g->L, g->desc, batch),
              fmt("Test accuracy at L during training, %s: mean over seeds, band min to max", g->desc));
  p = fig_panel(f, NULL, "training step", "test accuracy at L");
  p->chance = 1.0 / g->K, p->target = FAST;
  for (int i = 0; i < g->n_c; i++)
    if (g->c[i]->n_conv)
      fig_series(f, p, g->c[i]->label, g->c[i]->color, true, g->c[i]->conv, g->c[i]->n_conv);
  rt_buf_printf(md, "![%s](figures/%s.png)\n\n", f->caption, f->name);
}

static const char *DEFS =
    "Accuracy cells: mean over seeds (min\u2013max). *longest >= 0.9*: the longest "
    "length n such that the mean accuracy is at least 0.9 at every length from L "
    "to n (none: below 0.9 at L). *steps to 0.95*: the first evaluation with test "
    "accuracy at L >= 0.95, mean over the seeds that reached it (how many of all).\n";

/* The values a column takes across the runs, in order of appearance. */
static void column_values(rt_buf *b, run *const *runs, int n, const char *col, int *count) {
  const char **seen = xrealloc(NULL, sizeof *seen * (size_t)(n ? n : 1));
  int k = 0;
  for (int i = 0; i < n; i++) {
    const char *v = run_get(runs[i], col);
    if (!v) continue;
    bool dup = false;
    for (int j = 0; j < k && !dup; j++) dup = !strcmp(seen[j], v);
    if (!dup) seen[k++] = v;
  }
  for (int i = 0; i < k && i < 16; i++)
    rt_buf_printf(b, "%s%s", i ? ", " : "", *seen[i] ? seen[i] : "(unset)");
  if (k > 16) rt_buf_printf(b, ", ... (%d values)", k);
  *count = k;
  free(seen);
}

static void config_section(rt_buf *md, const expdata *e) {
  rt_buf_printf(md, "## Configuration\n\n| option | value |\n|---|---|\n");
  if (e->meta.name) rt_buf_printf(md, "| experiment | %s |\n", e->meta.name);
  if (e->meta.problem) rt_buf_printf(md, "| problem | %s |\n", e->meta.problem);
  for (int i = 0; i < e->n_cols; i++) {
    const char *c = e->cols[i];
    if (!strcmp(c, "run") || !strcmp(c, "steps") || !strcmp(c, "reached_step") ||
        !strcmp(c, "status") || (!strcmp(c, "experiment") && e->meta.name) ||
        (!strcmp(c, "problem") && e->meta.problem))
      continue;
    rt_buf v = {0};
    int k;
    column_values(&v, e->runs, e->n_runs, c, &k);
    if (k) rt_buf_printf(md, "| %s | %s%s |\n", c, v.s, k > 1 ? " (varies)" : "");
    rt_buf_free(&v);
  }
  for (int i = 0; i < e->meta.n; i++) {
    bool shown = false;
    for (int j = 0; j < e->n_cols && !shown; j++) shown = !strcmp(e->cols[j], e->meta.keys[i]);
    if (!shown) rt_buf_printf(md, "| %s | %s |\n", e->meta.keys[i], e->meta.values[i]);
  }
  int n_st[3] = {0, 0, 0};
  for (int i = 0; i < e->n_runs; i++) {
    const char *st = e->runs[i]->status;
    n_st[eq(st, "reached") ? 0 : eq(st, "max_steps") ? 1 : 2]++;
  }
  rt_buf_printf(md, "\n%d runs: %d reached the target, %d stopped at max_steps, %d "
                "diverged or other.\n\n", e->n_runs, n_st[0], n_st[1], n_st[2]);
}

static void render_note(rt_buf *md, const report_ctx *x) {
  if (x->gnuplot) return;
  rt_buf_printf(md, "> Figures are not rendered%s. Each figure's data (NAME.dat) and "
                "gnuplot script (NAME.gp) are in figures/: run `gnuplot NAME.gp` there "
                "to render NAME.png and NAME.svg.\n\n",
                x->info->gnuplot_missing ? " (gnuplot not found)" : "");
}

/* Writes the figures into dir/figures and renders them. */
static int emit_figures(report_ctx *x, const char *dir, const figures *fs, ir_error *err) {
  if (fs->n == 0) return 0;
  char *figdir = join(dir, "figures");
  if (mkdir(figdir, 0777) < 0 && errno != EEXIST) {
    ir_err(err, "cannot create directory %s: %s", figdir, strerror(errno));
    free(figdir);
    return -1;
  }
  for (int i = 0; i < fs->n; i++)
    if (fig_write(figdir, fs->f[i], err) < 0) {
      free(figdir);
      return -1;
    }
  x->info->figures += fs->n;
  ir_error e;
  if (x->gnuplot && render(x->gnuplot, figdir, fs, &x->info->rendered, &e) < 0 && !x->failed)
    x->first = e, x->failed = true;
  free(figdir);
  return 0;
}

static int write_md(const char *dir, const rt_buf *md, ir_error *err) {
  char *path = join(dir, "report.md");
  int rc = rt_write_atomic(path, md->s, md->len, err);
  free(path);
  return rc;
}

static int report_experiment(report_ctx *x, expdata *e, ir_error *err) {
  scope s = {.runs = e->runs, .n_runs = e->n_runs, .cols = e->cols,
             .n_cols = e->n_cols};
  scope_build(&s, &x->lc);
  figures fs = {0};
  rt_buf body = {0}, summary = {0}, cmp = {0}, cmp_find = {0};
  if (s.n_g == 0) rt_buf_printf(&body, "No completed runs yet.\n\n");
  else rt_buf_printf(&body, "%s\n", DEFS);
  for (int gi = 0; gi < s.n_g; gi++) {
    const group *g = s.g[gi];
    rt_buf find = {0};
    group_findings(&find, g);
    rt_buf_printf(&body, "## %s\n\nK %d, L %d, chance 1/K = %.4g; lengths %d to %d.\n\n",
                  g->desc, g->K, g->L, 1.0 / g->K, g->min_len, g->max_len);
    group_table(&body, g);
    rt_buf_printf(&body, "\n");
    group_figures(g, &fs, &body);
    rt_buf_printf(&body, "Findings:\n\n%s\n", find.s ? find.s : "");
    rt_buf_printf(&summary, "#### %s\n\n", g->desc);
    group_table(&summary, g);
    rt_buf_printf(&summary, "\n%s\n", find.s ? find.s : "");
    rt_buf_free(&find);
  }
  for (int f = 0; f < N_F; f++) comparisons(&s, f, false, &fs, &cmp, &cmp_find);
  if (cmp.len) {
    rt_buf_printf(&body, "## Comparisons\n%s", cmp.s);
    rt_buf_printf(&body, "Findings:\n\n%s\n", cmp_find.s ? cmp_find.s : "");
    rt_buf_printf(&summary, "#### Comparisons\n\n%s\n", cmp_find.s ? cmp_find.s : "");
  }
  int rc = emit_figures(x, e->dir, &fs, err);
  rt_buf md = {0};
  const char *title = e->meta.title ? e->meta.title : e->meta.name ? e->meta.name : e->name;
  rt_buf_printf(&md, "# %s\n\nReport of `%s` written by `recall report` from results.csv%s.\n\n",
                title, e->dir, e->has_conv ? " and convergence.csv" : "");
  render_note(&md, x);
  config_section(&md, e);
  rt_buf_printf(&md, "%s", body.s ? body.s : "");
  if (rc == 0) rc = write_md(e->dir, &md, err);
  if (rc == 0) x->info->experiments++;
  e->findings = summary.s;
  rt_buf_free(&md), rt_buf_free(&body), rt_buf_free(&cmp), rt_buf_free(&cmp_find);
  figures_free(&fs);
  scope_free(&s);
  return rc;
}

static int report_study(report_ctx *x, const char *dir, expdata *es, int n, ir_error *err) {
  run **all = NULL;
  int n_all = 0, cap = 0, n_cols = 0, cap_cols = 0;
  char **cols = NULL;
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < es[i].n_runs; j++) {
      es[i].runs[j]->exp = i;
      PUSH(all, n_all, cap, es[i].runs[j]);
    }
    for (int j = 0; j < es[i].n_cols; j++) {
      bool dup = false;
      for (int k = 0; k < n_cols && !dup; k++) dup = !strcmp(cols[k], es[i].cols[j]);
      if (!dup) PUSH(cols, n_cols, cap_cols, es[i].cols[j]);
    }
  }
  scope s = {.runs = all, .n_runs = n_all, .cols = cols, .n_cols = n_cols};
  scope_build(&s, &x->lc);
  figures fs = {0};
  rt_buf cmp = {0}, cmp_find = {0}, md = {0};
  for (int f = 0; f < N_F; f++) comparisons(&s, f, true, &fs, &cmp, &cmp_find);
  int rc = emit_figures(x, dir, &fs, err);
  rt_buf_printf(&md, "# Study report\n\nReport of the study in `%s` written by `recall "
                "report`: %d experiments, %d runs.\n\n", dir, n, n_all);
  render_note(&md, x);
  rt_buf_printf(&md, "| experiment | title | problem | runs | models | report |\n"
                "|---|---|---|---:|---|---|\n");
  for (int i = 0; i < n; i++) {
    rt_buf models = {0};
    int k;
    column_values(&models, es[i].runs, es[i].n_runs, "model", &k);
    rt_buf_printf(&md, "| %s | %s | %s | %d | %s | [report](%s/report.md) |\n", es[i].name,
                  es[i].meta.title ? es[i].meta.title : "", es[i].meta.problem ? es[i].meta.problem : "",
                  es[i].n_runs, models.s ? models.s : "", es[i].name);
    rt_buf_free(&models);
  }
  rt_buf_printf(&md, "\n%s\n", s.n_g ? DEFS : "");
  for (int i = 0; i < n; i++) {
    const char *t = es[i].meta.title;
    rt_buf_printf(&md, "## %s%s%s\n\nFull report: [%s/report.md](%s/report.md).\n\n%s",
                  es[i].name, t ? ": " : "", t ? t : "", es[i].name, es[i].name,
                  es[i].findings ? es[i].findings : "No completed runs yet.\n\n");
  }
  rt_buf_printf(&md, "## Across experiments\n\n");
  if (cmp.len)
    rt_buf_printf(&md, "%s\nFindings:\n\n%s\n", cmp.s, cmp_find.s ? cmp_find.s : "");
  else
    rt_buf_printf(&md, "No model was run in two experiments with only M, tau or d "
                  "changed, so there is nothing to compare across them.\n");
  if (rc == 0) rc = write_md(dir, &md, err);
  rt_buf_free(&cmp), rt_buf_free(&cmp_find), rt_buf_free(&md);
  figures_free(&fs);
  scope_free(&s);
  free(all), free(cols);
  return rc;
}

static bool has_file(const char *dir, const char *file) {
  char *p = join(dir, file);
  struct stat st;
  bool ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
  free(p);
  return ok;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sub-directories of dir holding results.csv, sorted. */
static char **experiment_dirs(const char *dir, int *n_out) {
  DIR *d = opendir(dir);
  char **names = NULL;
  int n = 0, cap = 0;
  struct dirent *ent;
  while (d && (ent = readdir(d))) {
    if (ent->d_name[0] == '.') continue;
    char *sub = join(dir, ent->d_name);
    if (has_file(sub, "results.csv")) PUSH(names, n, cap, xstrdup(ent->d_name));
    free(sub);
  }
  if (d) closedir(d);
  if (n) sort_n(names, (size_t)n, sizeof *names, cmp_str);
  *n_out = n;
  return names;
}

static char *base_name(const char *dir) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && dir[b - 1] != '/') b--;
  return xstrndup(dir + b, n - b);
}

int rt_report(const char *dir, const rt_report_options *o, rt_report_info *info,
              ir_error *err) {
  rt_report_info scratch;
  if (!info) info = &scratch;
  *info = (rt_report_info){0};
  report_ctx x = {.info = info};
  const char *prog = o && o->gnuplot ? o->gnuplot : "gnuplot";
  if (*prog) {
    x.gnuplot = find_program(prog);
    info->gnuplot_missing = !x.gnuplot;
  }
  int n_sub, rc = 0;
  char **subs = experiment_dirs(dir, &n_sub);
  if (n_sub == 0 && !has_file(dir, "results.csv")) {
    ir_err(err, "%s: no results.csv and no experiment directories in it", dir);
    rc = -1;
  } else if (n_sub == 0) {
    expdata e = {.dir = xstrdup(dir), .name = base_name(dir)};
    rc = load_experiment(&e, o, err);
    if (rc == 0) rc = report_experiment(&x, &e, err);
    exp_free(&e);
  } else {
    info->study = true;
    expdata *es = xrealloc(NULL, sizeof *es * (size_t)n_sub);
    int n = 0;
    for (; n < n_sub && rc == 0; n++) {
      es[n] = (expdata){.dir = join(dir, subs[n]), .name = xstrdup(subs[n])};
      rc = load_experiment(&es[n], o, err);
      if (rc == 0) rc = report_experiment(&x, &es[n], err);
    }
    if (rc == 0) rc = report_study(&x, dir, es, n, err);
    for (int i = 0; i < n; i++) exp_free(&es[i]);
    free(es);
  }
  for (int i = 0; i < n_sub; i++) free(subs[i]);
  free(subs);
  if (rc == 0 && x.failed) {
    *err = x.first;
    rc = -1;
  }
  free(x.gnuplot);
  label_cache_free(&x.lc);
  return rc;
}
