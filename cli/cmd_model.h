/* cmd_model.h — what `recall train`, `eval` and `data` share: the one
 * namespace of --set options (the task and training keys of the table in
 * cmd_model.c, and the spec's own options), a runtime model built from a
 * Lua spec, and run configs as JSON. */
#ifndef RECALL_CMD_MODEL_H
#define RECALL_CMD_MODEL_H

#include <stdbool.h>
#include <stdio.h>

#include "cli.h"
#include "frontend.h"
#include "runtime.h"

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_inspect(int argc, char **argv); /* cmd_inspect.c */

/* The task and training keys (K, L, M, tau, seed, lr, ...), with their
 * defaults and meaning: the table printed by `recall train --help`. */
void cm_print_train_keys(FILE *out);

/* One run: a spec, its options split into the spec's and the training
 * ones (all resolved to strings), and the runtime model. */
typedef struct {
  const char *cmd;      /* "train", "eval": prefix of messages */
  char *spec;           /* the spec's path, absolute when it can be */
  char *model;          /* the spec's name: file name without .lua */
  char *root;           /* project root for the spec's library, or NULL */
  char **tvals;         /* training values, one per key of the table */
  char **mkeys, **mvals; /* the spec's options (without n) */
  int n_m;
  rt_train_config train; /* from tvals */
  int K, L, sweep_n;
  fe_model *fm;         /* the spec at length L */
  rt_model *rm;
} cm_run;

/* Splits --set pairs between the training table and the spec's options
 * (a key both know goes to both; an unknown key is an error with a
 * did-you-mean; n is the runtime's), applies the study's defaults (K 16,
 * d 8, L 64 where the spec has those options) and loads the spec at L.
 * Absurd sizes (d=0, L=1e8, ...) are refused by name before any work, and
 * so is a model whose memory estimate exceeds mem_limit_gb (default 8).
 * Prints the error and returns -1 on failure. */
int cm_setup(cm_run *r, const char *cmd, const char *spec,
             const char *const *keys, const char *const *values, int n_sets);
/* cm_setup from a checkpoint's metadata: its spec, and every option the
 * run had (the spec's, then training's) as --set pairs. Prints the error
 * (path's config unreadable, its spec gone, or cm_setup's) and returns -1
 * on failure. */
int cm_setup_checkpoint(cm_run *r, const char *cmd, rt_tensors *ck, const char *path);
/* Builds the runtime model (compiles its training kernel). With init,
 * draws every param with the spec's initialiser from rt_rng(seed,
 * RT_STREAM_INIT + param index, 0). Prints the error, -1 on failure. */
int cm_model(cm_run *r, rt_backend backend, int threads, bool init);
void cm_free(cm_run *r);
/* The spec of r loaded at sequence length n with r's options (as the
 * runtime builds it for a length bucket). NULL with the frontend's
 * message (file:line) in err on failure. cm_spec_at keeps only the
 * function. */
fe_model *cm_load_at(const cm_run *r, int n, ir_error *err);
ir_func *cm_spec_at(const cm_run *r, int n, ir_error *err);

/* The run's config as JSON: spec, model, backend, threads, model_options,
 * train_options, and `result` (raw JSON text) when non-NULL. */
void cm_config_json(const cm_run *r, rt_buf *b, const char *backend,
                    int threads, const char *result);

/* A JSON document flattened: "model_options.K" -> "16" (numbers as
 * written, strings unescaped, true/false). */
typedef struct {
  char **keys, **values;
  int n;
} cm_json;
int cm_json_parse(const char *text, cm_json *out, char *msg, size_t msg_n);
const char *cm_json_get(const cm_json *j, const char *key);
void cm_json_free(cm_json *j);

/* The median of v[0..n) (sorts v). */
double cm_median(double *v, int n);
/* `recall bench --profile`: cycles per IR node of r's training (train) or
 * forward kernel over one batch, the top `top` nodes (0: all); with ab
 * ("VAR" or "VAR=VALUE"), two builds with VAR unset and set run in turn
 * `rounds` times (bench_profile.c). 0, or -1 after an error message. */
int cm_bench_profile(cm_run *r, bool train, int top, const char *ab, int rounds);
/* mkdir -p; prints the error and returns -1 on failure. */
int cm_mkdirs(const char *cmd, const char *dir);
/* The edit distance between two short strings. */
int cm_distance(const char *a, const char *b);

#endif
