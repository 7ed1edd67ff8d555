/* ops_seq.c — causal depthwise conv1d and its two backward ops
 * and rope (semantics in ir.h; the scans are in ops_scan.c). Inner
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
 * (or, for bwd_w, accumulates) it contiguously; with cg_options.hoist
 * the prep entry makes fwd's and bwd_x's (plan.c: a prep node). Where E
 * is a multiple of 8, explicit vectors instead (rows_vec, bwd_w_vec):
 * the same sums in the same order, held in registers across the taps. */
typedef enum { CONV_FWD, CONV_BWD_X, CONV_BWD_W } conv_kind;
enum { MAX_TAPS = 16 }; /* taps held in registers (rows_vec, bwd_w_vec) */

/* What fwd / bwd_x add to their rows as they store them (plan.c
 * fold_adds): p NULL, or a row [E] (row) or a whole [L,E]. */
typedef struct {
  LLVMValueRef p;
  bool row;
} addend;

/* acc, the sums of row t at channels e, plus the addend's values there */
static LLVMValueRef plus(cg_ctx *c, const addend *ad, LLVMValueRef acc, LLVMValueRef t,
                         int64_t E, LLVMValueRef e) {
  if (!ad->p) return acc;
  return cg_fadd(c, acc, cg_vload(c, ad->p, ad->row ? e : cg_add(c, cg_mulk(c, t, E), e)), 0);
}

/* Rows t0 <= t < t1 of fwd / bwd_x in explicit vectors of c->vw lanes
 * over e (E a multiple of them), and below `upto` where that is set (a
 * row count known when the kernel runs): per row and block of channels
 * the taps' sum stays in a register, k in order (the same sums as
 * conv's loops); checked: taps whose source row is outside 0..L-1 are
 * skipped. */
