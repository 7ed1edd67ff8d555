/* emit.c — the lowering driver and the small IR-building vocabulary every
 * op emitter uses: constants, addresses, counted loops, loop nests over
 * strided accesses, fast-math-flagged arithmetic. */
#include "cgint.h"

#include <llvm-c/DebugInfo.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/BitWriter.h>
#include <stdlib.h>
#include <string.h>

/* ---- constants, types, memory ---- */

LLVMValueRef cg_i64(cg_ctx *c, int64_t v) {
  return LLVMConstInt(c->i64, (unsigned long long)v, 1);
}
LLVMValueRef cg_i32c(cg_ctx *c, int32_t v) {
  return LLVMConstInt(c->i32, (unsigned long long)(int64_t)v, 1);
}
LLVMValueRef cg_f32c(cg_ctx *c, double v) { return LLVMConstReal(c->f32, v); }

LLVMTypeRef cg_vty(cg_ctx *c, LLVMTypeRef scalar) {
  return c->vw > 1 ? LLVMVectorType(scalar, (unsigned)c->vw) : scalar;
}

LLVMValueRef cg_splat(cg_ctx *c, LLVMValueRef x) {
  if (c->vw <= 1) return x;
  if (LLVMIsConstant(x)) {
    LLVMValueRef el[64];
    for (int i = 0; i < c->vw; i++) el[i] = x;
    return LLVMConstVector(el, (unsigned)c->vw);
  }
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), (unsigned)c->vw);
  LLVMValueRef v = LLVMBuildInsertElement(c->B, LLVMGetPoison(vt), x, cg_i32c(c, 0), "");
  LLVMValueRef zero = LLVMConstNull(LLVMVectorType(c->i32, (unsigned)c->vw));
  return LLVMBuildShuffleVector(c->B, v, LLVMGetPoison(vt), zero, "");
}

LLVMValueRef cg_vload(cg_ctx *c, LLVMValueRef base, LLVMValueRef idx) {
  return cg_load(c, cg_vty(c, c->f32), base, idx);
}

void cg_vstore(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx) {
  LLVMValueRef s = LLVMBuildStore(c->B, v, cg_gep(c, c->f32, base, idx));
  LLVMSetAlignment(s, 4);
}

LLVMTypeRef cg_elty(cg_ctx *c, const ir_node *n) {
  return n->type.dtype == IR_I32 ? c->i32 : c->f32;
}

LLVMValueRef cg_ptr(cg_ctx *c, int v) {
  const cg_node_plan *q = &c->p->node[v];
  switch (q->kind) {
  case CG_LEAF: return c->leaf[q->leaf];
  case CG_MAT:
    if (q->into >= 0) return cg_gep(c, cg_elty(c, &c->f->nodes[v]), cg_ptr(c, q->into),
                                    cg_i64(c, q->into_off));
    return q->out >= 0 ? c->out[q->out] : c->slot[q->slot];
  case CG_ALIAS: {
    if (q->folded >= 0) return cg_ptr(c, q->folded);
    const ir_node *n = &c->f->nodes[v];
    LLVMValueRef base = cg_ptr(c, n->in[0]);
    if (n->op != IR_OP_SLICE || n->attr.start == 0) return base;
    cg_access a;
    cg_contig(&c->f->nodes[n->in[0]].type, &a);
    return cg_gep(c, cg_elty(c, n), base, cg_i64(c, n->attr.start * a.st[n->attr.axis]));
  }
  default: abort(); /* the plan guarantees storage for every read */
  }
}

LLVMValueRef cg_gep(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base,
                    LLVMValueRef idx) {
  return LLVMBuildInBoundsGEP2(c->B, ty, base, &idx, 1, "");
}

LLVMValueRef cg_load(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base,
                     LLVMValueRef idx) {
  LLVMTypeRef el = LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? LLVMGetElementType(ty) : ty;
  LLVMValueRef v = LLVMBuildLoad2(c->B, ty, cg_gep(c, el, base, idx), "");
  LLVMSetAlignment(v, 4);
  return v;
}

LLVMValueRef cg_loadf(cg_ctx *c, LLVMValueRef base, LLVMValueRef idx) {
  return cg_load(c, c->f32, base, idx);
}

void cg_store(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx) {
  LLVMValueRef s =
      LLVMBuildStore(c->B, v, cg_gep(c, LLVMTypeOf(v), base, idx));
  LLVMSetAlignment(s, 4);
}

void cg_zero(cg_ctx *c, LLVMValueRef base, int64_t numel) {
  LLVMBuildMemSet(c->B, base, LLVMConstInt(LLVMInt8TypeInContext(c->C), 0, 0),
                  cg_i64(c, 4 * numel), 4);
}

LLVMValueRef cg_read_row(cg_ctx *c, int leaf, int64_t R) {
  LLVMValueRef p = cg_load(c, c->i32, cg_ptr(c, leaf), cg_i64(c, 0));
  p = LLVMBuildSExt(c->B, p, c->i64, "");
  return cg_imin(c, cg_imax(c, p, cg_i64(c, 0)), cg_i64(c, R - 1));
}

LLVMValueRef cg_upto_rows(cg_ctx *c, int64_t R) {
  return cg_addk(c, cg_read_row(c, c->p->upto_at, R), 1);
}

void cg_zero_rows(cg_ctx *c, LLVMValueRef base, LLVMValueRef from, int64_t R, int64_t C) {
  LLVMValueRef at = cg_gep(c, c->f32, base, cg_mulk(c, from, C));
  LLVMValueRef bytes = cg_mulk(c, LLVMBuildSub(c->B, cg_i64(c, R), from, ""), 4 * C);
  LLVMBuildMemSet(c->B, at, LLVMConstInt(LLVMInt8TypeInContext(c->C), 0, 0), bytes, 4);
}

