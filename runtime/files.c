/* files.c — small result files written atomically, and the growable string
 * they are built in. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t k = write(fd, p, len);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += k, len -= (size_t)k;
  }
  return 0;
}

/* fsync the directory holding path so the rename survives a crash; best
 * effort (some file systems refuse). */
static void sync_parent(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096] = ".";
  if (slash && (size_t)(slash - path) < sizeof dir) {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = 0;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

int rt_write_atomic(const char *path, const void *data, size_t len,
                    ir_error *err) {
  static atomic_uint counter;
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    /* A device (/dev/stdout) cannot be replaced by rename: write in place. */
    if (S_ISDIR(st.st_mode)) {
      ir_err(err, "%s: cannot write: is a directory", path);
      return -1;
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, data, len) < 0) {
      ir_err(err, "%s: cannot write: %s", path, strerror(errno));
      if (fd >= 0) close(fd);
      return -1;
    }
    close(fd);
    return 0;
  }
  char tmp[4200];
  int fd = -1;
  for (int tries = 0; fd < 0; tries++) {
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&counter, 1));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || tries > 100)) {
      ir_err(err, "%s: cannot create a temporary file next to it: %s", path,
             strerror(errno));
      return -1;
    }
  }
  const char *what = NULL;
  if (write_all(fd, data, len) < 0) what = "write";
  else if (fsync(fd) < 0) what = "fsync";
  int e = errno;
  if (close(fd) < 0 && !what) what = "close", e = errno;
  if (!what && rename(tmp, path) < 0) what = "rename", e = errno;
  if (what) {
    ir_err(err, "%s: %s failed: %s", path, what, strerror(e));
    unlink(tmp);
    return -1;
  }
  sync_parent(path);
  return 0;
}

/* ---- rt_buf ---- */

static void reserve(rt_buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *s = realloc(b->s, cap);
  if (!s) abort();
  b->s = s;
  b->cap = cap;
}

void rt_buf_printf(rt_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  reserve(b, (size_t)k);
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)k;
}

void rt_buf_json_str(rt_buf *b, const char *s) {
  rt_buf_printf(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') rt_buf_printf(b, "\\%c", *p);
    else if (*p == '\n') rt_buf_printf(b, "\\n");
    else if (*p == '\t') rt_buf_printf(b, "\\t");
    else if (*p < 0x20) rt_buf_printf(b, "\\u%04x", *p);
    else rt_buf_printf(b, "%c", *p);
  }
  rt_buf_printf(b, "\"");
}

void rt_buf_free(rt_buf *b) {
  free(b->s);
  *b = (rt_buf){0};
}
