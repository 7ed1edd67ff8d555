/* tensor.c — the tensor userdata: a node id of the function being built,
 * with arithmetic metamethods and one function per IR op. Every function is
 * both a global (exp(x)) and a method (x:exp()). Axes are 0-based like the
 * IR; a negative axis counts from the end (-1 = last). */
#include "fe_internal.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define TENSOR_MT "recall.tensor"

typedef struct {
  int id;
} fe_tensor;

static int push_tensor(lua_State *L, int id) {
  fe_tensor *t = lua_newuserdatauv(L, sizeof *t, 0);
  t->id = id;
  luaL_setmetatable(L, TENSOR_MT);
  return 1;
}

static int check_tensor(lua_State *L, int idx) {
  return ((fe_tensor *)luaL_checkudata(L, idx, TENSOR_MT))->id;
}

static const ir_type *type_of(lua_State *L, int id) {
  return &fe_builder_get(L)->f->nodes[id].type;
}

/* Adds a node; an IR error becomes a Lua error at the user's line. */
static int emit(lua_State *L, ir_op op, const int *in, int n_in,
                const ir_attrs *a, const ir_type *t, const char *name) {
  fe_builder *b = fe_builder_get(L);
  ir_error e;
  int id = ir_add(b->f, op, in, n_in, a, t, name, &e);
  if (id < 0) fe_raise(L, "%s", e.msg);
  b->f->nodes[id].line = fe_user_line(L);
  return id;
}

static int emit_push(lua_State *L, ir_op op, const int *in, int n_in,
                     const ir_attrs *a, const ir_type *t) {
  return push_tensor(L, emit(L, op, in, n_in, a, t, NULL));
}

/* A tensor, or a number promoted to an f32[] fill (broadcasts anywhere). */
static int operand(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    ir_attrs a = {.value = lua_tonumber(L, idx)};
    ir_type t = {.dtype = IR_F32, .rank = 0};
    return emit(L, IR_OP_FILL, NULL, 0, &a, &t, NULL);
  }
  return check_tensor(L, idx);
}

static int check_int(lua_State *L, int idx, const char *what) {
  int ok;
  lua_Integer v = lua_tointegerx(L, idx, &ok);
  if (!ok) fe_raise(L, "%s must be an integer, got %s", what, luaL_typename(L, idx));
  if (v < -(1 << 30) || v > (1 << 30)) fe_raise(L, "%s %lld is out of range", what, (long long)v);
  return (int)v;
}

/* A shape {d0, d1, ...} (rank <= 4; {} is a scalar). */
static ir_type check_shape(lua_State *L, int idx, ir_dtype dt, const char *op) {
  if (!lua_istable(L, idx))
    fe_raise(L, "%s: shape must be a table like {16, 8}, got %s", op, luaL_typename(L, idx));
  ir_type t = {.dtype = dt, .rank = (int)luaL_len(L, idx)};
  if (t.rank > IR_MAX_RANK) fe_raise(L, "%s: rank %d exceeds %d", op, t.rank, IR_MAX_RANK);
  for (int i = 0; i < t.rank; i++) {
    lua_geti(L, idx, i + 1);
    t.dim[i] = check_int(L, -1, "shape entry");
    lua_pop(L, 1);
  }
  return t;
}

static ir_dtype check_dtype(lua_State *L, int idx, const char *op) {
  const char *s = luaL_checkstring(L, idx);
  if (!strcmp(s, "f32")) return IR_F32;
  if (!strcmp(s, "i32")) return IR_I32;
  fe_raise(L, "%s: dtype must be \"f32\" or \"i32\", got \"%s\"", op, s);
}

/* Normalises a possibly negative axis; the IR rule reports range errors. */
static int check_axis(lua_State *L, int idx, int rank, int dflt) {
  int ax = lua_isnoneornil(L, idx) ? dflt : check_int(L, idx, "axis");
  return ax < 0 ? ax + rank : ax;
}

static bool opt_flag(lua_State *L, int idx, const char *key) {
  if (lua_isnoneornil(L, idx)) return false;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, key);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* The current scope prefix joined to name ("layers.0" + "norm.weight"). */
