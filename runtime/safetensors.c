/* safetensors.c — tensor containers and the safetensors format: a strict
 * reader (its own small JSON parser for exactly this header) and an atomic
 * writer laid out like the reference implementation. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian, as this code assumes the host is"
#endif

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "recall: out of memory (%zu bytes)\n", n);
    abort();
  }
  return q;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xrealloc(NULL, n), s, n);
}

static int fail(ir_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(ir_error *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* ---- dtypes and containers ---- */

static const struct {
  const char *name;
  size_t size;
} dtypes[] = {[RT_F32] = {"F32", 4}, [RT_I32] = {"I32", 4},
              [RT_F64] = {"F64", 8}, [RT_I64] = {"I64", 8}};
enum { N_DTYPES = sizeof dtypes / sizeof dtypes[0] };

const char *rt_dtype_name(rt_dtype dt) { return dtypes[dt].name; }
size_t rt_dtype_size(rt_dtype dt) { return dtypes[dt].size; }

static bool is_float(rt_dtype dt) { return dt == RT_F32 || dt == RT_F64; }

char *rt_tensor_type_str(const rt_tensor *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s[", rt_dtype_name(t->dtype));
  for (int i = 0; i < t->rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld",
                          (long long)t->dim[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

rt_tensors *rt_tensors_new(void) {
  rt_tensors *ts = xrealloc(NULL, sizeof *ts);
  memset(ts, 0, sizeof *ts);
  ts->source = xstrdup("");
  return ts;
}

void rt_tensors_free(rt_tensors *ts) {
  if (!ts) return;
  for (int i = 0; i < ts->n; i++) {
    free(ts->t[i]->name);
    free(ts->t[i]->data);
    free(ts->t[i]);
  }
  for (int i = 0; i < ts->n_meta; i++) {
    free(ts->meta[i].key);
    free(ts->meta[i].value);
  }
  free(ts->t);
  free(ts->meta);
  free(ts->source);
  free(ts);
}

/* The name messages start with: the file, or "tensors" for a container
 * built in memory. */
static const char *src(const rt_tensors *ts) {
  return ts->source && ts->source[0] ? ts->source : "tensors";
}

rt_tensor *rt_tensors_find(const rt_tensors *ts, const char *name) {
  for (int i = 0; i < ts->n; i++)
    if (strcmp(ts->t[i]->name, name) == 0) return ts->t[i];
  return NULL;
}

/* numel * size in bytes, or -1 if it overflows int64. */
static int64_t nbytes(rt_dtype dt, int rank, const int64_t *dim) {
  int64_t n = (int64_t)rt_dtype_size(dt);
  for (int i = 0; i < rank; i++)
    if (__builtin_mul_overflow(n, dim[i], &n)) return -1;
  return n;
}

rt_tensor *rt_tensors_add(rt_tensors *ts, const char *name, rt_dtype dt,
                          int rank, const int64_t *dim, const void *data,
                          ir_error *err) {
  if (rt_tensors_find(ts, name)) {
    fail(err, "%s: duplicate tensor name \"%s\"", src(ts), name);
    return NULL;
  }
  if (rank < 0 || rank > RT_MAX_RANK) {
    fail(err, "%s: tensor \"%s\": rank %d is above the maximum %d", src(ts),
         name, rank, RT_MAX_RANK);
    return NULL;
  }
  for (int i = 0; i < rank; i++)
    if (dim[i] < 0) {
      fail(err, "%s: tensor \"%s\": negative size %lld", src(ts), name,
           (long long)dim[i]);
      return NULL;
    }
  int64_t bytes = nbytes(dt, rank, dim);
  if (bytes < 0 || (uint64_t)bytes > SIZE_MAX / 2) {
    fail(err, "%s: tensor \"%s\" is too large", src(ts), name);
    return NULL;
  }
  rt_tensor *t = xrealloc(NULL, sizeof *t);
  memset(t, 0, sizeof *t);
  t->name = xstrdup(name);
  t->dtype = dt;
  t->rank = rank;
  for (int i = 0; i < rank; i++) t->dim[i] = dim[i];
  t->numel = bytes / (int64_t)rt_dtype_size(dt);
  t->data = xrealloc(NULL, (size_t)bytes); /* malloc: aligned for any dtype */
  if (data) memcpy(t->data, data, (size_t)bytes);
  else memset(t->data, 0, (size_t)bytes);
  if (ts->n == ts->cap) {
    ts->cap = ts->cap ? 2 * ts->cap : 16;
    ts->t = xrealloc(ts->t, sizeof *ts->t * (size_t)ts->cap);
  }
  ts->t[ts->n++] = t;
  return t;
}

int rt_tensor_convert(rt_tensor *t, rt_dtype to, ir_error *err) {
  if (t->dtype == to) return 0;
  if (is_float(t->dtype) != is_float(to))
    return fail(err, "tensor \"%s\": cannot convert %s to %s", t->name,
                rt_dtype_name(t->dtype), rt_dtype_name(to));
  size_t n = (size_t)t->numel;
  void *out = xrealloc(NULL, n * rt_dtype_size(to));
  for (size_t i = 0; i < n; i++) {
    if (to == RT_F32) {
      double x = ((double *)t->data)[i];
      if (isfinite(x) && fabs(x) >= 0x1.ffffffp+127) goto range; /* -> inf */
      ((float *)out)[i] = (float)x;
    } else if (to == RT_F64) {
      ((double *)out)[i] = ((float *)t->data)[i];
    } else if (to == RT_I32) {
      int64_t x = ((int64_t *)t->data)[i];
      if (x < INT32_MIN || x > INT32_MAX) goto range;
      ((int32_t *)out)[i] = (int32_t)x;
    } else {
      ((int64_t *)out)[i] = ((int32_t *)t->data)[i];
    }
    continue;
  range:
    free(out);
    return fail(err, "tensor \"%s\": element %zu does not fit in %s", t->name,
                i, rt_dtype_name(to));
  }
  free(t->data);
  t->data = out;
  t->dtype = to;
  return 0;
}

rt_tensor *rt_tensors_expect(rt_tensors *ts, const char *name, rt_dtype dt,
                             int rank, const int64_t *dim, ir_error *err) {
  rt_tensor *t = rt_tensors_find(ts, name);
  rt_tensor want = {.dtype = dt, .rank = rank};
  for (int i = 0; i < rank && i < RT_MAX_RANK; i++) want.dim[i] = dim[i];
  char a[96], b[96];
  if (!t) {
    fail(err, "%s: no tensor \"%s\" (expected %s)", src(ts), name,
         rt_tensor_type_str(&want, b, sizeof b));
    return NULL;
  }
  bool same = t->rank == rank && is_float(t->dtype) == is_float(dt);
  for (int i = 0; same && i < rank; i++) same = t->dim[i] == dim[i];
  if (!same) {
    fail(err, "%s: tensor \"%s\" is %s, expected %s", src(ts), name,
         rt_tensor_type_str(t, a, sizeof a),
         rt_tensor_type_str(&want, b, sizeof b));
    return NULL;
  }
  ir_error e;
  if (rt_tensor_convert(t, dt, &e) < 0) {
    fail(err, "%s: %s", src(ts), e.msg);
    return NULL;
  }
  return t;
}

const char *rt_meta_get(const rt_tensors *ts, const char *key) {
  for (int i = 0; i < ts->n_meta; i++)
    if (strcmp(ts->meta[i].key, key) == 0) return ts->meta[i].value;
  return NULL;
}

void rt_meta_set(rt_tensors *ts, const char *key, const char *value) {
  for (int i = 0; i < ts->n_meta; i++)
    if (strcmp(ts->meta[i].key, key) == 0) {
      free(ts->meta[i].value);
      ts->meta[i].value = xstrdup(value);
      return;
    }
  if (ts->n_meta == ts->cap_meta) {
    ts->cap_meta = ts->cap_meta ? 2 * ts->cap_meta : 16;
    ts->meta = xrealloc(ts->meta, sizeof *ts->meta * (size_t)ts->cap_meta);
  }
  ts->meta[ts->n_meta].key = xstrdup(key);
  ts->meta[ts->n_meta].value = xstrdup(value);
  ts->n_meta++;
}

/* ---- the JSON header: a cursor parser for exactly this schema ----
 * Accepted: objects, arrays, strings (all escapes incl. \uXXXX and
 * surrogate pairs, no NUL), integers. true/false/null and fractions are
 * rejected where they appear. Positions in messages are byte offsets in
 * the file (the header starts at byte 8). */

typedef struct {
  const char *s;
  size_t n, pos;
  const char *file;
  ir_error *err;
} jcur;

static int jfail(jcur *c, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int jfail(jcur *c, size_t at, const char *fmt, ...) {
  if (!c->err) return -1;
  char m[IR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  return fail(c->err, "%s: bad JSON header at byte %zu: %s", c->file, at + 8,
              m);
}

static void jws(jcur *c) {
  while (c->pos < c->n && c->s[c->pos] && strchr(" \t\r\n", c->s[c->pos]))
    c->pos++;
}

static int jpeek(jcur *c) {
  jws(c);
  return c->pos < c->n ? (unsigned char)c->s[c->pos] : -1;
}

/* Describe what is at the cursor, for "expected X, found Y". */
static const char *jfound(jcur *c) {
  int ch = jpeek(c);
  if (ch < 0) return "the end of the header";
  if (ch == 't' || ch == 'f' || ch == 'n')
    return "a true/false/null literal (not used in safetensors headers)";
  if (ch == '"') return "a string";
  if (ch == '{') return "an object";
  if (ch == '[') return "an array";
  if (ch == '-' || (ch >= '0' && ch <= '9')) return "a number";
  return "an unexpected character";
}

static int jexpect(jcur *c, char ch, const char *what) {
  if (jpeek(c) != (unsigned char)ch)
    return jfail(c, c->pos, "expected %s, found %s", what, jfound(c));
  c->pos++;
  return 0;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static int jhex4(jcur *c, unsigned *u) {
  if (c->n - c->pos < 4)
    return jfail(c, c->pos, "\\u escape needs 4 hex digits");
  *u = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval((unsigned char)c->s[c->pos + (size_t)i]);
    if (h < 0) return jfail(c, c->pos, "\\u escape needs 4 hex digits");
    *u = *u * 16 + (unsigned)h;
  }
  c->pos += 4;
  return 0;
}

/* A string at the cursor into a malloc'd, NUL-terminated UTF-8 copy. */
static int jstring(jcur *c, char **out) {
  if (jexpect(c, '"', "a string") < 0) return -1;
  size_t start = c->pos - 1, cap = 16, len = 0;
  char *b = xrealloc(NULL, cap);
  for (;;) {
    if (c->pos >= c->n) {
      free(b);
      return jfail(c, start, "unterminated string");
    }
    unsigned char ch = (unsigned char)c->s[c->pos++];
    unsigned u = ch;
    size_t at = c->pos - 1;
    if (ch == '"') break;
    if (ch < 0x20) {
      free(b);
      return jfail(c, at, "control character 0x%02x inside a string", ch);
    }
    if (ch == '\\') {
      int e = c->pos < c->n ? c->s[c->pos++] : -1;
      static const char esc[] = "\"\\/bfnrt", val[] = "\"\\/\b\f\n\r\t";
      const char *plain = e > 0 ? strchr(esc, e) : NULL;
      if (plain) {
        u = (unsigned char)val[plain - esc];
      } else if (e == 'u') {
        if (jhex4(c, &u) < 0) goto bad;
        if (u >= 0xdc00 && u <= 0xdfff) {
          jfail(c, at, "lone low surrogate \\u%04x", u);
          goto bad;
        }
        if (u >= 0xd800 && u <= 0xdbff) {
          unsigned lo;
          if (c->n - c->pos < 2 || c->s[c->pos] != '\\' ||
              c->s[c->pos + 1] != 'u') {
            jfail(c, at, "high surrogate \\u%04x without a low one", u);
            goto bad;
          }
          c->pos += 2;
          if (jhex4(c, &lo) < 0) goto bad;
          if (lo < 0xdc00 || lo > 0xdfff) {
            jfail(c, at, "high surrogate \\u%04x without a low one", u);
            goto bad;
          }
          u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (u == 0) {
          jfail(c, at, "\\u0000 inside a string is not supported");
          goto bad;
        }
      } else {
        jfail(c, at, "invalid escape in a string");
        goto bad;
      }
    }
    if (len + 5 > cap) b = xrealloc(b, cap *= 2);
    if (ch == '\\' && u >= 0x80) { /* encode the code point as UTF-8 */
      if (u < 0x800) {
        b[len++] = (char)(0xc0 | (u >> 6));
      } else if (u < 0x10000) {
        b[len++] = (char)(0xe0 | (u >> 12));
        b[len++] = (char)(0x80 | ((u >> 6) & 0x3f));
      } else {
        b[len++] = (char)(0xf0 | (u >> 18));
        b[len++] = (char)(0x80 | ((u >> 12) & 0x3f));
        b[len++] = (char)(0x80 | ((u >> 6) & 0x3f));
      }
      b[len++] = (char)(0x80 | (u & 0x3f));
    } else {
      b[len++] = (char)u;
    }
  }
  b[len] = 0;
  *out = b;
  return 0;
bad:
  free(b);
  return -1;
}

/* A JSON number at the cursor. Returns 1 and *v for an integer, 0 for a
 * valid number with a fraction or exponent (the caller says why that is
 * wrong where it is), -1 for malformed input or an integer beyond int64. */
static int jnumber(jcur *c, int64_t *v) {
  jws(c);
  size_t at = c->pos, p = c->pos;
  bool neg = p < c->n && c->s[p] == '-';
  if (neg) p++;
  if (p >= c->n || c->s[p] < '0' || c->s[p] > '9')
    return jfail(c, at, "expected a number, found %s", jfound(c));
  if (c->s[p] == '0' && p + 1 < c->n && c->s[p + 1] >= '0' &&
      c->s[p + 1] <= '9')
    return jfail(c, at, "number with a leading zero");
  uint64_t mag = 0;
  bool big = false;
  for (; p < c->n && c->s[p] >= '0' && c->s[p] <= '9'; p++) {
    unsigned dg = (unsigned)(c->s[p] - '0');
    if (mag > (UINT64_MAX - dg) / 10) big = true;
    else mag = mag * 10 + dg;
  }
  bool integer = true;
  if (p < c->n && c->s[p] == '.') {
    integer = false;
    if (++p >= c->n || c->s[p] < '0' || c->s[p] > '9')
      return jfail(c, at, "malformed number");
    while (p < c->n && c->s[p] >= '0' && c->s[p] <= '9') p++;
  }
  if (p < c->n && (c->s[p] == 'e' || c->s[p] == 'E')) {
    integer = false;
    p++;
    if (p < c->n && (c->s[p] == '+' || c->s[p] == '-')) p++;
    if (p >= c->n || c->s[p] < '0' || c->s[p] > '9')
      return jfail(c, at, "malformed number");
    while (p < c->n && c->s[p] >= '0' && c->s[p] <= '9') p++;
  }
  c->pos = p;
  if (!integer) return 0;
  if (big || mag > (uint64_t)INT64_MAX + neg)
    return jfail(c, at, "integer too large");
  *v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
  return 1;
}

/* After a member or element: ',' (returns 1) or the closing `close` (0). */
static int jnext(jcur *c, char close) {
  int ch = jpeek(c);
  if (ch == ',') {
    c->pos++;
    return 1;
  }
  if (ch == (unsigned char)close) {
    c->pos++;
    return 0;
  }
  return jfail(c, c->pos, "expected ',' or '%c', found %s", close, jfound(c));
}

typedef struct {
  char *name;
  size_t at; /* byte offset of the name, for messages */
  int dtype; /* rt_dtype, -1 until seen */
  int rank;  /* -1 until seen */
  int64_t dim[RT_MAX_RANK];
  int64_t begin, end;
  bool has_offsets;
} tinfo;

/* An array of integers, at most `max` kept; *count gets the full length.
 * `what` names the array in messages. */
static int jints(jcur *c, const char *tname, const char *what, int64_t *out,
                 int max, int *count) {
  if (jexpect(c, '[', "an array") < 0) return -1;
  *count = 0;
  if (jpeek(c) == ']') {
    c->pos++;
    return 0;
  }
  for (;;) {
    int64_t v = 0;
    size_t at = (jws(c), c->pos);
    int ch = jpeek(c);
    if (ch != '-' && !(ch >= '0' && ch <= '9'))
      return fail(c->err, "%s: tensor \"%s\": %s entry at byte %zu is %s, "
                  "not an integer", c->file, tname, what, at + 8, jfound(c));
    int r = jnumber(c, &v);
    if (r < 0) return -1;
    if (r == 0)
      return fail(c->err, "%s: tensor \"%s\": %s entry %.*s is not an "
                  "integer", c->file, tname, what, (int)(c->pos - at),
                  c->s + at);
    if (v < 0)
      return fail(c->err, "%s: tensor \"%s\": %s entry %lld is negative",
                  c->file, tname, what, (long long)v);
    if (*count < max) out[*count] = v;
    ++*count;
    r = jnext(c, ']');
    if (r <= 0) return r;
  }
}

static int parse_tensor(jcur *c, tinfo *t) {
  size_t at = (jws(c), c->pos);
  if (jexpect(c, '{', "an object describing the tensor") < 0) return -1;
  bool seen_dtype = false, seen_shape = false;
  if (jpeek(c) == '}') c->pos++;
  else
    for (;;) {
      char *key;
      size_t kat = (jws(c), c->pos);
      if (jstring(c, &key) < 0) return -1;
      int r = jexpect(c, ':', "':'");
      bool dup = (!strcmp(key, "dtype") && seen_dtype) ||
                 (!strcmp(key, "shape") && seen_shape) ||
                 (!strcmp(key, "data_offsets") && t->has_offsets);
      if (r == 0 && dup)
        r = fail(c->err, "%s: tensor \"%s\": field \"%s\" appears twice",
                 c->file, t->name, key);
      if (r == 0 && !strcmp(key, "dtype")) {
        char *dt;
        size_t dat = (jws(c), c->pos);
        seen_dtype = true;
        if (jpeek(c) != '"')
          r = fail(c->err, "%s: tensor \"%s\": dtype at byte %zu must be a "
                   "string", c->file, t->name, dat + 8);
        else if ((r = jstring(c, &dt)) == 0) {
          for (int i = 0; i < N_DTYPES; i++)
            if (!strcmp(dt, dtypes[i].name)) t->dtype = i;
          if (t->dtype < 0)
            r = fail(c->err, "%s: tensor \"%s\": dtype \"%s\" is not "
                     "supported (recall reads F32, I32, F64 and I64)",
                     c->file, t->name, dt);
          free(dt);
        }
      } else if (r == 0 && !strcmp(key, "shape")) {
        seen_shape = true;
        r = jints(c, t->name, "shape", t->dim, RT_MAX_RANK, &t->rank);
        if (r == 0 && t->rank > RT_MAX_RANK)
          r = fail(c->err, "%s: tensor \"%s\": rank %d is above the maximum "
                   "%d", c->file, t->name, t->rank, RT_MAX_RANK);
      } else if (r == 0 && !strcmp(key, "data_offsets")) {
        int64_t o[2] = {0, 0};
        int k;
        t->has_offsets = true;
        r = jints(c, t->name, "data_offsets", o, 2, &k);
        if (r == 0 && k != 2)
          r = fail(c->err, "%s: tensor \"%s\": data_offsets has %d entries, "
                   "expected [begin, end]", c->file, t->name, k);
        t->begin = o[0], t->end = o[1];
      } else if (r == 0) {
        r = fail(c->err, "%s: tensor \"%s\": unknown field \"%s\" at byte "
                 "%zu", c->file, t->name, key, kat + 8);
      }
      free(key);
      if (r < 0) return -1;
      r = jnext(c, '}');
      if (r < 0) return -1;
      if (r == 0) break;
    }
  const char *missing = !seen_dtype ? "dtype" : !seen_shape ? "shape"
                        : !t->has_offsets ? "data_offsets" : NULL;
  if (missing)
    return fail(c->err, "%s: tensor \"%s\" (byte %zu): missing \"%s\"",
                c->file, t->name, at + 8, missing);
  return 0;
}

static int parse_meta(jcur *c, rt_tensors *ts) {
  if (jexpect(c, '{', "an object of metadata strings") < 0) return -1;
  if (jpeek(c) == '}') {
    c->pos++;
    return 0;
  }
  for (;;) {
    char *key, *val;
    if (jstring(c, &key) < 0) return -1;
    int r = jexpect(c, ':', "':'");
    size_t vat = (jws(c), c->pos);
    if (r == 0 && rt_meta_get(ts, key))
      r = fail(c->err, "%s: metadata key \"%s\" appears twice", c->file, key);
    if (r == 0 && jpeek(c) != '"')
      r = fail(c->err, "%s: metadata \"%s\" at byte %zu: value must be a "
               "string, found %s", c->file, key, vat + 8, jfound(c));
    if (r == 0 && (r = jstring(c, &val)) == 0) {
      rt_meta_set(ts, key, val);
      free(val);
    }
    free(key);
    if (r < 0) return -1;
    r = jnext(c, '}');
    if (r <= 0) return r;
  }
}

/* The root object: metadata into ts, tensor entries into *tv / *nt. */
static int parse_header(jcur *c, rt_tensors *ts, tinfo **tv, int *nt) {
  int cap = 0;
  bool seen_meta = false;
  if (jexpect(c, '{', "'{' opening the header") < 0) return -1;
  if (jpeek(c) == '}') c->pos++;
  else
    for (;;) {
      char *key;
      size_t at = (jws(c), c->pos);
      if (jstring(c, &key) < 0) return -1;
      if (jexpect(c, ':', "':'") < 0) {
        free(key);
        return -1;
      }
      int r = 0;
      if (!strcmp(key, "__metadata__")) {
        free(key);
        r = seen_meta ? fail(c->err, "%s: \"__metadata__\" appears twice",
                             c->file)
                      : parse_meta(c, ts);
        seen_meta = true;
      } else {
        for (int i = 0; i < *nt; i++)
          if (!strcmp((*tv)[i].name, key)) {
            fail(c->err, "%s: duplicate tensor name \"%s\" (bytes %zu and "
                 "%zu)", c->file, key, (*tv)[i].at + 8, at + 8);
            free(key);
            return -1;
          }
        if (*nt == cap) {
          cap = cap ? 2 * cap : 16;
          *tv = xrealloc(*tv, sizeof **tv * (size_t)cap);
        }
        (*tv)[(*nt)++] = (tinfo){.name = key, .at = at, .dtype = -1, .rank = -1};
        r = parse_tensor(c, &(*tv)[*nt - 1]);
      }
      if (r < 0) return -1;
      r = jnext(c, '}');
      if (r < 0) return -1;
      if (r == 0) break;
    }
  jws(c);
  if (c->pos < c->n)
    return jfail(c, c->pos, "unexpected bytes after the header object");
  return 0;
}

/* ---- reading ---- */

static int cmp_begin(const void *a, const void *b) {
  const tinfo *x = *(tinfo *const *)a, *y = *(tinfo *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Offsets in range, sizes matching shapes, and no two ranges overlapping
 * (empty ranges overlap nothing). */
static int check_layout(const char *file, tinfo *tv, int nt, uint64_t dlen,
                        ir_error *err) {
  for (int i = 0; i < nt; i++) {
    tinfo *t = &tv[i];
    rt_tensor ty = {.dtype = t->dtype, .rank = t->rank};
    memcpy(ty.dim, t->dim, sizeof ty.dim);
    char ts[96];
    if (t->end < t->begin)
      return fail(err, "%s: tensor \"%s\": data_offsets [%lld, %lld] end "
                  "before they begin", file, t->name, (long long)t->begin,
                  (long long)t->end);
    if ((uint64_t)t->end > dlen)
      return fail(err, "%s: tensor \"%s\": data_offsets [%lld, %lld] run "
                  "past the end of the data buffer (%llu bytes)", file,
                  t->name, (long long)t->begin, (long long)t->end,
                  (unsigned long long)dlen);
    int64_t need = nbytes(t->dtype, t->rank, t->dim);
    if (need != t->end - t->begin) {
      char nb[32];
      if (need < 0) snprintf(nb, sizeof nb, "more than 2^63");
      else snprintf(nb, sizeof nb, "%lld", (long long)need);
      return fail(err, "%s: tensor \"%s\": data_offsets [%lld, %lld] hold "
                  "%lld bytes but %s needs %s", file, t->name,
                  (long long)t->begin, (long long)t->end,
                  (long long)(t->end - t->begin),
                  rt_tensor_type_str(&ty, ts, sizeof ts), nb);
    }
  }
  tinfo **by = xrealloc(NULL, sizeof *by * (size_t)nt);
  int m = 0;
  for (int i = 0; i < nt; i++)
    if (tv[i].end > tv[i].begin) by[m++] = &tv[i];
  qsort(by, (size_t)m, sizeof *by, cmp_begin);
  for (int i = 1; i < m; i++)
    if (by[i]->begin < by[i - 1]->end) {
      fail(err, "%s: tensors \"%s\" [%lld, %lld] and \"%s\" [%lld, %lld] "
           "overlap", file, by[i - 1]->name, (long long)by[i - 1]->begin,
           (long long)by[i - 1]->end, by[i]->name, (long long)by[i]->begin,
           (long long)by[i]->end);
      free(by);
      return -1;
    }
  free(by);
  return 0;
}

rt_tensors *rt_st_read_mem(const void *buf, size_t len, const char *name,
                           ir_error *err) {
  const unsigned char *b = buf;
  if (len < 8) {
    fail(err, "%s: file is %zu bytes, too short for the 8-byte header length",
         name, len);
    return NULL;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
  if (hlen > len - 8) {
    fail(err, "%s: header length %llu runs past the end of the file (%zu "
         "bytes)", name, (unsigned long long)hlen, len);
    return NULL;
  }
  rt_tensors *ts = rt_tensors_new();
  free(ts->source);
  ts->source = xstrdup(name);
  jcur c = {.s = (const char *)b + 8, .n = (size_t)hlen, .file = name,
            .err = err};
  tinfo *tv = NULL;
  int nt = 0, r = parse_header(&c, ts, &tv, &nt);
  if (r == 0) r = check_layout(name, tv, nt, len - 8 - hlen, err);
  const unsigned char *data = b + 8 + hlen;
  for (int i = 0; i < nt && r == 0; i++)
    if (!rt_tensors_add(ts, tv[i].name, (rt_dtype)tv[i].dtype, tv[i].rank,
                        tv[i].dim, data + tv[i].begin, err))
      r = -1;
  for (int i = 0; i < nt; i++) free(tv[i].name);
  free(tv);
  if (r < 0) {
    rt_tensors_free(ts);
    return NULL;
  }
  return ts;
}

rt_tensors *rt_st_read(const char *path, ir_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail(err, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  size_t len = 0, cap = 1 << 16;
  unsigned char *buf = xrealloc(NULL, cap);
  for (;;) {
    if (len == cap) buf = xrealloc(buf, cap *= 2);
    ssize_t k = read(fd, buf + len, cap - len);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      fail(err, "%s: read failed: %s", path, strerror(errno));
      free(buf);
      close(fd);
      return NULL;
    }
    if (k == 0) break;
    len += (size_t)k;
  }
  close(fd);
  rt_tensors *ts = rt_st_read_mem(buf, len, path, err);
  free(buf);
  return ts;
}

/* ---- writing ---- */

typedef struct {
  char *s;
  size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1024;
    b->s = xrealloc(b->s, b->cap);
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  sb_add(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* A JSON string: quotes, backslashes and control bytes escaped; other
 * bytes (UTF-8) as they are. */
static void sb_str(sbuf *b, const char *s) {
  sb_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      char e[2] = {'\\', (char)ch};
      sb_add(b, e, 2);
    } else if (ch < 0x20) { /* short forms where JSON has them, as serde */
      static const char ctl[] = "\b\f\n\r\t", letter[] = "bfnrt";
      const char *sh = strchr(ctl, ch);
      if (sh) sb_add(b, (char[]){'\\', letter[sh - ctl]}, 2);
      else sb_printf(b, "\\u%04x", ch);
    } else {
      sb_add(b, s, 1);
    }
  }
  sb_add(b, "\"", 1);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(rt_tensor *const *)a)->name, (*(rt_tensor *const *)b)->name);
}

/* The reference's data order: wider dtypes first, then by name, so every
 * tensor is naturally aligned with no gaps. */
static int cmp_layout(const void *a, const void *b) {
  const rt_tensor *x = *(rt_tensor *const *)a, *y = *(rt_tensor *const *)b;
  size_t sx = rt_dtype_size(x->dtype), sy = rt_dtype_size(y->dtype);
  if (sx != sy) return sx > sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int cmp_meta(const void *a, const void *b) {
  return strcmp(((const rt_meta *)a)->key, ((const rt_meta *)b)->key);
}

/* The 8-byte length and the padded JSON header; fills *order with the
 * tensors in data order. */
static void build_header(const rt_tensors *ts, sbuf *h, rt_tensor **order) {
  int n = ts->n;
  rt_tensor **byname = xrealloc(NULL, sizeof *byname * (size_t)n);
  int64_t *off = xrealloc(NULL, sizeof *off * (size_t)n);
  if (n > 0) { /* an empty container has no tensor array at all */
    memcpy(order, ts->t, sizeof *order * (size_t)n);
    memcpy(byname, ts->t, sizeof *byname * (size_t)n);
    qsort(order, (size_t)n, sizeof *order, cmp_layout);
    qsort(byname, (size_t)n, sizeof *byname, cmp_name);
  }
  sb_add(h, "\0\0\0\0\0\0\0\0", 8);
  sb_add(h, "{", 1);
  if (ts->n_meta) {
    rt_meta *m = xrealloc(NULL, sizeof *m * (size_t)ts->n_meta);
    memcpy(m, ts->meta, sizeof *m * (size_t)ts->n_meta);
    qsort(m, (size_t)ts->n_meta, sizeof *m, cmp_meta);
    sb_add(h, "\"__metadata__\":{", 16);
    for (int i = 0; i < ts->n_meta; i++) {
      if (i) sb_add(h, ",", 1);
      sb_str(h, m[i].key);
      sb_add(h, ":", 1);
      sb_str(h, m[i].value);
    }
    sb_add(h, "}", 1);
    free(m);
  }
  int64_t pos = 0;
  for (int i = 0; i < n; i++) {
    int j = 0;
    while (byname[j] != order[i]) j++;
    off[j] = pos;
    pos += order[i]->numel * (int64_t)rt_dtype_size(order[i]->dtype);
  }
  for (int j = 0; j < n; j++) {
    const rt_tensor *t = byname[j];
    if (j || ts->n_meta) sb_add(h, ",", 1);
    sb_str(h, t->name);
    sb_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", rt_dtype_name(t->dtype));
    for (int i = 0; i < t->rank; i++)
      sb_printf(h, i ? ",%lld" : "%lld", (long long)t->dim[i]);
    int64_t end = off[j] + t->numel * (int64_t)rt_dtype_size(t->dtype);
    sb_printf(h, "],\"data_offsets\":[%lld,%lld]}", (long long)off[j],
              (long long)end);
  }
  sb_add(h, "}", 1);
  while (h->n % 8) sb_add(h, " ", 1);
  uint64_t hl = h->n - 8;
  for (int i = 0; i < 8; i++) h->s[i] = (char)(hl >> (8 * i) & 0xff);
  free(byname);
  free(off);
}

static int write_all(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n) {
    ssize_t k = write(fd, s, n);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -1;
    if (k == 0) {
      errno = ENOSPC;
      return -1;
    }
    s += k, n -= (size_t)k;
  }
  return 0;
}

/* Header then every tensor's bytes; on failure errno says why. */
static int write_body(int fd, const sbuf *h, rt_tensor **order, int n) {
  if (write_all(fd, h->s, h->n) < 0) return -1;
  for (int i = 0; i < n; i++)
    if (write_all(fd, order[i]->data, (size_t)order[i]->numel *
                                          rt_dtype_size(order[i]->dtype)) < 0)
      return -1;
  return 0;
}

/* Make the rename durable; best effort (some file systems refuse). */
static void sync_dir(const char *path) {
  char *d = xstrdup(path);
  char *slash = strrchr(d, '/');
  const char *dir = slash ? (slash == d ? "/" : (*slash = 0, d)) : ".";
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(d);
}

int rt_st_write(const char *path, const rt_tensors *ts, ir_error *err) {
  static atomic_uint counter;
  sbuf h = {0};
  rt_tensor **order = xrealloc(NULL, sizeof *order * (size_t)(ts->n + 1));
  build_header(ts, &h, order);
  int rc = -1, fd = -1;
  char *tmp = NULL;
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    /* A device or FIFO cannot be replaced by rename: write in place. */
    if (S_ISDIR(st.st_mode)) {
      fail(err, "%s: cannot write: is a directory", path);
    } else if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
      fail(err, "%s: cannot open for writing: %s", path, strerror(errno));
    } else if (write_body(fd, &h, order, ts->n) < 0) {
      fail(err, "%s: write failed: %s", path, strerror(errno));
    } else {
      rc = 0;
    }
    if (fd >= 0 && close(fd) < 0 && rc == 0)
      rc = fail(err, "%s: close failed: %s", path, strerror(errno));
    goto done;
  }
  size_t tn = strlen(path) + 64;
  tmp = xrealloc(NULL, tn);
  for (int tries = 0; fd < 0; tries++) {
    snprintf(tmp, tn, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&counter, 1));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || tries > 100)) {
      fail(err, "%s: cannot create the temporary file %s: %s", path, tmp,
           strerror(errno));
      goto done;
    }
  }
  const char *what = NULL;
  if (write_body(fd, &h, order, ts->n) < 0) what = "write";
  else if (fsync(fd) < 0) what = "fsync";
  int e = errno;
  if (close(fd) < 0 && !what) what = "close", e = errno;
  if (!what && rename(tmp, path) < 0) what = "rename", e = errno;
  if (what) {
    fail(err, "%s: %s failed (temporary file %s): %s", path, what, tmp,
         strerror(e));
    unlink(tmp);
    goto done;
  }
  sync_dir(path);
  rc = 0;
done:
  free(tmp);
  free(order);
  free(h.s);
  return rc;
}
