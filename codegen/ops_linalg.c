/* ops_linalg.c — softmax over the last axis. Its sum carries 'reassoc'
 * (so that the loop vectorises); see codegen.h. */
#include "cgint.h"

#include <math.h>

/* Softmax over the last axis, max-subtracted. Causal: row i of Lq keeps
 * keys j <= i + (Lk - Lq). Masked keys read as -inf, so exp gives exact
 * zeros. The loops of a causal row run to the row's last key rounded up
 * to 16 (capped at Lk), so the vector loops rarely leave a scalar
 * remainder (which cost more than the masked lanes) while skipping most
 * of the masked half of the matrix. */
void cg_emit_softmax(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  int r = n->type.rank;
  int64_t Kd = n->type.dim[r - 1];
  int64_t Lq = n->attr.causal ? n->type.dim[r - 2] : 1;
  int64_t nb = ir_numel(&n->type) / (Kd * Lq);
  LLVMValueRef px = cg_ptr(c, n->in[0]), po = cg_ptr(c, v);
  LLVMValueRef ninf = cg_f32c(c, -INFINITY);
  cg_loop lb, li, lj;
  LLVMValueRef b = cg_forn(c, &lb, nb);
  LLVMValueRef i = cg_forn(c, &li, Lq);
  LLVMValueRef row = cg_mulk(c, cg_add(c, cg_mulk(c, b, Lq), i), Kd);
  LLVMValueRef last = cg_addk(c, i, Kd - Lq); /* inclusive */
  LLVMValueRef cnt = cg_i64(c, Kd);
  if (n->attr.causal) {
    LLVMValueRef r16 = LLVMBuildAnd(c->B, cg_addk(c, last, 16), cg_i64(c, ~(int64_t)15), "");
    cnt = cg_imin(c, r16, cnt);
  }
  LLVMValueRef m = cg_alloca(c, c->f32, ninf);
  LLVMValueRef s = cg_alloca(c, c->f32, cg_f32c(c, 0.0));
  /* x[j] or -inf where masked */
  for (int pass = 0; pass < 2; pass++) {
    LLVMValueRef mx = pass ? LLVMBuildLoad2(c->B, c->f32, m, "") : NULL;
    LLVMValueRef j = cg_for(c, &lj, cg_i64(c, 0), cnt);
    LLVMValueRef x = cg_loadf(c, px, cg_add(c, row, j));
    if (n->attr.causal)
      x = LLVMBuildSelect(c->B, LLVMBuildICmp(c->B, LLVMIntSLE, j, last, ""), x,
                          ninf, "");
    if (pass == 0) {
      LLVMBuildStore(c->B, cg_fmax(c, LLVMBuildLoad2(c->B, c->f32, m, ""), x, CG_ACC), m);
    } else {
      LLVMValueRef e = cg_exp(c, cg_fsub(c, x, mx, 0));
      cg_store(c, e, po, cg_add(c, row, j));
      LLVMBuildStore(c->B, cg_fadd(c, LLVMBuildLoad2(c->B, c->f32, s, ""), e, CG_ACC), s);
    }
    cg_endfor(c, &lj);
  }
  LLVMValueRef sum = LLVMBuildLoad2(c->B, c->f32, s, "");
  LLVMValueRef j = cg_forn(c, &lj, Kd);
  LLVMValueRef oj = cg_add(c, row, j);
  LLVMValueRef w = cg_fdiv(c, cg_loadf(c, po, oj), sum);
  if (n->attr.causal) /* beyond cnt: exact zeros */
    w = LLVMBuildSelect(c->B, LLVMBuildICmp(c->B, LLVMIntSLT, j, cnt, ""), w,
                        cg_f32c(c, 0.0), "");
  cg_store(c, w, po, oj);
  cg_endfor(c, &lj);
  cg_endfor(c, &li);
  cg_endfor(c, &lb);
}
