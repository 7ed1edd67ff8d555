/* cgint.h — codegen internals shared by the codegen .c files (private:
 * other parts include codegen.h only). */
#ifndef RECALL_CGINT_H
#define RECALL_CGINT_H

#include "codegen.h"

#include <llvm-c/Core.h>

/* ---- plan (plan.c): fusion groups and arena slots ---- */

typedef enum {
  CG_DEAD,  /* no live user and not an output: not emitted */
  CG_LEAF,  /* input/param/const: leaves[leaf] */
  CG_MAT,   /* computed into its own buffer: outs[out] or arena slot */
  CG_ALIAS, /* reshape, contiguous slice: its input's bytes (at an offset) */
  CG_FUSED  /* computed inside the loop of group root `root` */
} cg_kind;

enum { CG_MAX_SCRATCH = 3 };

typedef struct {
  cg_kind kind;
  int root;    /* CG_FUSED: the materialised node whose loop computes it */
  int leaf;    /* CG_LEAF: leaf index */
  int out;     /* CG_MAT: output whose buffer holds it, or -1 */
  int slot;    /* CG_MAT without out: arena slot, or -1 */
  int scratch[CG_MAX_SCRATCH]; /* temporary slots for this node, or -1 */
  bool tri;    /* zero above the causal diagonal of its last two axes
                  ([.., Lq, Lk]: where j > i + Lk - Lq): a causal softmax
                  and products with one */
  bool lower;  /* only the part on or below that diagonal is used (the
                  rest may be any finite value): it feeds a causal
                  softmax, or elementwise ops that do or that multiply
                  it by a tri value */
  int sibling; /* a node s made in the loop of an earlier group p
                  (plan.c mark_siblings): each other's id, or -1. s is a
                  sigmoid of p's softplus's input (the softplus's VJP),
                  from p's exp; or a product of p (unary) with p's own
                  input (silu); or a sum of p over an axis not innermost,
                  added up as p's values are made (not read again). s's
                  own code is nothing */
  int pair;    /* a scan and the scan_bwd of the same inputs: each other's
                  id (the scan saves its states and decay factors in its
                  scratch 1 and 2, kept until the scan_bwd, which reads
                  them instead of running the recurrence again), or -1 */
  int addend;  /* matmul, conv1d(_bwd_x): a node it adds to its result
                  as it stores it; scan: the row D of its skip term
                  u * D, which is not made (CG_DEAD)
                  (the add that was its one reader, plan.c fold_adds:
                  of its shape, or a row [N] broadcast), or -1 */
  int folded;  /* CG_ALIAS add: the matmul that computes it (addend), or
                  -1 (an alias is its input 0's bytes) */
  int into;    /* CG_MAT: the concat whose buffer holds it, at element
                  into_off (its one user; see place_concats), or -1 */
  int64_t into_off;
  int64_t first_row; /* scan: the first row of its output anything reads
                        (its users are slices of rows from there on: the
                        last layer of a training kernel reads one) */
  int read_at;       /* scan: the i32 leaf holding the only row of its
                        output that is read (its one user is select_row of
                        that row: the last layer of an evaluation kernel),
                        or -1 */
  bool upto;         /* computed only up to the row read (cg_plan.upto_at,
                        cg_options.rows_to_pos), its later rows zeros:
                        along axis 0 (scan) or rank-2 (causal softmax
                        over as many keys as rows, a matmul into one or
                        out of one) */
  bool prefix;       /* computed only up to the row read, its later rows
                        left as they were (plan.c mark_prefix: no reader
                        needs them): along its first axis that is not 1
                        (a group's loop, a matmul's rows) */
  bool hoist;        /* with cg_options.hoist: its value depends on params
                        and consts only; the prep entry computes it (into
                        a slot nothing else uses), the kernel only reads it */
  bool prep;         /* with cg_options.hoist: its scratch 0 starts with a
                        copy of a param-only operand (cg_copied_operand),
                        made by the prep entry (a slot of its own); the
                        kernel's code for it skips the copy */
} cg_node_plan;

