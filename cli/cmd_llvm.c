/* cmd_llvm.c — `recall llvm`: the LLVM IR (or machine code) of a model's
 * kernel, exactly as the runtime compiles it. */
#include "cli.h"
#include "codegen.h"
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const usage_text =
    "usage: recall llvm FILE.ir|MODEL.lua [--set k=v ...] [--kernel fwd|bwd]\n"
    "                   [--asm] [--stage lowered|opt] [--cpu NAME] [--passes P]\n"
    "                   [--stats]\n"
    "  --kernel fwd   the forward kernel (logits and loss, read at \"pos\")\n"
    "  --kernel bwd   (default) the training kernel: forward and gradient,\n"
    "                 read at the last position, as training compiles it\n"
    "  --asm          machine code instead of LLVM IR\n"
    "  --stage S      lowered: as emitted; opt (default): after the passes\n"
    "  --cpu NAME     target CPU, e.g. x86-64-v3 (default: this machine)\n"
    "  --passes P     LLVM pass pipeline (default: the compiler's own)\n"
    "  --stats        one line of counts (loops, buffers, FLOPs) on stderr\n"
    "A .ir file is compiled as it is (bwd differentiates its output \"loss\").\n";

static void usage(FILE *out) { fputs(usage_text, out); }

int cmd_llvm(int argc, char **argv) {
  const char *path = NULL, *kernel = "bwd", *stage = "opt", *cpu = NULL,
             *passes = NULL;
  bool as_asm = false, stats = false, no_fuse = false;
  cli_settings set = {0};
  int status = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--set") && i + 1 < argc) {
      if (!cli_add_setting(&set, argv[++i])) {
        cli_error("llvm", "--set expects k=v, got '%s'", argv[i]);
        goto out;
      }
    } else if (!strcmp(a, "--kernel") && i + 1 < argc) {
      kernel = argv[++i];
    } else if (!strcmp(a, "--stage") && i + 1 < argc) {
      stage = argv[++i];
    } else if (!strcmp(a, "--cpu") && i + 1 < argc) {
      cpu = argv[++i];
    } else if (!strcmp(a, "--passes") && i + 1 < argc) {
      passes = argv[++i];
    } else if (!strcmp(a, "--asm")) {
      as_asm = true;
    } else if (!strcmp(a, "--stats")) {
      stats = true;
    } else if (!strcmp(a, "--no-fuse")) { /* undocumented: for studies */
      no_fuse = true;
    } else {
      int k = cli_positional("llvm", a, &path, usage);
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
  if (strcmp(kernel, "fwd") && strcmp(kernel, "bwd")) {
    cli_error("llvm", "--kernel is fwd or bwd, got '%s'", kernel);
    goto out;
  }
  if (strcmp(stage, "lowered") && strcmp(stage, "opt")) {
    cli_error("llvm", "--stage is lowered or opt, got '%s'", stage);
    goto out;
  }
  if (as_asm && !strcmp(stage, "lowered")) {
    cli_error("llvm", "--asm shows the optimised kernel; drop --stage lowered");
    goto out;
  }

  status = 1;
  ir_error err = {{0}};
  ir_func *f = cli_load_function("llvm", path, &set), *k = NULL;
  char *text = NULL;
  if (!f) goto out;
  bool train = !strcmp(kernel, "bwd");
  if (train && ir_find_output(f, "loss") < 0) {
    cli_error("llvm", "%s: no output \"loss\" to differentiate (try --kernel fwd)", path);
    goto done;
  }
  if (!(k = rt_model_kernel_function(f, train, &err))) goto fail;
  /* as the runtime compiles it (model.c: a forward kernel is read at pos,
   * param-only work hoisted into the prep entry) */
  cg_options o = {.cpu = cpu, .passes = passes, .no_fuse = no_fuse, .rows_to_pos = !train,
                  .hoist = true};
  text = as_asm ? cg_asm(k, &o, &err)
                : cg_llvm_ir(k, &o, strcmp(stage, "opt") ? CG_STAGE_LOWERED : CG_STAGE_OPT, &err);
  if (!text) goto fail;
  fputs(text, stdout);
  if (stats) {
    int n = 0;
    for (int v = 0; v < k->n_nodes; v++) n += !ir_op_is_leaf(k->nodes[v].op);
    fprintf(stderr, "recall llvm: %s kernel: %d IR nodes, %d outputs, %.0f FLOPs per example\n",
            kernel, n, k->n_outs, cg_flops(k));
    cg_options jo = {.passes = passes, .no_fuse = no_fuse, .rows_to_pos = !train,
                     .hoist = true};
    cg_module *m = cg_compile(k, &jo, &err); /* for the JIT's own figures */
    if (m) {
      const cg_stats *st = cg_module_stats(m);
      fprintf(stderr, "recall llvm: JIT for this machine: lower %.1f ms, opt %.1f ms, "
              "machine code %.1f ms; %d functions, %d loops, %d buffers (%d fused, %d up to "
              "the row read, %d once per batch), arena %zu bytes in %d slots\n",
              st->lower_ms, st->opt_ms, st->jit_ms, st->n_functions, st->n_loops_emitted,
              st->n_materialised, st->n_fused, st->n_upto, st->n_hoisted, st->arena_bytes,
              st->n_slots);
      cg_free(m);
    }
  }
  status = 0;
  goto done;
fail:
  fprintf(stderr, "recall llvm: %s: %s\n", path, err.msg);
done:
  free(text);
  ir_func_free(k);
  ir_func_free(f);
out:
  cli_settings_free(&set);
  return status;
}
