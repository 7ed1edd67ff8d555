/* ops_linalg.c — softmax over the last axis, explicit vector code.
 *
 * Per row, three sweeps over the keys a causal row keeps (j <= i + Lk -
 * Lq; all of them otherwise): the max, then e = exp(x - max) stored and
 * summed, then e scaled by 1/sum; masked keys get exact zeros and are
 * never read. Vectors of VW lanes, a masked last vector; rows of long
 * causal softmaxes ROWS at a time (below). The sum carries 'reassoc'
 * (lanes summed apart, see codegen.h). */
#include "cgint.h"

#include <math.h>
#include <string.h>

/* Rows are run ROWS at a time where there are at least ROWS_FROM of them:
 * a row's sweeps are short chains, each waiting on the last's horizontal
 * max or sum, and four rows' chains overlap (in-process A/B, transformer
 * d 8 evaluation kernel: softmax -21% and the kernel -10% at 192 rows,
 * the kernel -5% at 128, -3% at 64, on an AMD Zen 3 VM; on an Intel
 * Xeon with AVX-512 the training kernel's 64-row softmax -37% and the
 * kernel -10%, the forward at 64 rows -17%). Each row's sweep code is
 * emitted once per row of the group, which costs compile time (the
 * transformer d 8 training kernel 107 -> 135 ms there; eight rows at a
 * time: -12%, 150 ms): not for the short rows of the smallest buckets. */
enum { VW = 8, ROWS = 4, ROWS_FROM = 32 };

typedef struct {
  LLVMValueRef px, po, row, cnt; /* input, output, row offset, kept keys */
  LLVMValueRef nfull;            /* cnt rounded down to VW */
  LLVMValueRef mask;             /* the last, partial vector's lanes */
  bool whole;                    /* rows are whole vectors (Kd % VW == 0) */
} srow;

static LLVMTypeRef vty(cg_ctx *c) { return cg_vty(c, c->f32); }

/* max ignoring NaN (a NaN input still reaches the output through exp) */
static LLVMValueRef vmax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(c->B, LLVMBuildFCmp(c->B, LLVMRealOGT, a, b, ""), a, b, "");
}

static LLVMValueRef hmax(cg_ctx *c, LLVMValueRef v) {
  LLVMTypeRef ty = LLVMTypeOf(v);
  unsigned id = LLVMLookupIntrinsicID("llvm.vector.reduce.fmax", 23);
  LLVMValueRef r = LLVMBuildCall2(c->B, LLVMIntrinsicGetType(c->C, id, &ty, 1),
                                  LLVMGetIntrinsicDeclaration(c->M, id, &ty, 1), &v, 1, "");
  LLVMSetFastMathFlags(r, LLVMFastMathNoNaNs);
  return r;
}

/* For rows r[0..nr): for (j = 0; j < nfull; j += VW) body(j), in one
 * loop over the vectors every row has whole (several rows: independent
 * chains for the out-of-order core), then each row's own rest; then, if
 * keys remain, body at j = nfull once more with r->mask set: lanes j + l
 * < cnt (whole rows: every row's rest under its mask, below). Each row
 * sees its vectors in the same order as on its own: the same values. A
 * scalar tail loop would be vectorised again by LLVM's loop vectoriser
 * (its trip count is not known), which costs more than the whole row. */