static void rows_vec(cg_ctx *c, conv_kind kind, int64_t L, int64_t E, int64_t W,
                     LLVMValueRef px, LLVMValueRef wt, LLVMValueRef po, int64_t t0,
                     int64_t t1, bool checked, LLVMValueRef upto, const addend *ad) {
  if (t0 >= t1) return;
  cg_loop lt, le;
  LLVMValueRef end = upto ? cg_imin(c, upto, cg_i64(c, t1)) : cg_i64(c, t1);
  if (!checked && W <= MAX_TAPS) {
    /* block of channels outer: its taps' weights loaded once, not at
     * every row (8 loads a row and block became 4: mamba d 64's conv1d
     * and conv1d_bwd_x nodes mostly 15-40% faster, the kernel 0.1-0.7%,
     * the same outputs, in-process A/B; d 8, one block, unchanged) */
    LLVMValueRef e = cg_mulk(c, cg_forn(c, &le, E / c->vw), c->vw), w[MAX_TAPS];
    for (int64_t k = 0; k < W; k++) w[k] = cg_vload(c, wt, cg_addk(c, e, k * E));
    /* and the W source rows in registers from one row to the next, one
     * new row loaded a step (W were: loads, not FMAs, set the pace):
     * tap k reads row t + k - (W-1) (fwd; the new one k = W-1) or
     * t + W-1 - k (bwd_x; the new one k = 0) */
    int64_t knew = kind == CONV_FWD ? W - 1 : 0, dk = kind == CONV_FWD ? 1 : -1;
    LLVMTypeRef vt = cg_vty(c, c->f32);
    LLVMValueRef win[MAX_TAPS];
    for (int64_t k = 0; k < W; k++) {
      int64_t row = kind == CONV_FWD ? t0 + k - (W - 1) : t0 + W - 1 - k;
      if (k != knew) win[k] = cg_alloca(c, vt, cg_vload(c, px, cg_add(c, cg_i64(c, row * E), e)));
    }
    LLVMValueRef t = cg_for(c, &lt, cg_i64(c, t0), end);
    LLVMValueRef xn = cg_vload(c, px, cg_add(c, cg_mulk(c, cg_addk(c, t, W - 1 - knew), E), e));
    LLVMValueRef acc = LLVMConstNull(vt);
    for (int64_t k = 0; k < W; k++)
      acc = cg_fmuladd(c, w[k], k == knew ? xn : LLVMBuildLoad2(c->B, vt, win[k], ""), acc);
    for (int64_t i = 0; i < W - 1; i++) { /* each tap takes its neighbour's row */
      int64_t k = kind == CONV_FWD ? i : W - 1 - i;
      LLVMBuildStore(c->B, k + dk == knew ? xn : LLVMBuildLoad2(c->B, vt, win[k + dk], ""), win[k]);
    }
    cg_vstore(c, plus(c, ad, acc, t, E, e), po, cg_add(c, cg_mulk(c, t, E), e));
    cg_endfor(c, &lt);
    cg_endfor(c, &le);
    return;
  }
  LLVMValueRef t = cg_for(c, &lt, cg_i64(c, t0), end);
  LLVMValueRef e = cg_mulk(c, cg_forn(c, &le, E / c->vw), c->vw);
  LLVMValueRef acc = cg_alloca(c, cg_vty(c, c->f32), LLVMConstNull(cg_vty(c, c->f32)));
  for (int64_t k = 0; k < W; k++) {
    /* fwd: y[t] += w[k] x[t-(W-1)+k];  bwd_x: dx[t] += w[k] g[t+(W-1)-k] */
    LLVMValueRef src = kind == CONV_FWD ? cg_addk(c, t, k - (W - 1)) : cg_addk(c, t, W - 1 - k);
    LLVMBasicBlockRef merge = NULL;
    if (checked)
      merge = cg_if(c, kind == CONV_FWD
                           ? LLVMBuildICmp(c->B, LLVMIntSGE, src, cg_i64(c, 0), "")
                           : LLVMBuildICmp(c->B, LLVMIntSLT, src, cg_i64(c, L), ""));
    LLVMValueRef x = cg_vload(c, px, cg_add(c, cg_mulk(c, src, E), e));
    LLVMValueRef w = cg_vload(c, wt, cg_addk(c, e, k * E));
    LLVMBuildStore(c->B, cg_fmuladd(c, w, x, LLVMBuildLoad2(c->B, cg_vty(c, c->f32), acc, "")), acc);
    if (merge) cg_endif(c, merge);
  }
  cg_vstore(c, plus(c, ad, LLVMBuildLoad2(c->B, cg_vty(c, c->f32), acc, ""), t, E, e), po,
            cg_add(c, cg_mulk(c, t, E), e));
  cg_endfor(c, &le);
  cg_endfor(c, &lt);
}

/* bwd_w in explicit vectors: per block of channels the W taps' sums over
 * t (in order, as conv's loops) in W registers, into wt [W, E]. */
static void bwd_w_vec(cg_ctx *c, int64_t L, int64_t E, int64_t W, LLVMValueRef pg,
                      LLVMValueRef px, LLVMValueRef wt) {
  cg_loop le, lt;
  LLVMTypeRef vt = cg_vty(c, c->f32);
  LLVMValueRef e = cg_mulk(c, cg_forn(c, &le, E / c->vw), c->vw), acc[MAX_TAPS];
  for (int64_t k = 0; k < W; k++) acc[k] = cg_alloca(c, vt, LLVMConstNull(vt));
  for (int part = 0; part < 2; part++) { /* t < W-1: some taps out of range */
    int64_t t0 = part ? W - 1 : 0, t1 = part ? L : W - 1 < L ? W - 1 : L;
    if (t0 >= t1) continue;
    /* every tap in range (part 1): the rows x[t-(W-1)..t] in registers
     * from one t to the next, one new row loaded a step (it loaded W,
     * and loads, not FMAs, set the pace) */
    LLVMValueRef win[MAX_TAPS];
    for (int64_t k = 0; part && k < W - 1; k++)
      win[k] = cg_alloca(c, vt, cg_vload(c, px, cg_add(c, cg_i64(c, (t0 - (W - 1) + k) * E), e)));
    LLVMValueRef t = cg_for(c, &lt, cg_i64(c, t0), cg_i64(c, t1));
    LLVMValueRef g = cg_vload(c, pg, cg_add(c, cg_mulk(c, t, E), e));
    LLVMValueRef xt = cg_vload(c, px, cg_add(c, cg_mulk(c, t, E), e));
    for (int64_t k = 0; k < W; k++) { /* dw[e,k] += g[t,e] x[t-(W-1)+k, e] */
      LLVMValueRef src = cg_addk(c, t, k - (W - 1)), x;
      LLVMBasicBlockRef merge = part ? NULL : cg_if(c, LLVMBuildICmp(c->B, LLVMIntSGE, src, cg_i64(c, 0), ""));
      if (!part) x = cg_vload(c, px, cg_add(c, cg_mulk(c, src, E), e));
      else x = k == W - 1 ? xt : LLVMBuildLoad2(c->B, vt, win[k], "");
      LLVMBuildStore(c->B, cg_fmuladd(c, g, x, LLVMBuildLoad2(c->B, vt, acc[k], "")), acc[k]);
      if (merge) cg_endif(c, merge);
    }
    for (int64_t k = 0; part && k < W - 1; k++) /* the window moves a row on */
      LLVMBuildStore(c->B, k + 1 == W - 1 ? xt : LLVMBuildLoad2(c->B, vt, win[k + 1], ""), win[k]);
    cg_endfor(c, &lt);
  }
  for (int64_t k = 0; k < W; k++)
    cg_vstore(c, LLVMBuildLoad2(c->B, vt, acc[k], ""), wt, cg_addk(c, e, k * E));
  cg_endfor(c, &le);
}