static const char *scoped(lua_State *L, const char *name) {
  fe_builder *b = fe_builder_get(L);
  if (!b->scope[0]) return name;
  return lua_pushfstring(L, "%s.%s", b->scope, name);
}

/* ---- leaves ---- */

static int l_input(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  ir_type t = check_shape(L, 3, check_dtype(L, 2, "input"), "input");
  return push_tensor(L, emit(L, IR_OP_INPUT, NULL, 0, NULL, &t, name));
}

static int l_param(lua_State *L) {
  const char *name = scoped(L, luaL_checkstring(L, 1));
  ir_type t = check_shape(L, 2, IR_F32, "param");
  if (lua_isnoneornil(L, 3))
    fe_raise(L, "param \"%s\": needs an initialiser such as init.uniform(lo, hi)", name);
  fe_init init;
  fe_init_check(L, 3, &init);
  fe_builder *b = fe_builder_get(L);
  int id = emit(L, IR_OP_PARAM, NULL, 0, NULL, &t, name);
  if (b->n_params == b->cap_params) {
    int cap = b->cap_params ? 2 * b->cap_params : 16;
    fe_param *p = realloc(b->params, sizeof *p * (size_t)cap);
    if (!p) fe_raise(L, "out of memory");
    b->params = p, b->cap_params = cap;
  }
  b->params[b->n_params++] = (fe_param){NULL, id, init};
  return push_tensor(L, id);
}

/* const(name, shape [, data]): data is a flat row-major table of numbers;
 * without it (or with `later`) the caller binds the data. */
static int l_const(lua_State *L) {
  const char *name = scoped(L, luaL_checkstring(L, 1));
  ir_type t = check_shape(L, 2, IR_F32, "const");
  bool later = lua_isnoneornil(L, 3);
  if (!later) {
    lua_getglobal(L, "later");
    later = lua_rawequal(L, 3, -1);
    lua_pop(L, 1);
  }
  int64_t n = ir_numel(&t);
  float *data = NULL;
  if (!later) {
    if (!lua_istable(L, 3))
      fe_raise(L, "const \"%s\": data must be a table of numbers or `later`", name);
    if (luaL_len(L, 3) != n)
      fe_raise(L, "const \"%s\": %lld values for %lld elements", name,
               (long long)luaL_len(L, 3), (long long)n);
    data = lua_newuserdatauv(L, sizeof *data * (size_t)(n ? n : 1), 0);
    for (int64_t i = 0; i < n; i++) {
      lua_geti(L, 3, i + 1);
      int ok;
      data[i] = (float)lua_tonumberx(L, -1, &ok);
      if (!ok) fe_raise(L, "const \"%s\": value %lld is not a number", name, (long long)i + 1);
      lua_pop(L, 1);
    }
  }
  int id = emit(L, IR_OP_CONST, NULL, 0, NULL, &t, name);
  ir_error e;
  if (data && ir_set_const_data(fe_builder_get(L)->f, id, data, &e)) fe_raise(L, "%s", e.msg);
  return push_tensor(L, id);
}

/* fill(value, shape [, dtype]) */
static int l_fill(lua_State *L) {
  ir_attrs a = {.value = luaL_checknumber(L, 1)};
  ir_dtype dt = lua_isnoneornil(L, 3) ? IR_F32 : check_dtype(L, 3, "fill");
  ir_type t = check_shape(L, 2, dt, "fill");
  return emit_push(L, IR_OP_FILL, NULL, 0, &a, &t);
}

/* leaf(name): the existing input/param/const of that full name, or nil. */
static int l_leaf(lua_State *L) {
  int id = ir_find_leaf(fe_builder_get(L)->f, luaL_checkstring(L, 1));
  if (id < 0) return lua_pushnil(L), 1;
  return push_tensor(L, id);
}

/* probe(name, x) or x:probe(name): records x under the scoped name for
 * inspection and returns x. No node and no output: the graph is the same
 * with or without probes. */
