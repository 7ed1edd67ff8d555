/* test_safetensors.c — round trips, the golden files, one test per kind of
 * malformed file (bytes built here), and failing writes that must leave
 * nothing behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"

/* ---- helpers ---- */

static char tmpdir[64];

static int setup_dir(void **s) {
  (void)s;
  strcpy(tmpdir, "/tmp/recall-st-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

/* Remove every file in tmpdir and the directory itself. */
static int teardown_dir(void **s) {
  (void)s;
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  char p[512];
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
      unlink(p);
    }
  if (d) closedir(d);
  return rmdir(tmpdir);
}

/* Names of the entries in tmpdir, space separated, sorted. */
static void list_dir(char *out, size_t n) {
  char names[32][256];
  int k = 0;
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  assert_non_null(d);
  while ((e = readdir(d)) && k < 32)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      snprintf(names[k++], 256, "%s", e->d_name);
  closedir(d);
  qsort(names, (size_t)k, 256, (int (*)(const void *, const void *))strcmp);
  out[0] = 0;
  for (int i = 0; i < k; i++)
    snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? " " : "", names[i]);
}

/* A file image: 8-byte little-endian header length, header, data bytes
 * 0, 1, 2, ... */
static unsigned char *image(const char *header, size_t dlen, size_t *len) {
  size_t h = strlen(header);
  *len = 8 + h + dlen;
  unsigned char *b = malloc(*len);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(b + 8, header, h);
  for (size_t i = 0; i < dlen; i++) b[8 + h + i] = (unsigned char)i;
  return b;
}

/* Reading `header` + dlen data bytes must fail with a message that names
 * the file and contains `want`. */
static void bad(const char *header, size_t dlen, const char *want) {
  size_t len;
  unsigned char *b = image(header, dlen, &len);
  ir_error err = {{0}};
  rt_tensors *ts = rt_st_read_mem(b, len, "w.safetensors", &err);
  free(b);
  if (ts) {
    rt_tensors_free(ts);
    fail_msg("accepted: %s", header);
  }
  if (strncmp(err.msg, "w.safetensors: ", 15) || !strstr(err.msg, want))
    fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
}

static rt_tensors *good(const char *header, size_t dlen) {
  size_t len;
  unsigned char *b = image(header, dlen, &len);
  ir_error err = {{0}};
  rt_tensors *ts = rt_st_read_mem(b, len, "ok.safetensors", &err);
  free(b);
  if (!ts) fail_msg("rejected %s: %s", header, err.msg);
  return ts;
}

/* ---- round trip ---- */

static rt_tensors *sample(void) {
  rt_tensors *ts = rt_tensors_new();
  ir_error err;
  float f[6] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-30f, -7.0f};
  int32_t i32[4] = {0, -1, 2147483647, -2147483647 - 1};
  double f64[3] = {0.1, -1e300, 3.0};
  int64_t i64[4] = {1, -2, INT64_MAX, INT64_MIN};
  float scalar = 42.0f;
  int64_t d23[] = {2, 3}, d4[] = {4}, d3[] = {3}, d22[] = {2, 2}, d05[] = {0, 5}, d1111[] = {1, 1, 1, 1};
  /* names added out of order, dtypes mixed, so sorting and alignment matter */
  assert_non_null(rt_tensors_add(ts, "z.f32", RT_F32, 2, d23, f, &err));
  assert_non_null(rt_tensors_add(ts, "b.i32", RT_I32, 1, d4, i32, &err));
  assert_non_null(rt_tensors_add(ts, "c.f64", RT_F64, 1, d3, f64, &err));
  assert_non_null(rt_tensors_add(ts, "a.i64", RT_I64, 2, d22, i64, &err));
  assert_non_null(rt_tensors_add(ts, "loss", RT_F32, 0, NULL, &scalar, &err));
  assert_non_null(rt_tensors_add(ts, "empty", RT_F32, 2, d05, NULL, &err));
  assert_non_null(rt_tensors_add(ts, "r4 \"q\" \\ \xc3\xa9", RT_F32, 4, d1111, f, &err));
  rt_meta_set(ts, "model", "mamba");
  rt_meta_set(ts, "note", "line1\nline2 \"quoted\" \\ tab\t \xe2\x82\xac");
  rt_meta_set(ts, "K", "8");
  rt_meta_set(ts, "K", "16"); /* replaces */
  return ts;
}