typedef struct {
  cg_node_plan *node; /* one per IR node */
  int n_nodes;
  int n_leaves;
  int *leaf_node; /* leaf index -> node id */
  int n_slots;
  int64_t *slot_bytes, *slot_off;
  int64_t arena_bytes;
  int n_mat, n_fused, n_placed, n_upto; /* n_upto counts prefix nodes too */
  int n_hoisted;                        /* hoist and prep nodes */
  int n_siblings;                       /* sibling pairs (mark_siblings) */
  int n_folded;                         /* adds folded (fold_adds) */
  int upto_at; /* with rows_to_pos: the i32 leaf of the row read, or -1 */
  bool *accumulate; /* per output: added into its buffer (cg_options) */
} cg_plan;

/* The plan of f under opt (NULL: the defaults): no_fuse, rows_to_pos (the
 * upto nodes), hoist (hoist and prep), accumulate (outputs in slots). */
int cg_plan_build(const ir_func *f, const cg_options *opt, cg_plan *p, ir_error *err);
/* The operand of node v whose copy its scratch 0 starts with, made the
 * same whatever the example: matmul's B' (one batch), the scans' A^T;
 * -1 if none. */
int cg_copied_operand(const ir_func *f, int v);
void cg_plan_free(cg_plan *p);
/* Scratch bytes op of node v needs (0 for none), for each scratch slot. */
int64_t cg_scratch_bytes(const ir_func *f, const cg_plan *p, int v, int k);
bool cg_is_view(ir_op op);    /* permute, slice, expand */
int cg_first_axis(const ir_type *t); /* the first dim that is not 1, or -1 */
bool cg_is_reduce(ir_op op);  /* sum, amax, mean */
bool cg_is_ewise(ir_op op);   /* unary and binary elementwise */
bool cg_slice_is_offset(const ir_func *f, int v);

/* ---- lowering context (emit.c) ---- */

/* A module and its context: a kernel is lowered into one or more, which
 * then optimise and compile on threads of their own. */
typedef struct {
  LLVMContextRef C;
  LLVMModuleRef M;
} cg_unit;


/* x86 vector extensions beyond the baseline, each level implying the
 * ones before it (ordered: code tests isa >= CG_ISA_AVX2). */
typedef enum { CG_ISA_GENERIC, CG_ISA_AVX2, CG_ISA_AVX512 } cg_isa;

/* A node function's key (emit.c: twins share one function). */
typedef struct {
  char *bytes;
  size_t n;
} cg_key;

typedef struct {
  LLVMContextRef C;
  LLVMModuleRef M;
  LLVMBuilderRef B;
  LLVMValueRef fn;      /* the inner kernel */
  LLVMValueRef alloca_at; /* allocas go before this instruction */
  LLVMTypeRef f32, i32, i64, i1, ptr;
  const ir_func *f;
  const cg_plan *p;
  LLVMValueRef *leaf, *out, *slot; /* the inner kernel's parameters */
  LLVMValueRef oob;     /* i32 alloca: out-of-range index count */
  int *acc_of;          /* group emission: node -> access, -1 none */
  LLVMValueRef *memo;   /* group emission: node -> value in the loop body */
  int n_loops;
  LLVMValueRef *fns; /* node functions so far, and the keys by which */
  cg_key *fn_key;    /* their twins are found (emit.c) */
  int n_fns, cap_fns;
  const cg_unit *units; /* where node functions go (emit.c) */
  LLVMBuilderRef *builders; /* one per unit */
  int64_t *unit_load; /* key bytes of the node functions in each unit */
  int *fn_unit;       /* unit of fns[i] */
  int n_units, unit;  /* C, M, B and the types are unit `unit`'s */
  bool ftz; /* the kernel runs with denormals flushed (cg_ftz_begin) */
  cg_isa isa; /* what the host has, when the target is the host: x86
                 intrinsics may replace generic forms the backend
                 lowers less well */
  bool wide; /* the kernel runs 512-bit code (cg_wide_kernel): matmuls
                may use 16 lanes, LLVM's vectoriser 512-bit vectors */
  int vw; /* lanes of the values being built: 0 or 1 scalar, else a
             vector width (mathfn.c's functions follow it) */
  bool prep; /* building the prep entry: hoist nodes whole, prep nodes'
                copies only (cg_copies) */
} cg_ctx;

/* Whether the code being built for node v makes the copy its scratch 0
 * starts with: always, except in the kernel proper for a prep node (the
 * prep entry made it). In the prep entry a prep node makes only that. */
