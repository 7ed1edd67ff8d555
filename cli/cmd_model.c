/* cmd_model.c — the glue between a Lua model spec and the runtime that
 * `recall train`, `eval` and `data` share: one namespace of --set options,
 * the model's builder for any length, initialisation, JSON configs. */
#include "cmd_model.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the task and training keys ---- */

typedef enum { T_INT, T_NUM, T_STR, T_BOOL } tkind;

static const struct {
  const char *key;
  tkind kind;
  const char *dflt; /* "" : resolved from others */
  const char *help;
} tkeys[] = {
    {"K", T_INT, "16", "vocabulary size (tokens 0..K-1); also the spec's K"},
    {"L", T_INT, "64", "training length; also the spec's L"},
    {"M", T_INT, "1", "number of query tokens (0..M-1)"},
    {"tau", T_INT, "1", "distance from the query to its value"},
    {"seed", T_INT, "0", "data and parameter initialisation"},
    {"optimizer", T_STR, "adam", "adam, adamw or sgd"},
    {"lr", T_NUM, "1e-3", "learning rate (peak, with a schedule)"},
    {"beta1", T_NUM, "0.9", "Adam/AdamW"},
    {"beta2", T_NUM, "0.999", "Adam/AdamW"},
    {"adam_eps", T_NUM, "1e-8", "Adam/AdamW epsilon"},
    {"weight_decay", T_NUM, "", "L2 (sgd, adam) or decoupled (adamw; default 0.01)"},
    {"momentum", T_NUM, "0", "SGD momentum"},
    {"nesterov", T_BOOL, "false", "SGD Nesterov momentum"},
    {"schedule", T_STR, "constant", "constant, warmup or cosine (decays to min_lr at `steps`)"},
    {"warmup", T_INT, "0", "linear warm-up updates (warmup, cosine)"},
    {"min_lr", T_NUM, "0", "cosine's final learning rate"},
    {"clip", T_NUM, "0", "clip the gradient's global norm (0: off)"},
    {"batch", T_INT, "64", "examples per step (a fresh batch each step)"},
    {"steps", T_INT, "3000", "maximum number of steps"},
    {"eval_every", T_INT, "100", "steps between evaluations (rows of train.csv)"},
    {"test_size", T_INT, "1000", "sequences of the fixed test batch at L"},
    {"target", T_NUM, "0.99", "stop when the test accuracy reaches this ..."},
    {"patience", T_INT, "2", "... at this many evaluations in a row"},
    {"sweep_n", T_INT, "1000", "sequences per length in the sweep (0: no sweep)"},
    {"mem_limit_gb", T_NUM, "8", "refuse a model whose memory estimate exceeds this"},
};
enum { N_TKEYS = sizeof tkeys / sizeof tkeys[0] };

static int tkey_index(const char *key) {
  for (int i = 0; i < N_TKEYS; i++)
    if (!strcmp(tkeys[i].key, key)) return i;
  return -1;
}

void cm_print_train_keys(FILE *out) {
  for (int i = 0; i < N_TKEYS; i++)
    fprintf(out, "  %-13s %-9s %s\n", tkeys[i].key,
            *tkeys[i].dflt ? tkeys[i].dflt : "-", tkeys[i].help);
}

/* Shortest text that reads back as the same double. */
static void fmt_num(double x, char *buf, size_t n) {
  for (int p = 15; p <= 17; p++) {
    snprintf(buf, n, "%.*g", p, x);
    if (strtod(buf, NULL) == x) return;
  }
}

static int parse_long(const char *s, long *out) {
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (end == s || *end || errno || d != floor(d) || fabs(d) > 1e15) return -1;
  *out = (long)d;
  return 0;
}

static int parse_num(const char *s, double *out) {
  char *end;
  errno = 0;
  *out = strtod(s, &end);
  return end == s || *end || errno || !isfinite(*out) ? -1 : 0;
}

/* Sizes that are absurd rather than merely unusual: checked before any
 * work, so that a typo fails at once instead of allocating for minutes.
 * The task's relations (M <= K, L >= tau + 2) are rt_ar_validate's. */