void cg_memcpy(cg_ctx *c, LLVMValueRef dst, LLVMValueRef src, int64_t numel) {
  LLVMBuildMemCpy(c->B, dst, 4, src, 4, cg_i64(c, 4 * numel));
}

/* dst[i] += src[i] over numel floats (a loop LLVM vectorises). */
static void add_into(cg_ctx *c, LLVMValueRef dst, LLVMValueRef src, int64_t numel) {
  cg_loop l;
  LLVMValueRef i = cg_forn(c, &l, numel);
  cg_store(c, LLVMBuildFAdd(c->B, cg_loadf(c, dst, i), cg_loadf(c, src, i), ""), dst, i);
  cg_endfor(c, &l);
}

/* The outputs of node v, just computed in its slot, that accumulate
 * (cg_options.accumulate), added into their buffers. */
static void accumulate_outs(cg_ctx *c, int v) {
  const ir_func *f = c->f;
  for (int j = 0; j < f->n_outs; j++)
    if (f->outs[j].node == v && c->p->accumulate[j])
      add_into(c, c->out[j], cg_ptr(c, v), ir_numel(&f->nodes[v].type));
}

LLVMValueRef cg_alloca(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef init) {
  LLVMBuilderRef b = LLVMCreateBuilderInContext(c->C);
  LLVMPositionBuilderBefore(b, c->alloca_at);
  LLVMValueRef a = LLVMBuildAlloca(b, ty, "");
  LLVMDisposeBuilder(b);
  if (init) LLVMBuildStore(c->B, init, a);
  return a;
}

/* ---- arithmetic ---- */

LLVMValueRef cg_add(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWAdd(c->B, a, b, "");
}
LLVMValueRef cg_mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWMul(c->B, a, b, "");
}
LLVMValueRef cg_addk(cg_ctx *c, LLVMValueRef a, int64_t k) {
  return k ? cg_add(c, a, cg_i64(c, k)) : a;
}
LLVMValueRef cg_mulk(cg_ctx *c, LLVMValueRef a, int64_t k) {
  return k == 1 ? a : cg_mul(c, a, cg_i64(c, k));
}
LLVMValueRef cg_imax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(c->B, LLVMBuildICmp(c->B, LLVMIntSGT, a, b, ""), a, b,
                         "");
}
LLVMValueRef cg_imin(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(c->B, LLVMBuildICmp(c->B, LLVMIntSLT, a, b, ""), a, b,
                         "");
}

static LLVMValueRef flag(LLVMValueRef v, unsigned fmf) {
  if (fmf && LLVMIsAInstruction(v)) LLVMSetFastMathFlags(v, fmf);
  return v;
}
LLVMValueRef cg_fadd(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, unsigned fmf) {
  return flag(LLVMBuildFAdd(c->B, a, b, ""), fmf);
}
LLVMValueRef cg_fsub(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, unsigned fmf) {
  return flag(LLVMBuildFSub(c->B, a, b, ""), fmf);
}
LLVMValueRef cg_fmul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, unsigned fmf) {
  return flag(LLVMBuildFMul(c->B, a, b, ""), fmf);
}
LLVMValueRef cg_fdiv(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFDiv(c->B, a, b, "");
}

LLVMValueRef cg_intrin(cg_ctx *c, const char *name, LLVMTypeRef ty,
                       LLVMValueRef *args, unsigned n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->M, id, &ty, 1);
  LLVMTypeRef fty = LLVMIntrinsicGetType(c->C, id, &ty, 1);
  return LLVMBuildCall2(c->B, fty, fn, args, n, "");
}

LLVMValueRef cg_shuffle(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, const int *mask,
                        int n) {
  LLVMValueRef k[64];
  for (int i = 0; i < n; i++) k[i] = cg_i32c(c, mask[i]);
  return LLVMBuildShuffleVector(c->B, a, b, LLVMConstVector(k, (unsigned)n), "");
}

LLVMValueRef cg_lanes(cg_ctx *c, LLVMValueRef x, int w, int h) {
  int m[32];
  for (int i = 0; i < w; i++) m[i] = w * h + i;
  return cg_shuffle(c, x, x, m, w);
}

LLVMValueRef cg_hsum(cg_ctx *c, LLVMValueRef v) {
  LLVMValueRef args[2] = {cg_f32c(c, -0.0), v};
  LLVMTypeRef ty = LLVMTypeOf(v);
  unsigned id = LLVMLookupIntrinsicID("llvm.vector.reduce.fadd", 23);
  LLVMValueRef r = LLVMBuildCall2(c->B, LLVMIntrinsicGetType(c->C, id, &ty, 1),
                                  LLVMGetIntrinsicDeclaration(c->M, id, &ty, 1), args, 2, "");
  LLVMSetFastMathFlags(r, LLVMFastMathAllowReassoc);
  return r;
}

/* a*b+d, fused only where the target has FMA (llvm.fmuladd) */
LLVMValueRef cg_fmuladd(cg_ctx *c, LLVMValueRef a, LLVMValueRef b,
                        LLVMValueRef d) {
  LLVMValueRef args[3] = {a, b, d};
  return cg_intrin(c, "llvm.fmuladd", LLVMTypeOf(a), args, 3);
}

/* llvm.maximum: a NaN operand gives NaN, as in the interpreter */
LLVMValueRef cg_fmax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, unsigned fmf) {
  LLVMValueRef args[2] = {a, b};
  return flag(cg_intrin(c, "llvm.maximum", LLVMTypeOf(a), args, 2), fmf);
}

/* ---- control flow ---- */

/* Loops are bottom-tested after an entry guard (omitted when the bounds
 * are constants with start < end): the shape LLVM's loop passes expect. */