static inline bool cg_copies(const cg_ctx *c, int v) {
  return c->prep || !c->p->node[v].prep;
}
static inline bool cg_copy_only(const cg_ctx *c, int v) {
  return c->prep && c->p->node[v].prep;
}

/* Builds the kernel `name` for f (see codegen.h for the calling
 * convention) into n_units modules: the entry point and the inner kernel
 * in unit 0, the node functions spread over all units by size (with one
 * unit they are internal; with more, external "<name>.n<id>" symbols the
 * JIT links across the units' objects). profile: also a global
 * "<name>.prof" in unit 0, i64 per node, to which each node's code adds
 * the cycles it took. */
int cg_lower(const ir_func *f, const cg_plan *p, int n_units,
             const cg_unit *units, const char *name, bool profile, bool ftz,
             cg_isa isa, int *n_loops, int *n_fns, ir_error *err);

/* constants and types */
LLVMValueRef cg_i64(cg_ctx *c, int64_t v);
LLVMValueRef cg_i32c(cg_ctx *c, int32_t v);
LLVMValueRef cg_f32c(cg_ctx *c, double v);
LLVMTypeRef cg_elty(cg_ctx *c, const ir_node *n);
/* Widest vectors of the scans' reverse step, the lanes of a row of its
 * partial sums and the most steps it takes at once (ops_scan.c), by
 * which plan.c sizes them. */
enum { CG_SCAN_VW = 16, CG_SCAN_PART = 8, CG_SCAN_STEPS = 2 };
/* The distance in floats between the [N,E] blocks of the scans' scratch
 * (states, decays, carries, one per step or one each): S = N*E and 64
 * bytes more, so that two blocks never sit a multiple of 4 KiB apart
 * (at E 128, N 16 a block is 8 KiB: a store into one and a load from
 * the next then alias in the load-store unit and stall). */
static inline int64_t cg_scan_block(int64_t S) { return S + 16; }
/* Whether the scans run block of 16 channels by block, each block's
 * steps in turn, their kept states and decays laid out so (ops_scan.c):
 * on AVX-512, with more than one block. Then each of those arrays takes
 * (L+1) N E16 floats, E16 = E rounded up to 16. */
static inline bool cg_scan_by_block(const cg_ctx *c, int64_t E) {
  return c->isa >= CG_ISA_AVX512 && E > 16;
}

/* c->vw lanes of scalar type (the scalar itself when vw <= 1), a value
 * splat across them, and float loads/stores of that width at a float
 * index (alignment 4). */
