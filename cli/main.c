/* main.c — `recall COMMAND ...`: dispatch and the helpers commands share. */
#include "cli.h"
#include "cmd_model.h"
#include "cmd_run.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_llvm(int argc, char **argv);  /* cmd_llvm.c */
int cmd_bench(int argc, char **argv); /* cmd_bench.c */
int cmd_check(int argc, char **argv); /* cmd_check.c */

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *usage;
} commands[] = {
    {"run", cmd_run,
     "run EXPERIMENT.lua [-o DIR] [-j JOBS] [--set k=v ...] [--resume]\n"
     "          [--threads N]"},
    {"train", cmd_train,
     "train MODEL.lua [--set k=v ...] [-o DIR] [--threads N]\n"
     "          [--backend jit|interp]"},
    {"eval", cmd_eval,
     "eval CHECKPOINT [--lengths A..B] [-n N] [-o FILE.csv] [--threads N]"},
    {"inspect", cmd_inspect,
     "inspect CHECKPOINT [--example N] [-o DIR] [--length n] [--seed s]"},
    {"exec", cmd_exec,
     "exec MODEL.lua --weights W.safetensors --tokens T.safetensors\n"
     "          [-o OUT.safetensors] [--set k=v ...] [--backend interp]"},
    {"ir", cmd_ir,
     "ir FILE.ir|MODEL.lua [--stage frontend|autodiff|opt] [--grad]\n"
     "          [--set k=v ...] [--format text|dot]"},
    {"llvm", cmd_llvm,
     "llvm MODEL.lua|FILE.ir [--set k=v ...] [--kernel fwd|bwd] [--asm]\n"
     "          [--cpu NAME]"},
    {"check", cmd_check,
     "check MODEL.lua [--set k=v ...] [--seed S] [--examples B] [--samples N]\n"
     "          [--tol fd|jit|passes=R ...]"},
    {"bench", cmd_bench,
     "bench MODEL.lua [--set k=v ...] [--threads N] [--steps N] [--json]"},
    {"report", cmd_report, "report DIR [--no-render] [-q]"},
    {"data", cmd_data,
     "data [--set K=16 --set M=1 --set tau=1 --set seed=0] --length N\n"
     "          [-n COUNT] [--stream train|test|sweep] -o FILE.safetensors|.csv"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *out) {
  fprintf(out, "usage: recall COMMAND [ARGS]\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(out, "  recall %s\n", commands[i].usage);
}

void cli_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "recall %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int cli_positional(const char *cmd, const char *a, const char **pos,
                   void (*usage)(FILE *)) {
  if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
    usage(stdout);
    return 1;
  }
  if (a[0] == '-' || *pos) {
    cli_error(cmd, "unexpected argument '%s'", a);
    usage(stderr);
    return -1;
  }
  *pos = a;
  return 0;
}

bool cli_add_setting(cli_settings *s, char *arg) {
  char *eq = strchr(arg, '=');
  if (!eq || eq == arg) return false;
  *eq = '\0';
  s->keys = realloc(s->keys, sizeof *s->keys * (size_t)(s->n + 1));
  s->values = realloc(s->values, sizeof *s->values * (size_t)(s->n + 1));
  if (!s->keys || !s->values) abort();
  s->keys[s->n] = arg;
  s->values[s->n] = eq + 1;
  s->n++;
  return true;
}

void cli_settings_free(cli_settings *s) {
  free(s->keys);
  free(s->values);
  *s = (cli_settings){0};
}

bool cli_has_suffix(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

char *cli_strdup(const char *s) {
  char *d = strdup(s);
  if (!d) abort();
  return d;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
      !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (int i = 0; i < N_COMMANDS; i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "recall: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