LLVMValueRef cg_for(cg_ctx *c, cg_loop *l, LLVMValueRef start,
                    LLVMValueRef end) {
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->B);
  l->body = LLVMAppendBasicBlockInContext(c->C, c->fn, "loop");
  l->exit = LLVMAppendBasicBlockInContext(c->C, c->fn, "done");
  l->end = end;
  l->interleave = 0;
  l->scalar = false;
  bool known = LLVMIsAConstantInt(start) && LLVMIsAConstantInt(end) &&
               LLVMConstIntGetSExtValue(start) < LLVMConstIntGetSExtValue(end);
  if (known)
    LLVMBuildBr(c->B, l->body);
  else
    LLVMBuildCondBr(c->B, LLVMBuildICmp(c->B, LLVMIntSLT, start, end, ""),
                    l->body, l->exit);
  LLVMPositionBuilderAtEnd(c->B, l->body);
  l->iv = LLVMBuildPhi(c->B, c->i64, "i");
  LLVMAddIncoming(l->iv, &start, &pre, 1);
  c->n_loops++;
  return l->iv;
}

/* A one-trip loop is no loop: iv is the constant 0. */
LLVMValueRef cg_forn(cg_ctx *c, cg_loop *l, int64_t n) {
  if (n == 1) {
    l->body = NULL;
    return cg_i64(c, 0);
  }
  return cg_for(c, l, cg_i64(c, 0), cg_i64(c, n));
}

/* The loop ID of a latch branch: distinct !{self, !{"llvm.loop.interleave.count",
 * i32 n}}, self-referential through a temporary node. */
/* llvm.loop metadata `name` = n on the loop whose latch branch is br */
static void loop_hint(cg_ctx *c, LLVMValueRef br, const char *name, unsigned n) {
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(c->C, NULL, 0);
  LLVMMetadataRef hint[2] = {
      LLVMMDStringInContext2(c->C, name, strlen(name)),
      LLVMValueAsMetadata(LLVMConstInt(c->i32, n, 0))};
  LLVMMetadataRef ops[2] = {tmp, LLVMMDNodeInContext2(c->C, hint, 2)};
  LLVMMetadataRef id = LLVMMDNodeInContext2(c->C, ops, 2);
  LLVMMetadataReplaceAllUsesWith(tmp, id);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(c->C, "llvm.loop", 9),
                  LLVMMetadataAsValue(c->C, id));
}

void cg_endfor(cg_ctx *c, cg_loop *l) {
  if (!l->body) return;
  LLVMValueRef nx = LLVMBuildNUWAdd(c->B, l->iv, cg_i64(c, 1), "");
  LLVMSetNSW(nx, 1);
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->B);
  LLVMValueRef br = LLVMBuildCondBr(c->B, LLVMBuildICmp(c->B, LLVMIntSLT, nx, l->end, ""),
                                    l->body, l->exit);
  if (l->interleave > 1) loop_hint(c, br, "llvm.loop.interleave.count", l->interleave);
  if (l->scalar) loop_hint(c, br, "llvm.loop.vectorize.width", 1);
  LLVMAddIncoming(l->iv, &nx, &latch, 1);
  /* keep blocks in emission order for readable dumps */
  LLVMMoveBasicBlockAfter(l->exit, latch);
  LLVMPositionBuilderAtEnd(c->B, l->exit);
}

LLVMBasicBlockRef cg_if(cg_ctx *c, LLVMValueRef cond) {
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(c->C, c->fn, "then");
  LLVMBasicBlockRef merge = LLVMAppendBasicBlockInContext(c->C, c->fn, "endif");
  LLVMBuildCondBr(c->B, cond, then, merge);
  LLVMPositionBuilderAtEnd(c->B, then);
  return merge;
}

void cg_endif(cg_ctx *c, LLVMBasicBlockRef merge) {
  LLVMBuildBr(c->B, merge);
  LLVMMoveBasicBlockAfter(merge, LLVMGetInsertBlock(c->B));
  LLVMPositionBuilderAtEnd(c->B, merge);
}

void cg_contig(const ir_type *t, cg_access *a) {
  int64_t s = 1;
  a->off = 0;
  for (int d = t->rank - 1; d >= 0; d--) {
    a->st[d] = s;
    s *= t->dim[d];
  }
}

void cg_nest(cg_ctx *c, int rank, const int *dims, cg_access *acc,
             int n_acc, cg_body_fn body, void *ud, unsigned interleave) {
  cg_nest_rows(c, rank, dims, acc, n_acc, body, ud, interleave, NULL);
}

void cg_nest_rows(cg_ctx *c, int rank, const int *dims, cg_access *acc, int n_acc,
                  cg_body_fn body, void *ud, unsigned interleave, LLVMValueRef rows) {
  /* drop size-1 dims, then merge d into d-1 where every access agrees */
  int64_t dm[IR_MAX_RANK], first = 0;
  int r = 0;
  for (int d = 0; d < rank; d++) {
    if (dims[d] == 1) continue;
    if (r == 0) first = dims[d];
    for (int k = 0; k < n_acc; k++) acc[k].st[r] = acc[k].st[d];
    dm[r++] = dims[d];
  }
  int m = 0;
  for (int d = 0; d < r; d++) {
    bool merge = m > 0;
    for (int k = 0; merge && k < n_acc; k++)
      merge = acc[k].st[m - 1] == acc[k].st[d] * dm[d];
    if (merge) {
      dm[m - 1] *= dm[d];
      for (int k = 0; k < n_acc; k++) acc[k].st[m - 1] = acc[k].st[d];
    } else {
      dm[m] = dm[d];
      for (int k = 0; k < n_acc; k++) acc[k].st[m] = acc[k].st[d];
      m++;
    }
  }
  cg_loop l[IR_MAX_RANK];
  LLVMValueRef iv[IR_MAX_RANK];
  for (int d = 0; d < m; d++) /* the outermost: rows of dm[0] / first elements */
    iv[d] = rows && d == 0 ? cg_for(c, &l[d], cg_i64(c, 0), cg_mulk(c, rows, dm[0] / first))
                           : cg_forn(c, &l[d], dm[d]);
  /* interleaving needs two full rounds of 8-lane vectors: a short
   * innermost loop would run scalar instead (a [64,16] group whose
   * innermost loop had 16 steps took 7x longer) */
  if (m > 0) {
    unsigned n = interleave;
    while (n > 1 && dm[m - 1] < 2 * 8 * (int64_t)n) n /= 2;
    l[m - 1].interleave = n;
  }
  LLVMValueRef *offs = malloc(sizeof *offs * ((size_t)n_acc + 1));
  if (!offs) abort();
  for (int k = 0; k < n_acc; k++) {
    LLVMValueRef o = cg_i64(c, acc[k].off);
    for (int d = 0; d < m; d++)
      if (acc[k].st[d]) o = cg_add(c, o, cg_mulk(c, iv[d], acc[k].st[d]));
    offs[k] = o;
  }
  body(c, offs, ud);
  free(offs);
  for (int d = m - 1; d >= 0; d--) cg_endfor(c, &l[d]);
}

