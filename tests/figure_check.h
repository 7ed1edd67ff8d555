/* figure_check.h — checks that a rendered figure is a real PNG or SVG
 * file, shared by the suites that render figures (each suite is one
 * translation unit, so the helpers are static). */
#ifndef RECALL_TESTS_FIGURE_CHECK_H
#define RECALL_TESTS_FIGURE_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"

static uint32_t crc32_naive(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
  }
  return c ^ 0xffffffffu;
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The PNG signature, an IHDR chunk with its CRC and a size of at least
 * min_px each way, and IEND last. */
static void check_png(const char *path, uint32_t min_px) {
  size_t n;
  unsigned char *s = (unsigned char *)read_file(path, &n);
  if (!s) fail_msg("%s: missing", path);
  assert_true(n > 45);
  assert_memory_equal(s, "\x89PNG\r\n\x1a\n", 8);
  assert_int_equal(be32(s + 8), 13);
  assert_memory_equal(s + 12, "IHDR", 4);
  assert_true(be32(s + 16) >= min_px && be32(s + 20) >= min_px); /* width, height */
  assert_int_equal(be32(s + 29), crc32_naive(s + 12, 17));
  assert_memory_equal(s + n - 8, "IEND", 4);
  free(s);
}

/* Well-formed XML (tags nest and close, comments, declarations and CDATA
 * skipped) whose root element is <svg> and that draws something. */
static void check_svg(const char *path) {
  char *s = read_file(path, NULL), *stack[64];
  if (!s) fail_msg("%s: missing", path);
  int depth = 0, roots = 0;
  bool svg_root = false;
  for (char *p = s; (p = strchr(p, '<'));) {
    if (!strncmp(p, "<!--", 4)) {
      p = strstr(p, "-->");
      assert_non_null(p);
      continue;
    }
    if (!strncmp(p, "<![CDATA[", 9)) {
      p = strstr(p, "]]>");
      assert_non_null(p);
      continue;
    }
    if (p[1] == '?' || p[1] == '!') {
      p = strchr(p, '>');
      assert_non_null(p);
      continue;
    }
    char *end = p + 1;
    char quote = 0;
    for (; *end && (quote || *end != '>'); end++)
      if (*end == '"' || *end == '\'') quote = quote == *end ? 0 : quote ? quote : *end;
    assert_int_equal(*end, '>');
    bool closing = p[1] == '/', empty = end[-1] == '/';
    char *name = p + 1 + closing;
    size_t k = strcspn(name, " \t\r\n/>");
    if (closing) {
      assert_true(depth > 0);
      depth--;
      if (strncmp(stack[depth], name, k) || stack[depth][k] != '\0')
        fail_msg("%s: </%.*s> closes <%s>", path, (int)k, name, stack[depth]);
      free(stack[depth]);
    } else {
      if (depth == 0) roots++, svg_root = k == 3 && !strncmp(name, "svg", 3);
      if (!empty) {
        assert_true(depth < 64);
        stack[depth] = strndup(name, k);
        depth++;
      }
    }
    p = end;
  }
  assert_int_equal(depth, 0);
  assert_int_equal(roots, 1);
  assert_true(svg_root);
  assert_true(strstr(s, "<path") || strstr(s, "<image") || strstr(s, "<rect"));
  free(s);
}

#endif