static void same_tensors(const rt_tensors *a, const rt_tensors *b) {
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    const rt_tensor *x = a->t[i], *y = rt_tensors_find(b, x->name);
    if (!y) fail_msg("tensor \"%s\" lost", x->name);
    assert_int_equal(x->dtype, y->dtype);
    assert_int_equal(x->rank, y->rank);
    assert_int_equal(x->numel, y->numel);
    for (int k = 0; k < x->rank; k++) assert_int_equal(x->dim[k], y->dim[k]);
    assert_memory_equal(x->data, y->data, (size_t)x->numel * rt_dtype_size(x->dtype) + 0 * 1);
  }
  assert_int_equal(a->n_meta, b->n_meta);
  for (int i = 0; i < a->n_meta; i++) {
    const char *v = rt_meta_get(b, a->meta[i].key);
    assert_non_null(v);
    assert_string_equal(v, a->meta[i].value);
  }
}

static void round_trip(void **s) {
  (void)s;
  rt_tensors *ts = sample();
  char path[128];
  ir_error err = {{0}};
  snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
  if (rt_st_write(path, ts, &err) < 0) fail_msg("%s", err.msg);
  rt_tensors *back = rt_st_read(path, &err);
  if (!back) fail_msg("%s", err.msg);
  same_tensors(ts, back);
  assert_string_equal(rt_meta_get(back, "K"), "16");
  assert_null(rt_meta_get(back, "missing"));
  assert_string_equal(back->source, path);
  /* writing over an existing file replaces it; no temporary is left */
  rt_meta_set(back, "model", "hybrid");
  assert_int_equal(rt_st_write(path, back, &err), 0);
  rt_tensors *again = rt_st_read(path, &err);
  assert_non_null(again);
  assert_string_equal(rt_meta_get(again, "model"), "hybrid");
  char names[512];
  list_dir(names, sizeof names);
  assert_string_equal(names, "rt.safetensors");
  unlink(path);
  rt_tensors_free(ts), rt_tensors_free(back), rt_tensors_free(again);
}

/* A container with metadata and no tensors writes and reads back. */
static void empty_container(void **s) {
  (void)s;
  rt_tensors *ts = rt_tensors_new();
  rt_meta_set(ts, "note", "nothing here");
  char path[128];
  ir_error err = {{0}};
  snprintf(path, sizeof path, "%s/empty.safetensors", tmpdir);
  if (rt_st_write(path, ts, &err) < 0) fail_msg("%s", err.msg);
  rt_tensors *back = rt_st_read(path, &err);
  if (!back) fail_msg("%s", err.msg);
  assert_int_equal(back->n, 0);
  assert_string_equal(rt_meta_get(back, "note"), "nothing here");
  unlink(path);
  rt_tensors_free(ts), rt_tensors_free(back);
}

/* The layout of a written file, checked on its bytes: header length a
 * multiple of 8 padded with spaces, entries sorted by name after the
 * metadata, data contiguous from 0 and naturally aligned. */