static const struct {
  const char *key;
  long lo, hi;
} bounds[] = {
    {"K", 2, 1L << 20},       {"L", 1, 1L << 16},      {"M", 1, 1L << 20},
    {"tau", 1, 1L << 16},     {"batch", 1, 1L << 20},  {"steps", 1, 1L << 40},
    {"eval_every", 1, 1L << 40}, {"test_size", 1, 1L << 24},
    {"patience", 1, 1L << 20}, {"sweep_n", 0, 1L << 24}, {"warmup", 0, 1L << 40},
    {"seed", 0, 1L << 53},
    /* the spec's own sizes (checked when it has the option) */
    {"d", 1, 1L << 14},       {"layers", 1, 1L << 10}, {"heads", 1, 1L << 14},
};

/* -1 with "--set d=0: d must be >= 1" when value is out of key's bounds;
 * 0 for keys without bounds and values that are not integers (the
 * option's own parser reports those). */
static int check_bounds(const char *cmd, const char *key, const char *value) {
  for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
    if (strcmp(bounds[i].key, key)) continue;
    char *end;
    errno = 0;
    double d = strtod(value, &end);
    if (end == value || *end || d != floor(d)) return 0;
    if (d < (double)bounds[i].lo) {
      cli_error(cmd, "--set %s=%s: %s must be >= %ld", key, value, key, bounds[i].lo);
      return -1;
    }
    if (errno || d > (double)bounds[i].hi) {
      cli_error(cmd, "--set %s=%s: %s too large (at most %ld)", key, value, key,
                bounds[i].hi);
      return -1;
    }
  }
  return 0;
}

static const char *tval(const cm_run *r, const char *key) {
  return r->tvals[tkey_index(key)];
}

/* Turns the training strings into r->train, K, L, sweep_n; fills in the
 * values resolved from others (weight decay). */
static int apply_train(cm_run *r) {
  long iv[N_TKEYS] = {0};
  double nv[N_TKEYS] = {0};
  for (int i = 0; i < N_TKEYS; i++) {
    const char *v = r->tvals[i];
    if (!*v) continue;
    bool ok = true;
    if (tkeys[i].kind == T_INT) ok = parse_long(v, &iv[i]) == 0;
    else if (tkeys[i].kind == T_NUM) ok = parse_num(v, &nv[i]) == 0;
    else if (tkeys[i].kind == T_BOOL) ok = !strcmp(v, "true") || !strcmp(v, "false");
    if (!ok) {
      cli_error(r->cmd, "--set %s=%s: %s takes %s", tkeys[i].key, v, tkeys[i].key,
                tkeys[i].kind == T_INT ? "an integer"
                : tkeys[i].kind == T_NUM ? "a number" : "true or false");
      return -1;
    }
    if (tkeys[i].kind == T_INT || tkeys[i].kind == T_NUM) { /* canonical: valid JSON */
      char b[40];
      fmt_num(tkeys[i].kind == T_INT ? (double)iv[i] : nv[i], b, sizeof b);
      free(r->tvals[i]);
      r->tvals[i] = cli_strdup(b);
    }
  }
#define IV(k) iv[tkey_index(k)]
#define NV(k) nv[tkey_index(k)]
  const char *o = tval(r, "optimizer"), *s = tval(r, "schedule");
  rt_optimizer kind = !strcmp(o, "adam") ? RT_OPT_ADAM : !strcmp(o, "adamw") ? RT_OPT_ADAMW
                    : !strcmp(o, "sgd") ? RT_OPT_SGD : (rt_optimizer)-1;
  if ((int)kind < 0) {
    cli_error(r->cmd, "--set optimizer=%s: optimizer is adam, adamw or sgd", o);
    return -1;
  }
  rt_schedule sched = !strcmp(s, "constant") ? RT_SCHED_CONSTANT
                    : !strcmp(s, "warmup") ? RT_SCHED_WARMUP
                    : !strcmp(s, "cosine") ? RT_SCHED_COSINE : (rt_schedule)-1;
  if ((int)sched < 0) {
    cli_error(r->cmd, "--set schedule=%s: schedule is constant, warmup or cosine", s);
    return -1;
  }
  rt_train_config *c = &r->train;
  rt_train_defaults(c);
  rt_optim_defaults(&c->opt, kind);
  int wd = tkey_index("weight_decay");
  if (!*r->tvals[wd]) {
    char b[40];
    fmt_num(c->opt.weight_decay, b, sizeof b);
    free(r->tvals[wd]);
    r->tvals[wd] = cli_strdup(b);
  } else {
    c->opt.weight_decay = nv[wd];
  }
  for (int i = 0; i < N_TKEYS; i++)
    if (check_bounds(r->cmd, tkeys[i].key, r->tvals[i]) < 0) return -1;
  if (!(nv[tkey_index("mem_limit_gb")] > 0)) {
    cli_error(r->cmd, "--set mem_limit_gb=%s: mem_limit_gb must be > 0",
              tval(r, "mem_limit_gb"));
    return -1;
  }
  for (int i = 0; i < N_TKEYS; i++)
    if (tkeys[i].kind == T_INT && (iv[i] < INT_MIN || iv[i] > INT_MAX)) {
      cli_error(r->cmd, "--set %s=%s: out of range", tkeys[i].key, r->tvals[i]);
      return -1;
    }
  r->K = (int)IV("K"), r->L = (int)IV("L"), r->sweep_n = (int)IV("sweep_n");
  c->M = (int)IV("M"), c->tau = (int)IV("tau");
  long seed_v = IV("seed");
  c->seed = (uint64_t)seed_v;
  c->batch = (int)IV("batch");
  c->max_steps = IV("steps");
  c->eval_every = IV("eval_every");
  c->test_size = (int)IV("test_size");
  c->target = NV("target");
  c->patience = (int)IV("patience");
  c->opt.lr = NV("lr");
  c->opt.beta1 = NV("beta1"), c->opt.beta2 = NV("beta2"), c->opt.eps = NV("adam_eps");
  c->opt.momentum = NV("momentum");
  c->opt.nesterov = !strcmp(tval(r, "nesterov"), "true");
  c->opt.schedule = sched;
  c->opt.warmup = IV("warmup");
  c->opt.total = c->max_steps;
  c->opt.min_lr = NV("min_lr");
  c->opt.clip = NV("clip");
#undef IV
#undef NV
  ir_error err;
  if (r->sweep_n < 0 || seed_v < 0) {
    cli_error(r->cmd, "sweep_n and seed must be >= 0");
    return -1;
  }
  if (rt_ar_validate(r->K, c->M, c->tau, r->L, &err) < 0 ||
      rt_optim_check(&c->opt, &err) < 0) {
    cli_error(r->cmd, "%s", err.msg);
    return -1;
  }
  return 0;
}