LLVMTypeRef cg_vty(cg_ctx *c, LLVMTypeRef scalar);
LLVMValueRef cg_splat(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_vload(cg_ctx *c, LLVMValueRef base, LLVMValueRef idx);
void cg_vstore(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx);
/* memory */
LLVMValueRef cg_ptr(cg_ctx *c, int node); /* storage of a node's value */
LLVMValueRef cg_gep(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base,
                    LLVMValueRef idx);
LLVMValueRef cg_load(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base,
                     LLVMValueRef idx);
void cg_store(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx);
LLVMValueRef cg_loadf(cg_ctx *c, LLVMValueRef base, LLVMValueRef idx);
void cg_zero(cg_ctx *c, LLVMValueRef base, int64_t numel);
void cg_memcpy(cg_ctx *c, LLVMValueRef dst, LLVMValueRef src, int64_t numel);
/* The row an i32 leaf names (a kernel read at a run-time row), clamped
 * to 0..R-1 (select_row counts one out of range). */
LLVMValueRef cg_read_row(cg_ctx *c, int leaf, int64_t R);
/* For an upto node (cg_node_plan) of R rows: the rows to compute, the row
 * read (cg_plan.upto_at) + 1, clamped to 1..R. */
LLVMValueRef cg_upto_rows(cg_ctx *c, int64_t R);
/* Zeros rows from..R-1 of an [R, C] f32 block at base. */
void cg_zero_rows(cg_ctx *c, LLVMValueRef base, LLVMValueRef from, int64_t R, int64_t C);
LLVMValueRef cg_alloca(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef init);
/* integer index arithmetic (i64, nsw) */
LLVMValueRef cg_add(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_addk(cg_ctx *c, LLVMValueRef a, int64_t k);
LLVMValueRef cg_mulk(cg_ctx *c, LLVMValueRef a, int64_t k);
LLVMValueRef cg_imax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_imin(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
/* float arithmetic; fmf: LLVMFastMath* flags for this instruction */
enum { CG_ACC = LLVMFastMathAllowReassoc | LLVMFastMathAllowContract,
       CG_FMA = LLVMFastMathAllowContract };
LLVMValueRef cg_fadd(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, unsigned fmf);
LLVMValueRef cg_fsub(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, unsigned fmf);
LLVMValueRef cg_fmul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, unsigned fmf);
LLVMValueRef cg_fdiv(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fmuladd(cg_ctx *c, LLVMValueRef a, LLVMValueRef b,
                        LLVMValueRef d);
LLVMValueRef cg_fmax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, unsigned fmf);
LLVMValueRef cg_intrin(cg_ctx *c, const char *name, LLVMTypeRef ty,
                       LLVMValueRef *args, unsigned n);
/* Lanes of a and b picked by mask[0..n-1] (b's lanes numbered after a's). */
LLVMValueRef cg_shuffle(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, const int *mask,
                        int n);
/* Lanes [w h, w h + w) of vector x (w <= 32). */
LLVMValueRef cg_lanes(cg_ctx *c, LLVMValueRef x, int w, int h);
/* The lanes of float vector v summed ('reassoc': in any order). */
LLVMValueRef cg_hsum(cg_ctx *c, LLVMValueRef v);
/* control flow: for (iv = start; iv < end; iv++), a counted loop */
typedef struct {
  LLVMBasicBlockRef body, exit;
  LLVMValueRef iv, end;
  unsigned interleave; /* llvm.loop.interleave.count when > 1 */
  bool scalar;         /* not to be vectorised (set before cg_endfor) */
} cg_loop;
LLVMValueRef cg_for(cg_ctx *c, cg_loop *l, LLVMValueRef start,
                    LLVMValueRef end);
LLVMValueRef cg_forn(cg_ctx *c, cg_loop *l, int64_t n); /* 0..n-1 */
void cg_endfor(cg_ctx *c, cg_loop *l);
LLVMBasicBlockRef cg_if(cg_ctx *c, LLVMValueRef cond); /* returns merge */
void cg_endif(cg_ctx *c, LLVMBasicBlockRef merge);
/* Loop nest over dims with n_acc strided accesses: body gets each access's
 * element offset (i64). Size-1 dims are dropped and adjacent dims merged
 * wherever every access allows it. */
typedef struct {
  int64_t off;
  int64_t st[IR_MAX_RANK];
} cg_access;
typedef void (*cg_body_fn)(cg_ctx *c, LLVMValueRef *offs, void *ud);
/* interleave > 1: the innermost loop asks the vectoriser for that many
 * vectors an iteration (fewer when the loop is short). */
void cg_nest(cg_ctx *c, int rank, const int *dims, cg_access *acc,
             int n_acc, cg_body_fn body, void *ud, unsigned interleave);
/* The same over only the first `rows` (known when the kernel runs, at
 * most the size) of the first dim that is not 1; NULL: all of them. */
void cg_nest_rows(cg_ctx *c, int rank, const int *dims, cg_access *acc, int n_acc,
                  cg_body_fn body, void *ud, unsigned interleave, LLVMValueRef rows);
void cg_contig(const ir_type *t, cg_access *a); /* row-major strides */
/* dst[dat + k*ld_dst + c] = src[at + c*ld_src + k] for k, c < 8: an 8x8
 * block transposed in registers (emit.c). */
void cg_transpose8(cg_ctx *c, LLVMValueRef src, LLVMValueRef at, int64_t ld_src,
                   LLVMValueRef dst, LLVMValueRef dat, int64_t ld_dst);
/* dst[j*R + i] = src[i*C + j] for an [R, C] matrix src: by 8x8 blocks
 * where R and C are multiples of 8, else a loop kept scalar (with
 * 512-bit vectors LLVM vectorised the plain loop into scatters: the
 * Mamba d 8 training kernel 2.5% slower, its forward 1.4%). */
void cg_transpose(cg_ctx *c, LLVMValueRef dst, LLVMValueRef src, int64_t R, int64_t C);
/* Denormals flushed to zero (x86: MXCSR FTZ and DAZ) from begin to end
 * (the whole kernel unless cg_options.denormals): values that decay
 * geometrically (the scans' carries, the gradients behind them) would
 * otherwise cost ~100 cycles an operation. Returns the saved state for
 * cg_ftz_end (NULL off x86: nothing changes). */
LLVMValueRef cg_ftz_begin(cg_ctx *c);
void cg_ftz_end(cg_ctx *c, LLVMValueRef saved);
/* Counts an out-of-range index when bad (i1) is true. */
void cg_count_oob(cg_ctx *c, LLVMValueRef bad);
/* Clamps i32 index v into [0, n-1]; returns it as i64 and counts misses. */
LLVMValueRef cg_clamp_index(cg_ctx *c, LLVMValueRef v, int64_t n);

/* ---- math (mathfn.c): inline approximations, float32 ---- */
LLVMValueRef cg_exp(cg_ctx *c, LLVMValueRef x);
/* Faster forms where denormals are flushed (c->ftz; else cg_exp): exp
 * for x <= 0 (softmax, cross-entropy, sigmoid's exp(-|x|)), and 2^x for
 * the scan's decay exp(delta A) = 2^((delta log2 e) A) (mathfn.c);
 * nonpos: x is known to be <= 0 or NaN (no clamp above). */
LLVMValueRef cg_exp_nonpos(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_exp2_decay(cg_ctx *c, LLVMValueRef x, bool nonpos);
LLVMValueRef cg_log(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_log1p_pos(cg_ctx *c, LLVMValueRef y); /* y >= 0 */
LLVMValueRef cg_sigmoid(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_silu(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_softplus(cg_ctx *c, LLVMValueRef x);
/* softplus(x), and in *sig sigmoid(x) from the same exp: the values of
 * cg_softplus and cg_sigmoid bit for bit */
LLVMValueRef cg_softplus_sigmoid(cg_ctx *c, LLVMValueRef x, LLVMValueRef *sig);
LLVMValueRef cg_tanh(cg_ctx *c, LLVMValueRef x);

/* ---- op emitters: each writes node v into cg_ptr(c, v) ---- */
void cg_emit_group(cg_ctx *c, int root);          /* ops_ew.c */
void cg_emit_reduce(cg_ctx *c, int v);
void cg_emit_matmul(cg_ctx *c, int v);            /* ops_matmul.c */
int64_t cg_matmul_scratch(const ir_func *f, int v); /* bytes for B' */
int cg_matmul_copied(const ir_func *f, int v); /* cg_copied_operand */
/* Whether matmul v can add an addend (cg_node_plan.addend) as it stores */
bool cg_matmul_can_add(const ir_func *f, int v);
/* Whether a kernel for an AVX-512 host should run 512-bit code (ops_matmul.c:
 * it weighs its matmuls): cg_ctx.wide. */
bool cg_wide_kernel(const ir_func *f, const cg_plan *p);
void cg_emit_softmax(cg_ctx *c, int v);           /* ops_linalg.c */
void cg_emit_pad(cg_ctx *c, int v);               /* ops_layout.c */
void cg_emit_concat(cg_ctx *c, int v);
void cg_emit_gather(cg_ctx *c, int v);            /* ops_index.c */
void cg_emit_scatter_add(cg_ctx *c, int v);
void cg_emit_select_row(cg_ctx *c, int v);
void cg_emit_onehot(cg_ctx *c, int v);
void cg_emit_cross_entropy(cg_ctx *c, int v);
void cg_emit_conv1d(cg_ctx *c, int v);            /* ops_seq.c */
int64_t cg_conv_scratch(const ir_func *f, int v); /* bytes for w^T */
bool cg_conv_can_add(const ir_func *f, int v);      /* cg_matmul_can_add's */
void cg_emit_conv1d_bwd_x(cg_ctx *c, int v);
void cg_emit_conv1d_bwd_w(cg_ctx *c, int v);
void cg_emit_rope(cg_ctx *c, int v);                /* ops_seq.c */
void cg_emit_scan(cg_ctx *c, int v);
void cg_emit_scan_bwd(cg_ctx *c, int v);

#endif
