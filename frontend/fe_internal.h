/* fe_internal.h — shared between the frontend's files, not public. */
#ifndef RECALL_FE_INTERNAL_H
#define RECALL_FE_INTERNAL_H

#include <lua.h>
#include <stdbool.h>

#include "frontend.h"

enum { FE_SCOPE_MAX = 256, FE_PATH_MAX = 1024 };

/* Everything one spec run builds; lives on fe_load's C stack and is
 * reached from Lua through the registry. */
typedef struct {
  ir_func *f;
  fe_param *params;
  int n_params, cap_params;
  fe_probe *probes; /* names owned */
  int n_probes, cap_probes;
  char scope[FE_SCOPE_MAX]; /* "layers.0.mixer" or "" */
  char libprefix[FE_PATH_MAX]; /* "@ROOT/specs/lib/": library chunks */
} fe_builder;

fe_builder *fe_builder_get(lua_State *L);

/* Raises a Lua error "FILE:LINE: message" at the innermost frame of the
 * user's spec (library frames are skipped, the traceback shows them;
 * without a builder, as in experiment specs, the innermost Lua frame). */
int fe_raise(lua_State *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* The line of that frame (0 if none): recorded as the node's line. */
int fe_user_line(lua_State *L);

/* ---- sandbox.c: the Lua state specs run in ---- */
enum { FE_HOOK_EVERY = 100000 }; /* instructions between budget checks */
typedef struct {
  size_t used, limit;    /* bytes the spec holds, and may hold */
  long ticks, max_ticks; /* budget checks passed, and allowed */
  bool refused;          /* an allocation went past the limit */
  const char *kind;      /* "model specs" or "experiment specs", for messages */
} fe_sandbox;

/* A new state allocating through s, with opt's limits (or FE_MAX_MEMORY
 * and FE_MAX_INSTRUCTIONS); s must outlive it. */
lua_State *fe_sandbox_new(fe_sandbox *s, const char *kind, const fe_options *opt);
/* Opens the sandboxed libraries and globals (sandbox.c's comment). */
void fe_sandbox_open(lua_State *L);
/* lua_call under the instruction budget. */
void fe_sandbox_call(lua_State *L, int nargs, int nresults);
/* The message of a spec that failed (its run returned an error, which is
 * on top of L's stack) into err (if not NULL): "NAME: spec exceeded its
 * memory limit of N MiB" when an allocation was refused, else the error. */
void fe_sandbox_error(const fe_sandbox *s, lua_State *L, const char *name, fe_error *err);

/* Registers tensor functions and methods as globals (tensor.c). */
void fe_open_tensor(lua_State *L);
/* Registers the global `init` table of initialiser constructors (init.c). */
void fe_open_init(lua_State *L);
/* Reads an initialiser descriptor at idx (a table made by init.*). */
void fe_init_check(lua_State *L, int idx, fe_init *out);

#endif
