/* experiment.c — experiment specs: a sandboxed Lua chunk returns a table
 * of options and model entries; lists sweep, and the cartesian product of
 * every model entry's lists becomes the experiment's runs. The sandbox
 * (sandbox.c) is the model specs' one without load and require; its
 * limits are fe_options' (FE_MAX_INSTRUCTIONS and FE_MAX_MEMORY by
 * default): a spec is a small table, so they only stop runaway loops and
 * allocations. */
#include "fe_internal.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static char *xstrdup(const char *s) {
  char *d = strdup(s);
  if (!d) abort();
  return d;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) abort();
  return p;
}

/* ---- option sets: key -> one or more values (strings) ---- */

typedef struct {
  char *key;
  char **v;
  int n;
} xopt;

typedef struct {
  xopt *o;
  int n;
} xset;

static void xopt_free(xopt *o) {
  for (int i = 0; i < o->n; i++) free(o->v[i]);
  free(o->v);
  free(o->key);
}

static void xset_free(xset *s) {
  for (int i = 0; i < s->n; i++) xopt_free(&s->o[i]);
  free(s->o);
  *s = (xset){0};
}

static xopt *xset_find(const xset *s, const char *key) {
  for (int i = 0; i < s->n; i++)
    if (!strcmp(s->o[i].key, key)) return &s->o[i];
  return NULL;
}

/* Sets key to the values (taking ownership), replacing an earlier entry. */
static void xset_put(xset *s, const char *key, char **v, int n) {
  xopt *o = xset_find(s, key);
  if (o) {
    for (int i = 0; i < o->n; i++) free(o->v[i]);
    free(o->v);
  } else {
    s->o = xrealloc(s->o, sizeof *s->o * (size_t)(s->n + 1));
    o = &s->o[s->n++];
    o->key = xstrdup(key);
  }
  o->v = v;
  o->n = n;
}

static void xset_merge(xset *dst, const xset *src) {
  for (int i = 0; i < src->n; i++) {
    char **v = xrealloc(NULL, sizeof *v * (size_t)src->o[i].n);
    for (int j = 0; j < src->o[i].n; j++) v[j] = xstrdup(src->o[i].v[j]);
    xset_put(dst, src->o[i].key, v, src->o[i].n);
  }
}

/* ---- reading the returned table (raw access only: no metamethods run) ---- */

typedef struct {
  const char *path; /* for messages */
  char dir[1024];   /* the spec's folder ("." if none) */
  char root[1024];
  char msg[FE_MSG_MAX];
} reader;

static int fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(reader *r, const char *fmt, ...) {
  int k = snprintf(r->msg, sizeof r->msg, "%s: ", r->path);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg + k, sizeof r->msg - (size_t)k, fmt, ap);
  va_end(ap);
  return -1;
}

static void fmt_double(double x, char *buf, size_t n) {
  for (int p = 15; p <= 17; p++) {
    snprintf(buf, n, "%.*g", p, x);
    if (strtod(buf, NULL) == x) return;
  }
}

/* The scalar at idx as a string; NULL if it is not a number, string or
 * boolean. */
static char *scalar(lua_State *L, int idx) {
  char b[64];
  switch (lua_type(L, idx)) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) snprintf(b, sizeof b, "%lld", (long long)lua_tointeger(L, idx));
    else if (!isfinite(lua_tonumber(L, idx))) return NULL;
    else fmt_double(lua_tonumber(L, idx), b, sizeof b);
    return xstrdup(b);
  case LUA_TBOOLEAN: return xstrdup(lua_toboolean(L, idx) ? "true" : "false");
  case LUA_TSTRING: return xstrdup(lua_tostring(L, idx));
  default: return NULL;
  }
}