/* dst[dat + k*ld_dst + c] = src[at + c*ld_src + k] for k, c < 8: an 8x8
 * block transposed in registers (unpack, shuffle, lane swap), 8 vector
 * loads and stores instead of 64 strided scalar moves. */
void cg_transpose8(cg_ctx *c, LLVMValueRef src, LLVMValueRef at, int64_t ld_src,
                   LLVMValueRef dst, LLVMValueRef dat, int64_t ld_dst) {
  static const int lo[] = {0, 8, 1, 9, 4, 12, 5, 13}, hi[] = {2, 10, 3, 11, 6, 14, 7, 15};
  static const int lo2[] = {0, 1, 8, 9, 4, 5, 12, 13}, hi2[] = {2, 3, 10, 11, 6, 7, 14, 15};
  static const int lo4[] = {0, 1, 2, 3, 8, 9, 10, 11}, hi4[] = {4, 5, 6, 7, 12, 13, 14, 15};
  LLVMTypeRef vt = LLVMVectorType(c->f32, 8);
  LLVMValueRef r[8], t[8], u[8], o[8];
  for (int k = 0; k < 8; k++) {
    r[k] = LLVMBuildLoad2(c->B, vt, cg_gep(c, c->f32, src, cg_addk(c, at, k * ld_src)), "");
    LLVMSetAlignment(r[k], 4);
  }
#define SHUF(a, b, m) cg_shuffle(c, a, b, m, 8)
  for (int k = 0; k < 8; k += 2) t[k] = SHUF(r[k], r[k + 1], lo), t[k + 1] = SHUF(r[k], r[k + 1], hi);
  for (int k = 0; k < 8; k += 4) {
    u[k] = SHUF(t[k], t[k + 2], lo2), u[k + 1] = SHUF(t[k], t[k + 2], hi2);
    u[k + 2] = SHUF(t[k + 1], t[k + 3], lo2), u[k + 3] = SHUF(t[k + 1], t[k + 3], hi2);
  }
  for (int k = 0; k < 4; k++) o[k] = SHUF(u[k], u[k + 4], lo4), o[k + 4] = SHUF(u[k], u[k + 4], hi4);
#undef SHUF
  for (int k = 0; k < 8; k++) {
    LLVMValueRef st = LLVMBuildStore(c->B, o[k], cg_gep(c, c->f32, dst, cg_addk(c, dat, k * ld_dst)));
    LLVMSetAlignment(st, 4);
  }
}

void cg_transpose(cg_ctx *c, LLVMValueRef dst, LLVMValueRef src, int64_t R, int64_t C) {
  cg_loop li, lj;
  if (R % 8 == 0 && C % 8 == 0) {
    LLVMValueRef ib = cg_forn(c, &li, R / 8), jb = cg_forn(c, &lj, C / 8);
    cg_transpose8(c, src, cg_add(c, cg_mulk(c, ib, 8 * C), cg_mulk(c, jb, 8)), C, dst,
                  cg_add(c, cg_mulk(c, jb, 8 * R), cg_mulk(c, ib, 8)), R);
  } else {
    LLVMValueRef i = cg_forn(c, &li, R), j = cg_forn(c, &lj, C);
    cg_store(c, cg_loadf(c, src, cg_add(c, cg_mulk(c, i, C), j)), dst,
             cg_add(c, cg_mulk(c, j, R), i));
    li.scalar = lj.scalar = true;
  }
  cg_endfor(c, &lj);
  cg_endfor(c, &li);
}

/* ---- denormals ---- */

static void mxcsr(cg_ctx *c, const char *name, LLVMValueRef at) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->M, id, NULL, 0);
  LLVMBuildCall2(c->B, LLVMIntrinsicGetType(c->C, id, NULL, 0), fn, &at, 1, "");
}

LLVMValueRef cg_ftz_begin(cg_ctx *c) {
  if (strncmp(LLVMGetTarget(c->M), "x86_64", 6)) return NULL;
  LLVMValueRef old = cg_alloca(c, c->i32, NULL), cur = cg_alloca(c, c->i32, NULL);
  mxcsr(c, "llvm.x86.sse.stmxcsr", old);
  LLVMValueRef v = LLVMBuildLoad2(c->B, c->i32, old, "");
  LLVMBuildStore(c->B, LLVMBuildOr(c->B, v, cg_i32c(c, 0x8040), ""), cur);
  mxcsr(c, "llvm.x86.sse.ldmxcsr", cur);
  return old;
}