static int l_probe(lua_State *L) {
  bool method = lua_type(L, 1) == LUA_TUSERDATA;
  int x = check_tensor(L, method ? 1 : 2);
  const char *local = luaL_checkstring(L, method ? 2 : 1);
  if (!*local) fe_raise(L, "probe: the name is empty");
  const char *name = scoped(L, local);
  fe_builder *b = fe_builder_get(L);
  for (int i = 0; i < b->n_probes; i++)
    if (!strcmp(b->probes[i].name, name))
      fe_raise(L, "probe \"%s\": a probe of that name exists already", name);
  if (b->n_probes == b->cap_probes) {
    int cap = b->cap_probes ? 2 * b->cap_probes : 8;
    fe_probe *p = realloc(b->probes, sizeof *p * (size_t)cap);
    if (!p) fe_raise(L, "out of memory");
    b->probes = p, b->cap_probes = cap;
  }
  char *copy = malloc(strlen(name) + 1);
  if (!copy) fe_raise(L, "out of memory");
  b->probes[b->n_probes++] = (fe_probe){strcpy(copy, name), x};
  lua_pushvalue(L, method ? 1 : 2);
  return 1;
}

static int l_output(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int x = check_tensor(L, 2);
  ir_error e;
  if (ir_add_output(fe_builder_get(L)->f, name, x, &e) < 0) fe_raise(L, "%s", e.msg);
  lua_settop(L, 2);
  return 1;
}

/* ---- elementwise (generic over the op table) ---- */

static int l_unary(lua_State *L) {
  int x = check_tensor(L, 1);
  return emit_push(L, (ir_op)lua_tointeger(L, lua_upvalueindex(1)), &x, 1, NULL, NULL);
}

static int l_binary(lua_State *L) {
  int in[2] = {operand(L, 1), operand(L, 2)};
  return emit_push(L, (ir_op)lua_tointeger(L, lua_upvalueindex(1)), in, 2, NULL, NULL);
}

/* ---- linear algebra and layout ---- */

/* matmul(a, b [, {ta=, tb=}]) */
static int l_matmul(lua_State *L) {
  int in[2] = {check_tensor(L, 1), check_tensor(L, 2)};
  ir_attrs a = {.ta = opt_flag(L, 3, "ta"), .tb = opt_flag(L, 3, "tb")};
  return emit_push(L, IR_OP_MATMUL, in, 2, &a, NULL);
}

static int permute(lua_State *L, int x, const int *perm) {
  ir_attrs a = {0};
  memcpy(a.perm, perm, sizeof a.perm);
  return emit_push(L, IR_OP_PERMUTE, &x, 1, &a, NULL);
}

/* permute(x, {p0, p1, ...}): out axis i = in axis p_i (0-based) */
static int l_permute(lua_State *L) {
  int x = check_tensor(L, 1);
  int rank = type_of(L, x)->rank, perm[IR_MAX_RANK] = {0};
  luaL_checktype(L, 2, LUA_TTABLE);
  if (luaL_len(L, 2) != rank)
    fe_raise(L, "permute: perm has %d entries for rank %d", (int)luaL_len(L, 2), rank);
  for (int i = 0; i < rank; i++) {
    lua_geti(L, 2, i + 1);
    perm[i] = check_int(L, -1, "permute entry");
    lua_pop(L, 1);
  }
  return permute(L, x, perm);
}

/* T(x): swaps the last two axes */
static int l_T(lua_State *L) {
  int x = check_tensor(L, 1);
  int rank = type_of(L, x)->rank, perm[IR_MAX_RANK] = {0};
  if (rank < 2) fe_raise(L, "T: needs rank >= 2, got rank %d", rank);
  for (int i = 0; i < rank; i++) perm[i] = i;
  perm[rank - 2] = rank - 1, perm[rank - 1] = rank - 2;
  return permute(L, x, perm);
}

