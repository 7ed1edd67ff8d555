/* print.c — the IR's text form, one node a line:
 *   %3 = matmul %1, %2 {tb} : f32[8,8]
 *   %0 = param "wq.weight" : f32[8,8]
 *   output "loss" = %12
 * parse.c reads it back; print -> parse -> print is the identity, so every
 * field that matters is printed and nothing else (const data is not: the
 * text is the graph, not the data). */
#include "ir.h"

#include <math.h>
#include <stdlib.h>

/* A quoted name: \" and \\ escaped, and control bytes too so that a name
 * can never break the one-node-a-line layout. */
static void print_name(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
    else if (*p == '\n') fputs("\\n", out);
    else if (*p == '\t') fputs("\\t", out);
    else if (*p < 0x20 || *p == 0x7f) fprintf(out, "\\x%02x", *p);
    else fputc(*p, out);
  }
  fputc('"', out);
}

/* The shortest %g form that reads back to the same double (%.17g always
 * does), so 1e-5 prints as 1e-05; inf and nan are spelled so that strtod
 * reads them back (glibc would print "-nan" for some NaNs). */
static void print_value(FILE *out, double v) {
  if (isnan(v)) fputs("nan", out);
  else if (isinf(v)) fputs(v > 0 ? "inf" : "-inf", out);
  else {
    char buf[32];
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(buf, sizeof buf, "%.*g", prec, v);
      if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, out);
  }
}

/* Attributes in the fixed order axis, start, end, n, perm, ta, tb, causal,
 * value; only those in the op's mask, booleans only when true. */
static void print_attrs(FILE *out, const ir_node *n, unsigned mask) {
  const ir_attrs *a = &n->attr;
  int k = 0;
#define SEP() fputs(k++ ? ", " : " {", out)
  if (mask & IR_ATTR_AXIS) SEP(), fprintf(out, "axis=%d", a->axis);
  if (mask & IR_ATTR_RANGE)
    SEP(), fprintf(out, "start=%d", a->start), SEP(), fprintf(out, "end=%d", a->end);
  if (mask & IR_ATTR_N) SEP(), fprintf(out, "n=%d", a->n);
  if (mask & IR_ATTR_PERM) {
    /* permute keeps the rank, so the node's own rank is the perm's length */
    SEP(), fputs("perm=[", out);
    int r = n->type.rank < 0 ? 0 : n->type.rank > IR_MAX_RANK ? IR_MAX_RANK : n->type.rank;
    for (int i = 0; i < r; i++) fprintf(out, i ? ",%d" : "%d", a->perm[i]);
    fputc(']', out);
  }
  if ((mask & IR_ATTR_TRANS) && a->ta) SEP(), fputs("ta", out);
  if ((mask & IR_ATTR_TRANS) && a->tb) SEP(), fputs("tb", out);
  if ((mask & IR_ATTR_CAUSAL) && a->causal) SEP(), fputs("causal", out);
  if (mask & IR_ATTR_VALUE) SEP(), fputs("value=", out), print_value(out, a->value);
#undef SEP
  if (k) fputc('}', out);
}

/* One node's line, without the newline (callers embed it in messages). */
void ir_print_node(FILE *out, const ir_func *f, int id) {
  if (id < 0 || id >= f->n_nodes) {
    fprintf(out, "%%%d = <undefined>", id);
    return;
  }
  const ir_node *n = &f->nodes[id];
  const ir_op_info *info = ir_op_get(n->op);
  fprintf(out, "%%%d = %s", id, info ? info->name : "<bad op>");
  unsigned mask = info ? info->attrs : 0;
  if (n->name) fputc(' ', out), print_name(out, n->name);
  for (int i = 0; i < n->n_in && i < IR_MAX_INPUTS; i++)
    fprintf(out, i ? ", %%%d" : " %%%d", n->in[i]);
  print_attrs(out, n, mask);
  char t[96];
  fprintf(out, " : %s", ir_type_str(&n->type, t, sizeof t));
}

/* Every node, then every output, one a line. */
void ir_print(FILE *out, const ir_func *f) {
  for (int i = 0; i < f->n_nodes; i++) {
    ir_print_node(out, f, i);
    fputc('\n', out);
  }
  for (int i = 0; i < f->n_outs; i++) {
    fputs("output ", out);
    print_name(out, f->outs[i].name ? f->outs[i].name : "");
    fprintf(out, " = %%%d\n", f->outs[i].node);
  }
}

/* The text of ir_print as a malloc'd string (never NULL). */
char *ir_print_str(const ir_func *f) {
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  if (!m) {
    fprintf(stderr, "recall: out of memory\n");
    abort();
  }
  ir_print(m, f);
  fclose(m);
  return buf;
}