/* A scalar or a list of scalars at idx -> *v, *n. */
static int values(reader *r, lua_State *L, int idx, const char *where, char ***v, int *n) {
  *v = NULL, *n = 0;
  if (lua_type(L, idx) != LUA_TTABLE) {
    char *s = scalar(L, idx);
    if (!s)
      return fail(r, "%s: expected a number, string, boolean or a list of them, got %s",
                  where, lua_type(L, idx) == LUA_TNUMBER ? "a non-finite number"
                                                       : luaL_typename(L, idx));
    *v = xrealloc(NULL, sizeof **v);
    (*v)[(*n)++] = s;
    return 0;
  }
  lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
  lua_Integer count = 0;
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) count++;
  if (len == 0 || count != len)
    return fail(r, "%s: a list must be a non-empty sequence {a, b, ...} of values", where);
  *v = xrealloc(NULL, sizeof **v * (size_t)len);
  for (lua_Integer i = 1; i <= len; i++) {
    lua_rawgeti(L, idx, i);
    char *s = scalar(L, -1);
    lua_pop(L, 1);
    if (!s) {
      for (int j = 0; j < *n; j++) free((*v)[j]);
      free(*v);
      *v = NULL, *n = 0;
      return fail(r, "%s[%lld]: list items must be numbers, strings or booleans",
                  where, (long long)i);
    }
    for (int j = 0; j < *n; j++)
      if (!strcmp((*v)[j], s)) {
        fail(r, "%s: the list repeats the value %s", where, s);
        free(s);
        for (int k = 0; k < *n; k++) free((*v)[k]);
        free(*v);
        *v = NULL, *n = 0;
        return -1;
      }
    (*v)[(*n)++] = s;
  }
  return 0;
}

/* Reads an options table at idx into s; skip (may be NULL) lists keys
 * handled elsewhere; in eval, n means sweep_n. */
static int options(reader *r, lua_State *L, int idx, const char *where, xset *s,
                   const char *const *skip, bool eval) {
  if (lua_type(L, idx) != LUA_TTABLE)
    return fail(r, "%s: expected a table of options, got %s", where, luaL_typename(L, idx));
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return fail(r, "%s: option names must be strings", where);
    }
    const char *key = lua_tostring(L, -2);
    bool skipped = false;
    for (int i = 0; skip && skip[i]; i++) skipped |= !strcmp(skip[i], key);
    if (skipped) continue;
    if (eval && !strcmp(key, "n")) key = "sweep_n";
    char w[512];
    snprintf(w, sizeof w, "%s.%s", where, key);
    if (!strcmp(key, "n")) {
      lua_pop(L, 2);
      return fail(r, "%s: n is the graph's length, which the runtime sets", w);
    }
    if (xset_find(s, key)) {
      lua_pop(L, 2);
      return fail(r, "%s: %s is given twice (task, train and eval are one namespace)", w, key);
    }
    char **v;
    int n;
    if (values(r, L, lua_gettop(L), w, &v, &n) < 0) {
      lua_pop(L, 2);
      return -1;
    }
    xset_put(s, key, v, n);
  }
  return 0;
}

/* A string field of the table at idx (raw): nil gives dflt (may be NULL);
 * -1 if it is something else than a string or number. */
static int str_field(reader *r, lua_State *L, int idx, const char *key, const char *where,
                     const char *dflt, char **out) {
  lua_pushstring(L, key);
  int t = lua_rawget(L, idx);
  *out = NULL;
  if (t == LUA_TNIL) *out = dflt ? xstrdup(dflt) : NULL;
  else if (t == LUA_TSTRING || t == LUA_TNUMBER) *out = scalar(L, -1);
  lua_pop(L, 1);
  if (t != LUA_TNIL && !*out)
    return fail(r, "%s%s: expected a string, got %s", where, key, lua_typename(L, t));
  return 0;
}

static bool is_file(const char *p) { return access(p, R_OK) == 0; }

/* "transformer" -> ROOT/specs/models/transformer.lua; a path is relative to
 * the experiment's folder, then the root, else taken as given. */
static char *resolve(const reader *r, const char *spec, const char *sub, const char *ext) {
  char b[2200];
  if (!strchr(spec, '/') && !(strlen(spec) > 4 && !strcmp(spec + strlen(spec) - 4, ".lua"))) {
    snprintf(b, sizeof b, "%s/%s/%s%s", r->root, sub, spec, ext);
    return xstrdup(b);
  }
  if (spec[0] == '/') return xstrdup(spec);
  snprintf(b, sizeof b, "%s/%s", r->dir, spec);
  if (is_file(b)) return xstrdup(b);
  snprintf(b, sizeof b, "%s/%s", r->root, spec);
  if (is_file(b)) return xstrdup(b);
  return xstrdup(spec);
}

/* ---- expansion ---- */

typedef struct {
  char *label, *spec;
  xset opts;
} entry;

static const char *const name_order[] = {"M", "tau", "d", "lr"};
enum { N_NAME_ORDER = 4 };