/* ---- did you mean ---- */

int cm_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 63 || m > 63) return 64;
  int d[64][64];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      int sub = d[i - 1][j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
      d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
  return d[n][m];
}

/* " (did you mean 'lr'?)" for the nearest known key, or "". */
static void did_you_mean(const char *key, const fe_model *spec, char *buf, size_t n) {
  const char *best = NULL;
  int bd = 3;
  for (int i = 0; i < N_TKEYS; i++) {
    int d = cm_distance(key, tkeys[i].key);
    if (d < bd) bd = d, best = tkeys[i].key;
  }
  for (int i = 0; spec && i < spec->n_config; i++) {
    if (!strcmp(spec->config[i].key, "n")) continue;
    int d = cm_distance(key, spec->config[i].key);
    if (d < bd) bd = d, best = spec->config[i].key;
  }
  if (best && (size_t)bd < strlen(key)) snprintf(buf, n, " (did you mean '%s'?)", best);
  else buf[0] = 0;
}

/* ---- loading the spec ---- */

static fe_model *load_spec(cm_run *r, const char *const *keys,
                           const char *const *values, int n) {
  fe_options o = {.root = r->root, .keys = keys, .values = values, .n_sets = n};
  fe_model *m = NULL;
  fe_error *e = calloc(1, sizeof *e);
  if (!e) abort();
  if (fe_load_model(r->spec, &o, &m, e) < 0) {
    fprintf(stderr, "recall %s: %s\n", r->cmd, e->msg);
    m = NULL;
  }
  free(e);
  return m;
}

