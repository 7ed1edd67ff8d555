/* test_corpus.c — the fuzzers' regression corpus: every file in
 * tests/corpus/<target>/ (crashes found by `make fuzz`, kept once fixed,
 * and the seeds) goes through the same target body as the fuzzer
 * (tests/fuzz/targets.c), here without libFuzzer, under the normal build
 * and `make test-asan`. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/targets.c"

/* Runs every file of tests/corpus/name through fn; the count of files. */
static int replay(const char *name, int (*fn)(const uint8_t *, size_t)) {
  const char *root = getenv("RECALL_ROOT");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/tests/corpus/%s", root ? root : ".", name);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int count = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    assert_int_equal(fn(buf, (size_t)n), 0);
    free(buf);
    count++;
  }
  closedir(d);
  return count;
}

static void safetensors_corpus(void **state) {
  (void)state;
  assert_true(replay("safetensors", fz_safetensors) > 0);
}

static void ir_parse_corpus(void **state) {
  (void)state;
  assert_true(replay("ir_parse", fz_ir_parse) > 0);
}

static void lua_graph_corpus(void **state) {
  (void)state;
  assert_true(replay("lua_graph", fz_lua_graph) > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(safetensors_corpus),
      cmocka_unit_test(ir_parse_corpus),
      cmocka_unit_test(lua_graph_corpus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