static int name_rank(const char *k) {
  for (int i = 0; i < N_NAME_ORDER; i++)
    if (!strcmp(name_order[i], k)) return i;
  return !strcmp(k, "seed") ? N_NAME_ORDER + 2 : N_NAME_ORDER + 1;
}

/* Order of the product: M, tau, d, lr, the rest by name, seed last (so
 * it varies fastest). */
static int cmp_key_order(const void *a, const void *b) {
  const char *x = ((const xopt *)a)->key, *y = ((const xopt *)b)->key;
  int rx = name_rank(x), ry = name_rank(y);
  return rx != ry ? rx - ry : strcmp(x, y);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void add_run(fe_experiment *e, const entry *en, const int *pick) {
  e->runs = xrealloc(e->runs, sizeof *e->runs * (size_t)(e->n_runs + 1));
  fe_run *run = &e->runs[e->n_runs++];
  *run = (fe_run){.label = xstrdup(en->label), .spec = xstrdup(en->spec)};
  int n = en->opts.n;
  run->keys = xrealloc(NULL, sizeof(char *) * (size_t)n);
  run->values = xrealloc(NULL, sizeof(char *) * (size_t)n);
  /* sorted by key: sort indices through a copy of the keys */
  const char **ks = xrealloc(NULL, sizeof *ks * (size_t)n);
  for (int i = 0; i < n; i++) ks[i] = en->opts.o[i].key;
  if (n > 1) qsort(ks, (size_t)n, sizeof *ks, cmp_str);
  for (int i = 0; i < n; i++) {
    int j = 0;
    while (strcmp(en->opts.o[j].key, ks[i])) j++;
    run->keys[i] = xstrdup(ks[i]);
    run->values[i] = xstrdup(en->opts.o[j].v[pick[j]]);
  }
  run->n = n;
  free(ks);
}

static void expand(fe_experiment *e, entry *en) {
  if (en->opts.n > 1) qsort(en->opts.o, (size_t)en->opts.n, sizeof *en->opts.o, cmp_key_order);
  int n = en->opts.n;
  int *pick = calloc((size_t)n + 1, sizeof *pick);
  if (!pick) abort();
  for (;;) {
    add_run(e, en, pick);
    int i = n - 1; /* odometer: the last key turns fastest */
    while (i >= 0 && ++pick[i] == en->opts.o[i].n) pick[i--] = 0;
    if (i < 0) break;
  }
  free(pick);
}

const char *fe_run_get(const fe_run *r, const char *key) {
  for (int i = 0; i < r->n; i++)
    if (!strcmp(r->keys[i], key)) return r->values[i];
  return NULL;
}

static void sanitize(char *s) {
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
      *s = '_';
}

/* Does key take more than one value (or is it missing somewhere) among
 * the runs labelled like run i? */
static bool varies(const fe_experiment *e, int i, const char *key) {
  const char *v0 = fe_run_get(&e->runs[i], key);
  for (int j = 0; j < e->n_runs; j++) {
    if (strcmp(e->runs[j].label, e->runs[i].label)) continue;
    const char *v = fe_run_get(&e->runs[j], key);
    if ((v == NULL) != (v0 == NULL) || (v && strcmp(v, v0))) return true;
  }
  return false;
}

static void name_runs(fe_experiment *e) {
  for (int i = 0; i < e->n_runs; i++) {
    fe_run *r = &e->runs[i];
    char b[2048];
    size_t k = (size_t)snprintf(b, sizeof b, "%s", r->label);
    const char *M = fe_run_get(r, "M"), *tau = fe_run_get(r, "tau");
    if (M) k += (size_t)snprintf(b + k, sizeof b - k, "-M%s", M);
    if (tau && k < sizeof b) k += (size_t)snprintf(b + k, sizeof b - k, "-tau%s", tau);
    /* the keys that vary, in name order: d, lr, then the rest by name */
    const char **ks = xrealloc(NULL, sizeof *ks * (size_t)(r->n + 1));
    int nk = 0;
    for (int j = 0; j < r->n; j++) {
      const char *key = r->keys[j];
      if (strcmp(key, "M") && strcmp(key, "tau") && strcmp(key, "seed") && varies(e, i, key))
        ks[nk++] = key;
    }
    for (int a = 1; a < nk; a++) /* insertion sort by name rank */
      for (int c = a; c > 0 && (name_rank(ks[c]) < name_rank(ks[c - 1]) ||
                                (name_rank(ks[c]) == name_rank(ks[c - 1]) &&
                                 strcmp(ks[c], ks[c - 1]) < 0)); c--) {
        const char *t = ks[c];
        ks[c] = ks[c - 1], ks[c - 1] = t;
      }
    for (int j = 0; j < nk && k < sizeof b; j++)
      k += (size_t)snprintf(b + k, sizeof b - k, "-%s%s", ks[j], fe_run_get(r, ks[j]));
    free(ks);
    const char *seed = fe_run_get(r, "seed");
    if (k < sizeof b) snprintf(b + k, sizeof b - k, "-s%s", seed ? seed : "0");
    sanitize(b);
    r->name = xstrdup(b);
  }
}

/* ---- the returned table ---- */

static const char *const top_keys[] = {"name",  "title", "problem", "task",        "train",
                                       "eval",  "seeds", "models",  "experiments", NULL};

static int check_top_keys(reader *r, lua_State *L, int t) {
  for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    bool ok = false;
    for (int i = 0; k && top_keys[i]; i++) ok |= !strcmp(k, top_keys[i]);
    if (!ok) {
      char key[128];
      snprintf(key, sizeof key, "%s", k ? k : "(a non-string key)");
      lua_pop(L, 2);
      return fail(r, "unknown field '%s' in the returned table (fields: name, title, "
                  "problem, task, train, eval, seeds, models; a study: experiments)", key);
    }
  }
  return 0;
}

