/* report_load.c — the report's first stage: an experiment directory's
 * results.csv and convergence.csv read into runs (one per `run`, with its
 * sweep and its convergence), the experiment directories of a study, and
 * the small helpers every file of the report shares (report_int.h). */
#include "report_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------
 * Small helpers
 * --------------------------------------------------------------------- */

void *rp_xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) abort();
  return p;
}

char *rp_xstrndup(const char *s, size_t n) {
  char *d = rp_xrealloc(NULL, n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *rp_xstrdup(const char *s) { return rp_xstrndup(s, strlen(s)); }

char *rp_join(const char *a, const char *b) {
  rt_buf p = {0};
  rt_buf_printf(&p, "%s/%s", a, b);
  return p.s;
}

bool rp_eq(const char *a, const char *b) {
  return !strcmp(a ? a : "", b ? b : "");
}

char *rp_slurp(const char *path, bool *missing, ir_error *err) {
  FILE *f = fopen(path, "rb");
  *missing = false;
  if (!f) {
    if (errno == ENOENT) *missing = true;
    else ir_err(err, "%s: cannot read: %s", path, strerror(errno));
    return NULL;
  }
  size_t n = 0, cap = 1 << 16, k;
  char *s = rp_xrealloc(NULL, cap);
  while ((k = fread(s + n, 1, cap - n - 1, f)) > 0)
    if ((n += k) + 1 == cap) s = rp_xrealloc(s, cap *= 2);
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

void rp_sort_n(void *base, size_t n, size_t size,
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

const char *rp_fmt_len(char *buf, size_t n, int len, int L) {
  const char *rel = len == L ? "L" : len == 2 * L ? "2L" : len == 3 * L ? "3L"
                  : len * 2 == L ? "L/2" : len == 4 * L ? "4L" : NULL;
  if (rel) snprintf(buf, n, "%d (%s)", len, rel);
  else snprintf(buf, n, "%d", len);
  return buf;
}

char *rp_fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, f, ap);
  va_end(ap);
  char *s = rp_xrealloc(NULL, (size_t)n + 1);
  vsnprintf(s, (size_t)n + 1, f, ap2);
  va_end(ap2);
  return s;
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

/* Records of text p (RFC 4180 quoting, blank lines skipped); every record
 * has the header's number of fields, else an error naming the line. */
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
        field = rp_xrealloc(NULL, cap);
        for (p++;; p++) {
          if (!*p) {
            ir_err(err, "%s:%d: unterminated quoted field", path, rec.line);
            free(field);
            c->n++, c->r = rp_xrealloc(c->r, sizeof *c->r * (size_t)c->n);
            c->r[c->n - 1] = rec; /* freed with the rest */
            return -1;
          }
          if (*p == '"' && p[1] != '"') break;
          if (*p == '"') p++;
          if (*p == '\n') line++;
          if (n + 1 == cap) field = rp_xrealloc(field, cap *= 2);
          field[n++] = *p;
        }
        field[n] = '\0';
        p++;
      } else {
        size_t n = strcspn(p, ",\r\n");
        field = rp_xstrndup(p, n);
        p += n;
      }
      PUSH(rec.f, rec.n, rec.cap, field);
      if (*p != ',') break;
      p++;
    }
    PUSH(c->r, c->n, c->cap, rec);
    if (rec.n != c->r[0].n) {
      ir_err(err, "%s:%d: %d fields, the header has %d", path, rec.line, rec.n, c->r[0].n);
      return -1;
    }
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

const char *rp_run_get(const run *r, const char *key) {
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

void rp_exp_free(expdata *e) {
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
  const char *v = rp_run_get(r, key);
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
  run *r = rp_xrealloc(NULL, sizeof *r);
  *r = (run){.first_fast = -1, .constant = -1};
  r->name = rp_xstrdup(rec->f[csv_col(h, "run")]);
  for (int j = 0; j < h->n; j++) {
    if (row_col(h->f[j])) continue;
    int n = r->nkv++;
    r->keys = rp_xrealloc(r->keys, sizeof *r->keys * (size_t)r->nkv);
    r->vals = rp_xrealloc(r->vals, sizeof *r->vals * (size_t)r->nkv);
    r->keys[n] = rp_xstrdup(h->f[j]);
    r->vals[n] = rp_xstrdup(rec->f[j]);
  }
  r->model = rp_run_get(r, "model");
  r->status = rp_run_get(r, "status");
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
    if (!row_col(h->f[j])) PUSH(e->cols, e->n_cols, e->cap_cols, rp_xstrdup(h->f[j]));
  int i_run = csv_col(h, "run"), i_len = csv_col(h, "length");
  int i_acc = csv_col(h, "accuracy"), i_n = csv_col(h, "n"), hint = 0;
  for (int i = 1; i < c->n; i++) {
    const csv_rec *rec = &c->r[i];
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
  char *path = rp_join(e->dir, file);
  bool missing;
  char *text = rp_slurp(path, &missing, err);
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

int rp_load_experiment(expdata *e, const rt_report_options *o,
                       ir_error *err) {
  if (load_csv(e, "results.csv", true, take_results, err) < 0 ||
      load_csv(e, "convergence.csv", false, take_convergence, err) < 0)
    return -1;
  for (int i = 0; i < e->n_runs; i++) {
    run *r = e->runs[i];
    rp_sort_n(r->sw, (size_t)r->n_sw, sizeof *r->sw, cmp_sw);
    rp_sort_n(r->cv, (size_t)r->n_cv, sizeof *r->cv, cmp_cv);
    for (int j = 0; j < r->n_cv && r->first_fast < 0; j++)
      if (r->cv[j].acc >= FAST) r->first_fast = r->cv[j].step;
  }
  if (o && o->meta && o->meta(o->ctx, e->dir, &e->meta, err) < 0) return -1;
  return 0;
}

bool rp_has_file(const char *dir, const char *file) {
  char *p = rp_join(dir, file);
  struct stat st;
  bool ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
  free(p);
  return ok;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sub-directories of dir holding results.csv, sorted. */
char **rp_experiment_dirs(const char *dir, int *n_out) {
  DIR *d = opendir(dir);
  char **names = NULL;
  int n = 0, cap = 0;
  struct dirent *ent;
  while (d && (ent = readdir(d))) {
    if (ent->d_name[0] == '.') continue;
    char *sub = rp_join(dir, ent->d_name);
    if (rp_has_file(sub, "results.csv")) PUSH(names, n, cap, rp_xstrdup(ent->d_name));
    free(sub);
  }
  if (d) closedir(d);
  if (n) rp_sort_n(names, (size_t)n, sizeof *names, cmp_str);
  *n_out = n;
  return names;
}

char *rp_base_name(const char *dir) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && dir[b - 1] != '/') b--;
  return rp_xstrndup(dir + b, n - b);
}

