/* ops_matmul.c — matmul as explicit vector code with register blocking:
 * a tile of RB rows x U vectors of VW columns of the output stays in
 * registers while p runs over the inner dimension, each step one splat of
 * A(i,p) per row, one load of B(p, cols) per vector and RB*U FMAs. LLVM's
 * vectoriser cannot find this blocking by itself (it would need to unroll
 * and promote the output row). VW is 8 lanes; 16 (ZW) on an AVX-512 host
 * where N allows and the kernel gains (cg_wide_kernel).
 *
 * B is read row-major [K, N] with its rows contiguous over columns. When B
 * is stored transposed (tb) or N is not a multiple of VW, it is first
 * copied into scratch as [K, Npad] (Npad = N rounded up to VW, zero
 * padded): a cost of K*N per batch against M*K*N multiply-adds. The last
 * partial vector of a row is stored lane by lane. Each output element is
 * a sum over p in order, with FMA (llvm.fmuladd); except that fewer than
 * VW rows against a transposed B are dot products along K instead (VW
 * partial sums, then reduced), that two to four columns of many rows
 * are N dot products along K at once (rowdot) or, read as A^T B, made
 * transposed (geometry: tout), that a tile of one or two accumulators
 * over a long K keeps SPLIT interleaved sums (tile), and that causal
 * attention skips the masked half (see causal below). */
#include "cgint.h"

/* RB rows x 2 vectors: 12 accumulators, more than the 8 that two FMA
 * units of latency 4 need in flight, so a late load does not stall
 * (mamba d 64: the matmuls ~10% faster than with 4 rows); RB1 rows of
 * an output one vector wide: those 8. */
enum { VW = 8, ZW = 16, RB = 6, RB1 = 8 };

typedef struct {
  LLVMTypeRef vt;
  int vw; /* lanes of vt: VW, or ZW on an AVX-512 host where N allows */
  LLVMValueRef pa, pb, po; /* A, B (or its copy), out, at this batch */
  LLVMValueRef px;         /* the addend (plan.c fold_adds), or NULL */
  bool xrow;               /* px is one row [N], added to every row */
  int64_t M, N, K, ldb;
  bool ta;
  LLVMValueRef p0, p1; /* the inner range of the current row block */
} mm;

static LLVMValueRef splat(cg_ctx *c, mm *m, LLVMValueRef x) {
  LLVMValueRef v = LLVMBuildInsertElement(c->B, LLVMGetPoison(m->vt), x,
                                          cg_i32c(c, 0), "");
  LLVMValueRef zero = LLVMConstNull(LLVMVectorType(c->i32, (unsigned)m->vw));
  return LLVMBuildShuffleVector(c->B, v, LLVMGetPoison(m->vt), zero, "");
}

static LLVMValueRef vload(cg_ctx *c, mm *m, LLVMValueRef base, LLVMValueRef i) {
  LLVMValueRef v = LLVMBuildLoad2(c->B, m->vt, cg_gep(c, c->f32, base, i), "");
  LLVMSetAlignment(v, 4);
  return v;
}

/* Partial sums a tile with at most two accumulators keeps over a long
 * inner dimension: one chain of K dependent FMAs would wait on each
 * one's latency (the [16,1] and [1,16] products of dt_proj's gradient at
 * dt_rank 1, d 8: ~240 cycles for 64 FMAs, ~60 with four chains); S
 * chains, added pairwise at the end, overlap. */
enum { SPLIT = 4 };

/* out[i0.., j0..] for `rows` rows and `u` vectors; `full` vectors are
 * stored whole, the last one keeps only `part` lanes if part > 0. Each
 * output element is a sum over p in order, or (few accumulators, K a
 * multiple of SPLIT and >= 8 SPLIT) SPLIT interleaved sums added after. */