static void written_layout(void **s) {
  (void)s;
  rt_tensors *ts = sample();
  char path[128];
  ir_error err;
  snprintf(path, sizeof path, "%s/layout.safetensors", tmpdir);
  assert_int_equal(rt_st_write(path, ts, &err), 0);
  FILE *f = fopen(path, "rb");
  static unsigned char b[1 << 16];
  size_t len = fread(b, 1, sizeof b, f);
  fclose(f);
  uint64_t h = 0;
  for (int i = 7; i >= 0; i--) h = h << 8 | b[i];
  assert_int_equal(h % 8, 0);
  char *hdr = strndup((char *)b + 8, (size_t)h);
  size_t end = strlen(hdr);
  while (end && hdr[end - 1] == ' ') end--;
  assert_int_equal(hdr[end - 1], '}');
  assert_int_equal(h - end, (8 - (end % 8)) % 8); /* padding only to the next multiple */
  const char *meta = "{\"__metadata__\":{\"K\":\"16\",\"model\":\"mamba\","
                     "\"note\":\"line1\\nline2 \\\"quoted\\\" \\\\ tab\\t \xe2\x82\xac\"},";
  if (strncmp(hdr, meta, strlen(meta))) fail_msg("header starts %.80s", hdr);
  static const char *order[] = {"\"a.i64\"", "\"b.i32\"", "\"c.f64\"", "\"empty\"",
                                "\"loss\"", "\"r4 \\\"q\\\" \\\\ \xc3\xa9\"", "\"z.f32\""};
  const char *prev = hdr;
  for (int i = 0; i < 7; i++) {
    const char *p = strstr(hdr, order[i]);
    if (!p || p < prev) fail_msg("%s missing or out of order in %s", order[i], hdr);
    prev = p;
  }
  /* contiguous and aligned: byte sizes 32+24 (8-byte types) then 4-byte */
  assert_non_null(strstr(hdr, "\"a.i64\":{\"dtype\":\"I64\",\"shape\":[2,2],\"data_offsets\":[0,32]}"));
  assert_non_null(strstr(hdr, "\"c.f64\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[32,56]}"));
  assert_non_null(strstr(hdr, "\"b.i32\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[56,72]}"));
  assert_non_null(strstr(hdr, "\"loss\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[72,76]}"));
  assert_int_equal(len, 8 + h + 32 + 24 + 16 + 0 + 4 + 4 + 24);
  assert_int_equal((8 + h) % 8, 0);
  int64_t i64_expect[4] = {1, -2, INT64_MAX, INT64_MIN};
  assert_memory_equal(b + 8 + h, i64_expect, 32);
  free(hdr);
  unlink(path);
  rt_tensors_free(ts);
}

/* A tiny file, byte for byte as the reference writes it. */
static void exact_bytes(void **s) {
  (void)s;
  rt_tensors *ts = rt_tensors_new();
  ir_error err;
  float one = 1.0f;
  int64_t d1[] = {1};
  rt_tensors_add(ts, "w", RT_F32, 1, d1, &one, &err);
  rt_meta_set(ts, "k", "v");
  char path[128];
  snprintf(path, sizeof path, "%s/tiny.safetensors", tmpdir);
  assert_int_equal(rt_st_write(path, ts, &err), 0);
  const char *json = "{\"__metadata__\":{\"k\":\"v\"},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  size_t jl = strlen(json), hl = (jl + 7) / 8 * 8;
  unsigned char want[256] = {(unsigned char)hl};
  memcpy(want + 8, json, jl);
  memset(want + 8 + jl, ' ', hl - jl);
  memcpy(want + 8 + hl, "\x00\x00\x80\x3f", 4);
  unsigned char got[256];
  FILE *f = fopen(path, "rb");
  size_t n = fread(got, 1, sizeof got, f);
  fclose(f);
  assert_int_equal(n, 8 + hl + 4);
  assert_memory_equal(got, want, n);
  unlink(path);
  rt_tensors_free(ts);
}

