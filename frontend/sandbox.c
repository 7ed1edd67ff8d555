/* sandbox.c — the Lua state that model specs (load.c) and experiment
 * specs (experiment.c) run in: an allocator with a byte limit, an
 * instruction budget that a pcall in the spec cannot swallow, and only
 * the base, string, table and math libraries, without what would escape
 * the budget or the process: no io, os, package, debug, coroutine,
 * dofile/loadfile/load/require (load.c puts back a text-only load and a
 * require confined to specs/lib and the spec's folder), no xpcall (its
 * message handler runs with hooks off), no __gc (finalizers run with
 * hooks off, and again at lua_close), no string.dump. */
#include "fe_internal.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  fe_sandbox *s = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    s->used -= old;
    free(ptr);
    return NULL;
  }
  if (nsize > old && nsize - old > s->limit - s->used) { /* cannot overflow */
    s->refused = true;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p) s->used = s->used - old + nsize;
  return p;
}

static fe_sandbox *sandbox_of(lua_State *L) {
  void *s;
  lua_getallocf(L, &s);
  return s;
}

lua_State *fe_sandbox_new(fe_sandbox *s, const char *kind, const fe_options *opt) {
  long budget = opt && opt->max_instructions > 0 ? opt->max_instructions
                                                 : FE_MAX_INSTRUCTIONS;
  *s = (fe_sandbox){.limit = opt && opt->max_memory ? opt->max_memory : FE_MAX_MEMORY,
                    .max_ticks = budget / FE_HOOK_EVERY > 0 ? budget / FE_HOOK_EVERY : 1,
                    .kind = kind};
  lua_State *L = lua_newstate(sb_alloc, s);
  if (!L) abort();
  return L;
}

static void sb_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  fe_sandbox *s = sandbox_of(L);
  if (++s->ticks <= s->max_ticks) return;
  /* From now on every instruction raises, so a pcall in the spec cannot
   * swallow the error and carry on. */
  lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1);
  fe_raise(L, "the spec runs too long: past its budget of %ld instructions "
           "(an endless loop?)", s->max_ticks * (long)FE_HOOK_EVERY);
}

void fe_sandbox_call(lua_State *L, int nargs, int nresults) {
  lua_sethook(L, sb_hook, LUA_MASKCOUNT, FE_HOOK_EVERY);
  lua_call(L, nargs, nresults);
  lua_sethook(L, NULL, 0, 0);
}

void fe_sandbox_error(const fe_sandbox *s, lua_State *L, const char *name, fe_error *err) {
  if (!err) return;
  const char *msg = lua_tostring(L, -1);
  if (s->refused)
    snprintf(err->msg, sizeof err->msg, "%s: spec exceeded its memory limit of %zu MiB",
             name, s->limit >> 20);
  else
    snprintf(err->msg, sizeof err->msg, "%s", msg ? msg : "error without a message");
}

static const char *const forbidden[] = {"io",      "os",       "package", "require",
                                        "debug",   "dofile",   "loadfile", "load",
                                        "loadstring", "coroutine", "utf8", "xpcall",
                                        NULL};

/* _G's __index: a clear message for what the sandbox leaves out. */
static int sb_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  for (int i = 0; k && forbidden[i]; i++)
    if (!strcmp(k, forbidden[i]))
      fe_raise(L, "%s is not available in %s (they run sandboxed: only the "
               "base, string, table and math libraries)", k, sandbox_of(L)->kind);
  return 0;
}

/* setmetatable without __gc */
static int sb_setmetatable(lua_State *L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      fe_raise(L, "setmetatable: __gc is not available in %s", sandbox_of(L)->kind);
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

void fe_sandbox_open(lua_State *L) {
  static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},
                                  {LUA_STRLIBNAME, luaopen_string},
                                  {LUA_TABLIBNAME, luaopen_table},
                                  {LUA_MATHLIBNAME, luaopen_math},
                                  {NULL, NULL}};
  for (const luaL_Reg *l = libs; l->name; l++) {
    luaL_requiref(L, l->name, l->func, 1);
    lua_pop(L, 1);
  }
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  lua_pushglobaltable(L);
  for (int i = 0; forbidden[i]; i++) {
    lua_pushnil(L);
    lua_setfield(L, -2, forbidden[i]);
  }
  lua_getfield(L, -1, "setmetatable");
  lua_pushcclosure(L, sb_setmetatable, 1);
  lua_setfield(L, -2, "setmetatable");
  lua_newtable(L);
  lua_pushcfunction(L, sb_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
}
