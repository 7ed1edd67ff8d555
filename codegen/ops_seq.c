/* ops_seq.c — causal depthwise conv1d and its two backward ops
 * (semantics in .notes/helpers.md; the scans are in ops_scan.c). Inner
 * loops run over the contiguous axis (channels e) so that they
 * vectorise. */
#include "cgint.h"

static LLVMValueRef ld(cg_ctx *c, LLVMValueRef p, LLVMValueRef i) {
  return cg_loadf(c, p, i);
}
/* p[i] += x */
static void acc_at(cg_ctx *c, LLVMValueRef p, LLVMValueRef i, LLVMValueRef x) {
  cg_store(c, cg_fadd(c, ld(c, p, i), x, CG_FMA), p, i);
}
static LLVMValueRef fmul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return cg_fmul(c, a, b, CG_FMA);
}

/* One sweep shared by the three convolution ops: loops t and k (k over
 * the taps whose time index is in range), then e innermost. The weight
 * [E,W] is used transposed, wT[W,E] in scratch, so that the e loop reads
 * (or, for bwd_w, accumulates) it contiguously. */
typedef enum { CONV_FWD, CONV_BWD_X, CONV_BWD_W } conv_kind;

/* dst[k*E + e] = src[e*W + k], or the reverse */
static void transpose_w(cg_ctx *c, LLVMValueRef dst, LLVMValueRef src,
                        int64_t E, int64_t W, bool to_wt) {
  cg_loop le, lk;
  LLVMValueRef e = cg_forn(c, &le, E);
  LLVMValueRef k = cg_forn(c, &lk, W);
  LLVMValueRef ew = cg_add(c, cg_mulk(c, e, W), k), ke = cg_add(c, cg_mulk(c, k, E), e);
  cg_store(c, ld(c, src, to_wt ? ew : ke), dst, to_wt ? ke : ew);
  cg_endfor(c, &lk);
  cg_endfor(c, &le);
}

int64_t cg_conv_scratch(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  int64_t E = f->nodes[n->in[0]].type.dim[1];
  int64_t W = n->op == IR_OP_CONV1D_BWD_W ? n->attr.n : f->nodes[n->in[1]].type.dim[1];
  return 4 * E * W;
}

static void conv(cg_ctx *c, int v, conv_kind kind) {
  const ir_node *n = &c->f->nodes[v];
  const ir_type *gt = &c->f->nodes[n->in[0]].type;
  int64_t L = gt->dim[0], E = gt->dim[1];
  int64_t W = kind == CONV_BWD_W ? n->attr.n : c->f->nodes[n->in[1]].type.dim[1];
  LLVMValueRef p0 = cg_ptr(c, n->in[0]), p1 = cg_ptr(c, n->in[1]),
               po = cg_ptr(c, v), wt = c->slot[c->p->node[v].scratch[0]];
  if (kind == CONV_BWD_W)
    cg_zero(c, wt, W * E);
  else {
    cg_zero(c, po, ir_numel(&n->type));
    transpose_w(c, wt, p1, E, W, true);
  }
  cg_loop lt, lk, le;
  LLVMValueRef t, k, lo;
  if (kind == CONV_BWD_W) { /* k outer: t >= W-1-k */
    k = cg_forn(c, &lk, W);
    lo = cg_imax(c, cg_i64(c, 0), LLVMBuildSub(c->B, cg_i64(c, W - 1), k, ""));
    t = cg_for(c, &lt, lo, cg_i64(c, L));
  } else {
    t = cg_forn(c, &lt, L);
    /* fwd: t-(W-1)+k >= 0;  bwd_x: t+(W-1)-k <= L-1 */
    lo = kind == CONV_FWD ? LLVMBuildSub(c->B, cg_i64(c, W - 1), t, "")
                          : cg_addk(c, t, W - L);
    k = cg_for(c, &lk, cg_imax(c, cg_i64(c, 0), lo), cg_i64(c, W));
  }
  LLVMValueRef src_t = kind == CONV_BWD_X
                           ? LLVMBuildSub(c->B, cg_addk(c, t, W - 1), k, "")
                           : cg_add(c, cg_addk(c, t, -(W - 1)), k);
  LLVMValueRef e = cg_forn(c, &le, E);
  LLVMValueRef wi = cg_add(c, cg_mulk(c, k, E), e);
  LLVMValueRef here = cg_add(c, cg_mulk(c, t, E), e);
  LLVMValueRef there = cg_add(c, cg_mulk(c, src_t, E), e);
  /* fwd:   y[t,e] += w[e,k] x[t-(W-1)+k, e]
   * bwd_x: dx[t,e] += w[e,k] g[t+(W-1)-k, e] */
  if (kind != CONV_BWD_W)
    acc_at(c, po, here, fmul(c, ld(c, wt, wi), ld(c, p0, there)));
  else /* dw[e,k] += g[t,e] x[t-(W-1)+k, e] */
    acc_at(c, wt, wi, fmul(c, ld(c, p0, here), ld(c, p1, there)));
  cg_endfor(c, &le);
  if (kind == CONV_BWD_W) {
    cg_endfor(c, &lt);
    cg_endfor(c, &lk);
    transpose_w(c, po, wt, E, W, false);
  } else {
    cg_endfor(c, &lk);
    cg_endfor(c, &lt);
  }
}

void cg_emit_conv1d(cg_ctx *c, int v) { conv(c, v, CONV_FWD); }
void cg_emit_conv1d_bwd_x(cg_ctx *c, int v) { conv(c, v, CONV_BWD_X); }
void cg_emit_conv1d_bwd_w(cg_ctx *c, int v) { conv(c, v, CONV_BWD_W); }
