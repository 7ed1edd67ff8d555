/* init.c — parameter initialisers: the Lua constructors (init.uniform, ...)
 * that make descriptor tables, their check into fe_init, and the formulas
 * the runtime draws them with. */
#include "fe_internal.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

static const char *const kind_names[] = {"uniform", "normal", "constant", "a_log",
                                         "dt_bias"};

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void new_desc(lua_State *L, fe_init_kind kind) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind_names[kind]);
  lua_setfield(L, -2, "kind");
}

/* init.uniform(lo, hi) */
static int l_uniform(lua_State *L) {
  double lo = luaL_checknumber(L, 1), hi = luaL_checknumber(L, 2);
  if (!(lo <= hi)) fe_raise(L, "init.uniform: lo %g > hi %g", lo, hi);
  new_desc(L, FE_INIT_UNIFORM);
  set_num(L, "lo", lo);
  set_num(L, "hi", hi);
  return 1;
}

/* init.normal(mean, std) */
static int l_normal(lua_State *L) {
  double mean = luaL_checknumber(L, 1), std = luaL_checknumber(L, 2);
  if (!(std >= 0)) fe_raise(L, "init.normal: std %g < 0", std);
  new_desc(L, FE_INIT_NORMAL);
  set_num(L, "mean", mean);
  set_num(L, "std", std);
  return 1;
}

/* init.constant(v) */
static int l_constant(lua_State *L) {
  double v = luaL_checknumber(L, 1);
  new_desc(L, FE_INIT_CONSTANT);
  set_num(L, "value", v);
  return 1;
}

/* init.a_log(): log(1..N) along the last axis (Mamba's S4D-real A) */
static int l_a_log(lua_State *L) {
  new_desc(L, FE_INIT_A_LOG);
  return 1;
}

static double opt_field(lua_State *L, int idx, const char *k, double dflt) {
  if (lua_isnoneornil(L, idx)) return dflt;
  lua_getfield(L, idx, k);
  double v = lua_isnil(L, -1) ? dflt : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* init.dt_bias{dt_min=1e-3, dt_max=0.1, floor=1e-4} (mamba_simple.py's
 * defaults) */
static int l_dt_bias(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  double lo = opt_field(L, 1, "dt_min", 1e-3), hi = opt_field(L, 1, "dt_max", 0.1);
  double floor_ = opt_field(L, 1, "floor", 1e-4);
  if (!(lo > 0 && lo <= hi && floor_ > 0))
    fe_raise(L, "init.dt_bias: needs 0 < dt_min <= dt_max and floor > 0, got %g, %g, %g",
             lo, hi, floor_);
  new_desc(L, FE_INIT_DT_BIAS);
  set_num(L, "dt_min", lo);
  set_num(L, "dt_max", hi);
  set_num(L, "floor", floor_);
  return 1;
}

static double get_num(lua_State *L, int idx, const char *k) {
  lua_getfield(L, idx, k);
  int ok;
  double v = lua_tonumberx(L, -1, &ok);
  if (!ok) fe_raise(L, "initialiser: field %s must be a number", k);
  lua_pop(L, 1);
  return v;
}

void fe_init_check(lua_State *L, int idx, fe_init *out) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx))
    fe_raise(L, "initialiser must be made by init.uniform, init.normal, ..., got %s",
             luaL_typename(L, idx));
  lua_getfield(L, idx, "kind");
  const char *k = lua_tostring(L, -1);
  int kind = -1;
  for (int i = 0; k && i < (int)(sizeof kind_names / sizeof *kind_names); i++)
    if (!strcmp(k, kind_names[i])) kind = i;
  lua_pop(L, 1);
  *out = (fe_init){.kind = (fe_init_kind)kind};
  switch (kind) {
  case FE_INIT_UNIFORM: out->a = get_num(L, idx, "lo"), out->b = get_num(L, idx, "hi"); break;
  case FE_INIT_NORMAL: out->a = get_num(L, idx, "mean"), out->b = get_num(L, idx, "std"); break;
  case FE_INIT_CONSTANT: out->a = get_num(L, idx, "value"); break;
  case FE_INIT_A_LOG: break;
  case FE_INIT_DT_BIAS:
    out->dt_min = get_num(L, idx, "dt_min");
    out->dt_max = get_num(L, idx, "dt_max");
    out->dt_floor = get_num(L, idx, "floor");
    break;
  default: fe_raise(L, "initialiser: unknown kind %s", k ? k : "(none)");
  }
}

void fe_open_init(lua_State *L) {
  static const luaL_Reg fns[] = {{"uniform", l_uniform},   {"normal", l_normal},
                                 {"constant", l_constant}, {"a_log", l_a_log},
                                 {"dt_bias", l_dt_bias},   {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setglobal(L, "init");
}

/* ---- drawing ---- */

/* log(exp(dt) - 1) written as dt + log(-expm1(-dt)), stable for small dt
 * (mamba_simple.py's inverse softplus). */
static double inv_softplus(double dt) { return dt + log(-expm1(-dt)); }

void fe_init_apply(const fe_init *in, const ir_type *t, float *out,
                   double (*uniform)(void *rng), double (*normal)(void *rng),
                   void *rng) {
  int64_t n = ir_numel(t);
  int last = t->rank ? t->dim[t->rank - 1] : 1;
  for (int64_t i = 0; i < n; i++) {
    double v = 0;
    switch (in->kind) {
    case FE_INIT_UNIFORM: v = in->a + (in->b - in->a) * uniform(rng); break;
    case FE_INIT_NORMAL: v = in->a + in->b * normal(rng); break;
    case FE_INIT_CONSTANT: v = in->a; break;
    case FE_INIT_A_LOG: v = log((double)(i % last + 1)); break;
    case FE_INIT_DT_BIAS: {
      double lo = log(in->dt_min), hi = log(in->dt_max);
      double dt = exp(lo + uniform(rng) * (hi - lo));
      v = inv_softplus(dt < in->dt_floor ? in->dt_floor : dt);
      break;
    }
    }
    out[i] = (float)v;
  }
}

char *fe_init_str(const fe_init *in, char *buf, size_t n) {
  switch (in->kind) {
  case FE_INIT_UNIFORM: snprintf(buf, n, "uniform(%.6g, %.6g)", in->a, in->b); break;
  case FE_INIT_NORMAL: snprintf(buf, n, "normal(%.6g, %.6g)", in->a, in->b); break;
  case FE_INIT_CONSTANT: snprintf(buf, n, "constant(%.6g)", in->a); break;
  case FE_INIT_A_LOG: snprintf(buf, n, "a_log"); break;
  case FE_INIT_DT_BIAS:
    snprintf(buf, n, "dt_bias(%.6g, %.6g, floor %.6g)", in->dt_min, in->dt_max, in->dt_floor);
    break;
  default: snprintf(buf, n, "?"); break;
  }
  return buf;
}