/* reshape(x, {...}); one entry may be -1 (inferred) */
static int l_reshape(lua_State *L) {
  int x = check_tensor(L, 1);
  const ir_type *in = type_of(L, x);
  ir_type t = {.dtype = in->dtype, .rank = 0};
  luaL_checktype(L, 2, LUA_TTABLE);
  t.rank = (int)luaL_len(L, 2);
  if (t.rank > IR_MAX_RANK) fe_raise(L, "reshape: rank %d exceeds %d", t.rank, IR_MAX_RANK);
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < t.rank; i++) {
    lua_geti(L, 2, i + 1);
    t.dim[i] = check_int(L, -1, "reshape entry");
    lua_pop(L, 1);
    if (t.dim[i] == -1 && infer >= 0) fe_raise(L, "reshape: more than one -1");
    if (t.dim[i] == -1) infer = i;
    else if (t.dim[i] >= 1) known *= t.dim[i];
  }
  if (infer >= 0) {
    char s[64];
    if (ir_numel(in) % known)
      fe_raise(L, "reshape: cannot infer the -1: %s has %lld elements, not a multiple of %lld",
               ir_type_str(in, s, sizeof s), (long long)ir_numel(in), (long long)known);
    t.dim[infer] = (int)(ir_numel(in) / known);
  }
  return emit_push(L, IR_OP_RESHAPE, &x, 1, NULL, &t);
}

/* expand(x, {...}): broadcast to that shape */
static int l_expand(lua_State *L) {
  int x = check_tensor(L, 1);
  ir_type t = check_shape(L, 2, type_of(L, x)->dtype, "expand");
  return emit_push(L, IR_OP_EXPAND, &x, 1, NULL, &t);
}

/* slice(x, axis, start [, end]): [start, end) along axis; end defaults to
 * the axis size; negative start/end count from the end like Python. */
static int l_slice(lua_State *L) {
  int x = check_tensor(L, 1);
  const ir_type *t = type_of(L, x);
  ir_attrs a = {.axis = check_axis(L, 2, t->rank, 0)};
  int size = a.axis >= 0 && a.axis < t->rank ? t->dim[a.axis] : 0;
  a.start = check_int(L, 3, "slice start");
  a.end = lua_isnoneornil(L, 4) ? size : check_int(L, 4, "slice end");
  if (a.start < 0) a.start += size;
  if (a.end < 0) a.end += size;
  return emit_push(L, IR_OP_SLICE, &x, 1, &a, NULL);
}

/* pad(x, axis, before, after): zeros */
static int l_pad(lua_State *L) {
  int x = check_tensor(L, 1);
  ir_attrs a = {.axis = check_axis(L, 2, type_of(L, x)->rank, 0)};
  a.start = check_int(L, 3, "pad before");
  a.end = lua_isnoneornil(L, 4) ? 0 : check_int(L, 4, "pad after");
  return emit_push(L, IR_OP_PAD, &x, 1, &a, NULL);
}

/* concat({a, b, ...}, axis): any number of parts (chained by fours) */
static int l_concat(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  if (n < 1) fe_raise(L, "concat: needs at least one tensor");
  lua_geti(L, 1, 1);
  int acc = check_tensor(L, -1);
  lua_pop(L, 1);
  ir_attrs a = {.axis = check_axis(L, 2, type_of(L, acc)->rank, 0)};
  if (n == 1) return push_tensor(L, acc);
  for (int i = 1; i < n;) {
    int in[IR_MAX_INPUTS] = {acc}, k = 1;
    for (; k < IR_MAX_INPUTS && i < n; k++, i++) {
      lua_geti(L, 1, i + 1);
      in[k] = check_tensor(L, -1);
      lua_pop(L, 1);
    }
    acc = emit(L, IR_OP_CONCAT, in, k, &a, NULL, NULL);
  }
  return push_tensor(L, acc);
}

/* ---- reductions: axis kept with size 1 (as the IR); default last ---- */

static int l_reduce(lua_State *L) {
  int x = check_tensor(L, 1);
  ir_attrs a = {.axis = check_axis(L, 2, type_of(L, x)->rank, -1)};
  return emit_push(L, (ir_op)lua_tointeger(L, lua_upvalueindex(1)), &x, 1, &a, NULL);
}

/* ---- sequence-model ops ---- */

/* softmax(x [, {causal=true}]) over the last axis */
static int l_softmax(lua_State *L) {
  int x = check_tensor(L, 1);
  ir_attrs a = {.causal = opt_flag(L, 2, "causal")};
  return emit_push(L, IR_OP_SOFTMAX, &x, 1, &a, NULL);
}