static void tile(cg_ctx *c, mm *m, int rows, int u, LLVMValueRef i0,
                 LLVMValueRef j0, int part) {
  int S = !m->p0 && rows * u <= 2 && m->K % SPLIT == 0 && m->K >= 8 * SPLIT ? SPLIT : 1;
  LLVMValueRef acc[2 * RB][2][SPLIT];
  for (int r = 0; r < rows; r++)
    for (int k = 0; k < u; k++)
      for (int s = 0; s < S; s++) acc[r][k][s] = cg_alloca(c, m->vt, LLVMConstNull(m->vt));
  cg_loop lp;
  LLVMValueRef ps = m->p0 ? cg_for(c, &lp, m->p0, m->p1) : cg_forn(c, &lp, m->K / S);
  for (int s = 0; s < S; s++) {
    LLVMValueRef p = S > 1 ? cg_addk(c, cg_mulk(c, ps, S), s) : ps;
    LLVMValueRef bv[2];
    for (int k = 0; k < u; k++)
      bv[k] = vload(c, m, m->pb, cg_add(c, cg_mulk(c, p, m->ldb), cg_addk(c, j0, k * m->vw)));
    for (int r = 0; r < rows; r++) {
      LLVMValueRef i = cg_addk(c, i0, r);
      LLVMValueRef ai = m->ta ? cg_add(c, cg_mulk(c, p, m->M), i)
                              : cg_add(c, cg_mulk(c, i, m->K), p);
      LLVMValueRef a = splat(c, m, cg_loadf(c, m->pa, ai));
      for (int k = 0; k < u; k++) {
        LLVMValueRef args[3] = {a, bv[k], LLVMBuildLoad2(c->B, m->vt, acc[r][k][s], "")};
        LLVMBuildStore(c->B, cg_intrin(c, "llvm.fmuladd", m->vt, args, 3), acc[r][k][s]);
      }
    }
  }
  cg_endfor(c, &lp);
  for (int r = 0; r < rows; r++) {
    LLVMValueRef orow = cg_mulk(c, cg_addk(c, i0, r), m->N);
    for (int k = 0; k < u; k++) {
      LLVMValueRef sum[SPLIT];
      for (int s = 0; s < S; s++) sum[s] = LLVMBuildLoad2(c->B, m->vt, acc[r][k][s], "");
      for (int w = S; w > 1; w /= 2) /* (s0 + s1) + (s2 + s3) */
        for (int s = 0; s < w / 2; s++) sum[s] = cg_fadd(c, sum[2 * s], sum[2 * s + 1], 0);
      LLVMValueRef v = sum[0];
      LLVMValueRef at = cg_add(c, orow, cg_addk(c, j0, k * m->vw));
      LLVMValueRef xat = m->xrow ? cg_addk(c, j0, k * m->vw) : at;
      if (k == u - 1 && part > 0) {
        for (int e = 0; e < part; e++) {
          LLVMValueRef s = LLVMBuildExtractElement(c->B, v, cg_i32c(c, e), "");
          if (m->px) s = cg_fadd(c, s, cg_loadf(c, m->px, cg_addk(c, xat, e)), 0);
          cg_store(c, s, m->po, cg_addk(c, at, e));
        }
      } else {
        if (m->px) v = cg_fadd(c, v, vload(c, m, m->px, xat), 0);
        LLVMValueRef s = LLVMBuildStore(c->B, v, cg_gep(c, c->f32, m->po, at));
        LLVMSetAlignment(s, 4);
      }
    }
  }
}

/* Causal attention (cgint.h: tri, lower). A tri left operand is zero
 * past the diagonal, so a row block's inner range ends there (or, read
 * transposed, starts there); a lower-only result needs no column block
 * past the diagonal: those are zeroed, not computed (left as they are
 * where only causal softmaxes read it). */
typedef struct {
  bool tri_a, lower;
  bool unread;          /* lower, and only causal softmaxes read it */
  int64_t off_a, off_o; /* Lk - Lq of A as stored, and of the result */
} causal;

/* Every reader of v is a causal softmax (over v's shape, as lower
 * requires), which reads only the keys a row keeps: the part past the
 * diagonal is never read, so it need not be zeroed either (the scores
 * of attention: a fifth of their product's time at d 8). Other readers
 * of a lower result multiply that part by zeros, which needs it finite:
 * zeros, not whatever the arena held. */