static void set_model_opt(cm_run *r, const char *key, const char *value) {
  for (int i = 0; i < r->n_m; i++)
    if (!strcmp(r->mkeys[i], key)) {
      free(r->mvals[i]);
      r->mvals[i] = cli_strdup(value);
      return;
    }
  r->mkeys = realloc(r->mkeys, sizeof *r->mkeys * (size_t)(r->n_m + 1));
  r->mvals = realloc(r->mvals, sizeof *r->mvals * (size_t)(r->n_m + 1));
  if (!r->mkeys || !r->mvals) abort();
  r->mkeys[r->n_m] = cli_strdup(key);
  r->mvals[r->n_m++] = cli_strdup(value);
}

static void value_str(const fe_value *v, char *buf, size_t n) {
  if (v->kind == FE_VAL_STR) snprintf(buf, n, "%s", v->str);
  else if (v->kind == FE_VAL_BOOL) snprintf(buf, n, "%s", v->num ? "true" : "false");
  else fmt_num(v->num, buf, n);
}

/* The project root for a spec at ROOT/specs/models/X.lua when
 * $RECALL_ROOT is not set: lets a checkpoint be evaluated from anywhere. */
static char *guess_root(const char *spec) {
  if (getenv("RECALL_ROOT")) return NULL;
  const char *p = strstr(spec, "/specs/");
  if (!p) return NULL;
  char *root = cli_strdup(spec);
  root[p - spec] = 0;
  return root;
}

/* A rough upper estimate of the bytes a run needs: every param four times
 * (value, gradient, Adam's two moments) and, per example in flight, every
 * tensor of the graph at L for the forward and twice for the backward.
 * Past mem_limit_gb (default 8) the run is refused before any work. */
static int check_memory(const cm_run *r) {
  const ir_func *f = r->fm->f;
  double params = 0, acts = 0;
  for (int i = 0; i < f->n_nodes; i++) {
    double n = (double)ir_numel(&f->nodes[i].type);
    if (f->nodes[i].op == IR_OP_PARAM || f->nodes[i].op == IR_OP_CONST) params += n;
    else acts += n;
  }
  double bytes = 4 * (4 * params + 3 * acts);
  double limit = strtod(tval(r, "mem_limit_gb"), NULL);
  if (bytes <= limit * (1 << 30)) return 0;
  cli_error(r->cmd, "%s: the model needs about %.1f GiB (%.3g parameters, %.3g "
            "activation values per example), more than mem_limit_gb = %g: use "
            "smaller sizes (d, L, K, layers) or raise the limit with --set "
            "mem_limit_gb=N", r->spec, bytes / (1 << 30), params, acts, limit);
  return -1;
}

int cm_setup(cm_run *r, const char *cmd, const char *spec,
             const char *const *keys, const char *const *values, int n_sets) {
  memset(r, 0, sizeof *r);
  r->cmd = cmd;
  char *abs = realpath(spec, NULL);
  r->spec = abs ? abs : cli_strdup(spec);
  const char *base = strrchr(r->spec, '/');
  r->model = cli_strdup(base ? base + 1 : r->spec);
  if (cli_has_suffix(r->model, ".lua")) r->model[strlen(r->model) - 4] = 0;
  r->root = guess_root(r->spec);
  r->tvals = calloc(N_TKEYS, sizeof *r->tvals);
  if (!r->tvals) abort();
  for (int i = 0; i < N_TKEYS; i++) r->tvals[i] = cli_strdup(tkeys[i].dflt);

  fe_model *plain = load_spec(r, NULL, NULL, 0); /* its options */
  if (!plain) return -1;
  bool user_d = false;
  int rc = -1;
  for (int i = 0; i < n_sets; i++) {
    const char *k = keys[i], *v = values[i];
    int t = tkey_index(k);
    bool in_spec = fe_config(plain, k) != NULL;
    if (!strcmp(k, "n")) {
      cli_error(cmd, "--set n: n is the graph's length, which the runtime "
                "sets (training uses L, evaluation each length)");
      goto out;
    }
    if (t < 0 && !in_spec) {
      char hint[64];
      did_you_mean(k, plain, hint, sizeof hint);
      cli_error(cmd, "--set %s: unknown option%s; options are the task and "
                "training keys (recall train --help) and those of %s", k, hint,
                r->spec);
      goto out;
    }
    if (t >= 0) {
      free(r->tvals[t]);
      r->tvals[t] = cli_strdup(v);
    }
    if (in_spec) set_model_opt(r, k, v);
    user_d |= !strcmp(k, "d");
  }
  if (apply_train(r) < 0) goto out;
  /* The study's defaults where the spec has these options. */
  if (fe_config(plain, "K")) set_model_opt(r, "K", tval(r, "K"));
  if (fe_config(plain, "L")) set_model_opt(r, "L", tval(r, "L"));
  if (fe_config(plain, "d") && !user_d) set_model_opt(r, "d", "8");
  for (int i = 0; i < r->n_m; i++)
    if (tkey_index(r->mkeys[i]) < 0 && check_bounds(cmd, r->mkeys[i], r->mvals[i]) < 0)
      goto out;
  if (!(r->fm = load_spec(r, (const char *const *)r->mkeys,
                          (const char *const *)r->mvals, r->n_m)))
    goto out;
  if (check_memory(r) < 0) goto out;
  /* From here on the model's options are every resolved value but n, in
   * the spec's (sorted) order. */
  for (int i = 0; i < r->n_m; i++) free(r->mkeys[i]), free(r->mvals[i]);
  r->n_m = 0;
  for (int i = 0; i < r->fm->n_config; i++) {
    const fe_value *v = &r->fm->config[i];
    if (!strcmp(v->key, "n")) continue;
    char b[256];
    value_str(v, b, sizeof b);
    set_model_opt(r, v->key, b);
  }
  rc = 0;
out:
  fe_model_free(plain);
  return rc;
}

