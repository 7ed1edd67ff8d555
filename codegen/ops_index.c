/* ops_index.c — ops driven by i32 indices: gather, scatter_add,
 * select_row, onehot, cross_entropy. Out-of-range indices never touch
 * memory out of bounds: reads clamp, writes drop, and each miss is counted
 * in the kernel's return value (codegen.h). */
#include "cgint.h"

static LLVMValueRef load_i32(cg_ctx *c, LLVMValueRef base, LLVMValueRef idx) {
  return cg_load(c, c->i32, base, idx);
}

/* out[j, r] = table[clamp(idx[j]), r] */
void cg_emit_gather(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  const ir_node *t = &c->f->nodes[n->in[0]];
  int64_t V = t->type.dim[0], R = ir_numel(&t->type) / V;
  int64_t J = ir_numel(&c->f->nodes[n->in[1]].type);
  LLVMValueRef pt = cg_ptr(c, n->in[0]), pi = cg_ptr(c, n->in[1]),
               po = cg_ptr(c, v);
  LLVMTypeRef ty = cg_elty(c, t);
  cg_loop lj, lr;
  /* prefix (plan.c): the rows up to the one read; later ones as they were */
  LLVMValueRef j = c->p->node[v].prefix ? cg_for(c, &lj, cg_i64(c, 0), cg_upto_rows(c, J))
                                        : cg_forn(c, &lj, J);
  LLVMValueRef row = cg_mulk(c, cg_clamp_index(c, load_i32(c, pi, j), V), R);
  LLVMValueRef r = cg_forn(c, &lr, R);
  cg_store(c, cg_load(c, ty, pt, cg_add(c, row, r)), po,
           cg_add(c, cg_mulk(c, j, R), r));
  cg_endfor(c, &lr);
  cg_endfor(c, &lj);
}

/* out = 0; out[idx[j], r] += src[j, r] for idx[j] in range */
void cg_emit_scatter_add(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  int64_t rows = n->attr.n, R = ir_numel(&n->type) / rows;
  int64_t J = ir_numel(&c->f->nodes[n->in[1]].type);
  LLVMValueRef ps = cg_ptr(c, n->in[0]), pi = cg_ptr(c, n->in[1]),
               po = cg_ptr(c, v);
  cg_zero(c, po, ir_numel(&n->type));
  cg_loop lj, lr;
  LLVMValueRef j = cg_forn(c, &lj, J);
  LLVMValueRef ix = load_i32(c, pi, j);
  LLVMValueRef ok = LLVMBuildICmp(c->B, LLVMIntULT, ix, cg_i32c(c, (int32_t)rows), "");
  cg_count_oob(c, LLVMBuildNot(c->B, ok, ""));
  LLVMBasicBlockRef merge = cg_if(c, ok);
  LLVMValueRef row = cg_mulk(c, LLVMBuildZExt(c->B, ix, c->i64, ""), R);
  LLVMValueRef r = cg_forn(c, &lr, R);
  LLVMValueRef oi = cg_add(c, row, r);
  cg_store(c, cg_fadd(c, cg_loadf(c, po, oi),
                      cg_loadf(c, ps, cg_add(c, cg_mulk(c, j, R), r)), 0),
           po, oi);
  cg_endfor(c, &lr);
  cg_endif(c, merge);
  cg_endfor(c, &lj);
}

/* out[r] = x[clamp(p), r] */
void cg_emit_select_row(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  const ir_node *x = &c->f->nodes[n->in[0]];
  int64_t L = x->type.dim[0], R = ir_numel(&x->type) / L;
  LLVMValueRef px = cg_ptr(c, n->in[0]), po = cg_ptr(c, v);
  LLVMValueRef row =
      cg_mulk(c, cg_clamp_index(c, load_i32(c, cg_ptr(c, n->in[1]), cg_i64(c, 0)), L), R);
  cg_loop lr;
  LLVMValueRef r = cg_forn(c, &lr, R);
  cg_store(c, cg_load(c, cg_elty(c, x), px, cg_add(c, row, r)), po, r);
  cg_endfor(c, &lr);
}