static bool only_softmax_reads(const ir_func *f, int v) {
  for (int j = 0; j < f->n_outs; j++)
    if (f->outs[j].node == v) return false;
  bool any = false;
  for (int w = v + 1; w < f->n_nodes; w++)
    for (int i = 0; i < f->nodes[w].n_in; i++)
      if (f->nodes[w].in[i] == v) {
        if (f->nodes[w].op != IR_OP_SOFTMAX || !f->nodes[w].attr.causal) return false;
        any = true;
      }
  return any;
}

static void inner_range(cg_ctx *c, mm *m, const causal *k, int rows, LLVMValueRef i0) {
  m->p0 = m->p1 = NULL;
  if (!k->tri_a) return;
  if (m->ta) { /* A^T[i][p] = A[p][i] is zero for i > p + off: p >= i - off */
    m->p0 = cg_imax(c, cg_i64(c, 0), cg_addk(c, i0, -k->off_a));
    m->p1 = cg_i64(c, m->K);
  } else { /* A[i][p] is zero for p > i + off */
    m->p0 = cg_i64(c, 0);
    m->p1 = cg_imin(c, cg_i64(c, m->K), cg_addk(c, i0, rows + k->off_a));
  }
}

/* All column blocks of the rows from i0 (rows <= 2 RB, see the caller). */
static void row_block(cg_ctx *c, mm *m, const causal *k, int rows, LLVMValueRef i0) {
  int vw = m->vw;
  int64_t nv = m->N / vw, part = m->N % vw, pairs = nv / 2;
  inner_range(c, m, k, rows, i0);
  if (pairs > 0 && k->lower) { /* the pairs holding a column < i0 + rows + off */
    cg_loop lj, lr, lz;
    LLVMValueRef need = cg_addk(c, i0, rows + k->off_o + 2 * vw - 1);
    LLVMValueRef end = LLVMBuildSDiv(c->B, cg_imax(c, need, cg_i64(c, 0)), cg_i64(c, 2 * vw), "");
    end = cg_imin(c, end, cg_i64(c, pairs));
    LLVMValueRef jb = cg_for(c, &lj, cg_i64(c, 0), end);
    tile(c, m, rows, 2, i0, cg_mulk(c, jb, 2 * vw), 0);
    cg_endfor(c, &lj);
    if (!k->unread) {
      LLVMValueRef r = cg_forn(c, &lr, rows);
      LLVMValueRef row = cg_mulk(c, cg_add(c, i0, r), m->N);
      LLVMValueRef j = cg_for(c, &lz, cg_mulk(c, end, 2 * vw), cg_i64(c, pairs * 2 * vw));
      cg_store(c, cg_f32c(c, 0.0), m->po, cg_add(c, row, j));
      cg_endfor(c, &lz);
      cg_endfor(c, &lr);
    }
  } else if (pairs > 0) {
    cg_loop lj;
    LLVMValueRef jb = cg_forn(c, &lj, pairs);
    tile(c, m, rows, 2, i0, cg_mulk(c, jb, 2 * vw), 0);
    cg_endfor(c, &lj);
  }
  if (nv % 2) tile(c, m, rows, 1, i0, cg_i64(c, pairs * 2 * vw), 0);
  if (part) tile(c, m, rows, 1, i0, cg_i64(c, nv * vw), (int)part);
}

/* The product as computed: out [M, N] = op(A) op(B) over K, each batch.
 * A single output column (N = 1: a rank-1 weight's gradient, dt_proj's
 * at dt_rank 1) is computed as its transpose out^T [1, M] = op(B)^T op(A)^T:
 * one row against M columns, vectors along M instead of 7 of every 8
 * lanes wasted on padding (a [16,1] gradient took 2000 cycles). */
typedef struct {
  int64_t M, N, K;
  bool ta, tb, swap; /* swap: A is in[1] read as a row, B is in[0] */
  bool tout;         /* swap with more than one row: the product is made
                        as out^T [N, M] in scratch, then transposed */
} geom;