static void container_api(void **s) {
  (void)s;
  rt_tensors *ts = rt_tensors_new();
  ir_error err = {{0}};
  int64_t d2[] = {2}, d5[] = {1, 1, 1, 1, 1}, dneg[] = {-1};
  double v[2] = {0.5, 1e39};
  rt_tensor *t = rt_tensors_add(ts, "x", RT_F64, 1, d2, v, &err);
  assert_non_null(t);
  assert_null(rt_tensors_add(ts, "x", RT_F32, 1, d2, NULL, &err));
  assert_non_null(strstr(err.msg, "duplicate tensor name \"x\""));
  assert_null(rt_tensors_add(ts, "y", RT_F32, 5, d5, NULL, &err));
  assert_non_null(strstr(err.msg, "rank 5 is above the maximum 4"));
  assert_null(rt_tensors_add(ts, "y", RT_F32, 1, dneg, NULL, &err));
  assert_non_null(strstr(err.msg, "negative size -1"));
  /* 1e39 does not fit in F32: conversion refused, tensor unchanged */
  assert_int_equal(rt_tensor_convert(t, RT_F32, &err), -1);
  assert_non_null(strstr(err.msg, "element 1 does not fit in F32"));
  assert_int_equal(t->dtype, RT_F64);
  assert_int_equal(rt_tensor_convert(t, RT_I32, &err), -1);
  assert_non_null(strstr(err.msg, "cannot convert F64 to I32"));
  ((double *)t->data)[1] = -3.0;
  /* expect: converts F64 -> F32 and checks the shape */
  int64_t want[] = {2}, wrong[] = {3};
  assert_null(rt_tensors_expect(ts, "x", RT_F32, 1, wrong, &err));
  assert_string_equal(err.msg, "tensors: tensor \"x\" is F64[2], expected F32[3]");
  assert_null(rt_tensors_expect(ts, "nope", RT_F32, 1, want, &err));
  assert_string_equal(err.msg, "tensors: no tensor \"nope\" (expected F32[2])");
  t = rt_tensors_expect(ts, "x", RT_F32, 1, want, &err);
  assert_non_null(t);
  assert_int_equal(t->dtype, RT_F32);
  assert_true(((float *)t->data)[0] == 0.5f && ((float *)t->data)[1] == -3.0f);
  /* I64 -> I32 range check */
  int64_t big[2] = {5, 1ll << 40};
  rt_tensor *u = rt_tensors_add(ts, "u", RT_I64, 1, d2, big, &err);
  assert_int_equal(rt_tensor_convert(u, RT_I32, &err), -1);
  ((int64_t *)u->data)[1] = -7;
  assert_int_equal(rt_tensor_convert(u, RT_I32, &err), 0);
  assert_int_equal(((int32_t *)u->data)[1], -7);
  assert_int_equal(rt_tensor_convert(u, RT_I64, &err), 0);
  assert_int_equal(((int64_t *)u->data)[0], 5);
  rt_tensors_free(ts);
  rt_tensors_free(NULL);
}

/* ---- golden files ---- */

static void golden_files(void **s) {
  (void)s;
  const char *root = getenv("RECALL_ROOT");
  if (!root) fail_msg("RECALL_ROOT is not set (run the tests through ctest)");
  char dir[512], path[1024];
  snprintf(dir, sizeof dir, "%s/../shared/golden", root);
  DIR *d = opendir(dir);
  if (!d) fail_msg("golden directory %s is missing", dir);
  int files = 0;
  float V[16 * 8];
  rt_embedding_V(16, 8, V);
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t nl = strlen(e->d_name);
    if (nl < 12 || strcmp(e->d_name + nl - 12, ".safetensors")) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    ir_error err = {{0}};
    rt_tensors *ts = rt_st_read(path, &err);
    if (!ts) fail_msg("%s", err.msg);
    files++;
    const char *model = rt_meta_get(ts, "model");
    if (!model) fail_msg("%s: no \"model\" in the metadata", path);
    size_t ml = strlen(model); /* file names are <model>_K16_d8_L16 */
    assert_true(strncmp(e->d_name, model, ml) == 0 && e->d_name[ml] == '_');
    assert_string_equal(rt_meta_get(ts, "K"), "16");
    assert_string_equal(rt_meta_get(ts, "d"), "8");
    int64_t B = atoll(rt_meta_get(ts, "B"));
    assert_true(B > 0);
    int64_t kd[] = {16, 8}, bl[] = {B, 16}, b1[] = {B}, bk[] = {B, 16};
    rt_tensor *emb = rt_tensors_expect(ts, "embedding.weight", RT_F32, 2, kd, &err);
    if (!emb) fail_msg("%s", err.msg);
    for (int i = 0; i < 16 * 8; i++) /* V is frozen: exactly the numpy V */
      assert_true(((float *)emb->data)[i] == V[i]);
    if (!rt_tensors_expect(ts, "tokens", RT_I32, 2, bl, &err)) fail_msg("%s", err.msg);
    if (!rt_tensors_expect(ts, "labels", RT_I32, 1, b1, &err)) fail_msg("%s", err.msg);
    if (!rt_tensors_expect(ts, "logits", RT_F32, 2, bk, &err)) fail_msg("%s", err.msg);
    if (!rt_tensors_expect(ts, "loss", RT_F32, 0, NULL, &err)) fail_msg("%s", err.msg);
    if (!rt_tensors_expect(ts, "lm_head.weight", RT_F32, 2, kd, &err)) fail_msg("%s", err.msg);
    if (!rt_tensors_expect(ts, "grad.lm_head.weight", RT_F32, 2, kd, &err)) fail_msg("%s", err.msg);
    rt_tensors_free(ts);
  }
  closedir(d);
  assert_int_equal(files, 5);
}

