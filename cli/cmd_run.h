/* cmd_run.h — `recall run`: an experiment spec (specs/experiments/NAME.lua)
 * expanded into runs, each trained like `recall train`, into one
 * directory laid out as .notes/results-format.md fixes:
 *   DIR/experiment.json, DIR/runs/<run>/{config.json, train.csv, sweep.csv,
 *   checkpoint.safetensors, done}, DIR/results.csv, DIR/convergence.csv.
 * run_one.c trains one run; run_results.c writes the tidy CSV files;
 * run_pool.c trains an invocation's runs in parallel, showing progress;
 * cmd_run.c is the command (experiments and studies, their directories,
 * resume). */
#ifndef RECALL_CMD_RUN_H
#define RECALL_CMD_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "cmd_model.h"
#include "frontend.h"

int cmd_run(int argc, char **argv);

/* ---- run_one.c ---- */

/* Progress of one run; any hook may be NULL. */
typedef struct {
  void (*on_compile)(void *ctx);
  void (*on_step)(void *ctx, long step, double loss, double acc, double elapsed_s);
  void (*on_eval)(void *ctx, const rt_train_row *row);
  void (*on_sweep)(void *ctx, int done, int total);
  void *ctx;
} cr_hooks;

typedef struct {
  rt_train_result train;
  bool trained;         /* training ended and the checkpoint is written */
  bool swept;           /* sweep.csv written */
  int lo, hi;           /* its lengths */
  double mean_acc;      /* over those lengths */
} cr_outcome;

/* Trains r (after cm_setup) exactly as `recall train` does and writes
 * dir/config.json (first, then again with the result), dir/train.csv (at
 * every evaluation), dir/checkpoint.safetensors and dir/sweep.csv, each
 * atomically. A run that diverges is an outcome, not an error: config.json
 * records it and there is no checkpoint or sweep. Thread-safe for
 * different r. Prints the error ("recall CMD: ...") and returns -1 on
 * failure; returns RT_STOPPED, printing nothing, when r->train.stop was
 * raised (training and sweep read it; the files so far stay, each
 * complete, and the caller must not mark the run done). */
int cr_train_run(cm_run *r, const char *dir, const char *backend, int threads,
                 const cr_hooks *h, cr_outcome *out);

/* "reached", "max_steps" or "diverged" */
const char *cr_status_name(rt_train_status s);

/* ---- run_results.c ---- */

/* Option keys that take more than one value across e's runs (or are
 * missing from some), without the fixed columns of results.csv; sorted,
 * malloc'd (free each and the array). */
char **cr_varying_keys(const fe_experiment *e, int *n);

/* Writes dir/results.csv and dir/convergence.csv from the files of every
 * run of e whose dir/runs/<run>/done exists, in e's order. *n_done gets
 * how many there were. -1 with a message naming the file on failure. */
int cr_write_results(const char *dir, const fe_experiment *e, int *n_done,
                     char *msg, size_t msg_n);

/* dir/results.csv and dir/convergence.csv concatenating subdirs[i]'s (in
 * order; the header is the union of theirs, missing columns empty). */
int cr_concat_results(const char *dir, const char *const *subdirs, int n,
                      char *msg, size_t msg_n);

/* Reads a whole file into a malloc'd NUL-terminated string; NULL if it
 * cannot. */
char *cr_read_file(const char *path, size_t *len);

/* ---- run_pool.c ---- */

/* An experiment of the invocation: its spec, its directory, its runs
 * (set up before anything runs) and which of them an earlier invocation
 * finished (done[r]: skipped). */
typedef struct {
  fe_experiment *e;
  char *dir;
  cm_run *cm;
  bool *done;
} cr_xp;

typedef struct {
  int x, r; /* experiment, run */
} cr_run_ref;

/* What cr_run_pool did: runs in all, skipped as done, to train now, and
 * of those finished and failed (failures[0..failed), malloc'd). */
typedef struct {
  int total, skipped, trained, finished, failed;
  cr_run_ref *failures;
} cr_tally;

/* Trains every run of xps[0..n_xps) not done, `jobs` at a time on worker
 * threads (the longest first by a guess of their work; `threads` and
 * `backend` inside each), each into <dir>/runs/<run>/ with `done`
 * written last (after clearing what an unfinished attempt left). A
 * terminal shows a status block; every run ends in one line (its
 * experiment's name in front in a study); a failed run's message is
 * printed and the others go on. Takes no new run once cli_stop is
 * raised. Fills *t. */
void cr_run_pool(cr_xp *xps, int n_xps, bool study, int jobs, const char *backend,
                 int threads, cr_tally *t);

/* Helpers of the run command: dir/name (malloc'd); monotonic seconds; a
 * duration as "42s", "3m05s" or "1h02m"; removing the temporary files
 * (NAME.tmp.PID.N) that a killed write left in dir. */
char *cr_join(const char *dir, const char *name);
double cr_now(void);
void cr_fmt_time(double s, char *buf, size_t n);
void cr_remove_temps(const char *dir);

#endif
