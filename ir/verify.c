/* verify.c — whole-function checks: every node re-derived from its op's
 * rule, names unique, outputs defined. Messages name the node and line. */
#include "ir.h"

#include <string.h>

static int fail(const ir_func *f, int id, ir_error *err) {
  char m[IR_MSG_MAX];
  snprintf(m, sizeof m, "%s", err->msg);
  if (f->nodes[id].line > 0)
    ir_err(err, "%%%d (line %d): %.400s", id, f->nodes[id].line, m);
  else
    ir_err(err, "%%%d: %.400s", id, m);
  return -1;
}

int ir_verify(const ir_func *f, ir_error *err) {
  ir_error local;
  if (!err) err = &local;
  for (int id = 0; id < f->n_nodes; id++) {
    const ir_node *n = &f->nodes[id];
    const ir_op_info *info = ir_op_get(n->op);
    if (!info) {
      ir_err(err, "unknown op %d", (int)n->op);
      return fail(f, id, err);
    }
    ir_type t;
    if (ir_infer_type(f, n->op, n->in, n->n_in, &n->attr, &n->type, id, &t,
                      err))
      return fail(f, id, err);
    bool named = n->op == IR_OP_INPUT || n->op == IR_OP_PARAM ||
                 n->op == IR_OP_CONST;
    if (named && (!n->name || !*n->name)) {
      ir_err(err, "%s: needs a name", info->name);
      return fail(f, id, err);
    }
    if (!named && n->name) {
      ir_err(err, "%s: only input, param and const nodes carry a name",
             info->name);
      return fail(f, id, err);
    }
    if (n->data && n->op != IR_OP_CONST) {
      ir_err(err, "%s: only const nodes carry data", info->name);
      return fail(f, id, err);
    }
    if (named)
      for (int j = 0; j < id; j++)
        if (f->nodes[j].name && strcmp(f->nodes[j].name, n->name) == 0) {
          ir_err(err, "%s: name \"%s\" is already used by %%%d", info->name,
                 n->name, j);
          return fail(f, id, err);
        }
  }
  for (int i = 0; i < f->n_outs; i++) {
    const ir_output *o = &f->outs[i];
    if (!o->name || !*o->name) {
      ir_err(err, "output %d has no name", i);
      return -1;
    }
    if (o->node < 0 || o->node >= f->n_nodes) {
      ir_err(err, "output \"%s\": %%%d is not defined", o->name, o->node);
      return -1;
    }
    for (int j = 0; j < i; j++)
      if (strcmp(f->outs[j].name, o->name) == 0) {
        ir_err(err, "output \"%s\" is defined twice", o->name);
        return -1;
      }
  }
  return 0;
}