/* ---- malformed files ---- */

#define T1 "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static void bad_too_short(void **s) {
  (void)s;
  ir_error err;
  assert_null(rt_st_read_mem("\x10\x00\x00", 3, "w.safetensors", &err));
  assert_string_equal(err.msg, "w.safetensors: file is 3 bytes, too short for the 8-byte header length");
  assert_null(rt_st_read_mem("", 0, "w.safetensors", &err));
}

static void bad_header_length(void **s) {
  (void)s;
  unsigned char b[20] = {100};
  ir_error err;
  assert_null(rt_st_read_mem(b, sizeof b, "w.safetensors", &err));
  assert_string_equal(err.msg, "w.safetensors: header length 100 runs past the end of the file (20 bytes)");
  unsigned char huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80}; /* 2^63 */
  assert_null(rt_st_read_mem(huge, sizeof huge, "w.safetensors", &err));
  assert_non_null(strstr(err.msg, "runs past the end of the file"));
}

static void bad_json(void **s) {
  (void)s;
  /* missing comma: the byte offset is 8 + the index of "shape"'s quote */
  const char *h = "{\"t\":{\"dtype\":\"F32\" \"shape\":[2],\"data_offsets\":[0,8]}}";
  char want[96];
  snprintf(want, sizeof want, "bad JSON header at byte %d: expected ',' or '}'",
           (int)(8 + strchr(h + 14, ' ') + 1 - h));
  bad(h, 8, want);
  bad(T1 "} x", 8, "bad JSON header at byte 63: unexpected bytes after the header object");
  bad(T1, 8, "expected ',' or '}', found the end of the header"); /* unclosed */
  bad("", 0, "bad JSON header at byte 8: expected '{' opening the header");
  bad("[1]", 0, "expected '{' opening the header, found an array");
  bad("{\"__metadata__\":{\"a\":true}}", 0, "metadata \"a\" at byte 29: value must be a string");
  bad("{\"t\":null}", 0, "found a true/false/null literal");
  bad("{\"t\" {}}", 0, "bad JSON header at byte 13: expected ':', found an object");
  bad("{\"t", 0, "bad JSON header at byte 9: unterminated string");
  bad("{\"a\\x\":{}}", 0, "bad JSON header at byte 11: invalid escape");
  bad("{\"a\\u12\":{}}", 0, "\\u escape needs 4 hex digits");
  bad("{\"a\\ud800\":{}}", 0, "high surrogate \\ud800 without a low one");
  bad("{\"a\\udc00\":{}}", 0, "lone low surrogate \\udc00");
  bad("{\"a\\u0000\":{}}", 0, "\\u0000 inside a string is not supported");
  bad("{\"a\tb\":{}}", 0, "control character 0x09 inside a string");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 8, "leading zero");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 8,
      "integer too large");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 8,
      "tensor \"t\": unknown field \"extra\"");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 8, "tensor \"t\" (byte 13): missing \"data_offsets\"");
  bad("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", 8, "field \"dtype\" appears twice");
  bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice");
  bad("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "metadata key \"a\" appears twice");
}

