/* load.c — running a spec: the Lua state, where errors point, scopes,
 * options from --set, and turning the builder into an fe_model. */
#include "fe_internal.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K_BUILDER "recall.builder"
#define K_SETS "recall.sets"       /* key -> --set value (string) */
#define K_USED "recall.used"       /* key -> true once an options() took it */
#define K_OPTIONS "recall.options" /* every table options() returned */
#define K_LOADED "recall.loaded"   /* module name -> what require returned */

fe_builder *fe_builder_get(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, K_BUILDER);
  fe_builder *b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return b;
}

/* The innermost Lua frame outside the spec library, else the innermost
 * Lua frame: where the user wrote the call that went wrong. */
static bool user_frame(lua_State *L, lua_Debug *ar) {
  fe_builder *b = fe_builder_get(L);
  size_t lp = b ? strlen(b->libprefix) : 0;
  lua_Debug first;
  bool have = false;
  for (int lv = 1; lua_getstack(L, lv, ar); lv++) {
    lua_getinfo(L, "Sl", ar);
    if (ar->currentline <= 0) continue; /* C function */
    if (!have) first = *ar, have = true;
    if (!b || strncmp(ar->source, b->libprefix, lp) != 0) return true;
  }
  if (have) *ar = first;
  return have;
}

static const char *where(const lua_Debug *ar) {
  return ar->source[0] == '@' ? ar->source + 1 : ar->short_src;
}

int fe_user_line(lua_State *L) {
  lua_Debug ar;
  return user_frame(L, &ar) ? ar.currentline : 0;
}

