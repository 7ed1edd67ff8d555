/* parse.c — reads the text form print.c writes, plus what a person adds by
 * hand: `#` comments, blank lines, free spacing and value ids that are any
 * %identifier (%x, %12), numbered by order of definition.
 *
 *   line   := node | output                       (then an optional comment)
 *   node   := %id '=' op ["name"] [%id {',' %id}] ['{' attr {',' attr} '}']
 *             ':' type
 *   output := 'output' "name" '=' %id
 *   attr   := word ['=' (int | number | '[' [int {',' int}] ']')]
 *   type   := ('f32' | 'i32') '[' [int {',' int}] ']'
 *
 * Every node goes through ir_add, so the shape rules judge it; errors are
 * "FILE:LINE: message". */
#include "ir.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- value ids: an open-addressing map from %identifier to node ---- */

typedef struct {
  char *key; /* NULL = empty slot */
  int node, line;
} slot;

typedef struct {
  slot *s;
  size_t cap, n; /* cap is a power of two */
} idmap;

static size_t hash(const char *k, size_t len) {
  size_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)k[i]) * 16777619u;
  return h;
}

static slot *map_find(idmap *m, const char *k, size_t len) {
  if (!m->cap) return NULL;
  for (size_t i = hash(k, len) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    slot *s = &m->s[i];
    if (!s->key) return s;
    if (strlen(s->key) == len && memcmp(s->key, k, len) == 0) return s;
  }
}

static void map_put(idmap *m, const char *k, size_t len, int node, int line) {
  if (2 * (m->n + 1) > m->cap) { /* keep the load under one half */
    idmap g = {calloc(m->cap ? 2 * m->cap : 64, sizeof(slot)),
               m->cap ? 2 * m->cap : 64, m->n};
    if (!g.s) abort();
    for (size_t i = 0; i < m->cap; i++)
      if (m->s[i].key) *map_find(&g, m->s[i].key, strlen(m->s[i].key)) = m->s[i];
    free(m->s);
    *m = g;
  }
  slot *s = map_find(m, k, len);
  s->key = malloc(len + 1);
  if (!s->key) abort();
  memcpy(s->key, k, len);
  s->key[len] = '\0';
  s->node = node, s->line = line;
  m->n++;
}

static void map_free(idmap *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->s[i].key);
  free(m->s);
}

/* ---- the cursor over one line ---- */

typedef struct {
  const char *p, *eol; /* the rest of the current line */
  const char *file;
  int line;
  ir_error *err;
  ir_func *f;
  idmap ids;
} parser;

