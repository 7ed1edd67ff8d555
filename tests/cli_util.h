/* cli_util.h — what the suites that test the CLI end to end share:
 * running a command (the recall binary) with its output captured, and
 * reading the files it writes. Each suite is one translation unit, so the
 * helpers are static inline (no warning where one is unused). */
#ifndef RECALL_TESTS_CLI_UTIL_H
#define RECALL_TESTS_CLI_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs shell command `cmd`, puts what it prints on stdout in *out
 * (malloc'd, NUL-terminated) and returns its exit status, -1 if it did not
 * exit normally (killed, timed out by `timeout -s KILL`). */
static inline int capture_command(char **out, const char *cmd) {
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

/* Runs `$RECALL_BIN ARGS 2>&1` (ARGS: shell words from fmt); as
 * capture_command. */
static inline int run_recall(char **out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int run_recall(char **out, const char *fmt, ...) {
  const char *bin = getenv("RECALL_BIN");
  assert_non_null(bin);
  char args[3000], cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
  return capture_command(out, cmd);
}

/* The whole file, NUL-terminated (malloc'd), *len its size (len may be
 * NULL); NULL if it cannot be opened. */
static inline char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  if (len) *len = (size_t)n;
  return s;
}

/* read_file of dir/file. */
static inline char *read_in(const char *dir, const char *file, size_t *len) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  return read_file(path, len);
}

/* read_file of the path printf makes of fmt; fails the test if missing. */
static inline char *slurp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *slurp(const char *fmt, ...) {
  char path[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(path, sizeof path, fmt, ap);
  va_end(ap);
  char *s = read_file(path, NULL);
  if (!s) fail_msg("cannot read %s", path);
  return s;
}

/* Whether the path printf makes of fmt exists. */
static inline bool path_exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline bool path_exists(const char *fmt, ...) {
  char path[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(path, sizeof path, fmt, ap);
  va_end(ap);
  return access(path, F_OK) == 0;
}

static inline int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* Whether gnuplot is on PATH (figures are rendered only then). */
static inline bool have_gnuplot(void) {
  const char *path = getenv("PATH");
  char buf[1024];
  while (path && *path) {
    size_t n = strcspn(path, ":");
    snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)n, path);
    if (access(buf, X_OK) == 0) return true;
    path += n + (path[n] == ':');
  }
  return false;
}

#endif
