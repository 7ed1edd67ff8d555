/* frontend.h — recall's Lua frontend: runs a model spec (Lua 5.4) that
 * builds an IR function through tensor userdata, and returns the function
 * with its parameters' initialisers, the consts to bind and the options the
 * spec ran with. docs/models.md is the user's reference for the Lua side.
 *
 * The per-example interface every model spec of the study keeps (the
 * runtime relies on it): inputs "tokens" i32[n], "pos" i32[] (the position
 * read out), "label" i32[]; outputs "logits" f32[K] and "loss" f32[].
 */
#ifndef RECALL_FRONTEND_H
#define RECALL_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>

#include "ir.h"

enum { FE_MSG_MAX = 4096 };

/* A message "FILE:LINE: what is wrong" followed by a Lua traceback. */
typedef struct {
  char msg[FE_MSG_MAX];
} fe_error;

/* How a parameter is initialised; the runtime draws the values (its RNG),
 * fe_init_apply fixes the formulas. */
typedef enum {
  FE_INIT_UNIFORM,  /* a + (b - a) * u, u ~ U[0,1): U(a, b) */
  FE_INIT_NORMAL,   /* a + b * z, z ~ N(0,1): mean a, std b */
  FE_INIT_CONSTANT, /* every element = a */
  FE_INIT_A_LOG,    /* Mamba's A_log: element [..., s] = log(s + 1) */
  FE_INIT_DT_BIAS,  /* Mamba's dt_proj.bias: inverse softplus of dt, where
                       dt = max(exp(log(dt_min) + u * (log(dt_max) -
                       log(dt_min))), dt_floor), u ~ U[0,1) */
} fe_init_kind;

typedef struct {
  fe_init_kind kind;
  double a, b;                     /* uniform lo, hi; normal mean, std; constant a */
  double dt_min, dt_max, dt_floor; /* dt_bias */
} fe_init;

typedef struct {
  char *name; /* owned; equals the param node's name */
  int node;   /* id of the param node in the model's function */
  fe_init init;
} fe_param;

typedef enum { FE_VAL_NUM, FE_VAL_STR, FE_VAL_BOOL } fe_value_kind;

/* One option the spec ran with (after --set and defaults). */
typedef struct {
  char *key; /* owned */
  fe_value_kind kind;
  double num;  /* FE_VAL_NUM; FE_VAL_BOOL as 0/1 */
  char *str;   /* FE_VAL_STR (owned), else NULL */
} fe_value;

/* A probe: an interior value the spec marked with probe(name, x) for
 * inspection (`recall inspect`: attention weights, Mamba's dt). A probe is
 * not an output and adds no node: the model's function, and so its
 * kernels, are the same with or without probes. */
typedef struct {
  char *name; /* owned; scoped like params: "layers.1.mixer.attn" */
  int node;   /* id of the probed node in the model's function */
} fe_probe;

typedef struct {
  ir_func *f;          /* owned; a caller may take it and set f = NULL */
  char *path;          /* the spec's path or chunk name (owned) */
  fe_param *params;    /* in creation order, one per param node */
  int n_params;
  int *consts;         /* ids of every const node; data == NULL: the caller
                          binds it (embedding.weight = numpy's V) */
  int n_consts;
  fe_value *config;    /* every option, sorted by key */
  int n_config;
  fe_probe *probes;    /* in creation order; names unique */
  int n_probes;
} fe_model;

/* Where the spec's library lives and the --set pairs it runs with.
 * root: the project root; require finds ROOT/specs/lib/?.lua, then modules
 * next to the spec. NULL means $RECALL_ROOT, else the ROOT of a spec path
 * ROOT/specs/..., else ".". */
typedef struct {
  const char *root;
  const char *const *keys; /* --set key=value pairs, n_sets of each */
  const char *const *values;
  int n_sets;
  /* Sandbox limits (0: the defaults, FE_MAX_INSTRUCTIONS, FE_MAX_MEMORY). */
  long max_instructions;
  size_t max_memory;
} fe_options;

/* A model spec runs sandboxed: the base (load takes text chunks only; no
 * dofile, loadfile), string (no dump), table and math libraries, and a
 * require that finds only ROOT/specs/lib/NAME.lua and NAME.lua next to the
 * spec; no io, os, debug or package. A spec running past the instruction
 * budget or allocating past the memory limit fails with a message saying
 * so. */
#define FE_MAX_INSTRUCTIONS 100000000L
#define FE_MAX_MEMORY ((size_t)256 << 20)

/* Runs the model spec at path and returns its model in *out (free with
 * fe_model_free). The function verifies (ir_verify). Every --set key must
 * name an option of the spec. Returns 0, or -1 with err filled and *out
 * NULL. opt may be NULL (no --set, root from the environment). */
