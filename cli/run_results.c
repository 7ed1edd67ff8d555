/* run_results.c — the tidy files of an experiment directory
 * (results-format.md): results.csv (one row per run x length) and
 * convergence.csv (one row per run x evaluation), built only from the
 * runs' files so that a resumed experiment writes the same bytes as an
 * uninterrupted one. */
#include "cmd_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *cr_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0, k;
  char *s = malloc(cap);
  if (!s) abort();
  while ((k = fread(s + n, 1, cap - n - 1, f)) > 0) {
    n += k;
    if (cap - n < 2) {
      s = realloc(s, cap *= 2);
      if (!s) abort();
    }
  }
  bool bad = ferror(f);
  fclose(f);
  if (bad) {
    free(s);
    return NULL;
  }
  s[n] = 0;
  if (len) *len = n;
  return s;
}

/* ---- CSV ---- */

static void csv_field(rt_buf *b, const char *v, bool first) {
  if (!first) rt_buf_printf(b, ",");
  if (!strpbrk(v, ",\"\n\r")) {
    rt_buf_printf(b, "%s", v);
    return;
  }
  rt_buf_printf(b, "\"");
  for (; *v; v++) rt_buf_printf(b, *v == '"' ? "\"\"" : "%c", *v);
  rt_buf_printf(b, "\"");
}

/* One record from *p (RFC 4180 quotes); fields malloc'd. Returns the
 * field count, 0 at the end of the text. */
static int csv_row(const char **p, char ***fields) {
  const char *s = *p;
  *fields = NULL;
  if (!*s) return 0;
  int n = 0;
  for (;;) {
    rt_buf f = {0};
    rt_buf_printf(&f, "%s", "");
    if (*s == '"') {
      for (s++; *s; s++) {
        if (*s == '"' && s[1] == '"') rt_buf_printf(&f, "\""), s++;
        else if (*s == '"') {
          s++;
          break;
        } else rt_buf_printf(&f, "%c", *s);
      }
    }
    while (*s && *s != ',' && *s != '\n' && *s != '\r') rt_buf_printf(&f, "%c", *s++);
    *fields = realloc(*fields, sizeof **fields * (size_t)(n + 1));
    if (!*fields) abort();
    (*fields)[n++] = f.s;
    if (*s == ',') {
      s++;
      continue;
    }
    if (*s == '\r') s++;
    if (*s == '\n') s++;
    break;
  }
  *p = s;
  return n;
}

static void free_fields(char **f, int n) {
  for (int i = 0; i < n; i++) free(f[i]);
  free(f);
}

/* ---- results.csv ---- */

static const char *const fixed_opts[] = {"K", "d", "L", "M", "tau", "seed", "lr",
                                         "batch", "steps", NULL};