int fe_raise(lua_State *L, const char *fmt, ...) {
  char msg[IR_MSG_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lua_Debug ar;
  if (user_frame(L, &ar))
    lua_pushfstring(L, "%s:%d: %s", where(&ar), ar.currentline, msg);
  else
    lua_pushstring(L, msg);
  lua_error(L);
  abort(); /* not reached */
}

/* raise(msg): an error at the user's line (for libraries: error(msg, 2)
 * would point into the library when a C function such as scope called it). */
static int l_raise(lua_State *L) {
  fe_raise(L, "%s", luaL_checkstring(L, 1));
}

/* ---- scope(name, fn, ...) ---- */

static int scope_restore(lua_State *L) {
  fe_builder *b = fe_builder_get(L);
  memcpy(b->scope, lua_touserdata(L, 1), sizeof b->scope);
  return 0;
}

/* Runs fn(...) with name appended to the scope prefix of param and const
 * names; nil or "" runs it at the top level. Restored however fn ends. */
static int l_scope(lua_State *L) {
  const char *name = luaL_optstring(L, 1, "");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int top = lua_gettop(L);
  fe_builder *b = fe_builder_get(L);
  char *saved = lua_newuserdatauv(L, sizeof b->scope, 0);
  memcpy(saved, b->scope, sizeof b->scope);
  if (luaL_newmetatable(L, "recall.scope_guard")) {
    lua_pushcfunction(L, scope_restore);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  int guard = lua_gettop(L);
  if (!*name)
    b->scope[0] = '\0';
  else if (strchr(name, '.') == name || (b->scope[0] ? strlen(b->scope) + 1 : 0) +
                                               strlen(name) >= sizeof b->scope)
    fe_raise(L, "scope: bad or too long name \"%s\"", name);
  else if (b->scope[0])
    strcat(strcat(b->scope, "."), name);
  else
    strcpy(b->scope, name);
  lua_pushvalue(L, 2);
  for (int i = 3; i <= top; i++) lua_pushvalue(L, i);
  lua_call(L, top - 2, LUA_MULTRET);
  return lua_gettop(L) - guard;
}

/* ---- options{defaults} ---- */

/* Converts the --set string on top of the stack to the type of the default
 * at index dflt; replaces it. */
static void convert_set(lua_State *L, const char *key, int dflt) {
  const char *s = lua_tostring(L, -1);
  switch (lua_type(L, dflt)) {
  case LUA_TNUMBER:
    if (!lua_stringtonumber(L, s))
      fe_raise(L, "--set %s=%s: %s takes a number", key, s, key);
    if (lua_isinteger(L, dflt) && !lua_isinteger(L, -1)) { /* "16.0" */
      lua_Integer i;
      if (!lua_numbertointeger(lua_tonumber(L, -1), &i) || (lua_Number)i != lua_tonumber(L, -1))
        fe_raise(L, "--set %s=%s: %s takes an integer", key, s, key);
      lua_pop(L, 1);
      lua_pushinteger(L, i);
    }
    break;
  case LUA_TBOOLEAN:
    if (!strcmp(s, "true") || !strcmp(s, "1")) lua_pushboolean(L, 1);
    else if (!strcmp(s, "false") || !strcmp(s, "0")) lua_pushboolean(L, 0);
    else fe_raise(L, "--set %s=%s: %s takes true or false", key, s, key);
    break;
  case LUA_TSTRING: return;
  default: /* derived option: a number if it reads as one */
    if (!lua_stringtonumber(L, s)) return;
  }
  lua_remove(L, -2);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* options(defaults): a copy of defaults with --set values applied; a
 * function default is derived, called with the table once the others are
 * set (in key order). */
static int l_options(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_newtable(L); /* 2: result */
  lua_getfield(L, LUA_REGISTRYINDEX, K_SETS);  /* 3 */
  lua_getfield(L, LUA_REGISTRYINDEX, K_USED);  /* 4 */
  const char *derived[256];
  int nd = 0;
  for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING) fe_raise(L, "options: keys must be names");
    const char *key = lua_tostring(L, -2);
    lua_getfield(L, 3, key);
    if (!lua_isnil(L, -1)) {
      convert_set(L, key, lua_gettop(L) - 1);
      lua_pushboolean(L, 1);
      lua_setfield(L, 4, key);
    } else {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      if (lua_isfunction(L, -1) && nd < 256) derived[nd++] = key;
    }
    lua_setfield(L, 2, key);
  }
  qsort(derived, (size_t)nd, sizeof *derived, cmp_str);
  for (int i = 0; i < nd; i++) {
    lua_getfield(L, 2, derived[i]);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    int t = lua_type(L, -1);
    if (t != LUA_TNUMBER && t != LUA_TSTRING && t != LUA_TBOOLEAN)
      fe_raise(L, "options: %s's default function returned %s, not a number, "
                  "string or boolean", derived[i], lua_typename(L, t));
    lua_setfield(L, 2, derived[i]);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, K_OPTIONS);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_settop(L, 2);
  return 1;
}

/* ---- running ---- */

typedef struct {
  const char *code; /* NULL: load the file `name` */
  const char *name;
  const fe_options *opt;
  fe_builder *b;
  const char *root;
  char dir[FE_PATH_MAX]; /* the spec's folder: require looks there too */
} run_ctx;

/* ---- load and require (the rest of the sandbox is sandbox.c) ---- */

/* load(chunk [, chunkname [, mode [, env]]]): text chunks only. */
static int sb_load(lua_State *L) {
  size_t n;
  const char *code = lua_tolstring(L, 1, &n);
  if (!code) fe_raise(L, "load: the chunk must be a string (model specs load text only)");
  const char *name = luaL_optstring(L, 2, code);
  const char *mode = luaL_optstring(L, 3, "t");
  if (!strchr(mode, 't'))
    fe_raise(L, "load: mode \"%s\": model specs load text chunks only", mode);
  int env = !lua_isnone(L, 4) ? 4 : 0;
  if (luaL_loadbufferx(L, code, n, name, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env) {
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return 1;
}

/* require(name): ROOT/specs/lib/NAME.lua, then NAME.lua in the spec's
 * folder (dots in NAME are folders); nowhere else. */
static int sb_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, K_LOADED); /* 2 */
  if (lua_getfield(L, 2, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  bool ok = *name && *name != '.';
  for (const char *p = name; *p && ok; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
         (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || (*p == '.' && p[1] != '.');
  if (!ok || strlen(name) > 200)
    fe_raise(L, "require \"%s\": a module name is letters, digits, _ and - "
             "with dots between folders", name);
  run_ctx *c;
  lua_getfield(L, LUA_REGISTRYINDEX, "recall.ctx");
  c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  char rel[256], path[2 * FE_PATH_MAX];
  snprintf(rel, sizeof rel, "%s", name);
  for (char *p = rel; *p; p++)
    if (*p == '.') *p = '/';
  const char *dirs[2] = {NULL, c->dir};
  char lib[FE_PATH_MAX + 16];
  snprintf(lib, sizeof lib, "%s/specs/lib", c->root);
  dirs[0] = lib;
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s.lua", dirs[i], rel);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    fclose(f);
    if (luaL_loadfilex(L, path, "t") != LUA_OK) lua_error(L);
    lua_pushvalue(L, 1);
    lua_pushstring(L, path);
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    return 1;
  }
  fe_raise(L, "require \"%s\": no %s.lua in %s or %s (model specs require "
           "only modules there)", name, rel, lib, c->dir);
}

static void sb_open(lua_State *L, run_ctx *c) {
  fe_sandbox_open(L);
  lua_pushlightuserdata(L, c);
  lua_setfield(L, LUA_REGISTRYINDEX, "recall.ctx");
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, K_LOADED);
  lua_pushglobaltable(L);
  lua_pushcfunction(L, sb_load);
  lua_setfield(L, -2, "load");
  lua_pushcfunction(L, sb_require);
  lua_setfield(L, -2, "require");
  lua_pop(L, 1);
}

/* Adds the traceback; a Lua error raised inside the library (say, a nil
 * option in arithmetic) is also located at the user's line, first. */
static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  const char *lib = fe_builder_get(L)->libprefix + 1;
  lua_Debug ar;
  if (!strncmp(msg, lib, strlen(lib)) && user_frame(L, &ar) &&
      strncmp(ar.source + 1, lib, strlen(lib)))
    msg = lua_pushfstring(L, "%s:%d: %s", where(&ar), ar.currentline, msg);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Protected: sets the state up, loads and runs the spec. Returns a message
 * if the spec does not load (no traceback needed), else nothing. */
static int pmain(lua_State *L) {
  run_ctx *c = lua_touserdata(L, 1);
  sb_open(L, c);
  lua_pushlightuserdata(L, c->b);
  lua_setfield(L, LUA_REGISTRYINDEX, K_BUILDER);
  lua_newtable(L);
  for (int i = 0; c->opt && i < c->opt->n_sets; i++) {
    lua_pushstring(L, c->opt->values[i]);
    lua_setfield(L, -2, c->opt->keys[i]);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, K_SETS);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, K_USED);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, K_OPTIONS);
  fe_open_tensor(L);
  fe_open_init(L);
  lua_register(L, "scope", l_scope);
  lua_register(L, "options", l_options);
  lua_register(L, "raise", l_raise);
  int st;
  if (c->code) {
    lua_pushfstring(L, "@%s", c->name);
    st = luaL_loadbufferx(L, c->code, strlen(c->code), lua_tostring(L, -1), "t");
  } else {
    st = luaL_loadfilex(L, c->name, "t");
  }
  if (st != LUA_OK) return 1;
  fe_sandbox_call(L, 0, 0);
  return 0;
}

static char *xstrdup(const char *s) {
  char *d = malloc(strlen(s) + 1);
  if (!d) abort();
  return strcpy(d, s);
}

static void set_err(fe_error *err, const char *fmt, ...) {
  if (!err) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
}

static int cmp_value(const void *a, const void *b) {
  return strcmp(((const fe_value *)a)->key, ((const fe_value *)b)->key);
}

/* Every options() table merged (later calls win), sorted by key. */
static void collect_config(lua_State *L, fe_model *m) {
  lua_newtable(L);
  int merged = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, K_OPTIONS);
  lua_Integer n = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    for (lua_pushnil(L); lua_next(L, -2);) {
      int t = lua_type(L, -1);
      if (lua_type(L, -2) == LUA_TSTRING &&
          (t == LUA_TNUMBER || t == LUA_TSTRING || t == LUA_TBOOLEAN)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, merged);
      } else {
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  for (lua_pushnil(L); lua_next(L, merged); lua_pop(L, 1)) {
    m->config = realloc(m->config, sizeof *m->config * (size_t)(m->n_config + 1));
    if (!m->config) abort();
    fe_value *v = &m->config[m->n_config++];
    *v = (fe_value){.key = xstrdup(lua_tostring(L, -2))};
    if (lua_type(L, -1) == LUA_TBOOLEAN) {
      v->kind = FE_VAL_BOOL;
      v->num = lua_toboolean(L, -1);
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      v->kind = FE_VAL_NUM;
      v->num = lua_tonumber(L, -1);
    } else {
      v->kind = FE_VAL_STR;
      v->str = xstrdup(lua_tostring(L, -1));
    }
  }
  lua_pop(L, 1);
  if (m->n_config) qsort(m->config, (size_t)m->n_config, sizeof *m->config, cmp_value);
}

/* --set keys no options() call took; -1 with a message listing them and
 * the options there are. */
static int check_sets_used(lua_State *L, const fe_options *opt, const char *name,
                           fe_error *err) {
  lua_getfield(L, LUA_REGISTRYINDEX, K_USED);
  for (int i = 0; opt && i < opt->n_sets; i++) {
    lua_getfield(L, -1, opt->keys[i]);
    bool used = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (used) continue;
    fe_model tmp = {0};
    collect_config(L, &tmp);
    char list[1024] = "";
    size_t k = 0;
    for (int j = 0; j < tmp.n_config && k < sizeof list; j++)
      k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", j ? ", " : "", tmp.config[j].key);
    set_err(err, "%s: --set %s: the spec has no option %s (options: %s)", name,
            opt->keys[i], opt->keys[i], tmp.n_config ? list : "none");
    tmp.f = NULL;
    for (int j = 0; j < tmp.n_config; j++) free(tmp.config[j].key), free(tmp.config[j].str);
    free(tmp.config);
    lua_pop(L, 1);
    return -1;
  }
  lua_pop(L, 1);
  return 0;
}

static int load(const char *code, const char *name, const fe_options *opt,
                fe_model **out, fe_error *err) {
  *out = NULL;
  char guess[FE_PATH_MAX];
  const char *root = opt && opt->root ? opt->root : getenv("RECALL_ROOT");
  if ((!root || !*root) && !code) { /* ROOT/specs/models/x.lua -> ROOT */
    const char *sp = strstr(name, "specs/");
    while (sp && sp != name && sp[-1] != '/') sp = strstr(sp + 1, "specs/");
    if (sp == name)
      root = ".";
    else if (sp && sp - name < (ptrdiff_t)sizeof guess)
      root = guess, snprintf(guess, sizeof guess, "%.*s", (int)(sp - name - 1), name);
  }
  if (!root || !*root) root = ".";
  fe_builder b = {0};
  if (snprintf(b.libprefix, sizeof b.libprefix, "@%s/specs/lib/", root) >=
      (int)sizeof b.libprefix) {
    set_err(err, "%s: project root path too long: %s", name, root);
    return -1;
  }
  b.f = ir_func_new();
  fe_model *m = calloc(1, sizeof *m);
  fe_sandbox sb;
  lua_State *L = fe_sandbox_new(&sb, "model specs", opt);
  if (!m) abort();
  run_ctx c = {code, name, opt, &b, root, "."};
  const char *slash = code ? NULL : strrchr(name, '/');
  if (slash) snprintf(c.dir, sizeof c.dir, "%.*s", (int)(slash - name), name);
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &c);
  int st = lua_pcall(L, 1, 1, 1);
  int rc = -1;
  if (st != LUA_OK || !lua_isnil(L, -1)) {
    fe_sandbox_error(&sb, L, name, err);
  } else if (check_sets_used(L, opt, name, err) == 0) {
    collect_config(L, m);
    rc = 0;
  }
  lua_close(L);
  ir_error ie;
  if (rc == 0 && ir_verify(b.f, &ie)) {
    set_err(err, "%s: the graph does not verify: %s", name, ie.msg);
    rc = -1;
  }
  m->f = b.f;
  m->path = xstrdup(name);
  m->params = b.params;
  m->n_params = b.n_params;
  m->probes = b.probes;
  m->n_probes = b.n_probes;
  for (int i = 0; i < m->n_params; i++)
    m->params[i].name = xstrdup(b.f->nodes[m->params[i].node].name);
  for (int i = 0; i < b.f->n_nodes; i++)
    if (b.f->nodes[i].op == IR_OP_CONST) {
      m->consts = realloc(m->consts, sizeof *m->consts * (size_t)(m->n_consts + 1));
      if (!m->consts) abort();
      m->consts[m->n_consts++] = i;
    }
  if (rc) {
    fe_model_free(m);
    return -1;
  }
  *out = m;
  return 0;
}