int cm_setup_checkpoint(cm_run *r, const char *cmd, rt_tensors *ck, const char *path) {
  cm_json cfg = {0};
  char msg[256];
  if (cm_json_parse(rt_meta_get(ck, "config"), &cfg, msg, sizeof msg) < 0) {
    cli_error(cmd, "%s: the config in its metadata: %s", path, msg);
    cm_json_free(&cfg);
    return -1;
  }
  const char **keys = malloc(sizeof *keys * (size_t)(cfg.n + 1));
  const char **vals = malloc(sizeof *vals * (size_t)(cfg.n + 1));
  if (!keys || !vals) abort();
  int n = 0;
  for (int i = 0; i < cfg.n; i++) {
    const char *k = cfg.keys[i];
    if (!strncmp(k, "model_options.", 14) || !strncmp(k, "train_options.", 14))
      keys[n] = k + 14, vals[n++] = cfg.values[i];
  }
  const char *spec = rt_meta_get(ck, "spec");
  int rc = -1;
  if (access(spec, R_OK) != 0)
    cli_error(cmd, "%s: its spec %s cannot be read", path, spec);
  else
    rc = cm_setup(r, cmd, spec, keys, vals, n);
  free(keys), free(vals);
  cm_json_free(&cfg);
  return rc;
}

fe_model *cm_load_at(const cm_run *r, int n, ir_error *err) {
  const char **k = malloc(sizeof *k * (size_t)(r->n_m + 1));
  const char **v = malloc(sizeof *v * (size_t)(r->n_m + 1));
  fe_error *e = calloc(1, sizeof *e);
  if (!k || !v || !e) abort();
  char nb[16];
  snprintf(nb, sizeof nb, "%d", n);
  for (int i = 0; i < r->n_m; i++) k[i] = r->mkeys[i], v[i] = r->mvals[i];
  k[r->n_m] = "n";
  v[r->n_m] = nb;
  fe_options o = {.root = r->root, .keys = k, .values = v, .n_sets = r->n_m + 1};
  fe_model *m = NULL;
  if (fe_load_model(r->spec, &o, &m, e) < 0) {
    ir_err(err, "%.500s", e->msg);
    m = NULL;
  }
  free(e), free(k), free(v);
  return m;
}

ir_func *cm_spec_at(const cm_run *r, int n, ir_error *err) {
  fe_model *m = cm_load_at(r, n, err);
  if (!m) return NULL;
  ir_func *f = m->f;
  m->f = NULL;
  fe_model_free(m);
  return f;
}

/* rt_build_fn: the spec with its options and n. */
static ir_func *build(void *ctx, int n, ir_error *err) {
  return cm_spec_at(ctx, n, err);
}

static double u01(void *g) { return rt_rng_uniform(g); }
static double normal(void *g) { return rt_rng_normal(g); }

