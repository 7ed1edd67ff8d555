/* load.c — turning a file named on the command line into a function or a
 * model. Errors are printed here, whole (a spec error carries its Lua
 * traceback, longer than an ir_error holds). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

fe_model *cli_load_model(const char *cmd, const char *path,
                         const cli_settings *set) {
  fe_options opt = {.keys = set->keys, .values = set->values,
                    .n_sets = set->n};
  fe_model *m = NULL;
  fe_error *err = calloc(1, sizeof *err);
  if (!err) abort();
  if (fe_load_model(path, &opt, &m, err)) {
    fprintf(stderr, "recall %s: %s\n", cmd, err->msg);
    m = NULL;
  }
  free(err);
  return m;
}

ir_func *cli_load_function(const char *cmd, const char *path,
                           const cli_settings *set) {
  ir_error err;
  if (cli_has_suffix(path, ".ir")) {
    if (set->n > 0) {
      cli_error(cmd, "%s: --set applies to model specs (.lua), not IR files",
                path);
      return NULL;
    }
    ir_func *f = ir_parse_file(path, &err);
    if (!f) fprintf(stderr, "recall %s: %s\n", cmd, err.msg);
    return f;
  }
  if (cli_has_suffix(path, ".lua")) {
    fe_model *m = cli_load_model(cmd, path, set);
    if (!m) return NULL;
    ir_func *f = m->f;
    m->f = NULL;
    fe_model_free(m);
    return f;
  }
  cli_error(cmd, "%s: expected an IR file (.ir) or a model spec (.lua)", path);
  return NULL;
}
