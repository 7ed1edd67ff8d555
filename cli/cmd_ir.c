/* cmd_ir.c — `recall ir`: print a function after each stage (the graph as
 * written, with its gradient appended, optimised) or its backward function. */
#include "cli.h"
#include "ir.h"
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const usage_text =
    "usage: recall ir FILE.ir|MODEL.lua [--stage frontend|autodiff|opt|kernel|eval|all]\n"
    "                 [--grad] [--set k=v ...] [--format text|dot]\n"
    "  --stage frontend  the function as written\n"
    "  --stage autodiff  with its reverse-mode gradient appended\n"
    "  --stage opt       the gradient function after the optimisation passes\n"
    "  --stage kernel    the training kernel's function: read at the last position,\n"
    "                    cut to what that needs, gathers sunk, gradient, optimised\n"
    "  --stage eval      the evaluation kernel's function (the same without gradient)\n"
    "  --stage all       (default) forward and backward, split and optimised\n"
    "  --grad            only the backward function\n";

static void usage(FILE *out) { fputs(usage_text, out); }

/* The loss a gradient is taken of: the output "loss". */
static const char *loss_name(const ir_func *f) {
  return ir_find_output(f, "loss") >= 0 ? "loss" : NULL;
}

static void show(const ir_func *f, const char *format) {
  if (!strcmp(format, "dot"))
    ir_print_dot(stdout, f);
  else
    ir_print(stdout, f);
}

int cmd_ir(int argc, char **argv) {
  const char *path = NULL, *stage = "all", *format = "text";
  bool grad = false;
  cli_settings set = {0};
  int status = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--stage") && i + 1 < argc)
      stage = argv[++i];
    else if (!strcmp(a, "--format") && i + 1 < argc)
      format = argv[++i];
    else if (!strcmp(a, "--grad"))
      grad = true;
    else if (!strcmp(a, "--set") && i + 1 < argc) {
      if (!cli_add_setting(&set, argv[++i])) {
        cli_error("ir", "--set expects k=v, got '%s'", argv[i]);
        goto out;
      }
    } else {
      int k = cli_positional("ir", a, &path, usage);
      if (k) {
        status = k > 0 ? 0 : 2;
        goto out;
      }
    }
  }
  if (!path) {
    usage(stderr);
    goto out;
  }
  if (strcmp(stage, "frontend") && strcmp(stage, "autodiff") && strcmp(stage, "opt") &&
      strcmp(stage, "kernel") && strcmp(stage, "eval") && strcmp(stage, "all")) {
    cli_error("ir", "unknown stage '%s' (frontend, autodiff, opt, kernel, eval or all)", stage);
    goto out;
  }
  if (strcmp(format, "text") && strcmp(format, "dot")) {
    cli_error("ir", "unknown format '%s' (text or dot)", format);
    goto out;
  }

  status = 1;
  ir_error err = {{0}};
  ir_func *f = cli_load_function("ir", path, &set);
  ir_func *g = NULL, *o = NULL, *fwd = NULL, *bwd = NULL;
  if (!f) goto out;
  if (!strcmp(stage, "frontend") && !grad) {
    show(f, format);
    status = 0;
    goto done;
  }
  if (!strcmp(stage, "eval") && !grad) {
    if (!(o = rt_model_kernel_function(f, false, &err))) goto fail;
    show(o, format);
    status = 0;
    goto done;
  }
  const char *loss = loss_name(f);
  if (!loss) {
    if (!strcmp(stage, "all") && !grad) { /* nothing to differentiate */
      show(f, format);
      status = 0;
    } else
      cli_error("ir", "%s: no output named \"loss\" to differentiate", path);
    goto done;
  }
  if (!strcmp(stage, "kernel") && !grad) {
    if (!(o = rt_model_kernel_function(f, true, &err))) goto fail;
    show(o, format);
    status = 0;
    goto done;
  }
  if (!(g = ad_grad(f, loss, &err))) goto fail;
  if (!strcmp(stage, "autodiff") && !grad) {
    show(g, format);
    status = 0;
    goto done;
  }
  if (!strcmp(stage, "opt") && !grad) {
    if (!(o = ir_optimize(g, NULL, &err))) goto fail;
    show(o, format);
    status = 0;
    goto done;
  }
  /* all / --grad: split into forward and backward, optimise each. */
  ir_func *raw_fwd = NULL, *raw_bwd = NULL;
  if (ad_split(g, f->n_nodes, &raw_fwd, &raw_bwd, &err)) goto fail;
  fwd = ir_optimize(raw_fwd, NULL, &err);
  if (fwd) bwd = ir_optimize(raw_bwd, NULL, &err);
  ir_func_free(raw_fwd);
  ir_func_free(raw_bwd);
  if (!fwd || !bwd) goto fail;
  if (!grad) {
    printf("# forward\n");
    show(fwd, format);
    printf("\n# backward\n");
  }
  show(bwd, format);
  status = 0;
  goto done;
fail:
  fprintf(stderr, "recall ir: %s: %s\n", path, err.msg);
done:
  ir_func_free(f);
  ir_func_free(g);
  ir_func_free(o);
  ir_func_free(fwd);
  ir_func_free(bwd);
out:
  cli_settings_free(&set);
  return status;
}