static geom geometry(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  int r = n->type.rank;
  const ir_type *at = &f->nodes[n->in[0]].type;
  geom g = {.M = n->type.dim[r - 2], .N = n->type.dim[r - 1],
            .K = n->attr.ta ? at->dim[r - 2] : at->dim[r - 1],
            .ta = n->attr.ta, .tb = n->attr.tb};
  if (g.N == 1 && g.M >= VW) /* op(B)^T is B's K values in order either way */
    g = (geom){.M = 1, .N = g.M, .K = g.K, .tb = !n->attr.ta, .swap = true};
  else if (g.N > 1 && g.N <= 4 && g.ta && r == 2 && g.M % (2 * VW) == 0)
    /* a weight gradient of a few columns, A^T B with A [K, M] as stored:
     * out^T = B^T A, whose rows run along M (dt_proj's at d 64, [128,4]:
     * 3/4 of each 16-lane FMA was padding) */
    g = (geom){.M = g.N, .N = g.M, .K = g.K, .ta = !n->attr.tb, .swap = true, .tout = true};
  return g;
}

/* A few rows against a transposed B (one query row against the keys):
 * dot products along K, both operands contiguous, instead of copying B
 * (K*N) for a few rows' work. */
static bool use_dot(const ir_func *f, int v) {
  geom g = geometry(f, v);
  return !g.swap && g.tb && !g.ta && g.M < VW && g.K >= VW;
}

static void emit_dot(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  int r = n->type.rank;
  int64_t M = n->type.dim[r - 2], N = n->type.dim[r - 1];
  int64_t K = c->f->nodes[n->in[0]].type.dim[r - 1];
  int64_t nb = ir_numel(&n->type) / (M * N);
  LLVMValueRef pa = cg_ptr(c, n->in[0]), pb = cg_ptr(c, n->in[1]), po = cg_ptr(c, v);
  LLVMTypeRef vt = LLVMVectorType(c->f32, VW);
  LLVMValueRef acc = cg_alloca(c, vt, NULL), tail = cg_alloca(c, c->f32, NULL);
  cg_loop lb, li, lj, lp;
  LLVMValueRef b = cg_forn(c, &lb, nb);
  LLVMValueRef i = cg_forn(c, &li, M);
  LLVMValueRef arow = cg_mulk(c, cg_add(c, cg_mulk(c, b, M), i), K);
  LLVMValueRef j = cg_forn(c, &lj, N);
  LLVMValueRef brow = cg_mulk(c, cg_add(c, cg_mulk(c, b, N), j), K);
  LLVMBuildStore(c->B, LLVMConstNull(vt), acc);
  c->vw = VW;
  LLVMValueRef p = cg_forn(c, &lp, K / VW);
  LLVMValueRef at = cg_mulk(c, p, VW);
  LLVMBuildStore(c->B, cg_fmuladd(c, cg_vload(c, pa, cg_add(c, arow, at)),
                                  cg_vload(c, pb, cg_add(c, brow, at)),
                                  LLVMBuildLoad2(c->B, vt, acc, "")), acc);
  cg_endfor(c, &lp);
  c->vw = 0;
  LLVMBuildStore(c->B, cg_hsum(c, LLVMBuildLoad2(c->B, vt, acc, "")), tail);
  for (int64_t q = K / VW * VW; q < K; q++) /* K % VW terms */
    LLVMBuildStore(c->B, cg_fmuladd(c, cg_loadf(c, pa, cg_addk(c, arow, q)),
                                    cg_loadf(c, pb, cg_addk(c, brow, q)),
                                    LLVMBuildLoad2(c->B, c->f32, tail, "")), tail);
  LLVMValueRef o = cg_add(c, cg_mulk(c, cg_add(c, cg_mulk(c, b, M), i), N), j);
  LLVMValueRef sum = LLVMBuildLoad2(c->B, c->f32, tail, "");
  int x = c->p->node[v].addend; /* rank 2 (cg_matmul_can_add): b = 0 */
  if (x >= 0)
    sum = cg_fadd(c, sum, cg_loadf(c, cg_ptr(c, x), ir_numel(&c->f->nodes[x].type) == N ? j : o), 0);
  cg_store(c, sum, po, o);
  cg_endfor(c, &lj);
  cg_endfor(c, &li);
  cg_endfor(c, &lb);
}

/* Two to four output columns of many rows, A read along K (not ta): per
 * row, the N dot products along K at once, each chunk of A's row loaded
 * once for all N, from B^T's N rows (B itself when tb, else a copy
 * [N, K] in scratch, made by the prep entry where B is a param). The
 * tile's vectors run along N: at N 4 three quarters of a 16-lane FMA
 * (half of an 8-lane one) were padding (mamba d 64's dt_rank
 * products). Each sum runs over the lanes, reduced at the end. */