int fe_load_model(const char *path, const fe_options *opt, fe_model **out,
                  fe_error *err) {
  return load(NULL, path, opt, out, err);
}

int fe_load_string(const char *code, const char *chunkname,
                   const fe_options *opt, fe_model **out, fe_error *err) {
  return load(code, chunkname ? chunkname : "spec", opt, out, err);
}

void fe_model_free(fe_model *m) {
  if (!m) return;
  ir_func_free(m->f);
  free(m->path);
  for (int i = 0; i < m->n_params; i++) free(m->params[i].name);
  free(m->params);
  for (int i = 0; i < m->n_probes; i++) free(m->probes[i].name);
  free(m->probes);
  free(m->consts);
  for (int i = 0; i < m->n_config; i++) {
    free(m->config[i].key);
    free(m->config[i].str);
  }
  free(m->config);
  free(m);
}

const fe_param *fe_find_param(const fe_model *m, const char *name) {
  for (int i = 0; i < m->n_params; i++)
    if (!strcmp(m->params[i].name, name)) return &m->params[i];
  return NULL;
}

const fe_probe *fe_find_probe(const fe_model *m, const char *name) {
  for (int i = 0; i < m->n_probes; i++)
    if (!strcmp(m->probes[i].name, name)) return &m->probes[i];
  return NULL;
}