int cm_model(cm_run *r, rt_backend backend, int threads, bool init) {
  rt_model_options o = {.build = build, .ctx = r, .L = r->L, .backend = backend,
                        .threads = threads};
  ir_error err;
  if (!(r->rm = rt_model_new(&o, &err))) {
    cli_error(r->cmd, "%s: %s", r->spec, err.msg);
    return -1;
  }
  if (rt_model_K(r->rm) != r->K) {
    cli_error(r->cmd, "%s: the model's logits have %d classes but the task "
              "has K = %d", r->spec, rt_model_K(r->rm), r->K);
    return -1;
  }
  for (int i = 0; init && i < rt_model_n_params(r->rm); i++) {
    const rt_param *p = rt_model_param(r->rm, i);
    const fe_param *fp = fe_find_param(r->fm, p->name);
    if (!fp) {
      cli_error(r->cmd, "%s: param \"%s\" has no initialiser", r->spec, p->name);
      return -1;
    }
    rt_rng g;
    rt_rng_init(&g, r->train.seed, RT_STREAM_INIT + (uint64_t)i, 0);
    fe_init_apply(&fp->init, &p->type, rt_model_params(r->rm) + p->offset, u01,
                  normal, &g);
  }
  return 0;
}

void cm_free(cm_run *r) {
  rt_model_free(r->rm);
  fe_model_free(r->fm);
  for (int i = 0; r->tvals && i < N_TKEYS; i++) free(r->tvals[i]);
  free(r->tvals);
  for (int i = 0; i < r->n_m; i++) free(r->mkeys[i]), free(r->mvals[i]);
  free(r->mkeys);
  free(r->mvals);
  free(r->spec);
  free(r->model);
  free(r->root);
  memset(r, 0, sizeof *r);
}

/* ---- JSON ---- */

static void json_value(rt_buf *b, const char *v, bool is_str) {
  double d;
  if (is_str || (parse_num(v, &d) < 0 && strcmp(v, "true") && strcmp(v, "false")))
    rt_buf_json_str(b, v);
  else
    rt_buf_printf(b, "%s", v);
}

void cm_config_json(const cm_run *r, rt_buf *b, const char *backend,
                    int threads, const char *result) {
  rt_buf_printf(b, "{\n  \"spec\": ");
  rt_buf_json_str(b, r->spec);
  rt_buf_printf(b, ",\n  \"model\": ");
  rt_buf_json_str(b, r->model);
  rt_buf_printf(b, ",\n  \"backend\": \"%s\",\n  \"threads\": %d,\n", backend, threads);
  rt_buf_printf(b, "  \"model_options\": {");
  for (int i = 0; i < r->n_m; i++) {
    const fe_value *v = r->fm ? fe_config(r->fm, r->mkeys[i]) : NULL;
    rt_buf_printf(b, "%s\n    ", i ? "," : "");
    rt_buf_json_str(b, r->mkeys[i]);
    rt_buf_printf(b, ": ");
    json_value(b, r->mvals[i], v && v->kind == FE_VAL_STR);
  }
  rt_buf_printf(b, "\n  },\n  \"train_options\": {");
  for (int i = 0; i < N_TKEYS; i++) {
    rt_buf_printf(b, "%s\n    \"%s\": ", i ? "," : "", tkeys[i].key);
    json_value(b, r->tvals[i], tkeys[i].kind == T_STR);
  }
  rt_buf_printf(b, "\n  }");
  if (result) rt_buf_printf(b, ",\n  \"result\": %s", result);
  rt_buf_printf(b, "\n}\n");
}

typedef struct {
  const char *s, *p;
  cm_json *out;
  char *msg;
  size_t msg_n;
} jparser;

static void jws(jparser *j) {
  while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r') j->p++;
}

static int jfail(jparser *j, const char *what) {
  snprintf(j->msg, j->msg_n, "bad JSON at byte %ld: %s", (long)(j->p - j->s), what);
  return -1;
}