int fe_load_model(const char *path, const fe_options *opt, fe_model **out,
                  fe_error *err);

/* Same for Lua source held in memory; chunkname names it in messages
 * ("spec" if NULL). */
int fe_load_string(const char *code, const char *chunkname,
                   const fe_options *opt, fe_model **out, fe_error *err);

void fe_model_free(fe_model *m);

/* Lookups; NULL if absent. */
const fe_param *fe_find_param(const fe_model *m, const char *name);
const fe_probe *fe_find_probe(const fe_model *m, const char *name);
/* A copy of m->f with every probe added as an output "probe.<name>" after
 * the function's own outputs (in probe order), for a caller that wants the
 * probed values (the interpreter computes them anyway; a kernel would drop
 * them without the output). NULL with a message if m->f was taken. */
ir_func *fe_probe_function(const fe_model *m, ir_error *err);
const fe_value *fe_config(const fe_model *m, const char *key);
/* The option as a number (FE_VAL_NUM or FE_VAL_BOOL), else dflt. */
double fe_config_num(const fe_model *m, const char *key, double dflt);
/* The option as a string (FE_VAL_STR), else dflt. */
const char *fe_config_str(const fe_model *m, const char *key,
                          const char *dflt);

/* Fills out[0..numel(t)) for init, drawing one variate per element in
 * row-major order from uniform() in [0,1) (uniform, dt_bias) or normal()
 * ~ N(0,1) (normal) with state rng. Values are computed in double and
 * rounded to float. */
void fe_init_apply(const fe_init *init, const ir_type *t, float *out,
                   double (*uniform)(void *rng), double (*normal)(void *rng),
                   void *rng);

/* "uniform(-0.35355, 0.35355)", "a_log", ...; returns buf. */
char *fe_init_str(const fe_init *init, char *buf, size_t n);

/* ======================================================================
 * experiment.c — experiment specs (docs/experiments.md)
 *
 * An experiment spec is a Lua chunk returning a table:
 *   name, title, problem         strings or numbers (name: the file's name)
 *   task, train, eval            options, one namespace (K, M, tau, L, d,
 *                                lr, steps, ...); eval's n means sweep_n
 *   seeds                        a count N (0..N-1) or a list: option seed
 *   models                       list of {label=, spec=, set={...}, k=v...}:
 *                                spec "transformer" is ROOT/specs/models/
 *                                transformer.lua (a path with '/' or .lua is
 *                                relative to the experiment's folder); set
 *                                and the entry's other keys override the
 *                                experiment's options for that model
 * A study returns {name=, title=, experiments = {"p1.lua", ...}} instead
 * (paths relative to the study's folder).
 * Any option whose value is a list sweeps: the runs of a model are the
 * cartesian product of its lists (seed varying fastest). --set k=v pairs
 * override every level; a value with commas ("lr=1e-3,3e-3") is a list.
 * The spec runs in a sandbox: base (without load, loadfile, dofile),
 * string, table and math; no io, os, package, require or debug.
 * ====================================================================== */

/* One run: options are every k=v the experiment gives it, as strings
 * (numbers in their shortest round-trip form), sorted by key. */
typedef struct {
  char *name;   /* <label>-M<M>-tau<tau>[-d<d>][-lr<lr>][-<k><v>...]-s<seed>:
                   M, tau when set; d, lr and other keys when they vary
                   among the runs of the label; [A-Za-z0-9._-] only */
  char *label;  /* the model entry's label (default: the spec's name) */
  char *spec;   /* the model spec's path */
  char **keys, **values;
  int n;
} fe_run;

typedef struct {
  char *path;           /* the experiment spec */
  char *name, *title, *problem; /* title, problem: "" when not given */
  bool study;
  char **experiments;   /* a study's sub-experiment paths */
  int n_experiments;
  fe_run *runs;         /* models in order; within one, the product */
  int n_runs;
} fe_experiment;

/* Runs the experiment spec at path with opt's --set pairs (opt->root as in
 * fe_options) and expands it into *out (free with fe_experiment_free).
 * -1 with "FILE:LINE: message" (a Lua error) or "FILE: models[2].set.pe:
 * message" (a bad value in the returned table) in err. */
int fe_load_experiment(const char *path, const fe_options *opt,
                       fe_experiment **out, fe_error *err);
/* Same for source in memory; chunkname names it in messages and is the
 * folder base for relative paths. */
int fe_load_experiment_string(const char *code, const char *chunkname,
                              const fe_options *opt, fe_experiment **out,
                              fe_error *err);
void fe_experiment_free(fe_experiment *e);
/* The run's option value, or NULL. */
const char *fe_run_get(const fe_run *r, const char *key);

#endif
