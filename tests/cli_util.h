/* cli_util.h — running the recall binary from a test: one shell command,
 * its output captured. Included by the suites that test the CLI end to end
 * (each suite is one translation unit, so the helper is static). */
#ifndef RECALL_TESTS_CLI_UTIL_H
#define RECALL_TESTS_CLI_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* Runs shell command `cmd`, puts what it prints on stdout in *out
 * (malloc'd, NUL-terminated) and returns its exit status, -1 if it did not
 * exit normally (killed, timed out by `timeout -s KILL`). */
static int capture_command(char **out, const char *cmd) {
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t cap = 1 << 16, n = 0, k;
  char *buf = malloc(cap);
  while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
    n += k;
    if (cap - n < 1024) buf = realloc(buf, cap *= 2);
  }
  buf[n] = '\0';
  int st = pclose(p);
  *out = buf;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
