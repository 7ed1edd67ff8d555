/* codegen.h — recall's code generator: IR function -> one LLVM kernel,
 * optimised with the new pass manager (O3's function passes, jit.c's
 * CG_PIPELINE; host TargetMachine)
 * and JIT-compiled with ORC LLJIT. Every size is a compile-time constant.
 *
 * Calling convention. A compiled function is one kernel
 *
 *   int32_t kernel(const void *const *leaves, void *const *outs, void *arena);
 *
 *  - leaves[i] points at leaf i's data, the leaves being the function's
 *    input, param and const nodes in node order (cg_leaf_node maps i to the
 *    node id). f32 leaves are float arrays, i32 leaves int32_t arrays, both
 *    dense row-major with the node's shape; 4-byte alignment suffices.
 *    For a const node that carried data at compile time, cg_run accepts
 *    NULL and passes the module's own copy.
 *  - outs[j] points at room for output j (f->outs order): numel floats
 *    (int32_t for an i32 output). Outputs may be read back by the kernel.
 *    With cg_options.accumulate, the marked ones hold the sums they are
 *    added to.
 *  - arena: cg_arena_size bytes, 64-byte aligned (cg_arena_new), holding
 *    every intermediate value; its content on entry does not matter and on
 *    return is garbage. Buffers are planned at compile time: disjoint
 *    slots, each reused by values whose lifetimes do not overlap.
 *    Except with cg_options.hoist: then slots of their own hold what
 *    depends on params and consts only, made by cg_prepare and read by
 *    every run until the params change (see cg_prepare).
 *  - No buffer may overlap another except that leaves may share memory
 *    (they are only read). The kernel is pointer-noalias on all of them.
 *  - Returns the number of out-of-range indices it met (0 normally).
 *    Index ops never touch memory out of bounds: reads clamp (gather,
 *    select_row, cross_entropy's label use the nearest valid row/class),
 *    writes drop (scatter_add skips the row, onehot gives an all-zero
 *    row). The interpreter reports these cases as errors instead; the
 *    count lets the caller do the same.
 *  - The kernel is reentrant: threads may run it at once with different
 *    arenas and outputs.
 *
 * Numerics: float32 throughout. exp, log and everything built on them
 * (sigmoid, silu, softplus, tanh, softmax, cross_entropy, scan) use
 * inline vectorisable approximations (range reduction + polynomial,
 * measured within 3 ulp of libm; +-inf, NaN and 0 handled). By default a
 * kernel runs with denormals flushed to zero (x86 FTZ and DAZ, set on
 * entry, the caller's mode restored on return): denormal inputs read as
 * 0, results below FLT_MIN may come out as 0, and where exp's argument
 * is known <= 0 (softmax, cross-entropy, sigmoid/silu/softplus's
 * exp(-|x|)), a leaner exp is used, and the scan's decay exp(delta A) is
 * computed as 2^((delta log2 e) A), whose rounding of delta log2 e adds
 * up to |delta A| 2^-24 relative (mathfn.c; tests/test_codegen.c
 * measures it). cg_options.denormals keeps IEEE denormals (and the full
 * exp).
 * Fast-math flags appear only on accumulations: 'reassoc' on reductions
 * (sum, mean, amax, softmax and cross-entropy sums, dot products of a
 * few rows against a transposed matrix, the scan backward's sums over
 * channels) so that they vectorise, 'contract' on multiply-adds (matmul,
 * conv1d, scan) to allow FMA. So results differ from the interpreter's
 * (double within an op, rounded to float after it) in the last bits,
 * never by more than the accumulation order explains. Masked softmax
 * weights are exact zeros; a tiny cross-entropy (confident and right)
 * keeps its relative accuracy.
 *
 * What the compiler does (plan.c): elementwise chains, strided views
 * (permute, slice, expand) and fills are fused into their consumer's loop
 * (an elementwise op, a view, or a sum/mean/amax) when nothing else reads
 * them; reshapes and contiguous slices are aliases; every other node
 * gets a loop nest of its own, in an LLVM function of its own that takes
 * just the buffers it uses (textually identical ones, repeated layers,
 * are emitted once: emit.c). matmul (ops_matmul.c), softmax
 * (ops_linalg.c) and the scans (ops_scan.c) are explicit vector code;
 * LLVM vectorises the rest. Causal attention skips the masked half: a
 * matmul whose left operand is zero past the causal diagonal (a causal
 * softmax, products with one) stops its inner loop there, and one whose
 * result is only read on or below the diagonal skips the column blocks
 * above it. A scan and its scan_bwd in one kernel share the states and
 * decays the scan saves, so the reverse pass needs no exp.
 */
#ifndef RECALL_CODEGEN_H
#define RECALL_CODEGEN_H

#include "ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cg_module cg_module;

typedef int32_t (*cg_kernel_fn)(const void *const *leaves, void *const *outs,
                                void *arena);