ir_func *fe_probe_function(const fe_model *m, ir_error *err) {
  if (!m->f) {
    ir_err(err, "%s: the model's function was taken", m->path);
    return NULL;
  }
  ir_func *f = ir_func_clone(m->f);
  for (int i = 0; i < m->n_probes; i++) {
    size_t n = strlen(m->probes[i].name) + 7;
    char *name = malloc(n);
    if (!name) abort();
    snprintf(name, n, "probe.%s", m->probes[i].name);
    int rc = ir_add_output(f, name, m->probes[i].node, err);
    free(name);
    if (rc < 0) {
      ir_func_free(f);
      return NULL;
    }
  }
  return f;
}

const fe_value *fe_config(const fe_model *m, const char *key) {
  for (int i = 0; i < m->n_config; i++)
    if (!strcmp(m->config[i].key, key)) return &m->config[i];
  return NULL;
}

double fe_config_num(const fe_model *m, const char *key, double dflt) {
  const fe_value *v = fe_config(m, key);
  return v && v->kind != FE_VAL_STR ? v->num : dflt;
}

const char *fe_config_str(const fe_model *m, const char *key, const char *dflt) {
  const fe_value *v = fe_config(m, key);
  return v && v->kind == FE_VAL_STR ? v->str : dflt;
}