bool cg_conv_can_add(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  return (n->op == IR_OP_CONV1D || n->op == IR_OP_CONV1D_BWD_X) &&
         f->nodes[n->in[0]].type.dim[1] % 8 == 0 && f->nodes[n->in[1]].type.dim[1] <= MAX_TAPS;
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
  int vw = c->wide && E % 16 == 0 ? 16 : E % 8 == 0 ? 8 : 0;
  /* prefix (plan.c): the rows up to the one read; later ones as they were */
  LLVMValueRef upto = c->p->node[v].prefix ? cg_upto_rows(c, L) : NULL;
  /* explicit vectors where E allows: the conv nodes ~2x faster (mamba
   * d 8 training kernel -4%, forward -2%, d 64 -3%; in-process A/B) */
  if (vw && W <= MAX_TAPS) {
    if (kind == CONV_BWD_W) {
      c->vw = vw;
      bwd_w_vec(c, L, E, W, p0, p1, wt);
      c->vw = 0;
      cg_transpose(c, po, wt, W, E); /* wT [W,E] -> [E,W] */
      return;
    }
    if (cg_copies(c, v)) cg_transpose(c, wt, p1, E, W);
    if (cg_copy_only(c, v)) return; /* the prep entry: w^T only */
    c->vw = vw;
    /* the rows whose taps all lie in 0..L-1, and the few checked */
    int64_t a = kind == CONV_FWD ? (W - 1 < L ? W - 1 : L) : 0;
    int64_t b = kind == CONV_FWD ? L : (L - W + 1 > 0 ? L - W + 1 : 0);
    int x = c->p->node[v].addend;
    addend ad = {x >= 0 ? cg_ptr(c, x) : NULL, x >= 0 && ir_numel(&c->f->nodes[x].type) == E};
    rows_vec(c, kind, L, E, W, p0, wt, po, 0, a, true, upto, &ad);
    rows_vec(c, kind, L, E, W, p0, wt, po, a, b, false, upto, &ad);
    rows_vec(c, kind, L, E, W, p0, wt, po, b, L, true, upto, &ad);
    c->vw = 0;
    return;
  }
  if (kind == CONV_BWD_W) {
    cg_zero(c, wt, W * E);
  } else {
    if (cg_copies(c, v)) cg_transpose(c, wt, p1, E, W);
    if (cg_copy_only(c, v)) return;
    cg_zero(c, po, ir_numel(&n->type));
  }
  cg_loop lt, lk, le;
  LLVMValueRef t, k, lo;
  if (kind == CONV_BWD_W) { /* k outer: t >= W-1-k */
    k = cg_forn(c, &lk, W);
    lo = cg_imax(c, cg_i64(c, 0), LLVMBuildSub(c->B, cg_i64(c, W - 1), k, ""));
    t = cg_for(c, &lt, lo, cg_i64(c, L));
  } else {
    t = upto ? cg_for(c, &lt, cg_i64(c, 0), upto) : cg_forn(c, &lt, L);
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
    cg_transpose(c, po, wt, W, E); /* wT [W,E] -> [E,W] */
  } else {
    cg_endfor(c, &lk);
    cg_endfor(c, &lt);
  }
}