void cg_ftz_end(cg_ctx *c, LLVMValueRef saved) {
  if (saved) mxcsr(c, "llvm.x86.sse.ldmxcsr", saved);
}

/* ---- out-of-range indices ---- */

void cg_count_oob(cg_ctx *c, LLVMValueRef bad) {
  LLVMValueRef n = LLVMBuildLoad2(c->B, c->i32, c->oob, "");
  n = LLVMBuildAdd(c->B, n, LLVMBuildZExt(c->B, bad, c->i32, ""), "");
  LLVMBuildStore(c->B, n, c->oob);
}

LLVMValueRef cg_clamp_index(cg_ctx *c, LLVMValueRef v, int64_t n) {
  LLVMValueRef bad = LLVMBuildICmp(c->B, LLVMIntUGE, v, cg_i32c(c, (int32_t)n), "");
  cg_count_oob(c, bad);
  LLVMValueRef lo = LLVMBuildICmp(c->B, LLVMIntSLT, v, cg_i32c(c, 0), "");
  LLVMValueRef hi = cg_i32c(c, (int32_t)(n - 1));
  v = LLVMBuildSelect(c->B, bad, LLVMBuildSelect(c->B, lo, cg_i32c(c, 0), hi, ""),
                      v, "");
  return LLVMBuildSExt(c->B, v, c->i64, "");
}

/* ---- the driver ---- */

static void emit_node(cg_ctx *c, int v) {
  const cg_node_plan *q = &c->p->node[v];
  if (q->kind != CG_MAT) return;
  ir_op op = c->f->nodes[v].op;
  if (cg_is_ewise(op) || cg_is_view(op) || op == IR_OP_FILL) {
    cg_emit_group(c, v);
    return;
  }
  switch (op) {
  case IR_OP_MATMUL: cg_emit_matmul(c, v); break;
  case IR_OP_SUM:
  case IR_OP_AMAX:
  case IR_OP_MEAN: cg_emit_reduce(c, v); break;
  case IR_OP_SOFTMAX: cg_emit_softmax(c, v); break;
  case IR_OP_PAD: cg_emit_pad(c, v); break;
  case IR_OP_CONCAT: cg_emit_concat(c, v); break;
  case IR_OP_GATHER: cg_emit_gather(c, v); break;
  case IR_OP_SCATTER_ADD: cg_emit_scatter_add(c, v); break;
  case IR_OP_SELECT_ROW: cg_emit_select_row(c, v); break;
  case IR_OP_ONEHOT: cg_emit_onehot(c, v); break;
  case IR_OP_CROSS_ENTROPY: cg_emit_cross_entropy(c, v); break;
  case IR_OP_CONV1D: cg_emit_conv1d(c, v); break;
  case IR_OP_CONV1D_BWD_X: cg_emit_conv1d_bwd_x(c, v); break;
  case IR_OP_CONV1D_BWD_W: cg_emit_conv1d_bwd_w(c, v); break;
  case IR_OP_ROPE: cg_emit_rope(c, v); break;
  case IR_OP_SCAN: cg_emit_scan(c, v); break;
  case IR_OP_SCAN_BWD: cg_emit_scan_bwd(c, v); break;
  default: abort(); /* leaves and reshape are never CG_MAT */
  }
}

static void add_attr(cg_ctx *c, LLVMValueRef fn, unsigned idx,
                     const char *name, uint64_t val) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(c->C, kind, val));
}

/* Attributes of buffer pointer parameter a (1-based) of fn that carries
 * pointer i of the inner kernel's list (leaves, outputs, slots). */
static void buffer_attrs(cg_ctx *c, LLVMValueRef fn, unsigned a, int i) {
  const cg_plan *p = c->p;
  int np = p->n_leaves + c->f->n_outs + p->n_slots;
  add_attr(c, fn, a, "noalias", 0);
  add_attr(c, fn, a, "nocapture", 0);
  if (i < p->n_leaves) add_attr(c, fn, a, "readonly", 0);
  if (i >= np - p->n_slots) {
    add_attr(c, fn, a, "align", 64);
    add_attr(c, fn, a, "dereferenceable", (uint64_t)p->slot_bytes[i - (np - p->n_slots)]);
  }
}

/* Starts fn's body: an entry block for allocas, then "start" where the
 * builder is left; the out-of-range counter. */
static void begin_body(cg_ctx *c, LLVMValueRef fn) {
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->C, fn, "entry");
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(c->C, fn, "start");
  c->fn = fn;
  LLVMPositionBuilderAtEnd(c->B, entry);
  c->alloca_at = LLVMBuildBr(c->B, start);
  LLVMPositionBuilderAtEnd(c->B, start);
  c->oob = cg_alloca(c, c->i32, cg_i32c(c, 0));
}

/* The key by which twins are found: the bitcode of the scratch module
 * that holds just the candidate (always named recall.node) and the
 * intrinsics it declares. A fresh module numbers attribute groups and
 * loop metadata from zero, so twins' bitcode is byte for byte the same;
 * writing it costs about a third of printing the function as text. */
static cg_key fn_key(LLVMModuleRef scratch) {
  LLVMMemoryBufferRef mb = LLVMWriteBitcodeToMemoryBuffer(scratch);
  if (!mb) abort();
  cg_key k = {.n = LLVMGetBufferSize(mb)};
  k.bytes = malloc(k.n ? k.n : 1);
  if (!k.bytes) abort();
  memcpy(k.bytes, LLVMGetBufferStart(mb), k.n);
  LLVMDisposeMemoryBuffer(mb);
  return k;
}

/* The index in c->fns of the node function with key k, or -1. Layers
 * of a model repeat, and the backward repeats the forward's shapes: half
 * the functions or more are twins, and LLVM's time goes by the function. */