enum { ROWDOT_N = 4 };

static bool use_rowdot(const ir_func *f, int v) {
  geom g = geometry(f, v);
  return f->nodes[v].type.rank == 2 && !g.swap && !g.ta && g.N > 1 && g.N <= ROWDOT_N &&
         g.M >= VW && g.K % VW == 0 && g.K >= 2 * VW;
}

static void emit_rowdot(cg_ctx *c, int v) {
  const ir_node *n = &c->f->nodes[v];
  geom g = geometry(c->f, v);
  int64_t M = g.M, N = g.N, K = g.K;
  LLVMValueRef pa = cg_ptr(c, n->in[0]), pb = cg_ptr(c, n->in[1]), po = cg_ptr(c, v);
  cg_loop li, lp, lj;
  if (!g.tb) { /* B [K, N] -> B^T [N, K] */
    LLVMValueRef bt = c->slot[c->p->node[v].scratch[0]];
    if (cg_copies(c, v)) {
      LLVMValueRef p = cg_forn(c, &lp, K), j = cg_forn(c, &lj, N);
      cg_store(c, cg_loadf(c, pb, cg_add(c, cg_mulk(c, p, N), j)), bt, cg_add(c, cg_mulk(c, j, K), p));
      cg_endfor(c, &lj);
      cg_endfor(c, &lp);
    }
    if (cg_copy_only(c, v)) return; /* the prep entry: B^T only */
    pb = bt;
  }
  int x = c->p->node[v].addend; /* plan.c fold_adds */
  LLVMValueRef px = x >= 0 ? cg_ptr(c, x) : NULL;
  bool xrow = x >= 0 && ir_numel(&c->f->nodes[x].type) == N;
  c->vw = c->wide && K % ZW == 0 ? ZW : VW;
  LLVMTypeRef vt = cg_vty(c, c->f32);
  LLVMValueRef acc[ROWDOT_N];
  for (int j = 0; j < N; j++) acc[j] = cg_alloca(c, vt, NULL);
  LLVMValueRef i = cg_forn(c, &li, M);
  for (int j = 0; j < N; j++) LLVMBuildStore(c->B, LLVMConstNull(vt), acc[j]);
  LLVMValueRef p = cg_mulk(c, cg_forn(c, &lp, K / c->vw), c->vw);
  LLVMValueRef a = cg_vload(c, pa, cg_add(c, cg_mulk(c, i, K), p));
  for (int j = 0; j < N; j++)
    LLVMBuildStore(c->B, cg_fmuladd(c, a, cg_vload(c, pb, cg_addk(c, p, j * K)),
                                    LLVMBuildLoad2(c->B, vt, acc[j], "")), acc[j]);
  cg_endfor(c, &lp);
  for (int j = 0; j < N; j++) {
    LLVMValueRef o = cg_addk(c, cg_mulk(c, i, N), j);
    LLVMValueRef s = cg_hsum(c, LLVMBuildLoad2(c->B, vt, acc[j], ""));
    if (px) s = cg_fadd(c, s, cg_loadf(c, px, xrow ? cg_i64(c, j) : o), 0);
    cg_store(c, s, po, o);
  }
  cg_endfor(c, &li);
  c->vw = 0;
}

/* 16 lanes where whole rows of them fit (N % 16 == 0) halve the FMAs,
 * each ~1.2x the time of an 8-lane one; but 512-bit FMAs lower the
 * core's clock for all the code around them. Measured on an Intel Xeon
 * (in-process A/B of the training kernels): mamba d 8 -5%, d 64 -17%,
 * hybrid d 8 -4%, transformer d 64 -32%, but transformer d 8 +3%, whose
 * only such matmuls (the scores) are a quarter of its matmul work and
 * which had no 512-bit code before. So: where the kernel has a scan
 * (512-bit already, ops_scan.c) or such matmuls do half its matmul
 * work. Such a kernel's other loops then vectorise at 512 bits too
 * (emit.c; mamba d 8 -6% training, -8% forward, hybrid -3% and -7%,
 * the d 64 models -2..-3%). */