static int read_seeds(reader *r, lua_State *L, int t, xset *base) {
  lua_pushstring(L, "seeds");
  lua_rawget(L, t);
  int idx = lua_gettop(L), rc = 0;
  if (!lua_isnil(L, idx) && xset_find(base, "seed")) {
    rc = fail(r, "seeds: seed is also given as an option");
  } else if (lua_isinteger(L, idx)) {
    lua_Integer n = lua_tointeger(L, idx);
    if (n < 1 || n > 100000) rc = fail(r, "seeds: a count must be 1..100000");
    else {
      char **v = xrealloc(NULL, sizeof *v * (size_t)n);
      for (lua_Integer i = 0; i < n; i++) {
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)i);
        v[i] = xstrdup(b);
      }
      xset_put(base, "seed", v, (int)n);
    }
  } else if (!lua_isnil(L, idx)) {
    char **v;
    int n;
    if ((rc = values(r, L, idx, "seeds", &v, &n)) == 0) xset_put(base, "seed", v, n);
  }
  lua_pop(L, 1);
  return rc;
}

/* The --set pairs: a value with commas is a list. */
static void read_sets(const fe_options *opt, xset *s) {
  for (int i = 0; opt && i < opt->n_sets; i++) {
    char *copy = xstrdup(opt->values[i]);
    char **v = NULL;
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      v = xrealloc(v, sizeof *v * (size_t)(n + 1));
      v[n++] = xstrdup(tok);
    }
    if (!n) {
      v = xrealloc(v, sizeof *v);
      v[n++] = xstrdup("");
    }
    free(copy);
    xset_put(s, opt->keys[i], v, n);
  }
}

static const char *const entry_keys[] = {"label", "spec", "set", NULL};