typedef void (*sweep_fn)(cg_ctx *c, srow *r, LLVMValueRef j, void *ud);
static void sweep(cg_ctx *c, srow **r, int nr, sweep_fn fn, void **ud) {
  cg_loop l;
  LLVMValueRef all = r[0]->nfull;
  for (int k = 1; k < nr; k++) all = cg_imin(c, all, r[k]->nfull);
  LLVMValueRef vall = LLVMBuildUDiv(c->B, all, cg_i64(c, VW), "");
  LLVMValueRef jb = cg_for(c, &l, cg_i64(c, 0), vall);
  for (int k = 0; k < nr; k++) r[k]->mask = NULL;
  for (int k = 0; k < nr; k++) fn(c, r[k], cg_mulk(c, jb, VW), ud[k]);
  cg_endfor(c, &l);
  LLVMValueRef lanes[VW];
  for (int i = 0; i < VW; i++) lanes[i] = cg_i64(c, i);
  if (nr > 1 && r[0]->whole) {
    /* Whole rows: the vectors from there to the longest row's last, for
     * every row under its mask (lanes j + l < cnt). A row's vectors past
     * its keys are all masked: its max sees -inf, its exps are zeros and
     * its stores zeros, what its masked keys hold anyway. One short loop
     * instead of a loop and a branch per row (mispredicted: the rows of
     * a group differ). Each row's values and their order as on its own. */
    LLVMValueRef most = r[0]->cnt;
    for (int k = 1; k < nr; k++) most = cg_imax(c, most, r[k]->cnt);
    LLVMValueRef vend = LLVMBuildUDiv(c->B, cg_addk(c, most, VW - 1), cg_i64(c, VW), "");
    jb = cg_for(c, &l, vall, vend);
    LLVMValueRef j = cg_mulk(c, jb, VW);
    LLVMValueRef idx = LLVMBuildAdd(c->B, cg_splat(c, j), LLVMConstVector(lanes, VW), "");
    for (int k = 0; k < nr; k++) {
      r[k]->mask = LLVMBuildICmp(c->B, LLVMIntSLT, idx, cg_splat(c, r[k]->cnt), "");
      fn(c, r[k], j, ud[k]);
      r[k]->mask = NULL;
    }
    cg_endfor(c, &l);
    return;
  }
  for (int k = 0; k < nr; k++) {
    srow *q = r[k];
    if (nr > 1) { /* rows not whole vectors */
      jb = cg_for(c, &l, vall, LLVMBuildUDiv(c->B, q->nfull, cg_i64(c, VW), ""));
      fn(c, q, cg_mulk(c, jb, VW), ud[k]);
      cg_endfor(c, &l);
    }
    LLVMBasicBlockRef merge = cg_if(c, LLVMBuildICmp(c->B, LLVMIntSLT, q->nfull, q->cnt, ""));
    LLVMValueRef idx = LLVMBuildAdd(c->B, cg_splat(c, q->nfull), LLVMConstVector(lanes, VW), "");
    q->mask = LLVMBuildICmp(c->B, LLVMIntSLT, idx, cg_splat(c, q->cnt), "");
    fn(c, q, q->nfull, ud[k]);
    q->mask = NULL;
    cg_endif(c, merge);
  }
}

/* x[at..at+VW), or under r->mask with `fill` in the other lanes. When a
 * row is a whole number of vectors (r->whole) the partial vector stays
 * inside its row: plain loads and a select, plain stores (AMD's masked
 * stores are microcoded and slow). */
static LLVMValueRef load(cg_ctx *c, srow *r, LLVMValueRef base, LLVMValueRef at,
                         double fill) {
  if (!r->mask) return cg_vload(c, base, at);
  if (r->whole)
    return LLVMBuildSelect(c->B, r->mask, cg_vload(c, base, at), cg_splat(c, cg_f32c(c, fill)), "");
  LLVMTypeRef vt = vty(c), pt = c->ptr, tys[2] = {vt, pt};
  unsigned id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->M, id, tys, 2);
  LLVMValueRef args[4] = {cg_gep(c, c->f32, base, at), cg_i32c(c, 4), r->mask,
                          cg_splat(c, cg_f32c(c, fill))};
  return LLVMBuildCall2(c->B, LLVMIntrinsicGetType(c->C, id, tys, 2), fn, args, 4, "");
}