static int perr(parser *P, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int perr(parser *P, const char *fmt, ...) {
  char m[IR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  ir_err(P->err, "%.200s:%d: %.300s", P->file, P->line, m);
  return -1;
}

/* Skips blanks; a '#' ends the line. */
static void skip(parser *P) {
  while (P->p < P->eol && (*P->p == ' ' || *P->p == '\t' || *P->p == '\r'))
    P->p++;
  if (P->p < P->eol && *P->p == '#') P->p = P->eol;
}

static bool at_end(parser *P) {
  skip(P);
  return P->p == P->eol;
}

static bool accept(parser *P, char c) {
  skip(P);
  if (P->p < P->eol && *P->p == c) {
    P->p++;
    return true;
  }
  return false;
}

/* "expected WHAT, got 'TOKEN'" (or "got end of line"); returns -1. */
static int expected(parser *P, const char *what) {
  skip(P);
  if (P->p == P->eol) return perr(P, "expected %s, got end of line", what);
  char tok[24];
  size_t k = 0;
  const char *q = P->p;
  do tok[k++] = *q++;
  while (q < P->eol && k + 1 < sizeof tok && !isspace((unsigned char)*q) &&
         !strchr(",{}[]:=\"", *q));
  tok[k] = '\0';
  return perr(P, "expected %s, got '%s'", what, tok);
}

static int expect(parser *P, char c, const char *what) {
  return accept(P, c) ? 0 : expected(P, what);
}

static bool is_word(int c) { return isalnum(c) || c == '_'; }
static bool is_id(int c) { return isalnum(c) || c == '_' || c == '.'; }

/* A bare word (op, attribute or dtype name): its length, 0 if none. */
static size_t word(parser *P, const char **w) {
  skip(P);
  *w = P->p;
  while (P->p < P->eol && is_word((unsigned char)*P->p)) P->p++;
  return (size_t)(P->p - *w);
}

static bool word_is(const char *w, size_t n, const char *s) {
  return strlen(s) == n && memcmp(w, s, n) == 0;
}

static bool next_is(parser *P, char c) {
  skip(P);
  return P->p < P->eol && *P->p == c;
}

/* A %identifier: *id spans it, '%' included. */
static int value_id(parser *P, const char **id, size_t *len) {
  skip(P);
  const char *q = P->p + 1;
  if (!next_is(P, '%')) return expected(P, "a value such as %3 or %x");
  while (q < P->eol && is_id((unsigned char)*q)) q++;
  if (q == P->p + 1) return expected(P, "a value such as %3 or %x");
  *id = P->p, *len = (size_t)(q - P->p);
  P->p = q;
  return 0;
}

/* A use of a value id: the node it names. */
static int use(parser *P, int *node) {
  const char *id;
  size_t len;
  if (value_id(P, &id, &len)) return -1;
  slot *s = map_find(&P->ids, id, len);
  if (!s || !s->key) return perr(P, "%.*s is not defined", (int)len, id);
  *node = s->node;
  return 0;
}

static int hexval(int c) {
  return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

/* A quoted name into a malloc'd string; escapes \" \\ \n \t \xHH (the
 * ones print.c writes). */
static int string(parser *P, char **out) {
  if (!next_is(P, '"')) return expected(P, "a name in quotes");
  char *s = malloc((size_t)(P->eol - P->p) + 1);
  if (!s) abort();
  size_t n = 0;
  for (const char *q = P->p + 1;; q++) {
    if (q >= P->eol) {
      free(s);
      return perr(P, "unterminated string");
    }
    if (*q == '"') {
      s[n] = '\0';
      P->p = q + 1;
      *out = s;
      return 0;
    }
    if (*q != '\\') {
      s[n++] = *q;
      continue;
    }
    int c = ++q < P->eol ? *q : ' ', h1, h2;
    if (c == '"' || c == '\\') s[n++] = (char)c;
    else if (c == 'n') s[n++] = '\n';
    else if (c == 't') s[n++] = '\t';
    else if (c == 'x' && q + 2 < P->eol &&
             (h1 = hexval((unsigned char)q[1])) >= 0 &&
             (h2 = hexval((unsigned char)q[2])) >= 0 && (h1 | h2)) {
      s[n++] = (char)(h1 * 16 + h2);
      q += 2;
    } else {
      free(s);
      return perr(P, "bad escape '\\%c' in a name", c);
    }
  }
}

/* An int, optionally signed; what names it in the message. */
static int integer(parser *P, int *v, const char *what) {
  skip(P);
  const char *s = P->p;
  if (s < P->eol && (*s == '-' || *s == '+')) s++;
  if (s == P->eol || !isdigit((unsigned char)*s)) return expected(P, what);
  errno = 0;
  char *end;
  long x = strtol(P->p, &end, 10);
  if (errno || x < INT_MIN || x > INT_MAX)
    return perr(P, "%s is out of range", what);
  P->p = end;
  *v = (int)x;
  return 0;
}

/* f32[8,4] or i32[] */
static int type(parser *P, ir_type *t) {
  const char *w;
  size_t n = word(P, &w);
  if (word_is(w, n, "f32")) t->dtype = IR_F32;
  else if (word_is(w, n, "i32")) t->dtype = IR_I32;
  else {
    P->p = w;
    return expected(P, "a type such as f32[8,4]");
  }
  if (expect(P, '[', "'[' after the dtype")) return -1;
  t->rank = 0;
  if (accept(P, ']')) return 0;
  do {
    if (t->rank == IR_MAX_RANK)
      return perr(P, "a type has at most %d axes", IR_MAX_RANK);
    if (integer(P, &t->dim[t->rank++], "a size")) return -1;
  } while (accept(P, ','));
  return expect(P, ']', "',' or ']' in the type");
}

/* ---- attributes ---- */

enum { A_AXIS, A_START, A_END, A_N, A_PERM, A_TA, A_TB, A_CAUSAL, A_VALUE, N_ATTRS };

static const struct {
  const char *name;
  unsigned mask;
  bool flag; /* written bare: {tb} */
} attr_names[N_ATTRS] = {
    [A_AXIS] = {"axis", IR_ATTR_AXIS, false},
    [A_START] = {"start", IR_ATTR_RANGE, false},
    [A_END] = {"end", IR_ATTR_RANGE, false},
    [A_N] = {"n", IR_ATTR_N, false},
    [A_PERM] = {"perm", IR_ATTR_PERM, false},
    [A_TA] = {"ta", IR_ATTR_TRANS, true},
    [A_TB] = {"tb", IR_ATTR_TRANS, true},
    [A_CAUSAL] = {"causal", IR_ATTR_CAUSAL, true},
    [A_VALUE] = {"value", IR_ATTR_VALUE, false},
};

/* [1,0,2]; its length must be the input's rank (the printer prints that
 * many entries, so any others would be lost). */
static int perm(parser *P, const char *op, ir_attrs *a, int in_rank) {
  int r = 0;
  if (expect(P, '[', "'[' to start the perm")) return -1;
  if (!accept(P, ']')) {
    do {
      if (r == IR_MAX_RANK)
        return perr(P, "%s: perm has more than %d entries", op, IR_MAX_RANK);
      if (integer(P, &a->perm[r++], "an axis in the perm")) return -1;
    } while (accept(P, ','));
    if (expect(P, ']', "',' or ']' in the perm")) return -1;
  }
  if (in_rank >= 0 && r != in_rank)
    return perr(P, "%s: perm has %d entries for an input of rank %d", op, r,
                in_rank);
  return 0;
}

/* A double; strtod also reads inf, -inf and nan. It needs a terminated
 * string, so it reads a copy of the rest of the line. */
static int number(parser *P, double *v) {
  skip(P);
  size_t n = (size_t)(P->eol - P->p);
  char *buf = malloc(n + 1), *end;
  if (!buf) abort();
  memcpy(buf, P->p, n);
  buf[n] = '\0';
  *v = strtod(buf, &end);
  bool bad = end == buf || is_word((unsigned char)*end) || *end == '.';
  P->p += bad ? 0 : end - buf;
  free(buf);
  return bad ? expected(P, "a number for 'value'") : 0;
}

static int attr_value(parser *P, const char *op, int k, ir_attrs *a,
                      int in_rank) {
  switch (k) {
  case A_AXIS: return integer(P, &a->axis, "an integer for 'axis'");
  case A_START: return integer(P, &a->start, "an integer for 'start'");
  case A_END: return integer(P, &a->end, "an integer for 'end'");
  case A_N: return integer(P, &a->n, "an integer for 'n'");
  case A_PERM: return perm(P, op, a, in_rank);
  default: return number(P, &a->value);
  }
}

/* attr, ... '}' (the '{' already read); marks what it saw. */
static int attrs(parser *P, const ir_op_info *info, ir_attrs *a, int in_rank,
                 bool *seen) {
  if (accept(P, '}')) return 0;
  do {
    const char *w;
    size_t n = word(P, &w);
    if (!n) return expected(P, "an attribute name");
    int k = 0;
    while (k < N_ATTRS && !word_is(w, n, attr_names[k].name)) k++;
    if (k == N_ATTRS || !(info->attrs & attr_names[k].mask))
      return perr(P, "%s: unknown attribute '%.*s'", info->name, (int)n, w);
    if (seen[k])
      return perr(P, "%s: attribute '%s' given twice", info->name,
                  attr_names[k].name);
    seen[k] = true;
    if (attr_names[k].flag) {
      if (next_is(P, '='))
        return perr(P, "%s: attribute '%s' takes no value", info->name,
                    attr_names[k].name);
      *(k == A_TA ? &a->ta : k == A_TB ? &a->tb : &a->causal) = true;
    } else if (expect(P, '=', "'=' after the attribute name") ||
               attr_value(P, info->name, k, a, in_rank)) {
      return -1;
    }
  } while (accept(P, ','));
  return expect(P, '}', "',' or '}' in the attributes");
}

/* ---- lines ---- */

static int end_of_line(parser *P, const char *after) {
  if (at_end(P)) return 0;
  char what[48];
  snprintf(what, sizeof what, "end of line after %s", after);
  return expected(P, what);
}

/* output "name" = %id   (the word "output" already read) */
static int output_line(parser *P) {
  char *name = NULL;
  int node = -1, rc = -1;
  if (string(P, &name)) return -1;
  if (expect(P, '=', "'=' after the output's name") || use(P, &node) ||
      end_of_line(P, "the output"))
    goto done;
  if (ir_add_output(P->f, name, node, P->err) < 0) {
    perr(P, "%s", P->err->msg);
    goto done;
  }
  rc = 0;
done:
  free(name);
  return rc;
}

/* %id = op ["name"] [inputs] [{attrs}] : type */
static int node_line(parser *P) {
  const char *id, *w;
  size_t idlen, n;
  if (value_id(P, &id, &idlen)) return -1;
  slot *def = map_find(&P->ids, id, idlen);
  if (def && def->key)
    return perr(P, "%.*s is already defined on line %d", (int)idlen, id,
                def->line);
  if (expect(P, '=', "'=' after the value")) return -1;
  if (!(n = word(P, &w))) return expected(P, "an op name");
  char opname[32];
  snprintf(opname, sizeof opname, "%.*s", (int)n, w);
  int op = n < sizeof opname ? ir_op_from_name(opname) : -1;
  if (op < 0) return perr(P, "unknown op '%.*s'", (int)n, w);
  const ir_op_info *info = ir_op_get((ir_op)op);

  char *name = NULL;
  int in[IR_MAX_INPUTS], n_in = 0, rc = -1;
  ir_attrs a = {0};
  bool seen[N_ATTRS] = {0};
  ir_type t;
  if (next_is(P, '"')) {
    if (!(info->attrs & IR_ATTR_NAME)) {
      perr(P, "%s: takes no name", info->name);
      goto done;
    }
    if (string(P, &name)) goto done;
  }
  if (next_is(P, '%')) {
    do {
      if (n_in == IR_MAX_INPUTS) {
        perr(P, "%s: more than %d inputs", info->name, IR_MAX_INPUTS);
        goto done;
      }
      if (use(P, &in[n_in++])) goto done;
    } while (accept(P, ','));
  }
  int in_rank = n_in ? P->f->nodes[in[0]].type.rank : -1;
  if (accept(P, '{') && attrs(P, info, &a, in_rank, seen)) goto done;
  /* every non-flag attribute the op has must be written out */
  for (int k = 0; k < N_ATTRS; k++)
    if (!attr_names[k].flag && (info->attrs & attr_names[k].mask) && !seen[k]) {
      perr(P, "%s: missing attribute '%s'", info->name, attr_names[k].name);
      goto done;
    }
  if (!accept(P, ':')) {
    perr(P, "expected ':' and a type");
    goto done;
  }
  if (type(P, &t) || end_of_line(P, "the type")) goto done;
  int nid = ir_add(P->f, (ir_op)op, in, n_in, &a, &t, name, P->err);
  if (nid < 0) {
    perr(P, "%s", P->err->msg);
    goto done;
  }
  P->f->nodes[nid].line = P->line;
  map_put(&P->ids, id, idlen, nid, P->line);
  rc = 0;
done:
  free(name);
  return rc;
}

/* Parses text (filename only names it in messages); NULL with
 * "FILE:LINE: message" on error. The result is verified. */
ir_func *ir_parse(const char *text, const char *filename, ir_error *err) {
  ir_error local;
  parser P = {.file = filename ? filename : "<string>",
              .err = err ? err : &local, .f = ir_func_new()};
  int rc = 0;
  const char *s = text;
  for (P.line = 1; !rc && *s; P.line++) {
    const char *e = strchr(s, '\n'), *w;
    if (!e) e = s + strlen(s);
    P.p = s, P.eol = e;
    if (at_end(&P)) {
      /* blank or comment */
    } else if (*P.p == '%') {
      rc = node_line(&P);
    } else if (word(&P, &w) == 6 && word_is(w, 6, "output")) {
      rc = output_line(&P);
    } else {
      P.p = w;
      rc = expected(&P, "'%id = op ...' or 'output \"name\" = %id'");
    }
    s = *e ? e + 1 : e;
  }
  map_free(&P.ids);
  if (!rc && ir_verify(P.f, P.err)) { /* ir_add checked it all: a bug */
    char m[IR_MSG_MAX];
    snprintf(m, sizeof m, "%s", P.err->msg);
    ir_err(P.err, "%.200s: %.300s", P.file, m);
    rc = -1;
  }
  if (rc) {
    ir_func_free(P.f);
    return NULL;
  }
  return P.f;
}

/* Reads and parses a file; messages name it by its path. */
ir_func *ir_parse_file(const char *path, ir_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    ir_err(err, "%.200s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0, k;
  do {
    if (cap - len < 4096) {
      cap = cap ? 2 * cap : 65536;
      if (!(buf = realloc(buf, cap + 1))) abort();
    }
    len += k = fread(buf + len, 1, cap - len, fp);
  } while (k > 0);
  bool bad = ferror(fp);
  fclose(fp);
  buf[len] = '\0';
  if (bad || strlen(buf) != len) {
    ir_err(err, "%.200s: %s", path, bad ? "read error" : "contains a NUL byte");
    free(buf);
    return NULL;
  }
  ir_func *f = ir_parse(buf, path, err);
  free(buf);
  return f;
}