/* Ops taking two tensors and no attributes: gather, select_row,
 * cross_entropy, conv1d, conv1d_bwd_x. */
static int l_two(lua_State *L) {
  int in[2] = {check_tensor(L, 1), check_tensor(L, 2)};
  return emit_push(L, (ir_op)lua_tointeger(L, lua_upvalueindex(1)), in, 2, NULL, NULL);
}

/* Ops with an attr.n: scatter_add(src, idx, n), conv1d_bwd_w(g, x, W) */
static int l_two_n(lua_State *L) {
  int in[2] = {check_tensor(L, 1), check_tensor(L, 2)};
  ir_attrs a = {.n = check_int(L, 3, "n")};
  return emit_push(L, (ir_op)lua_tointeger(L, lua_upvalueindex(1)), in, 2, &a, NULL);
}

/* onehot(idx, n) */
static int l_onehot(lua_State *L) {
  int x = check_tensor(L, 1);
  ir_attrs a = {.n = check_int(L, 2, "onehot classes")};
  return emit_push(L, IR_OP_ONEHOT, &x, 1, &a, NULL);
}

/* scan(u, delta, A, B, C) with bc = concat(B, C) along the last axis, or
 * scan(u, delta, A, bc) */
static int l_scan(lua_State *L) {
  int in[4] = {check_tensor(L, 1), check_tensor(L, 2), check_tensor(L, 3), check_tensor(L, 4)};
  if (!lua_isnoneornil(L, 5)) {
    int bc[2] = {in[3], check_tensor(L, 5)};
    ir_attrs a = {.axis = type_of(L, bc[0])->rank - 1};
    in[3] = emit(L, IR_OP_CONCAT, bc, 2, &a, NULL, NULL);
  }
  return emit_push(L, IR_OP_SCAN, in, 4, NULL, NULL);
}

/* scan_bwd(ud, A, bc, dy): packed gradients, see ir.h */
static int l_scan_bwd(lua_State *L) {
  int in[4];
  for (int i = 0; i < 4; i++) in[i] = check_tensor(L, i + 1);
  return emit_push(L, IR_OP_SCAN_BWD, in, 4, NULL, NULL);
}

/* rope(x, cos, sin): x[L,H,D]'s pairs rotated, see ir.h */
static int l_rope(lua_State *L) {
  int in[3];
  for (int i = 0; i < 3; i++) in[i] = check_tensor(L, i + 1);
  return emit_push(L, IR_OP_ROPE, in, 3, NULL, NULL);
}

/* ---- inspection ---- */

static int l_size(lua_State *L) {
  int x = check_tensor(L, 1);
  const ir_type *t = type_of(L, x);
  int ax = check_axis(L, 2, t->rank, 0);
  if (ax < 0 || ax >= t->rank) fe_raise(L, "size: axis out of range for rank %d", t->rank);
  lua_pushinteger(L, t->dim[ax]);
  return 1;
}

static int l_tostring(lua_State *L) {
  int x = check_tensor(L, 1);
  const ir_node *n = &fe_builder_get(L)->f->nodes[x];
  char s[64];
  ir_type_str(&n->type, s, sizeof s);
  if (n->name)
    lua_pushfstring(L, "tensor %%%d %s %s \"%s\"", x, s, ir_op_name(n->op), n->name);
  else
    lua_pushfstring(L, "tensor %%%d %s %s", x, s, ir_op_name(n->op));
  return 1;
}

/* x.shape, x.dtype, x.rank, x.id, else methods */
static int l_index(lua_State *L) {
  int x = check_tensor(L, 1);
  const char *k = lua_tostring(L, 2);
  const ir_type *t = type_of(L, x);
  if (k && !strcmp(k, "shape")) {
    lua_createtable(L, t->rank, 0);
    for (int i = 0; i < t->rank; i++) {
      lua_pushinteger(L, t->dim[i]);
      lua_rawseti(L, -2, i + 1);
    }
  } else if (k && !strcmp(k, "dtype")) {
    lua_pushstring(L, ir_dtype_name(t->dtype));
  } else if (k && !strcmp(k, "rank")) {
    lua_pushinteger(L, t->rank);
  } else if (k && !strcmp(k, "id")) {
    lua_pushinteger(L, x);
  } else {
    lua_pushvalue(L, 2);
    lua_gettable(L, lua_upvalueindex(1));
  }
  return 1;
}