static int read_entry(reader *r, lua_State *L, int idx, int i, const xset *base,
                      const xset *sets, entry *en) {
  char where[64];
  snprintf(where, sizeof where, "models[%d]", i);
  if (lua_type(L, idx) != LUA_TTABLE)
    return fail(r, "%s: expected a table {label=, spec=, set={...}}, got %s", where,
                luaL_typename(L, idx));
  char *spec;
  char w[80];
  snprintf(w, sizeof w, "%s.", where);
  if (str_field(r, L, idx, "spec", w, NULL, &spec) < 0) return -1;
  if (!spec) return fail(r, "%s: spec is missing (a model spec: \"transformer\", or a path)", where);
  en->spec = resolve(r, spec, "specs/models", ".lua");
  const char *base_name = strrchr(spec, '/') ? strrchr(spec, '/') + 1 : spec;
  char dflt[256];
  snprintf(dflt, sizeof dflt, "%s", base_name);
  if (strlen(dflt) > 4 && !strcmp(dflt + strlen(dflt) - 4, ".lua")) dflt[strlen(dflt) - 4] = 0;
  free(spec);
  if (str_field(r, L, idx, "label", w, dflt, &en->label) < 0) return -1;
  xset own = {0};
  int rc = options(r, L, idx, where, &own, entry_keys, false);
  lua_pushstring(L, "set");
  lua_rawget(L, idx);
  if (rc == 0 && !lua_isnil(L, -1)) {
    snprintf(w, sizeof w, "%s.set", where);
    xset set = {0};
    rc = options(r, L, lua_gettop(L), w, &set, NULL, false);
    for (int j = 0; rc == 0 && j < set.n; j++)
      if (xset_find(&own, set.o[j].key))
        rc = fail(r, "%s: %s is given both in set and in the entry", where, set.o[j].key);
    if (rc == 0) xset_merge(&own, &set);
    xset_free(&set);
  }
  lua_pop(L, 1);
  if (rc == 0) {
    xset_merge(&en->opts, base);
    xset_merge(&en->opts, &own);
    xset_merge(&en->opts, sets);
  }
  xset_free(&own);
  return rc;
}

static int read_study(reader *r, lua_State *L, int t, fe_experiment *e) {
  lua_pushstring(L, "experiments");
  lua_rawget(L, t);
  char **v;
  int n, rc = values(r, L, lua_gettop(L), "experiments", &v, &n);
  lua_pop(L, 1);
  if (rc < 0) return -1;
  e->study = true;
  e->experiments = xrealloc(NULL, sizeof *e->experiments * (size_t)n);
  for (int i = 0; i < n; i++) {
    e->experiments[i] = resolve(r, v[i], "specs/experiments", ".lua");
    free(v[i]);
  }
  free(v);
  e->n_experiments = n;
  static const char *const bad[] = {"task", "train", "eval", "seeds", "models"};
  for (int i = 0; i < 5; i++) {
    lua_pushstring(L, bad[i]);
    bool has = lua_rawget(L, t) != LUA_TNIL;
    lua_pop(L, 1);
    if (has)
      return fail(r, "a study lists experiments; %s belongs in each experiment "
                  "(override with --set)", bad[i]);
  }
  return 0;
}

static int read_experiment(reader *r, lua_State *L, int t, const fe_options *opt,
                           fe_experiment *e) {
  if (check_top_keys(r, L, t) < 0) return -1;
  char dflt[256];
  const char *b = strrchr(r->path, '/') ? strrchr(r->path, '/') + 1 : r->path;
  snprintf(dflt, sizeof dflt, "%s", b);
  if (strlen(dflt) > 4 && !strcmp(dflt + strlen(dflt) - 4, ".lua")) dflt[strlen(dflt) - 4] = 0;
  if (str_field(r, L, t, "name", "", dflt, &e->name) < 0 ||
      str_field(r, L, t, "title", "", "", &e->title) < 0 ||
      str_field(r, L, t, "problem", "", "", &e->problem) < 0)
    return -1;
  sanitize(e->name);
  lua_pushstring(L, "experiments");
  bool study = lua_rawget(L, t) != LUA_TNIL;
  lua_pop(L, 1);
  if (study) return read_study(r, L, t, e);

  xset base = {0}, sets = {0};
  int rc = 0;
  static const char *const sections[] = {"task", "train", "eval"};
  for (int i = 0; rc == 0 && i < 3; i++) {
    lua_pushstring(L, sections[i]);
    if (lua_rawget(L, t) != LUA_TNIL)
      rc = options(r, L, lua_gettop(L), sections[i], &base, NULL, i == 2);
    lua_pop(L, 1);
  }
  if (rc == 0) rc = read_seeds(r, L, t, &base);
  read_sets(opt, &sets);
  lua_pushstring(L, "models");
  lua_rawget(L, t);
  int mi = lua_gettop(L);
  lua_Integer nm = lua_type(L, mi) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, mi) : 0;
  if (rc == 0 && nm == 0)
    rc = fail(r, "models: expected a non-empty list of {label=, spec=, set={...}}");
  for (lua_Integer i = 1; rc == 0 && i <= nm; i++) {
    lua_rawgeti(L, mi, i);
    entry en = {0};
    rc = read_entry(r, L, lua_gettop(L), (int)i, &base, &sets, &en);
    if (rc == 0) expand(e, &en);
    free(en.label), free(en.spec);
    xset_free(&en.opts);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  xset_free(&base);
  xset_free(&sets);
  if (rc < 0) return -1;
  name_runs(e);
  for (int i = 0; i < e->n_runs; i++)
    for (int j = 0; j < i; j++)
      if (!strcmp(e->runs[i].name, e->runs[j].name))
        return fail(r, "two runs are both named %s (model entries with the same "
                    "label and options?)", e->runs[i].name);
  return 0;
}