static void store(cg_ctx *c, srow *r, LLVMValueRef x, LLVMValueRef base, LLVMValueRef at) {
  if (!r->mask || r->whole) { /* whole rows: the extra lanes are masked keys, 0 */
    cg_vstore(c, x, base, at);
    return;
  }
  LLVMTypeRef tys[2] = {vty(c), c->ptr};
  unsigned id = LLVMLookupIntrinsicID("llvm.masked.store", 17);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->M, id, tys, 2);
  LLVMValueRef args[4] = {x, cg_gep(c, c->f32, base, at), cg_i32c(c, 4), r->mask};
  LLVMBuildCall2(c->B, LLVMIntrinsicGetType(c->C, id, tys, 2), fn, args, 4, "");
}

typedef struct {
  LLVMValueRef acc; /* vector accumulator (alloca) */
  LLVMValueRef m;   /* the row's max (sweep 2), 1/sum (sweep 3) */
} acc;

static void max_body(cg_ctx *c, srow *r, LLVMValueRef j, void *ud) {
  acc *a = ud;
  LLVMValueRef x = load(c, r, r->px, cg_add(c, r->row, j), -INFINITY);
  LLVMBuildStore(c->B, vmax(c, LLVMBuildLoad2(c->B, vty(c), a->acc, ""), x), a->acc);
}

static void exp_body(cg_ctx *c, srow *r, LLVMValueRef j, void *ud) {
  acc *a = ud;
  LLVMValueRef at = cg_add(c, r->row, j);
  LLVMValueRef x = load(c, r, r->px, at, -INFINITY); /* exp: 0 */
  LLVMValueRef e = cg_exp_nonpos(c, cg_fsub(c, x, cg_splat(c, a->m), 0));
  store(c, r, e, r->po, at);
  LLVMBuildStore(c->B, cg_fadd(c, LLVMBuildLoad2(c->B, vty(c), a->acc, ""), e, CG_ACC), a->acc);
}

static void scale_body(cg_ctx *c, srow *r, LLVMValueRef j, void *ud) {
  acc *a = ud;
  LLVMValueRef at = cg_add(c, r->row, j);
  store(c, r, cg_fmul(c, load(c, r, r->po, at, 0), cg_splat(c, a->m), 0), r->po, at);
}

/* The keys row i keeps and where it starts, for row i of batch b */
static void row_at(cg_ctx *c, srow *r, const ir_node *n, int64_t Kd, int64_t Lq,
                   LLVMValueRef b, LLVMValueRef i) {
  r->row = cg_mulk(c, cg_add(c, cg_mulk(c, b, Lq), i), Kd);
  r->cnt = n->attr.causal ? cg_imin(c, cg_addk(c, i, Kd - Lq + 1), cg_i64(c, Kd))
                          : cg_i64(c, Kd);
  r->nfull = LLVMBuildAnd(c->B, r->cnt, cg_i64(c, ~(int64_t)(VW - 1)), "");
}

/* Row r's masked keys (causal): exact zeros; the partial vector wrote its own. */
static void zero_masked(cg_ctx *c, srow *r, int64_t Kd) {
  cg_loop lz;
  LLVMTypeRef vt = LLVMVectorType(c->f32, VW);
  if (r->whole) {
    c->vw = VW;
    LLVMValueRef from = LLVMBuildAnd(c->B, cg_addk(c, r->cnt, VW - 1), cg_i64(c, ~(int64_t)(VW - 1)), "");
    LLVMValueRef j = cg_for(c, &lz, LLVMBuildUDiv(c->B, from, cg_i64(c, VW), ""), cg_i64(c, Kd / VW));
    cg_vstore(c, LLVMConstNull(vt), r->po, cg_add(c, r->row, cg_mulk(c, j, VW)));
    cg_endfor(c, &lz);
    c->vw = 0;
  } else {
    LLVMValueRef j = cg_for(c, &lz, r->cnt, cg_i64(c, Kd));
    cg_store(c, cg_f32c(c, 0.0), r->po, cg_add(c, r->row, j));
    cg_endfor(c, &lz);
  }
}