static int l_arith(lua_State *L, ir_op op) {
  int in[2] = {operand(L, 1), operand(L, 2)};
  return emit_push(L, op, in, 2, NULL, NULL);
}
static int l_add(lua_State *L) { return l_arith(L, IR_OP_ADD); }
static int l_sub(lua_State *L) { return l_arith(L, IR_OP_SUB); }
static int l_mul(lua_State *L) { return l_arith(L, IR_OP_MUL); }
static int l_div(lua_State *L) { return l_arith(L, IR_OP_DIV); }
static int l_unm(lua_State *L) {
  int x = check_tensor(L, 1);
  return emit_push(L, IR_OP_NEG, &x, 1, NULL, NULL);
}

/* ---- registration ---- */

/* Sets t[name] = fn (with optional op upvalue) in the methods table at -1
 * and as a global. */
static void reg(lua_State *L, const char *name, lua_CFunction fn, int op) {
  if (op >= 0) {
    lua_pushinteger(L, op);
    lua_pushcclosure(L, fn, 1);
  } else {
    lua_pushcfunction(L, fn);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  lua_setglobal(L, name);
}

void fe_open_tensor(lua_State *L) {
  luaL_newmetatable(L, TENSOR_MT);
  lua_newtable(L); /* methods */
  static const luaL_Reg plain[] = {
      {"input", l_input},     {"param", l_param},     {"const", l_const},
      {"fill", l_fill},       {"leaf", l_leaf},       {"output", l_output},
      {"probe", l_probe},
      {"matmul", l_matmul},   {"permute", l_permute}, {"T", l_T},
      {"reshape", l_reshape}, {"expand", l_expand},   {"slice", l_slice},
      {"pad", l_pad},         {"concat", l_concat},   {"softmax", l_softmax},
      {"onehot", l_onehot},   {"scan", l_scan},       {"scan_bwd", l_scan_bwd},
      {"rope", l_rope},
      {"size", l_size},       {NULL, NULL}};
  for (const luaL_Reg *r = plain; r->name; r++) reg(L, r->name, r->func, -1);
  for (int op = 0; op < IR_OP_COUNT; op++) {
    if (ir_op_is_unary(op)) reg(L, ir_op_name(op), l_unary, op);
    if (ir_op_is_binary(op)) reg(L, ir_op_name(op), l_binary, op);
  }
  static const ir_op reduce[] = {IR_OP_SUM, IR_OP_AMAX, IR_OP_MEAN};
  for (size_t i = 0; i < sizeof reduce / sizeof *reduce; i++)
    reg(L, ir_op_name(reduce[i]), l_reduce, reduce[i]);
  static const ir_op two[] = {IR_OP_GATHER, IR_OP_SELECT_ROW, IR_OP_CROSS_ENTROPY,
                              IR_OP_CONV1D, IR_OP_CONV1D_BWD_X};
  for (size_t i = 0; i < sizeof two / sizeof *two; i++)
    reg(L, ir_op_name(two[i]), l_two, two[i]);
  reg(L, "scatter_add", l_two_n, IR_OP_SCATTER_ADD);
  reg(L, "conv1d_bwd_w", l_two_n, IR_OP_CONV1D_BWD_W);
  /* metatable.__index = l_index with the methods table as upvalue */
  lua_pushcclosure(L, l_index, 1);
  lua_setfield(L, -2, "__index");
  static const luaL_Reg meta[] = {{"__add", l_add},           {"__sub", l_sub},
                                  {"__mul", l_mul},           {"__div", l_div},
                                  {"__unm", l_unm},           {"__tostring", l_tostring},
                                  {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
  lua_newtable(L); /* `later`: marks a const bound by the caller */
  lua_setglobal(L, "later");
}