static int find_twin(const cg_ctx *c, cg_key k) {
  for (int i = 0; i < c->n_fns; i++)
    if (c->fn_key[i].n == k.n && !memcmp(c->fn_key[i].bytes, k.bytes, k.n)) return i;
  return -1;
}

static int add_fn(cg_ctx *c, LLVMValueRef fn, cg_key key) {
  if (c->n_fns == c->cap_fns) {
    c->cap_fns = c->cap_fns ? 2 * c->cap_fns : 64;
    c->fns = realloc(c->fns, sizeof *c->fns * (size_t)c->cap_fns);
    c->fn_key = realloc(c->fn_key, sizeof *c->fn_key * (size_t)c->cap_fns);
    c->fn_unit = realloc(c->fn_unit, sizeof *c->fn_unit * (size_t)c->cap_fns);
    if (!c->fns || !c->fn_key || !c->fn_unit) abort();
  }
  c->fns[c->n_fns] = fn;
  c->fn_unit[c->n_fns] = c->unit;
  c->fn_key[c->n_fns] = key;
  c->unit_load[c->unit] += (int64_t)key.n;
  return c->n_fns++;
}

/* Makes unit u current: context, module, builder and the cached types. */
static void use_unit(cg_ctx *c, int u) {
  c->unit = u;
  c->C = c->units[u].C;
  c->M = c->units[u].M;
  c->B = c->builders[u];
  c->f32 = LLVMFloatTypeInContext(c->C);
  c->i32 = LLVMInt32TypeInContext(c->C);
  c->i64 = LLVMInt64TypeInContext(c->C);
  c->i1 = LLVMInt1TypeInContext(c->C);
  c->ptr = LLVMPointerTypeInContext(c->C, 0);
}

/* The unit with the least code so far: node functions are spread so that
 * the units' compiles take about as long. */
static int lightest_unit(const cg_ctx *c) {
  int best = 0;
  for (int u = 1; u < c->n_units; u++)
    if (c->unit_load[u] < c->unit_load[best]) best = u;
  return best;
}

/* Node v's code as function fn of the given parameters: c->leaf[used[j]]
 * is parameter j, the rest NULL (all: the pointers of every buffer). */
static void node_body(cg_ctx *c, LLVMValueRef fn, int v, const int *used, int k, int np,
                      bool noalias) {
  for (int i = 0; i < np; i++) c->leaf[i] = NULL;
  for (int j = 0; j < k; j++) {
    c->leaf[used ? used[j] : j] = LLVMGetParam(fn, (unsigned)j);
    if (noalias) { /* noalias only: the same text for twins */
      add_attr(c, fn, (unsigned)j + 1, "noalias", 0);
      add_attr(c, fn, (unsigned)j + 1, "nocapture", 0);
    }
  }
  begin_body(c, fn);
  emit_node(c, v);
  LLVMBuildRet(c->B, LLVMBuildLoad2(c->B, c->i32, c->oob, ""));
}

/* Node v as a function of its own, called from the inner kernel: LLVM's
 * passes and register allocator then work on many small functions
 * instead of one with hundreds of loops and pointers live across all of
 * them, which cost superlinear time (and spills). The function takes
 * just the buffers v's code uses, found by emitting it once into a
 * throw-away function with all of them; it returns its out-of-range
 * count. noinline keeps it apart. Both that probe and the candidate
 * whose bitcode is the key by which twins are found (fn_key) are built
 * in a scratch module of their own: loop metadata, numbered per module,
 * made twins differ in the unit's module (the second Mamba layer's silu,
 * softplus and exp were compiled twice); only a function without a twin
 * is emitted into the unit's module. */
static void emit_node_fn(cg_ctx *c, int v, const char *name) {
  const cg_plan *p = c->p;
  int np = p->n_leaves + c->f->n_outs + p->n_slots;
  LLVMValueRef inner = c->fn, inner_at = c->alloca_at, inner_oob = c->oob;
  LLVMBasicBlockRef here = LLVMGetInsertBlock(c->B);
  LLVMValueRef *all = malloc(sizeof *all * ((size_t)np + 1));
  LLVMTypeRef *pt = malloc(sizeof *pt * ((size_t)np + 1));
  LLVMValueRef *args = malloc(sizeof *args * ((size_t)np + 1));
  int *used = malloc(sizeof *used * ((size_t)np + 1));
  if (!all || !pt || !args || !used) abort();
  memcpy(all, c->leaf, sizeof *all * (size_t)np);
  use_unit(c, lightest_unit(c));
  for (int i = 0; i < np; i++) pt[i] = c->ptr;

  LLVMModuleRef unit_M = c->M;
  c->M = LLVMModuleCreateWithNameInContext("recall.scratch", c->C);
  LLVMValueRef probe = LLVMAddFunction(c->M, "recall.probe",
                                       LLVMFunctionType(c->i32, pt, (unsigned)np, 0));
  int loops = c->n_loops;
  node_body(c, probe, v, NULL, np, np, false);
  c->n_loops = loops;
  int k = 0;
  for (int i = 0; i < np; i++)
    if (LLVMGetFirstUse(LLVMGetParam(probe, (unsigned)i))) used[k++] = i;
  LLVMDeleteFunction(probe); /* not part of the key */
  LLVMTypeRef fty = LLVMFunctionType(c->i32, pt, (unsigned)k, 0);
  LLVMValueRef cand = LLVMAddFunction(c->M, "recall.node", fty);
  add_attr(c, cand, LLVMAttributeFunctionIndex, "nounwind", 0);
  add_attr(c, cand, LLVMAttributeFunctionIndex, "noinline", 0);
  node_body(c, cand, v, used, k, np, true);
  c->n_loops = loops;
  cg_key key = fn_key(c->M);
  LLVMDisposeModule(c->M);
  c->M = unit_M;

  int i = find_twin(c, key);
  if (i >= 0) {
    free(key.bytes);
  } else {
    char buf[300];
    snprintf(buf, sizeof buf, "%s.n%d", name, v);
    LLVMValueRef fn = LLVMAddFunction(c->M, buf, fty);
    if (c->n_units == 1) LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind", 0);
    add_attr(c, fn, LLVMAttributeFunctionIndex, "noinline", 0);
    if (c->wide) { /* LLVM's vectoriser too: 256-bit by default on such hosts */
      const char *k = "prefer-vector-width", *w = "512";
      LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                              LLVMCreateStringAttribute(c->C, k, (unsigned)strlen(k), w, 3));
    }
    node_body(c, fn, v, used, k, np, true);
    i = add_fn(c, fn, key);
  }
  for (int j = 0; j < k; j++) args[j] = all[used[j]];
  LLVMValueRef fn = c->fns[i];

  use_unit(c, 0);
  if (c->fn_unit[i] != 0) { /* declared in unit 0, linked by the JIT */
    size_t len;
    const char *fname = LLVMGetValueName2(fn, &len);
    LLVMValueRef decl = LLVMGetNamedFunction(c->M, fname);
    if (!decl) {
      for (int j = 0; j < k; j++) pt[j] = c->ptr;
      decl = LLVMAddFunction(c->M, fname, LLVMFunctionType(c->i32, pt, (unsigned)k, 0));
      add_attr(c, decl, LLVMAttributeFunctionIndex, "nounwind", 0);
    }
    fn = decl;
  }
  memcpy(c->leaf, all, sizeof *all * (size_t)np);
  c->fn = inner, c->alloca_at = inner_at, c->oob = inner_oob;
  LLVMPositionBuilderAtEnd(c->B, here);
  LLVMValueRef r = LLVMBuildCall2(c->B, LLVMGlobalGetValueType(fn), fn, args, (unsigned)k, "");
  LLVMBuildStore(c->B, LLVMBuildAdd(c->B, LLVMBuildLoad2(c->B, c->i32, c->oob, ""), r, ""),
                 c->oob);
  free(all), free(pt), free(args), free(used);
}