void cg_emit_conv1d(cg_ctx *c, int v) { conv(c, v, CONV_FWD); }
void cg_emit_conv1d_bwd_x(cg_ctx *c, int v) { conv(c, v, CONV_BWD_X); }
void cg_emit_conv1d_bwd_w(cg_ctx *c, int v) { conv(c, v, CONV_BWD_W); }

/* rope (ir.h): y = x cos8 + swap(x) sin8 on vectors of 4 pairs, where
 * swap exchanges the two values of each pair and cos8 / sin8 are row t's
 * 4 table values, each twice, sin8 negated on the pairs' first lanes:
 * two loads of the tables and a few shuffles per 8 values. Heads whose
 * size is not a multiple of 8 take the scalar loop. */
void cg_emit_rope(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  int64_t L = n->type.dim[0], H = n->type.dim[1], D = n->type.dim[2], P = D / 2;
  LLVMValueRef px = cg_ptr(c, n->in[0]), pc = cg_ptr(c, n->in[1]),
               ps = cg_ptr(c, n->in[2]), po = cg_ptr(c, v);
  cg_loop lt, lh, li;
  LLVMValueRef t = cg_forn(c, &lt, L);
  LLVMValueRef h = cg_forn(c, &lh, H);
  LLVMValueRef row = cg_mulk(c, cg_add(c, cg_mulk(c, t, H), h), D);
  LLVMValueRef trow = cg_mulk(c, t, P);
  if (D % 8 == 0) {
    static const int swap[] = {1, 0, 3, 2, 5, 4, 7, 6}, dup[] = {0, 0, 1, 1, 2, 2, 3, 3};
    LLVMValueRef q = cg_mulk(c, cg_forn(c, &li, D / 8), 4); /* the first pair */
    c->vw = 4;
    LLVMValueRef c4 = cg_vload(c, pc, cg_add(c, trow, q)), s4 = cg_vload(c, ps, cg_add(c, trow, q));
    c->vw = 8;
    LLVMValueRef x = cg_vload(c, px, cg_add(c, row, cg_mulk(c, q, 2)));
    LLVMValueRef sign[8];
    for (int k = 0; k < 8; k++) sign[k] = cg_f32c(c, k % 2 ? 1.0 : -1.0);
    LLVMValueRef s8 = cg_fmul(c, cg_shuffle(c, s4, s4, dup, 8), LLVMConstVector(sign, 8), 0);
    LLVMValueRef y = cg_fmuladd(c, x, cg_shuffle(c, c4, c4, dup, 8),
                                cg_fmul(c, cg_shuffle(c, x, x, swap, 8), s8, 0));
    cg_vstore(c, y, po, cg_add(c, row, cg_mulk(c, q, 2)));
    c->vw = 0;
  } else {
    LLVMValueRef i = cg_forn(c, &li, P);
    LLVMValueRef at = cg_add(c, row, cg_mulk(c, i, 2));
    LLVMValueRef x0 = ld(c, px, at), x1 = ld(c, px, cg_addk(c, at, 1));
    LLVMValueRef cs = ld(c, pc, cg_add(c, trow, i)), sn = ld(c, ps, cg_add(c, trow, i));
    cg_store(c, cg_fmuladd(c, x0, cs, LLVMBuildFNeg(c->B, fmul(c, x1, sn), "")), po, at);
    cg_store(c, cg_fmuladd(c, x0, sn, fmul(c, x1, cs)), po, cg_addk(c, at, 1));
  }
  cg_endfor(c, &li);
  cg_endfor(c, &lh);
  cg_endfor(c, &lt);
}