static void good_json_forms(void **s) {
  (void)s;
  /* escapes decode to UTF-8: \u00e9 = C3 A9, \ud83d\ude00 = F0 9F 98 80 */
  rt_tensors *ts = good("  {\"a\\u00e9\\ud83d\\ude00\\n\\\"\\/\" : { \"shape\" : [ ] , \"dtype\":\"I32\","
                        "\"data_offsets\":[0,4]},\n\"__metadata__\":{\"k\\tx\":\"\\u20ac\"}}\t\r\n   ",
                        4);
  assert_int_equal(ts->n, 1);
  assert_string_equal(ts->t[0]->name, "a\xc3\xa9\xf0\x9f\x98\x80\n\"/");
  assert_int_equal(ts->t[0]->rank, 0);
  assert_int_equal(((int32_t *)ts->t[0]->data)[0], 0x03020100); /* bytes 0 1 2 3 */
  assert_string_equal(rt_meta_get(ts, "k\tx"), "\xe2\x82\xac");
  rt_tensors_free(ts);
  ts = good("{}", 0); /* empty, and an empty data buffer */
  assert_int_equal(ts->n, 0);
  rt_tensors_free(ts);
}

static void bad_dtype(void **s) {
  (void)s;
  bad("{\"t\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
      "tensor \"t\": dtype \"BF16\" is not supported (recall reads F32, I32, F64 and I64)");
  bad("{\"t\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype \"f32\" is not supported");
  bad("{\"t\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype at byte 22 must be a string");
}

static void bad_size_mismatch(void **s) {
  (void)s;
  bad("{\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[4,8],\"data_offsets\":[0,100]}}", 128,
      "w.safetensors: tensor \"lm_head.weight\": data_offsets [0, 100] hold 100 bytes but F32[4,8] needs 128");
  bad("{\"t\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,4]}}", 8, "hold 4 bytes but F64[] needs 8");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
      "but F32[4294967296,4294967296] needs more than 2^63");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
      "tensor \"t\": data_offsets has 1 entries, expected [begin, end]");
}

static void bad_overlap(void **s) {
  (void)s;
  bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24,
      "tensors \"a\" [0, 16] and \"b\" [8, 24] overlap");
  /* the same ranges listed the other way round, and an identical range */
  bad("{\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]},"
      "\"a\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 24, "overlap");
  bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
      "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap");
  /* touching ranges and empty tensors inside others do not overlap */
  rt_tensors *ts = good("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
  assert_int_equal(ts->n, 3);
  assert_int_equal(rt_tensors_find(ts, "e")->numel, 0);
  rt_tensors_free(ts);
}

static void bad_offsets_range(void **s) {
  (void)s;
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 12,
      "tensor \"t\": data_offsets [8, 16] run past the end of the data buffer (12 bytes)");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 12,
      "tensor \"t\": data_offsets [8, 0] end before they begin");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 12,
      "tensor \"t\": data_offsets entry -8 is negative");
}

static void uncovered_data_allowed(void **s) {
  (void)s;
  rt_tensors *ts = good("{\"t\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 32);
  int32_t *v = ts->t[0]->data;
  assert_int_equal(v[0], 0x0b0a0908);
  assert_int_equal(v[1], 0x0f0e0d0c);
  rt_tensors_free(ts);
}

static void bad_duplicate(void **s) {
  (void)s;
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
      "duplicate tensor name \"t\" (bytes 9 and 62)");
}

static void bad_shape_values(void **s) {
  (void)s;
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,8]}}", 8,
      "tensor \"t\": shape entry -3 is negative");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
      "tensor \"t\": shape entry 2.5 is not an integer");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1e2],\"data_offsets\":[0,8]}}", 8,
      "tensor \"t\": shape entry 1e2 is not an integer");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[\"3\"],\"data_offsets\":[0,8]}}", 8,
      "tensor \"t\": shape entry at byte 37 is a string, not an integer");
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "expected an array, found a number");
}