/* out[j, k] = idx[j] == k; an out-of-range index gives a zero row */
void cg_emit_onehot(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  int64_t K = n->attr.n, J = ir_numel(&c->f->nodes[n->in[0]].type);
  LLVMValueRef pi = cg_ptr(c, n->in[0]), po = cg_ptr(c, v);
  cg_loop lj, lk;
  LLVMValueRef j = cg_forn(c, &lj, J);
  LLVMValueRef ix = load_i32(c, pi, j);
  cg_count_oob(c, LLVMBuildICmp(c->B, LLVMIntUGE, ix, cg_i32c(c, (int32_t)K), ""));
  LLVMValueRef ix64 = LLVMBuildSExt(c->B, ix, c->i64, "");
  LLVMValueRef k = cg_forn(c, &lk, K);
  LLVMValueRef hit = LLVMBuildICmp(c->B, LLVMIntEQ, ix64, k, "");
  cg_store(c, LLVMBuildSelect(c->B, hit, cg_f32c(c, 1.0), cg_f32c(c, 0.0), ""), po,
           cg_add(c, cg_mulk(c, j, K), k));
  cg_endfor(c, &lk);
  cg_endfor(c, &lj);
}

/* out[j] = log(sum_k exp(x[j,k] - m)) + m - x[j, clamp(label[j])] with
 * m = max_k x[j,k]. The sum is 1 (the max's own term) + rest, and the loss
 * log1p(rest) + (m - x[label]): summing rest without that 1 keeps a small
 * loss (a confident, correct prediction) accurate to a few ulp instead of
 * rounding it to 0. Ties: every maximal term is exactly 1, one is dropped. */
void cg_emit_cross_entropy(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  const ir_node *lg = &c->f->nodes[n->in[0]];
  int64_t K = lg->type.dim[lg->type.rank - 1], J = ir_numel(&n->type);
  LLVMValueRef px = cg_ptr(c, n->in[0]), pl = cg_ptr(c, n->in[1]),
               po = cg_ptr(c, v);
  LLVMValueRef zero = cg_f32c(c, 0.0), one = cg_f32c(c, 1.0);
  cg_loop lj, lk;
  LLVMValueRef j = cg_forn(c, &lj, J);
  LLVMValueRef row = cg_mulk(c, j, K);
  LLVMValueRef lab = cg_clamp_index(c, load_i32(c, pl, j), K);
  LLVMValueRef m = cg_alloca(c, c->f32, cg_loadf(c, px, row));
  if (K > 1) {
    LLVMValueRef k = cg_for(c, &lk, cg_i64(c, 1), cg_i64(c, K));
    LLVMBuildStore(c->B, cg_fmax(c, LLVMBuildLoad2(c->B, c->f32, m, ""),
                                 cg_loadf(c, px, cg_add(c, row, k)), CG_ACC),
                   m);
    cg_endfor(c, &lk);
  }
  LLVMValueRef mx = LLVMBuildLoad2(c->B, c->f32, m, "");
  LLVMValueRef rest = cg_alloca(c, c->f32, zero);
  LLVMValueRef ties = cg_alloca(c, c->f32, cg_f32c(c, -1.0));
  LLVMValueRef k = cg_forn(c, &lk, K);
  LLVMValueRef x = cg_loadf(c, px, cg_add(c, row, k));
  LLVMValueRef top = LLVMBuildFCmp(c->B, LLVMRealOEQ, x, mx, "");
  LLVMValueRef e = cg_exp_nonpos(c, cg_fsub(c, x, mx, 0));
  e = LLVMBuildSelect(c->B, top, zero, e, ""); /* exp(0) = 1 exactly */
  LLVMBuildStore(c->B, cg_fadd(c, LLVMBuildLoad2(c->B, c->f32, rest, ""), e, CG_ACC), rest);
  LLVMBuildStore(c->B, cg_fadd(c, LLVMBuildLoad2(c->B, c->f32, ties, ""),
                               LLVMBuildSelect(c->B, top, one, zero, ""), CG_ACC),
                 ties);
  cg_endfor(c, &lk);
  LLVMValueRef r = cg_fadd(c, LLVMBuildLoad2(c->B, c->f32, rest, ""),
                           LLVMBuildLoad2(c->B, c->f32, ties, ""), 0);
  LLVMValueRef gap = cg_fsub(c, mx, cg_loadf(c, px, cg_add(c, row, lab)), 0);
  cg_store(c, cg_fadd(c, cg_log1p_pos(c, r), gap, 0), po, j);
  cg_endfor(c, &lj);
}