/* The inner kernel (or prep entry): one noalias pointer per leaf, output
 * and slot, so LLVM knows no two buffers overlap (no runtime alias
 * checks). */
static LLVMValueRef make_inner(cg_ctx *c, const char *name) {
  const cg_plan *p = c->p;
  int np = p->n_leaves + c->f->n_outs + p->n_slots;
  LLVMTypeRef *pt = malloc(sizeof *pt * ((size_t)np + 1));
  if (!pt) abort();
  for (int i = 0; i < np; i++) pt[i] = c->ptr;
  LLVMTypeRef fty = LLVMFunctionType(c->i32, pt, (unsigned)np, 0);
  free(pt);
  char buf[256];
  snprintf(buf, sizeof buf, "%s.body", name);
  LLVMValueRef fn = LLVMAddFunction(c->M, buf, fty);
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  add_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind", 0);
  for (int i = 0; i < np; i++) buffer_attrs(c, fn, (unsigned)i + 1, i);
  if (!c->leaf) c->leaf = malloc(sizeof *c->leaf * ((size_t)np + 1));
  if (!c->leaf) abort();
  for (int i = 0; i < np; i++) c->leaf[i] = LLVMGetParam(fn, (unsigned)i);
  c->out = c->leaf + p->n_leaves;
  c->slot = c->out + c->f->n_outs;
  return fn;
}

/* The entry point: int32 name(ptr leaves, ptr outs, ptr arena); with ftz
 * it runs the inner kernel with denormals flushed and restores the
 * caller's floating-point state after. The prep entry (no outs) passes
 * null for the outputs, which it never touches. */
static void make_outer(cg_ctx *c, const char *name, LLVMValueRef inner,
                       bool ftz, bool outs) {
  const cg_plan *p = c->p;
  int np = p->n_leaves + c->f->n_outs + p->n_slots;
  LLVMTypeRef pt[3] = {c->ptr, c->ptr, c->ptr};
  LLVMValueRef fn = LLVMAddFunction(c->M, name, LLVMFunctionType(c->i32, pt, 3, 0));
  add_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind", 0);
  add_attr(c, fn, 3, "align", 64);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->C, fn, "entry");
  LLVMPositionBuilderAtEnd(c->B, entry);
  c->fn = fn;
  c->alloca_at = LLVMBuildUnreachable(c->B); /* a placeholder, removed below */
  LLVMPositionBuilderBefore(c->B, c->alloca_at);
  LLVMValueRef saved = ftz ? cg_ftz_begin(c) : NULL;
  LLVMValueRef *args = malloc(sizeof *args * ((size_t)np + 1));
  if (!args) abort();
  for (int i = 0; i < np; i++) {
    if (i >= p->n_leaves && i < p->n_leaves + c->f->n_outs && !outs) {
      args[i] = LLVMConstNull(c->ptr);
    } else if (i < p->n_leaves + c->f->n_outs) {
      bool lf = i < p->n_leaves;
      LLVMValueRef arr = LLVMGetParam(fn, lf ? 0 : 1);
      int k = lf ? i : i - p->n_leaves;
      args[i] = LLVMBuildLoad2(c->B, c->ptr, cg_gep(c, c->ptr, arr, cg_i64(c, k)), "");
    } else {
      args[i] = cg_gep(c, LLVMInt8TypeInContext(c->C), LLVMGetParam(fn, 2),
                       cg_i64(c, p->slot_off[i - p->n_leaves - c->f->n_outs]));
    }
  }
  LLVMValueRef r = LLVMBuildCall2(c->B, LLVMGlobalGetValueType(inner), inner,
                                  args, (unsigned)np, "");
  cg_ftz_end(c, saved);
  LLVMBuildRet(c->B, r);
  LLVMInstructionEraseFromParent(c->alloca_at);
  free(args);
}