static void bad_rank(void **s) {
  (void)s;
  bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
      "tensor \"t\": rank 5 is above the maximum 4");
  rt_tensors *ts = good("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,2],\"data_offsets\":[0,8]}}", 8);
  assert_int_equal(ts->t[0]->rank, 4);
  rt_tensors_free(ts);
}

/* ---- failing writes ---- */

static void write_dev_full(void **s) {
  (void)s;
  rt_tensors *ts = sample();
  ir_error err = {{0}};
  assert_int_equal(rt_st_write("/dev/full", ts, &err), -1);
  assert_string_equal(err.msg, "/dev/full: write failed: No space left on device");
  assert_int_equal(rt_st_write("/dev/null", ts, &err), 0); /* devices are written in place */
  rt_tensors_free(ts);
}

static void write_missing_dir(void **s) {
  (void)s;
  rt_tensors *ts = sample();
  ir_error err = {{0}};
  char path[128];
  snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", tmpdir);
  assert_int_equal(rt_st_write(path, ts, &err), -1);
  assert_non_null(strstr(err.msg, "cannot create the temporary file"));
  assert_non_null(strstr(err.msg, "No such file or directory"));
  assert_int_equal(rt_st_write(tmpdir, ts, &err), -1);
  assert_non_null(strstr(err.msg, "is a directory"));
  rt_tensors_free(ts);
}

/* A write that fails half way (file size limit) leaves the old file as it
 * was and no temporary file. */
static void write_failure_leaves_nothing(void **s) {
  (void)s;
  rt_tensors *ts = sample();
  ir_error err = {{0}};
  char path[128], names[512];
  snprintf(path, sizeof path, "%s/ckpt.safetensors", tmpdir);
  assert_int_equal(rt_st_write(path, ts, &err), 0);
  rt_tensors *big = rt_tensors_new();
  int64_t d[] = {100000};
  rt_tensors_add(big, "w", RT_F32, 1, d, NULL, &err);
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 4096;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN); /* get EFBIG, not a signal */
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  int rc = rt_st_write(path, big, &err);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  assert_int_equal(rc, -1);
  assert_non_null(strstr(err.msg, "ckpt.safetensors: write failed (temporary file"));
  assert_non_null(strstr(err.msg, "File too large"));
  list_dir(names, sizeof names);
  assert_string_equal(names, "ckpt.safetensors");
  rt_tensors *back = rt_st_read(path, &err);
  assert_non_null(back);
  same_tensors(ts, back); /* the old contents, untouched */
  rt_tensors_free(back), rt_tensors_free(big), rt_tensors_free(ts);
  unlink(path);
}

static void read_missing_file(void **s) {
  (void)s;
  ir_error err;
  assert_null(rt_st_read("/nonexistent/w.safetensors", &err));
  assert_string_equal(err.msg, "/nonexistent/w.safetensors: cannot open: No such file or directory");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip),
      cmocka_unit_test(empty_container),
      cmocka_unit_test(written_layout),
      cmocka_unit_test(exact_bytes),
      cmocka_unit_test(container_api),
      cmocka_unit_test(golden_files),
      cmocka_unit_test(bad_too_short),
      cmocka_unit_test(bad_header_length),
      cmocka_unit_test(bad_json),
      cmocka_unit_test(good_json_forms),
      cmocka_unit_test(bad_dtype),
      cmocka_unit_test(bad_size_mismatch),
      cmocka_unit_test(bad_overlap),
      cmocka_unit_test(bad_offsets_range),
      cmocka_unit_test(uncovered_data_allowed),
      cmocka_unit_test(bad_duplicate),
      cmocka_unit_test(bad_shape_values),
      cmocka_unit_test(bad_rank),
      cmocka_unit_test(write_dev_full),
      cmocka_unit_test(write_missing_dir),
      cmocka_unit_test(write_failure_leaves_nothing),
      cmocka_unit_test(read_missing_file),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