static int jstring(jparser *j, rt_buf *b) {
  if (*j->p != '"') return jfail(j, "expected a string");
  for (j->p++; *j->p != '"'; j->p++) {
    if (!*j->p) return jfail(j, "unterminated string");
    if (*j->p != '\\') {
      rt_buf_printf(b, "%c", *j->p);
      continue;
    }
    char c = *++j->p;
    if (c == 'n') rt_buf_printf(b, "\n");
    else if (c == 't') rt_buf_printf(b, "\t");
    else if (c == 'u') {
      unsigned u;
      if (sscanf(j->p + 1, "%4x", &u) != 1 || u > 0x7f) return jfail(j, "unsupported \\u escape");
      rt_buf_printf(b, "%c", (char)u);
      j->p += 4;
    } else if (c == '"' || c == '\\' || c == '/') rt_buf_printf(b, "%c", c);
    else return jfail(j, "bad escape");
  }
  j->p++;
  if (!b->s) rt_buf_printf(b, "%s", "");
  return 0;
}

static void jadd(jparser *j, const char *key, char *value) {
  cm_json *o = j->out;
  o->keys = realloc(o->keys, sizeof *o->keys * (size_t)(o->n + 1));
  o->values = realloc(o->values, sizeof *o->values * (size_t)(o->n + 1));
  if (!o->keys || !o->values) abort();
  o->keys[o->n] = cli_strdup(key);
  o->values[o->n++] = value;
}

static int jvalue(jparser *j, const char *path, int depth) {
  jws(j);
  if (depth > 16) return jfail(j, "nested too deeply");
  if (*j->p == '{' || *j->p == '[') {
    bool obj = *j->p == '{';
    char close = obj ? '}' : ']';
    j->p++;
    jws(j);
    for (int i = 0; *j->p != close; i++) {
      rt_buf key = {0};
      if (obj) {
        if (jstring(j, &key) < 0) return rt_buf_free(&key), -1;
        jws(j);
        if (*j->p++ != ':') return rt_buf_free(&key), jfail(j, "expected ':'");
      } else {
        rt_buf_printf(&key, "%d", i);
      }
      rt_buf full = {0};
      rt_buf_printf(&full, "%s%s%s", path, *path ? "." : "", key.s);
      rt_buf_free(&key);
      int rc = jvalue(j, full.s, depth + 1);
      rt_buf_free(&full);
      if (rc < 0) return -1;
      jws(j);
      if (*j->p == ',') j->p++, jws(j);
      else if (*j->p != close) return jfail(j, "expected ',' or the end");
    }
    j->p++;
    return 0;
  }
  if (*j->p == '"') {
    rt_buf v = {0};
    if (jstring(j, &v) < 0) return rt_buf_free(&v), -1;
    jadd(j, path, v.s);
    return 0;
  }
  const char *start = j->p;
  while (*j->p && !strchr(",}] \n\t\r", *j->p)) j->p++;
  if (j->p == start) return jfail(j, "expected a value");
  size_t n = (size_t)(j->p - start);
  char *v = malloc(n + 1);
  if (!v) abort();
  memcpy(v, start, n);
  v[n] = 0;
  jadd(j, path, v);
  return 0;
}

int cm_json_parse(const char *text, cm_json *out, char *msg, size_t msg_n) {
  memset(out, 0, sizeof *out);
  jparser j = {text, text, out, msg, msg_n};
  if (jvalue(&j, "", 0) < 0) {
    cm_json_free(out);
    return -1;
  }
  jws(&j);
  if (*j.p) {
    jfail(&j, "text after the value");
    cm_json_free(out);
    return -1;
  }
  return 0;
}

const char *cm_json_get(const cm_json *j, const char *key) {
  for (int i = 0; i < j->n; i++)
    if (!strcmp(j->keys[i], key)) return j->values[i];
  return NULL;
}

void cm_json_free(cm_json *j) {
  for (int i = 0; i < j->n; i++) free(j->keys[i]), free(j->values[i]);
  free(j->keys);
  free(j->values);
  memset(j, 0, sizeof *j);
}

int cm_mkdirs(const char *cmd, const char *dir) {
  char *p = cli_strdup(dir);
  for (char *s = p + 1;; s++) {
    if (*s && *s != '/') continue;
    char c = *s;
    *s = 0;
    if (mkdir(p, 0777) < 0 && errno != EEXIST) {
      cli_error(cmd, "cannot create directory %s: %s", p, strerror(errno));
      free(p);
      return -1;
    }
    if (!(*s = c)) break;
  }
  struct stat st;
  int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
  if (!ok) cli_error(cmd, "%s is not a directory", dir);
  free(p);
  return ok ? 0 : -1;
}
