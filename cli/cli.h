/* cli.h — the `recall` command: one function per subcommand. */
#ifndef RECALL_CLI_H
#define RECALL_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "frontend.h"
#include "ir.h"

/* `--set k=v` pairs collected from the command line, in order. */
typedef struct {
  const char **keys, **values;
  int n;
} cli_settings;

/* Each returns the process exit status: 0 ok, 1 error in the input or
 * the run, 2 bad usage. Messages go to stderr as "recall CMD: ...". */
int cmd_ir(int argc, char **argv);
int cmd_exec(int argc, char **argv);
/* `recall report DIR` (cmd_report.c). cli_report writes DIR's report for
 * other commands (`recall run` at its end): 0 ok, 1 error (printed). */
int cmd_report(int argc, char **argv);
int cli_report(const char *dir, bool quiet);

/* signals.c: SIGINT/SIGTERM for the long commands. cli_catch_signals
 * installs the handler: the first signal sets cli_stop to its number
 * (pass &cli_stop as the `stop` of rt_train_config / rt_sweep_config and
 * check it between pieces of work), a second exits at once with 128 + its
 * number. cli_stop_status: the exit status of a stopped command (130 for
 * SIGINT, 143 for SIGTERM). */
extern volatile sig_atomic_t cli_stop;
void cli_catch_signals(void);
int cli_stop_status(void);

/* Helpers shared by the commands. */
/* The end of every command's argument loop, for an argument a that no
 * option took: -h/--help prints usage to stdout and returns 1 (exit 0);
 * an unknown option or a second positional prints an error and usage to
 * stderr and returns -1 (exit 2); else a is the one positional argument,
 * stored in *pos, and 0 is returned. */
int cli_positional(const char *cmd, const char *a, const char **pos,
                   void (*usage)(FILE *));
void cli_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Parses "k=v" into s (pointers into arg); false if malformed. */
bool cli_add_setting(cli_settings *s, char *arg);
void cli_settings_free(cli_settings *s);
bool cli_has_suffix(const char *s, const char *suffix);
/* strdup that aborts when memory runs out (as every allocation here). */
char *cli_strdup(const char *s);

/* A function from FILE.ir (parsed) or MODEL.lua (built by the frontend with
 * the settings). On failure prints "recall CMD: FILE:LINE: message" (with
 * the Lua traceback for a spec) and returns NULL. */
ir_func *cli_load_function(const char *cmd, const char *path,
                           const cli_settings *set);
/* A model spec run with the settings; prints the error, NULL on failure. */
fe_model *cli_load_model(const char *cmd, const char *path,
                         const cli_settings *set);

#endif
