/* func.c — building functions: nodes, leaves, outputs. Builders only build:
 * every node is checked against its op's rule as it is added. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) {
    fprintf(stderr, "recall: out of memory\n");
    abort();
  }
  return q;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xrealloc(NULL, n), s, n);
}

ir_func *ir_func_new(void) {
  ir_func *f = calloc(1, sizeof *f);
  if (!f) abort();
  return f;
}

void ir_func_free(ir_func *f) {
  if (!f) return;
  for (int i = 0; i < f->n_nodes; i++) {
    free(f->nodes[i].name);
    free(f->nodes[i].data);
  }
  for (int i = 0; i < f->n_outs; i++) free(f->outs[i].name);
  free(f->nodes);
  free(f->outs);
  free(f);
}

ir_func *ir_func_clone(const ir_func *f) {
  ir_func *g = ir_func_new();
  g->cap_nodes = g->n_nodes = f->n_nodes;
  g->nodes = xrealloc(NULL, sizeof *g->nodes * (size_t)(f->n_nodes + 1));
  if (f->n_nodes) /* an empty function's nodes may be NULL */
    memcpy(g->nodes, f->nodes, sizeof *g->nodes * (size_t)f->n_nodes);
  for (int i = 0; i < f->n_nodes; i++) {
    ir_node *n = &g->nodes[i];
    if (n->name) n->name = xstrdup(n->name);
    if (n->data) {
      size_t sz = sizeof(float) * (size_t)ir_numel(&n->type);
      n->data = memcpy(xrealloc(NULL, sz), f->nodes[i].data, sz);
    }
  }
  g->cap_outs = g->n_outs = f->n_outs;
  g->outs = xrealloc(NULL, sizeof *g->outs * (size_t)(f->n_outs + 1));
  for (int i = 0; i < f->n_outs; i++)
    g->outs[i] = (ir_output){xstrdup(f->outs[i].name), f->outs[i].node};
  return g;
}

static int check_type(const ir_type *t, ir_error *err) {
  if (t->rank < 0 || t->rank > IR_MAX_RANK) {
    ir_err(err, "rank %d outside 0..%d", t->rank, IR_MAX_RANK);
    return -1;
  }
  if (t->dtype != IR_F32 && t->dtype != IR_I32) {
    ir_err(err, "unknown dtype %d", (int)t->dtype);
    return -1;
  }
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    if (t->dim[i] < 1) {
      ir_err(err, "size %d on axis %d: sizes must be >= 1", t->dim[i], i);
      return -1;
    }
    n *= t->dim[i];
    if (n > (int64_t)1 << 31) {
      ir_err(err, "tensor of more than 2^31 elements");
      return -1;
    }
  }
  return 0;
}

/* Infers (or checks) the type of a would-be node. Shared with the verifier. */
int ir_infer_type(const ir_func *f, ir_op op, const int *in, int n_in,
                  const ir_attrs *a, const ir_type *declared, int self,
                  ir_type *out, ir_error *err) {
  const ir_op_info *info = ir_op_get(op);
  if (!info) {
    ir_err(err, "unknown op %d", (int)op);
    return -1;
  }
  int lo = info->arity < 0 ? 1 : info->arity;
  int hi = info->arity < 0 ? IR_MAX_INPUTS : info->arity;
  if (n_in < lo || n_in > hi) {
    if (lo == hi)
      ir_err(err, "%s: takes %d input%s, got %d", info->name, lo,
             lo == 1 ? "" : "s", n_in);
    else
      ir_err(err, "%s: takes %d to %d inputs, got %d", info->name, lo, hi, n_in);
    return -1;
  }
  const ir_node *ins[IR_MAX_INPUTS];
  for (int i = 0; i < n_in; i++) {
    if (in[i] < 0 || in[i] >= self) {
      ir_err(err, "%s: input %d refers to %%%d, which is not defined before it",
             info->name, i, in[i]);
      return -1;
    }
    ins[i] = &f->nodes[in[i]];
  }
  static const ir_attrs zero;
  if (!a) a = &zero;
  if (info->attrs & IR_ATTR_TYPE) {
    if (!declared) {
      ir_err(err, "%s: needs a result type", info->name);
      return -1;
    }
    if (check_type(declared, err)) {
      char m[IR_MSG_MAX];
      snprintf(m, sizeof m, "%s", err->msg);
      ir_err(err, "%s: %.400s", info->name, m);
      return -1;
    }
    *out = *declared;
  } else {
    *out = (ir_type){0};
  }
  if (info->shape(op, ins, n_in, a, out, err)) return -1;
  if (declared && !(info->attrs & IR_ATTR_TYPE) && !ir_type_eq(declared, out)) {
    char s1[64], s2[64];
    ir_err(err, "%s: declared type %s but the inputs give %s", info->name,
           ir_type_str(declared, s1, sizeof s1), ir_type_str(out, s2, sizeof s2));
    return -1;
  }
  return 0;
}