static bool is_fixed(const char *k) {
  for (int i = 0; fixed_opts[i]; i++)
    if (!strcmp(fixed_opts[i], k)) return true;
  return false;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char **cr_varying_keys(const fe_experiment *e, int *n) {
  char **keys = NULL;
  *n = 0;
  for (int i = 0; i < e->n_runs; i++)
    for (int j = 0; j < e->runs[i].n; j++) {
      const char *k = e->runs[i].keys[j], *v = e->runs[i].values[j];
      if (is_fixed(k)) continue;
      bool seen = false, vary = false;
      for (int q = 0; q < *n; q++) seen |= !strcmp(keys[q], k);
      if (seen) continue;
      for (int r = 0; r < e->n_runs && !vary; r++) {
        const char *w = fe_run_get(&e->runs[r], k);
        vary = !w || strcmp(w, v);
      }
      if (!vary) continue;
      keys = realloc(keys, sizeof *keys * (size_t)(*n + 1));
      if (!keys) abort();
      keys[(*n)++] = cli_strdup(k);
    }
  if (*n) qsort(keys, (size_t)*n, sizeof *keys, cmp_str);
  return keys;
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

typedef struct {
  const char *dir, *run;
  char *msg;
  size_t msg_n;
} where;

static char *run_file(const where *w, const char *file) {
  size_t n = strlen(w->dir) + strlen(w->run) + strlen(file) + 8;
  char *p = malloc(n);
  if (!p) abort();
  snprintf(p, n, "%s/runs/%s/%s", w->dir, w->run, file);
  return p;
}

/* The rows of a run's CSV file after its header; -1 if unreadable. */
static int read_rows(const where *w, const char *file, int min_fields, char ****rows,
                     int **counts, int *n) {
  char *path = run_file(w, file);
  char *text = cr_read_file(path, NULL);
  *rows = NULL, *counts = NULL, *n = 0;
  if (!text) {
    snprintf(w->msg, w->msg_n, "cannot read %s", path);
    free(path);
    return -1;
  }
  const char *p = text;
  char **f;
  int k = csv_row(&p, &f); /* header */
  free_fields(f, k);
  while ((k = csv_row(&p, &f)) > 0) {
    if (k < min_fields) {
      snprintf(w->msg, w->msg_n, "%s: a row has %d fields, expected %d", path, k, min_fields);
      free_fields(f, k);
      free(text);
      free(path);
      return -1;
    }
    *rows = realloc(*rows, sizeof **rows * (size_t)(*n + 1));
    *counts = realloc(*counts, sizeof **counts * (size_t)(*n + 1));
    if (!*rows || !*counts) abort();
    (*rows)[*n] = f;
    (*counts)[(*n)++] = k;
  }
  free(text);
  free(path);
  return 0;
}

static void free_rows(char ***rows, int *counts, int n) {
  for (int i = 0; i < n; i++) free_fields(rows[i], counts[i]);
  free(rows);
  free(counts);
}

static const char *jget(const cm_json *j, const char *key) {
  const char *v = cm_json_get(j, key);
  return v && strcmp(v, "null") ? v : "";
}

/* One run's rows of both files. */
static int add_run(const where *w, const fe_experiment *e, const fe_run *run,
                   char **extra, int n_extra, rt_buf *res, rt_buf *conv) {
  char *path = run_file(w, "config.json");
  char *text = cr_read_file(path, NULL);
  cm_json j;
  char jmsg[256];
  if (!text || cm_json_parse(text, &j, jmsg, sizeof jmsg) < 0) {
    snprintf(w->msg, w->msg_n, "%s: %s", path, text ? jmsg : "cannot read it");
    free(text);
    free(path);
    return -1;
  }
  free(text);
  free(path);
  const char *status = jget(&j, "result.status");
  /* the columns every row of this run shares */
  rt_buf head = {0}, chead = {0};
  const char *ids[] = {run->name, e->name, e->problem, run->label};
  for (int i = 0; i < 4; i++) csv_field(&head, ids[i], i == 0), csv_field(&chead, ids[i], i == 0);
  csv_field(&head, jget(&j, "model"), false);
  static const char *const cols[] = {"train_options.K", "model_options.d", "train_options.L",
                                     "train_options.M", "train_options.tau", "train_options.seed",
                                     "train_options.lr", "train_options.batch"};
  for (int i = 0; i < 8; i++) csv_field(&head, jget(&j, cols[i]), false),
                              csv_field(&chead, jget(&j, cols[i]), false);
  csv_field(&head, jget(&j, "train_options.steps"), false);
  for (int i = 0; i < n_extra; i++) {
    const char *v = fe_run_get(run, extra[i]);
    char mk[300], tk[300];
    snprintf(mk, sizeof mk, "model_options.%s", extra[i]);
    snprintf(tk, sizeof tk, "train_options.%s", extra[i]);
    if (!v) v = cm_json_get(&j, mk);
    if (!v) v = cm_json_get(&j, tk);
    csv_field(&head, v ? v : "", false);
  }
  csv_field(&head, jget(&j, "result.steps"), false);
  csv_field(&head, jget(&j, "result.reached_step"), false);
  csv_field(&head, status, false);

  char ***rows;
  int *counts, n, rc = 0;
  char *sweep = run_file(w, "sweep.csv");
  if (strcmp(status, "diverged") && exists(sweep)) {
    if ((rc = read_rows(w, "sweep.csv", 4, &rows, &counts, &n)) == 0) {
      for (int i = 0; i < n; i++) /* sweep.csv: length,accuracy,n,loss */
        rt_buf_printf(res, "%s,%s,%s,%s,%s\n", head.s, rows[i][0], rows[i][1], rows[i][3],
                      rows[i][2]);
      free_rows(rows, counts, n);
    }
  } else {
    rt_buf_printf(res, "%s,,,,\n", head.s);
  }
  free(sweep);
  if (rc == 0 && (rc = read_rows(w, "train.csv", 4, &rows, &counts, &n)) == 0) {
    for (int i = 0; i < n; i++) /* train.csv: step,train_loss,test_loss,test_acc,elapsed_s */
      rt_buf_printf(conv, "%s,%s,%s,%s,%s\n", chead.s, rows[i][0], rows[i][1], rows[i][2],
                    rows[i][3]);
    free_rows(rows, counts, n);
  }
  rt_buf_free(&head);
  rt_buf_free(&chead);
  cm_json_free(&j);
  return rc;
}

static int write_file(const char *dir, const char *file, const rt_buf *b, char *msg,
                      size_t msg_n) {
  size_t n = strlen(dir) + strlen(file) + 2;
  char *path = malloc(n);
  if (!path) abort();
  snprintf(path, n, "%s/%s", dir, file);
  ir_error err;
  int rc = rt_write_atomic(path, b->s ? b->s : "", b->len, &err);
  if (rc < 0) snprintf(msg, msg_n, "%s", err.msg);
  free(path);
  return rc;
}

int cr_write_results(const char *dir, const fe_experiment *e, int *n_done, char *msg,
                     size_t msg_n) {
  int n_extra;
  char **extra = cr_varying_keys(e, &n_extra);
  rt_buf res = {0}, conv = {0};
  rt_buf_printf(&res, "run,experiment,problem,model,spec,K,d,L,M,tau,seed,lr,batch,max_steps");
  for (int i = 0; i < n_extra; i++) csv_field(&res, extra[i], false);
  rt_buf_printf(&res, ",steps,reached_step,status,length,accuracy,loss,n\n");
  rt_buf_printf(&conv, "run,experiment,problem,model,K,d,L,M,tau,seed,lr,batch,step,"
                       "train_loss,test_loss,test_acc\n");
  int rc = 0;
  *n_done = 0;
  for (int i = 0; i < e->n_runs && rc == 0; i++) {
    where w = {dir, e->runs[i].name, msg, msg_n};
    char *done = run_file(&w, "done");
    if (exists(done)) {
      rc = add_run(&w, e, &e->runs[i], extra, n_extra, &res, &conv);
      ++*n_done;
    }
    free(done);
  }
  if (rc == 0) rc = write_file(dir, "results.csv", &res, msg, msg_n);
  if (rc == 0) rc = write_file(dir, "convergence.csv", &conv, msg, msg_n);
  for (int i = 0; i < n_extra; i++) free(extra[i]);
  free(extra);
  rt_buf_free(&res);
  rt_buf_free(&conv);
  return rc;
}

/* ---- a study: the experiments' files concatenated ---- */

static int concat(const char *dir, const char *file, const char *const *subdirs, int n,
                  char *msg, size_t msg_n) {
  char **header = NULL;
  int nh = 0;
  char **texts = calloc((size_t)n + 1, sizeof *texts);
  if (!texts) abort();
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) { /* the union of the headers */
    size_t len = strlen(subdirs[i]) + strlen(file) + 2;
    char *path = malloc(len);
    if (!path) abort();
    snprintf(path, len, "%s/%s", subdirs[i], file);
    if (!(texts[i] = cr_read_file(path, NULL))) {
      snprintf(msg, msg_n, "cannot read %s", path);
      rc = -1;
    } else {
      const char *p = texts[i];
      char **f;
      int k = csv_row(&p, &f);
      for (int a = 0; a < k; a++) {
        bool have = false;
        for (int b = 0; b < nh; b++) have |= !strcmp(header[b], f[a]);
        if (have) continue;
        /* a new column goes right after its left neighbour in this file
         * (which is in the union by now) */
        int at = 0;
        for (int c = 0; a > 0 && c < nh; c++)
          if (!strcmp(header[c], f[a - 1])) at = c + 1;
        header = realloc(header, sizeof *header * (size_t)(nh + 1));
        if (!header) abort();
        memmove(header + at + 1, header + at, sizeof *header * (size_t)(nh - at));
        header[at] = cli_strdup(f[a]);
        nh++;
      }
      free_fields(f, k);
    }
    free(path);
  }
  rt_buf out = {0};
  for (int i = 0; i < nh; i++) csv_field(&out, header[i], i == 0);
  rt_buf_printf(&out, "\n");
  int *map = malloc(sizeof *map * (size_t)(nh + 1));
  if (!map) abort();
  for (int i = 0; i < n && rc == 0; i++) {
    const char *p = texts[i];
    char **f;
    int k = csv_row(&p, &f);
    for (int c = 0; c < nh; c++) {
      map[c] = -1;
      for (int a = 0; a < k; a++)
        if (!strcmp(header[c], f[a])) map[c] = a;
    }
    free_fields(f, k);
    char **row;
    int m;
    while ((m = csv_row(&p, &row)) > 0) {
      for (int c = 0; c < nh; c++)
        csv_field(&out, map[c] >= 0 && map[c] < m ? row[map[c]] : "", c == 0);
      rt_buf_printf(&out, "\n");
      free_fields(row, m);
    }
  }
  if (rc == 0) rc = write_file(dir, file, &out, msg, msg_n);
  free(map);
  rt_buf_free(&out);
  for (int i = 0; i < n; i++) free(texts[i]);
  free(texts);
  free_fields(header, nh);
  return rc;
}

int cr_concat_results(const char *dir, const char *const *subdirs, int n, char *msg,
                      size_t msg_n) {
  if (concat(dir, "results.csv", subdirs, n, msg, msg_n) < 0) return -1;
  return concat(dir, "convergence.csv", subdirs, n, msg, msg_n);
}