bool cg_wide_kernel(const ir_func *f, const cg_plan *p) {
  double all = 0, wide = 0;
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *n = &f->nodes[v];
    if (p->node[v].kind != CG_MAT) continue;
    if (n->op == IR_OP_SCAN || n->op == IR_OP_SCAN_BWD) return true;
    if (n->op != IR_OP_MATMUL || use_dot(f, v) || use_rowdot(f, v)) continue;
    geom g = geometry(f, v);
    double w = (double)ir_numel(&n->type) * (double)g.K;
    all += w;
    if (g.N % ZW == 0) wide += w;
  }
  return all > 0 && 2 * wide >= all;
}

bool cg_matmul_can_add(const ir_func *f, int v) {
  return f->nodes[v].type.rank == 2 && !geometry(f, v).swap;
}

/* Bytes of the copy of B that the product reads (B', or rowdot's B^T),
 * or 0. */
static int64_t copy_bytes(const ir_func *f, int v) {
  geom g = geometry(f, v);
  if (use_rowdot(f, v)) return g.tb ? 0 : 4 * g.N * g.K; /* B^T */
  if (use_dot(f, v) || (!g.tb && g.N % VW == 0)) return 0;
  return 4 * g.K * ((g.N + VW - 1) / VW * VW);
}

int64_t cg_matmul_scratch(const ir_func *f, int v) {
  geom g = geometry(f, v);
  return g.tout ? 4 * g.M * g.N : copy_bytes(f, v); /* tout: no copy (M % 16 == 0) */
}

int cg_matmul_copied(const ir_func *f, int v) {
  const ir_node *n = &f->nodes[v];
  geom g = geometry(f, v);
  bool one = ir_numel(&n->type) == g.M * g.N; /* B' holds one batch's */
  return one && copy_bytes(f, v) > 0 ? n->in[!g.swap] : -1;
}

/* B' [K, npad] = B or B^T (batch at boff), zero padded. */
static void copy_b(cg_ctx *c, const mm *m, bool tb, LLVMValueRef pb, LLVMValueRef boff,
                   LLVMValueRef scratch, int64_t npad) {
  if (tb && m->N % VW == 0 && m->K % VW == 0) { /* by 8x8 blocks */
    cg_transpose(c, scratch, cg_gep(c, c->f32, pb, boff), m->N, m->K); /* npad = N */
    return;
  }
  cg_loop lp, lj;
  LLVMValueRef p = cg_forn(c, &lp, m->K);
  LLVMValueRef j = cg_forn(c, &lj, m->N);
  LLVMValueRef bi = tb ? cg_add(c, cg_mulk(c, j, m->K), p) : cg_add(c, cg_mulk(c, p, m->N), j);
  cg_store(c, cg_loadf(c, pb, cg_add(c, boff, bi)), scratch, cg_add(c, cg_mulk(c, p, npad), j));
  cg_endfor(c, &lj);
  if (npad > m->N) {
    j = cg_for(c, &lj, cg_i64(c, m->N), cg_i64(c, npad));
    cg_store(c, cg_f32c(c, 0.0), scratch, cg_add(c, cg_mulk(c, p, npad), j));
    cg_endfor(c, &lj);
  }
  cg_endfor(c, &lp);
}

