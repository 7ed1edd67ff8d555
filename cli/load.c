/* load.c — turning a file named on the command line into a function. */
#include "cli.h"

ir_func *cli_load_function(const char *path, const cli_settings *set,
                           ir_error *err) {
  if (cli_has_suffix(path, ".ir")) {
    if (set->n > 0) {
      ir_err(err, "%s: --set applies to model specs (.lua), not IR files", path);
      return NULL;
    }
    return ir_parse_file(path, err);
  }
  ir_err(err, "%s: expected an IR file (.ir) or a model spec (.lua)", path);
  return NULL;
}