/* ---- loading ---- */

typedef struct {
  const char *code, *name;
  const fe_options *opt;
  reader *r;
  fe_experiment *e;
  int rc; /* -1: r->msg holds a message about the returned table */
} run_ctx;

static int pmain(lua_State *L) {
  run_ctx *c = lua_touserdata(L, 1);
  fe_sandbox_open(L);
  int st;
  if (c->code) {
    lua_pushfstring(L, "@%s", c->name);
    st = luaL_loadbufferx(L, c->code, strlen(c->code), lua_tostring(L, -1), "t");
  } else {
    st = luaL_loadfilex(L, c->name, "t");
  }
  if (st != LUA_OK) return lua_error(L);
  fe_sandbox_call(L, 0, 1);
  if (lua_type(L, -1) != LUA_TTABLE) {
    c->rc = fail(c->r, "the experiment spec must return a table, it returned %s",
                 luaL_typename(L, -1));
    return 0;
  }
  c->rc = read_experiment(c->r, L, lua_gettop(L), c->opt, c->e);
  return 0;
}

static void set_root(reader *r, const fe_options *opt, const char *path) {
  const char *root = opt && opt->root ? opt->root : getenv("RECALL_ROOT");
  if (root && *root) {
    snprintf(r->root, sizeof r->root, "%s", root);
    return;
  }
  const char *sp = strstr(path, "specs/");
  while (sp && sp != path && sp[-1] != '/') sp = strstr(sp + 1, "specs/");
  if (sp && sp != path) snprintf(r->root, sizeof r->root, "%.*s", (int)(sp - path - 1), path);
  else snprintf(r->root, sizeof r->root, ".");
}

static int load(const char *code, const char *name, const fe_options *opt,
                fe_experiment **out, fe_error *err) {
  *out = NULL;
  reader *r = calloc(1, sizeof *r);
  fe_experiment *e = calloc(1, sizeof *e);
  if (!r || !e) abort();
  r->path = name;
  const char *slash = strrchr(name, '/');
  if (slash) snprintf(r->dir, sizeof r->dir, "%.*s", (int)(slash - name), name);
  else snprintf(r->dir, sizeof r->dir, ".");
  set_root(r, opt, name);
  e->path = xstrdup(name);
  fe_sandbox sb;
  lua_State *L = fe_sandbox_new(&sb, "experiment specs", opt);
  run_ctx c = {code, name, opt, r, e, 0};
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &c);
  int st = lua_pcall(L, 1, 0, 0);
  int rc = 0;
  if (st != LUA_OK) {
    fe_sandbox_error(&sb, L, name, err);
    rc = -1;
  } else if (c.rc < 0) {
    if (err) snprintf(err->msg, sizeof err->msg, "%s", r->msg);
    rc = -1;
  }
  lua_close(L);
  free(r);
  if (rc < 0) fe_experiment_free(e);
  else *out = e;
  return rc;
}

int fe_load_experiment(const char *path, const fe_options *opt, fe_experiment **out,
                       fe_error *err) {
  return load(NULL, path, opt, out, err);
}

int fe_load_experiment_string(const char *code, const char *chunkname,
                              const fe_options *opt, fe_experiment **out,
                              fe_error *err) {
  return load(code, chunkname ? chunkname : "experiment", opt, out, err);
}

void fe_experiment_free(fe_experiment *e) {
  if (!e) return;
  for (int i = 0; i < e->n_runs; i++) {
    fe_run *r = &e->runs[i];
    for (int j = 0; j < r->n; j++) free(r->keys[j]), free(r->values[j]);
    free(r->keys), free(r->values);
    free(r->name), free(r->label), free(r->spec);
  }
  free(e->runs);
  for (int i = 0; i < e->n_experiments; i++) free(e->experiments[i]);
  free(e->experiments);
  free(e->path), free(e->name), free(e->title), free(e->problem);
  free(e);
}