void cg_emit_matmul(cg_ctx *c, int v) {
  if (use_dot(c->f, v)) {
    emit_dot(c, v);
    return;
  }
  if (use_rowdot(c->f, v)) {
    emit_rowdot(c, v);
    return;
  }
  const ir_node *n = &c->f->nodes[v];
  int r = n->type.rank;
  geom g = geometry(c->f, v);
  int vw = c->wide && g.N % ZW == 0 ? ZW : VW;
  mm m = {.vt = LLVMVectorType(c->f32, (unsigned)vw), .vw = vw, .ta = g.ta, .M = g.M,
          .N = g.N, .K = g.K};
  int64_t nb = ir_numel(&n->type) / (m.M * m.N);
  bool copy = copy_bytes(c->f, v) > 0;
  int64_t npad = (m.N + VW - 1) / VW * VW;
  LLVMValueRef pa = cg_ptr(c, n->in[g.swap]), pb = cg_ptr(c, n->in[!g.swap]),
               po = cg_ptr(c, v);
  LLVMValueRef scratch = copy ? c->slot[c->p->node[v].scratch[0]] : NULL;
  if (copy && cg_copy_only(c, v)) { /* the prep entry: B' only */
    copy_b(c, &m, g.tb, pb, cg_i64(c, 0), scratch, npad);
    return;
  }
  cg_loop lb, li;
  LLVMValueRef b = cg_forn(c, &lb, nb);
  LLVMValueRef boff = cg_mulk(c, b, m.K * m.N);
  m.pa = cg_gep(c, c->f32, pa, cg_mulk(c, b, m.M * m.K));
  m.po = g.tout ? c->slot[c->p->node[v].scratch[0]] /* rank 2: b = 0 */
                : cg_gep(c, c->f32, po, cg_mulk(c, b, m.M * m.N));
  int x = c->p->node[v].addend; /* rank 2 (cg_matmul_can_add): b = 0 */
  if (x >= 0) m.px = cg_ptr(c, x), m.xrow = ir_numel(&c->f->nodes[x].type) == m.N && m.M > 1;
  if (copy) {
    if (cg_copies(c, v)) copy_b(c, &m, g.tb, pb, boff, scratch, npad);
    m.pb = scratch, m.ldb = npad;
  } else {
    m.pb = cg_gep(c, c->f32, pb, boff), m.ldb = m.N;
  }
  /* swapped: through the causal zeros (exact zeros, the same sums) */
  const cg_node_plan *qa = &c->p->node[n->in[0]], *qo = &c->p->node[v];
  causal k = {.tri_a = qa->tri && r >= 2 && !g.swap, .lower = qo->lower && !g.swap};
  k.unread = k.lower && only_softmax_reads(c->f, v);
  if (k.tri_a) { /* A as stored is [.., Lq, Lk] */
    const ir_type *sa = &c->f->nodes[n->in[0]].type;
    k.off_a = sa->dim[r - 1] - sa->dim[r - 2];
  }
  k.off_o = m.N - m.M;
  /* Row blocks of RB; the last one ends at row M, overlapping the one
   * before when RB does not divide M: those rows are computed twice, to
   * the same values, instead of emitting (and compiling) a second loop
   * nest for the rest, which cost 14% of a whole kernel's compile. An
   * output one vector wide of up to 2 RB rows is one block (the [8,8]
   * weight gradients of attention at d 8 took two, overlapping, 40%
   * slower), more rows are blocks of RB1: RB's 6 accumulators were too
   * few for the FMA latency (the [64,8] projections and attention's
   * weighted values at d 8 4-14% faster, in-process A/B). Wider outputs
   * stay in blocks of RB rows. */
  int rb = m.N > m.vw ? RB : m.M <= 2 * RB ? (int)m.M : RB1;
  if (m.M >= rb) {
    /* upto, prefix (plan.c): the blocks up to the row read; after them
     * zeros (upto) or what was there (prefix) */
    LLVMValueRef nblk = NULL;
    if ((qo->upto || qo->prefix) && !g.swap)
      nblk = LLVMBuildUDiv(c->B, cg_addk(c, cg_upto_rows(c, m.M), rb - 1), cg_i64(c, rb), "");
    LLVMValueRef ib = nblk ? cg_for(c, &li, cg_i64(c, 0), nblk)
                           : cg_forn(c, &li, (m.M + rb - 1) / rb);
    row_block(c, &m, &k, rb, cg_imin(c, cg_mulk(c, ib, rb), cg_i64(c, m.M - rb)));
    cg_endfor(c, &li);
    if (nblk && qo->upto)
      cg_zero_rows(c, m.po, cg_imin(c, cg_mulk(c, nblk, rb), cg_i64(c, m.M)), m.M, m.N);
  } else {
    row_block(c, &m, &k, (int)m.M, cg_i64(c, 0));
  }
  cg_endfor(c, &lb);
  if (g.tout) cg_transpose(c, po, m.po, m.M, m.N); /* [N, M] -> out [M, N] */
}