int ir_add(ir_func *f, ir_op op, const int *in, int n_in, const ir_attrs *a,
           const ir_type *type, const char *name, ir_error *err) {
  ir_type t;
  if (ir_infer_type(f, op, in, n_in, a, type, f->n_nodes, &t, err)) return -1;
  bool named = op == IR_OP_INPUT || op == IR_OP_PARAM || op == IR_OP_CONST;
  if (named && (!name || !*name)) {
    ir_err(err, "%s: needs a name", ir_op_name(op));
    return -1;
  }
  if (named && ir_find_leaf(f, name) >= 0) {
    ir_err(err, "%s: name \"%s\" is already used by %%%d", ir_op_name(op), name,
           ir_find_leaf(f, name));
    return -1;
  }
  if (f->n_nodes == f->cap_nodes) {
    f->cap_nodes = f->cap_nodes ? 2 * f->cap_nodes : 32;
    f->nodes = xrealloc(f->nodes, sizeof *f->nodes * (size_t)f->cap_nodes);
  }
  ir_node *n = &f->nodes[f->n_nodes];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->type = t;
  n->n_in = n_in;
  for (int i = 0; i < n_in; i++) n->in[i] = in[i];
  if (a) n->attr = *a;
  n->name = named && name ? xstrdup(name) : NULL;
  return f->n_nodes++;
}

int ir_leaf(ir_func *f, ir_op op, const char *name, ir_type type,
            ir_error *err) {
  return ir_add(f, op, NULL, 0, NULL, &type, name, err);
}

int ir_fill(ir_func *f, double value, ir_type type, ir_error *err) {
  ir_attrs a = {.value = value};
  return ir_add(f, IR_OP_FILL, NULL, 0, &a, &type, NULL, err);
}

int ir_unary(ir_func *f, ir_op op, int x, ir_error *err) {
  return ir_add(f, op, &x, 1, NULL, NULL, NULL, err);
}

int ir_binary(ir_func *f, ir_op op, int a, int b, ir_error *err) {
  int in[2] = {a, b};
  return ir_add(f, op, in, 2, NULL, NULL, NULL, err);
}

int ir_add_output(ir_func *f, const char *name, int node, ir_error *err) {
  if (node < 0 || node >= f->n_nodes) {
    ir_err(err, "output \"%s\": %%%d is not defined", name, node);
    return -1;
  }
  if (!name || !*name) {
    ir_err(err, "output of %%%d needs a name", node);
    return -1;
  }
  if (ir_find_output(f, name) >= 0) {
    ir_err(err, "output \"%s\" is defined twice", name);
    return -1;
  }
  if (f->n_outs == f->cap_outs) {
    f->cap_outs = f->cap_outs ? 2 * f->cap_outs : 8;
    f->outs = xrealloc(f->outs, sizeof *f->outs * (size_t)f->cap_outs);
  }
  f->outs[f->n_outs] = (ir_output){xstrdup(name), node};
  return f->n_outs++;
}

int ir_find_output(const ir_func *f, const char *name) {
  for (int i = 0; i < f->n_outs; i++)
    if (strcmp(f->outs[i].name, name) == 0) return i;
  return -1;
}

int ir_find_leaf(const ir_func *f, const char *name) {
  for (int i = 0; i < f->n_nodes; i++)
    if (f->nodes[i].name && strcmp(f->nodes[i].name, name) == 0) return i;
  return -1;
}

int ir_set_const_data(ir_func *f, int node, const float *data, ir_error *err) {
  if (node < 0 || node >= f->n_nodes || f->nodes[node].op != IR_OP_CONST) {
    ir_err(err, "%%%d is not a const", node);
    return -1;
  }
  ir_node *n = &f->nodes[node];
  size_t sz = sizeof(float) * (size_t)ir_numel(&n->type);
  free(n->data);
  n->data = memcpy(xrealloc(NULL, sz), data, sz);
  return 0;
}