/* Rows i0 .. i0 + nr - 1 (nr <= ROWS), the three sweeps, together. */
static void rows(cg_ctx *c, const ir_node *n, srow *proto, int64_t Kd, int64_t Lq,
                 LLVMValueRef b, LLVMValueRef i0, int nr, acc *a) {
  srow rr[ROWS], *r[ROWS];
  void *ud[ROWS];
  for (int k = 0; k < ROWS; k++) rr[k] = *proto, r[k] = &rr[k], ud[k] = &a[k];
  LLVMTypeRef vt = LLVMVectorType(c->f32, VW);
  for (int k = 0; k < nr; k++) row_at(c, r[k], n, Kd, Lq, b, cg_addk(c, i0, k));
  c->vw = VW;
  for (int k = 0; k < nr; k++) LLVMBuildStore(c->B, cg_splat(c, cg_f32c(c, -INFINITY)), a[k].acc);
  sweep(c, r, nr, max_body, ud);
  for (int k = 0; k < nr; k++) {
    a[k].m = hmax(c, LLVMBuildLoad2(c->B, vt, a[k].acc, ""));
    LLVMBuildStore(c->B, LLVMConstNull(vt), a[k].acc);
  }
  sweep(c, r, nr, exp_body, ud);
  for (int k = 0; k < nr; k++) {
    LLVMValueRef sum = cg_hsum(c, LLVMBuildLoad2(c->B, vt, a[k].acc, ""));
    a[k].m = cg_fdiv(c, cg_f32c(c, 1.0), sum);
  }
  sweep(c, r, nr, scale_body, ud);
  c->vw = 0;
  if (n->attr.causal)
    for (int k = 0; k < nr; k++) zero_masked(c, r[k], Kd);
}

void cg_emit_softmax(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  int rk = n->type.rank;
  int64_t Kd = n->type.dim[rk - 1];
  int64_t Lq = n->attr.causal && rk >= 2 ? n->type.dim[rk - 2] : 1;
  int64_t nb = ir_numel(&n->type) / (Kd * Lq);
  srow r = {.px = cg_ptr(c, n->in[0]), .po = cg_ptr(c, v), .whole = Kd % VW == 0};
  LLVMTypeRef vt = LLVMVectorType(c->f32, VW);
  acc a[ROWS];
  for (int k = 0; k < ROWS; k++) a[k] = (acc){.acc = cg_alloca(c, vt, NULL)};
  /* an upto softmax (plan.c) runs its rows up to the one read, its
   * other rows zeros */
  bool upto = c->p->node[v].upto;
  LLVMValueRef nr = upto ? cg_upto_rows(c, Lq) : cg_i64(c, Lq);
  cg_loop lb, li;
  LLVMValueRef b = cg_forn(c, &lb, nb);
  if (Lq >= ROWS_FROM) {
    LLVMValueRef groups = LLVMBuildUDiv(c->B, nr, cg_i64(c, ROWS), "");
    LLVMValueRef i = cg_mulk(c, cg_for(c, &li, cg_i64(c, 0), groups), ROWS);
    rows(c, n, &r, Kd, Lq, b, i, ROWS, a);
    cg_endfor(c, &li);
    if (upto || Lq % ROWS) { /* the rows left, one by one */
      LLVMValueRef t = cg_for(c, &li, cg_mulk(c, groups, ROWS), nr);
      rows(c, n, &r, Kd, Lq, b, t, 1, a);
      cg_endfor(c, &li);
    }
  } else {
    LLVMValueRef i = cg_for(c, &li, cg_i64(c, 0), nr);
    rows(c, n, &r, Kd, Lq, b, i, 1, a);
    cg_endfor(c, &li);
  }
  if (upto) cg_zero_rows(c, cg_gep(c, c->f32, r.po, cg_mulk(c, b, Lq * Kd)), nr, Lq, Kd);
  cg_endfor(c, &lb);
}
