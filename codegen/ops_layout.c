/* ops_layout.c — pad and concat: strided copies into a region of the
 * output (a concat's inputs placed in its buffer by plan.c need none).
 * (permute, slice, expand are views: see ops_ew.c; reshape is an alias:
 * see plan.c.) */
#include "cgint.h"

typedef struct {
  LLVMTypeRef ty;
  LLVMValueRef dst, src;
} copy_ud;

static void copy_body(cg_ctx *c, LLVMValueRef *offs, void *ud) {
  copy_ud *u = ud;
  cg_store(c, cg_load(c, u->ty, u->src, offs[1]), u->dst, offs[0]);
}

/* Copies input node `src` into v's buffer at offset `at` along `axis`. */
static void copy_into(cg_ctx *c, int v, int src, int axis, int at) {
  const ir_node *n = &c->f->nodes[v];
  const ir_type *st = &c->f->nodes[src].type;
  cg_access acc[2];
  cg_contig(&n->type, &acc[0]);
  acc[0].off = (int64_t)at * acc[0].st[axis];
  cg_contig(st, &acc[1]);
  copy_ud u = {cg_elty(c, n), cg_ptr(c, v), cg_ptr(c, src)};
  cg_nest(c, st->rank, st->dim, acc, 2, copy_body, &u, 0);
}

void cg_emit_pad(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  cg_zero(c, cg_ptr(c, v), ir_numel(&n->type));
  copy_into(c, v, n->in[0], n->attr.axis, n->attr.start);
}

void cg_emit_concat(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  int at = 0;
  for (int k = 0; k < n->n_in; k++) {
    if (c->p->node[n->in[k]].into != v) /* else computed in place */
      copy_into(c, v, n->in[k], n->attr.axis, at);
    at += c->f->nodes[n->in[k]].type.dim[n->attr.axis];
  }
}