/* Calls the node functions of the current inner function: every
 * materialised node but the hoisted ones (the kernel), or the hoist and
 * prep nodes (c->prep: the prep entry); name: their names' stem. With
 * prof, each call adds the cycles it took to prof[v]. */
static void emit_calls(cg_ctx *c, const char *name, LLVMValueRef prof) {
  unsigned id = LLVMLookupIntrinsicID("llvm.readcyclecounter", 21);
  for (int v = 0; v < c->f->n_nodes; v++) {
    const cg_node_plan *q = &c->p->node[v];
    if (q->kind != CG_MAT || (c->prep ? !(q->hoist || q->prep) : q->hoist)) continue;
    if (q->sibling >= 0 && q->sibling < v) continue; /* made in its sibling's loop */
    if (!prof) {
      emit_node_fn(c, v, name);
      if (!c->prep) accumulate_outs(c, v);
      continue;
    }
    LLVMValueRef rcc = LLVMGetIntrinsicDeclaration(c->M, id, NULL, 0);
    LLVMTypeRef rcc_ty = LLVMIntrinsicGetType(c->C, id, NULL, 0);
    LLVMValueRef t0 = LLVMBuildCall2(c->B, rcc_ty, rcc, NULL, 0, "");
    emit_node_fn(c, v, name);
    if (!c->prep) accumulate_outs(c, v);
    LLVMValueRef dt = LLVMBuildSub(c->B, LLVMBuildCall2(c->B, rcc_ty, rcc, NULL, 0, ""), t0, "");
    LLVMValueRef at = cg_gep(c, c->i64, prof, cg_i64(c, v));
    LLVMBuildStore(c->B, LLVMBuildAdd(c->B, LLVMBuildLoad2(c->B, c->i64, at, ""), dt, ""), at);
  }
}

int cg_lower(const ir_func *f, const cg_plan *p, int n_units,
             const cg_unit *units, const char *name, bool profile, bool ftz,
             cg_isa isa, int *n_loops, int *n_fns, ir_error *err) {
  cg_ctx c = {.f = f, .p = p, .ftz = ftz, .isa = isa, .units = units, .n_units = n_units,
              .wide = isa >= CG_ISA_AVX512 && cg_wide_kernel(f, p)};
  c.builders = malloc(sizeof *c.builders * (size_t)n_units);
  c.unit_load = calloc((size_t)n_units, sizeof *c.unit_load);
  if (!c.builders || !c.unit_load) abort();
  for (int u = 0; u < n_units; u++) c.builders[u] = LLVMCreateBuilderInContext(units[u].C);
  use_unit(&c, 0);
  LLVMModuleRef M = c.M;
  c.acc_of = malloc(sizeof *c.acc_of * ((size_t)f->n_nodes + 1));
  c.memo = calloc((size_t)f->n_nodes + 1, sizeof *c.memo);
  if (!c.acc_of || !c.memo) abort();
  for (int i = 0; i < f->n_nodes; i++) c.acc_of[i] = -1;

  LLVMValueRef prof = NULL;
  if (profile) { /* i64 name.prof[n_nodes]: cycles per node */
    char buf[256];
    snprintf(buf, sizeof buf, "%s.prof", name);
    LLVMTypeRef at = LLVMArrayType2(c.i64, (uint64_t)f->n_nodes);
    prof = LLVMAddGlobal(M, at, buf);
    LLVMSetInitializer(prof, LLVMConstNull(at));
  }
  if (p->n_hoisted > 0) { /* the prep entry, name.prep */
    char buf[256];
    snprintf(buf, sizeof buf, "%s.prep", name);
    c.prep = true;
    begin_body(&c, make_inner(&c, buf));
    emit_calls(&c, buf, prof);
    LLVMBuildRet(c.B, LLVMBuildLoad2(c.B, c.i32, c.oob, ""));
    make_outer(&c, buf, c.fn, ftz, false);
    c.prep = false;
  }
  begin_body(&c, make_inner(&c, name));
  emit_calls(&c, name, prof);
  /* outputs not computed in place: leaves, reshapes, repeated nodes;
   * those that accumulate, unless added after their node already */
  for (int j = 0; j < f->n_outs; j++) {
    int v = f->outs[j].node;
    const cg_node_plan *q = &p->node[v];
    if (p->accumulate[j] && q->kind != CG_MAT)
      add_into(&c, c.out[j], cg_ptr(&c, v), ir_numel(&f->nodes[v].type));
    else if (!p->accumulate[j] && !(q->kind == CG_MAT && q->out == j))
      cg_memcpy(&c, c.out[j], cg_ptr(&c, v), ir_numel(&f->nodes[v].type));
  }
  LLVMBuildRet(c.B, LLVMBuildLoad2(c.B, c.i32, c.oob, ""));
  make_outer(&c, name, c.fn, ftz, true);

  *n_loops = c.n_loops;
  *n_fns = c.n_fns;
  for (int i = 0; i < c.n_fns; i++) free(c.fn_key[i].bytes);
  free(c.fns);
  free(c.fn_key);
  free(c.fn_unit);
  free(c.leaf);
  free(c.acc_of);
  free(c.memo);
  for (int u = 0; u < n_units; u++) LLVMDisposeBuilder(c.builders[u]);
  free(c.builders);
  free(c.unit_load);
  for (int u = 0; u < n_units; u++) {
    char *msg = NULL;
    if (LLVMVerifyModule(units[u].M, LLVMReturnStatusAction, &msg)) {
      ir_err(err, "codegen: invalid LLVM IR (a codegen bug): %.400s", msg);
      LLVMDisposeMessage(msg);
      return -1;
    }
    LLVMDisposeMessage(msg);
  }
  return 0;
}