/* A zero-initialised struct (or NULL) gives the defaults. */
typedef struct {
  const char *passes; /* new-PM pipeline text; NULL: the default, O3's
                         function passes without its inliner rounds
                         (jit.c: CG_PIPELINE) */
  const char *cpu;    /* cg_llvm_ir / cg_asm only: target CPU such as
                         "x86-64-v3" (stable output for golden tests);
                         NULL: the host. The JIT always targets the host. */
  bool no_fuse;       /* give every elementwise op and view its own loop
                         and buffer (fills stay constants, reshapes
                         aliases): to test the fusion */
  bool unroll;        /* let LLVM unroll loops (off by default: with the
                         many short constant-trip loops it made kernels
                         slower and compiles several times longer) */
  bool profile;       /* count cycles per node (cg_profile); the counters
                         are shared by all runs: not for concurrent use */
  bool denormals;     /* keep IEEE denormals; by default a kernel runs
                         with them flushed to zero (x86 FTZ and DAZ,
                         the caller's mode restored on return): the
                         gradients that decay back through the scan
                         otherwise make whole loops ~10x slower */
  bool rows_to_pos;   /* f is a causal model's forward whose outputs
                         depend on the sequence only through the row that
                         its select_rows take from one i32 input p (an
                         evaluation kernel, a sequence padded to its
                         bucket): the first layer's causal attention and
                         whole-sequence scans then stop at row p, and
                         their rows after p are zeros; row-wise work
                         (projections, norms, elementwise ops) whose
                         readers need no row after p stops there too
                         (plan.c mark_prefix). The outputs are the
                         same as without it for any such function. */
  bool hoist;         /* compute what depends on params and consts only
                         (A = -exp(A_log), the transposed copies of
                         weights that matmuls, scans and convolutions
                         read) once, in
                         cg_prepare, instead of in every run: the kernel
                         then needs cg_prepare on its arena first */
  const bool *accumulate; /* per output (f->outs order), or NULL: an f32
                         output marked true is added into its buffer,
                         outs[j][i] += value, instead of stored: right
                         after its node is computed, while the value is
                         still in cache. The sums are those of a caller
                         adding the stored output (the same bits). For
                         summing gradients over examples. */
  int compile_threads; /* split the kernel into this many modules,
                         optimised and compiled on threads of their own
                         (0: $RECALL_COMPILE_THREADS, else one per CPU, at
                         most 4; small kernels use fewer). The code of
                         each node is the same whatever the split. */
} cg_options;

typedef struct {
  double lower_ms, opt_ms, jit_ms; /* IR -> LLVM IR, passes, machine code */
  int n_loops_emitted;             /* loops, before optimisation (twins once) */
  int n_functions;                 /* node functions compiled: twins share one */
  int n_materialised;              /* nodes with their own buffer */
  int n_fused;                     /* nodes computed inside another's loop */
  int n_placed;                    /* materialised in place, in a concat */
  int n_upto;                      /* computed up to the row read only
                                      (rows_to_pos) */
  int n_hoisted;                   /* computed by cg_prepare, whole or
                                      their copies (hoist) */
  int n_siblings;                  /* nodes made in an earlier group's
                                      loop: a softplus's VJP sigmoid, a
                                      silu's product x sigmoid(x), a
                                      column sum of the group's result */
  int n_folded;                    /* adds made by the matmul or conv1d
                                      they read, as it stores */
  int n_slots;                     /* arena slots */
  size_t arena_bytes;
  int n_units;                     /* modules compiled in parallel */
} cg_stats;

/* Compiles a verified function (ir_verify) into a JIT kernel. Returns NULL
 * with a message on failure. Thread-safe: compiles from several threads
 * run in parallel (each has its own LLVM context and target machine; the
 * process shares one LLJIT). The function may be freed afterwards. */
cg_module *cg_compile(const ir_func *f, const cg_options *opt, ir_error *err);
/* Releases the kernel's machine code and the module (not while it runs).
 * NULL is ignored. */
void cg_free(cg_module *m);

/* Runs the kernel (see the calling convention above). Returns the
 * out-of-range index count, or -1 if a non-const leaf pointer is NULL. */
int cg_run(const cg_module *m, const void *const *leaves, void *const *outs,
           void *arena);
/* With cg_options.hoist: computes into the arena what the kernel's runs
 * read there unchanged (values of params and consts only), from the
 * leaves as cg_run takes them (the inputs are not read). Call it on an
 * arena before running the kernel on it, and again whenever a param or
 * const leaf's data change (a training step): runs in between read what
 * it made. It leaves the rest of the arena as it was, and runs do not
 * touch what it made. Returns as cg_run; 0 with nothing to prepare (no
 * hoist, or nothing hoisted). */
int cg_prepare(const cg_module *m, const void *const *leaves, void *arena);
/* The raw entry point, for callers that fill every leaf themselves. */
cg_kernel_fn cg_kernel(const cg_module *m);

size_t cg_arena_size(const cg_module *m);
/* A zeroed arena of cg_arena_size bytes, 64-byte aligned; free() it. */
void *cg_arena_new(const cg_module *m);
int cg_n_leaves(const cg_module *m);
int cg_leaf_node(const cg_module *m, int i); /* node id of leaf i */
int cg_leaf_index(const cg_module *m, int node); /* -1: not a leaf */
int cg_n_outputs(const cg_module *m);
const cg_stats *cg_module_stats(const cg_module *m);
/* Compiled with opt->profile: cycles (llvm.readcyclecounter) spent in each
 * node's code, summed over runs, indexed by node id (fused nodes count in
 * their group's root); zero the array to restart. NULL otherwise. */
uint64_t *cg_profile(const cg_module *m);

typedef enum {
  CG_STAGE_LOWERED, /* as emitted, before any pass */
  CG_STAGE_OPT      /* after opt->passes */
} cg_stage;

/* LLVM IR text of the kernel f compiles to (malloc'd; NULL + message on
 * failure). Same lowering and passes as cg_compile; opt->cpu picks the
 * target (the host by default). */
char *cg_llvm_ir(const ir_func *f, const cg_options *opt, cg_stage stage,
                 ir_error *err);
/* Assembly text of the optimised kernel for opt->cpu (host by default). */
char *cg_asm(const ir_func *f, const cg_options *opt, ir_error *err);

/* The floating-point operations one run of f needs, counted per IR op
 * over the nodes its outputs depend on (table in flops.c: matmul 2mnk,
 * elementwise 1, exp-based 10, scan per (t, e, s), causal attention only
 * its unmasked triangle). For GFLOP/s figures. */
double cg_flops(const ir_func *f);

#endif
