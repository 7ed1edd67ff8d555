/* cmd_exec.c — `recall exec`: one forward+backward on given weights. */
#include "cli.h"

int cmd_exec(int argc, char **argv) {
  (void)argc, (void)argv;
  cli_error("exec", "not available yet");
  return 1;
}
