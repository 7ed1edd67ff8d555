/* ir.h — recall's tensor IR: graph, op table, verifier, printer/parser,
 * reference interpreter, autodiff (ad_) and passes.
 *
 * A function is a topologically ordered array of SSA nodes; a node's id is
 * its index. Every node has a static type (dtype + shape, rank <= 4), up to
 * four inputs (ids of earlier nodes), a small attribute record and, for
 * leaves, a name. Outputs are named references to nodes.
 *
 * Conventions every part relies on:
 *  - Reductions (sum, max, mean) keep the reduced axis with size 1.
 *  - Binary elementwise ops broadcast numpy-style (right-aligned; a size-1
 *    or missing axis stretches).
 *  - Shapes are row-major and dense.
 */
#ifndef RECALL_IR_H
#define RECALL_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { IR_MAX_RANK = 4, IR_MAX_INPUTS = 4, IR_MSG_MAX = 512 };

typedef enum { IR_F32, IR_I32 } ir_dtype;

/* The op list: the one place an op is declared. The ir_op enum and op.c's
 * table (name, arity, attributes, shape rule) are both generated from it,
 * so they cannot drift; an op added here without an interpreter case, a VJP
 * or test cases fails the table-driven tests.
 * X(ENUM, name, arity, attributes, shape rule); arity -1 = 1..IR_MAX_INPUTS;
 * attributes are IR_ATTR_* without the prefix. */
#define IR_OP_LIST(X)                                                                                     \
  /* leaves */                                                                                            \
  X(INPUT, input, 0, NAME|TYPE, given)               /* data fed per call: tokens, label, position */     \
  X(PARAM, param, 0, NAME|TYPE, given)               /* trainable, named */                               \
  X(CONST, const, 0, NAME|TYPE, given)               /* frozen named data (V, RoPE tables) */             \
  X(FILL, fill, 0, TYPE|VALUE, given)                /* every element = attr.value */                     \
  /* unary elementwise, f32 -> f32 */                                                                     \
  X(NEG, neg, 1, 0, unary)                                                                                \
  X(EXP, exp, 1, 0, unary)                                                                                \
  X(LOG, log, 1, 0, unary)                                                                                \
  X(SQRT, sqrt, 1, 0, unary)                                                                              \
  X(RSQRT, rsqrt, 1, 0, unary)                                                                            \
  X(RECIP, recip, 1, 0, unary)                                                                            \
  X(SIGMOID, sigmoid, 1, 0, unary)                                                                        \
  X(SILU, silu, 1, 0, unary)                                                                              \
  X(SOFTPLUS, softplus, 1, 0, unary)                                                                      \
  X(TANH, tanh, 1, 0, unary)                                                                              \
  X(RELU, relu, 1, 0, unary)                                                                              \
  /* binary elementwise with broadcasting, f32 x f32 -> f32 */                                            \
  X(ADD, add, 2, 0, binary)                                                                               \
  X(SUB, sub, 2, 0, binary)                                                                               \
  X(MUL, mul, 2, 0, binary)                                                                               \
  X(DIV, div, 2, 0, binary)                                                                               \
  X(MAX, max, 2, 0, binary)                                                                               \
  X(GT, gt, 2, 0, binary)                            /* 1.0 where a > b else 0.0; no gradient */          \
  /* linear algebra and layout */                                                                         \
  X(MATMUL, matmul, 2, TRANS, matmul)                /* [..,m,k] x [..,k,n]; attrs ta, tb */              \
  X(PERMUTE, permute, 1, PERM, permute)              /* attr perm: out.dim[i] = in.dim[perm[i]] */        \
  X(RESHAPE, reshape, 1, TYPE, reshape)              /* to the node's shape, same element count */        \
  X(EXPAND, expand, 1, TYPE, expand)                 /* broadcast to the node's shape */                  \
  X(SLICE, slice, 1, AXIS|RANGE, slice)              /* [start, end) along axis */                        \
  X(PAD, pad, 1, AXIS|RANGE, pad)                    /* zeros: start before, end after, along axis */     \
  X(CONCAT, concat, -1, AXIS, concat)                /* along axis */                                     \
  /* reductions over attr.axis, keeping it with size 1 */                                                 \
  X(SUM, sum, 1, AXIS, reduce)                                                                            \
  X(AMAX, amax, 1, AXIS, reduce)                     /* reduce-max; binary max is "max" */                \
  X(MEAN, mean, 1, AXIS, reduce)                                                                          \
  /* sequence-model ops */                                                                                \
  X(SOFTMAX, softmax, 1, CAUSAL, softmax)            /* last axis; causal: see below */                   \
  X(GATHER, gather, 2, 0, gather)                    /* table[V,...], idx i32[...] -> idx.shape+[...] */  \
  X(SCATTER_ADD, scatter_add, 2, N, scatter_add)     /* src, idx -> [attr.n, ...]; gather's VJP */        \
  X(SELECT_ROW, select_row, 2, 0, select_row)        /* x[L,...], p i32[] -> x[p] : [...] */              \
  X(ONEHOT, onehot, 1, N, onehot)                    /* idx i32[...] -> f32[..., attr.n] */               \
  X(CROSS_ENTROPY, cross_entropy, 2, 0, cross_entropy) /* logits[...,K], label i32[...] */                \
  X(CONV1D, conv1d, 2, 0, conv1d)                    /* causal depthwise: x[L,E], w[E,W] -> [L,E] */      \
  X(CONV1D_BWD_X, conv1d_bwd_x, 2, 0, conv1d)        /* g[L,E], w[E,W] -> dx[L,E] */                      \
  X(CONV1D_BWD_W, conv1d_bwd_w, 2, N, conv1d_bwd_w)  /* g[L,E], x[L,E] -> dw[E,attr.n] */                 \
  X(SCAN, scan, 4, 0, scan)                          /* u[L,E], delta[L,E], A[E,N], bc[L,2N] -> [L,E] */  \
  X(SCAN_BWD, scan_bwd, 4, 0, scan_bwd)              /* ud[L,2E], A, bc, dy -> packed grads, see below */ \
  X(ROPE, rope, 3, 0, rope)                          /* x[L,H,D], cos, sin [L,D/2] -> [L,H,D], below */

typedef enum {
#define IR_X_ENUM(e, ...) IR_OP_##e,
  IR_OP_LIST(IR_X_ENUM)
#undef IR_X_ENUM
  IR_OP_COUNT
} ir_op;

/* softmax {causal} over x[..., Lq, Lk] masks key j for query row i when
 * j > i + (Lk - Lq): rows are the last Lq positions of Lk (so Lq = 1 is the
 * last position attending to everything); masked weights are exactly 0.
 *
 * Selective scan (Mamba's selective_scan_ref without D, z and bias):
 *   h[0] = 0;  h[t][e][s] = exp(delta[t][e] * A[e][s]) * h[t-1][e][s]
 *                           + delta[t][e] * B[t][s] * u[t][e]
 *   y[t][e] = sum_s C[t][s] * h[t][e][s]
 * with bc = [B | C] along the last axis ([L, 2N]; x_proj's (dt, B, C) split
 * makes B and C adjacent). scan_bwd takes ud = [u | delta] ([L, 2E]), A, bc
 * and dy and returns one flat f32 vector holding, in order,
 *   du [L,E], ddelta [L,E], dA [E,N], dbc [L,2N]
 * which the VJP slices apart: one node, one pass of the reverse recurrence.
 *
 * rope(x, cos, sin) rotates the pairs (2i, 2i+1) of x[t][h] by the angle
 * of row t, column i of the tables (rotary positions, DESIGN.md 5):
 *   y[t][h][2i]   = x[t][h][2i] cos[t][i] - x[t][h][2i+1] sin[t][i]
 *   y[t][h][2i+1] = x[t][h][2i] sin[t][i] + x[t][h][2i+1] cos[t][i]
 * Its VJP with respect to x is the inverse rotation, rope(g, cos, -sin). */

typedef struct {
  ir_dtype dtype;
  int rank;
  int dim[IR_MAX_RANK];
} ir_type;

/* Attributes. Which fields an op uses is in its op-table entry (attr mask). */
typedef struct {
  int axis;              /* slice pad concat sum amax mean */
  int start, end;        /* slice: [start,end); pad: zeros before/after */
  int n;                 /* scatter_add rows, onehot classes, conv1d_bwd_w W */
  int perm[IR_MAX_RANK]; /* permute */
  bool ta, tb;           /* matmul: transpose a / b */
  bool causal;           /* softmax */
  double value;          /* fill */
} ir_attrs;

enum {
  IR_ATTR_AXIS = 1 << 0,
  IR_ATTR_RANGE = 1 << 1, /* start, end */
  IR_ATTR_N = 1 << 2,
  IR_ATTR_PERM = 1 << 3,
  IR_ATTR_TRANS = 1 << 4, /* ta, tb */
  IR_ATTR_CAUSAL = 1 << 5,
  IR_ATTR_VALUE = 1 << 6,
  IR_ATTR_NAME = 1 << 7,  /* leaves carry a name (fill's is optional) */
  IR_ATTR_TYPE = 1 << 8,  /* the result type is given, not inferred */
};

typedef struct {
  ir_op op;
  ir_type type;
  int n_in;
  int in[IR_MAX_INPUTS];
  ir_attrs attr;
  char *name;  /* leaves: binding name; owned; NULL elsewhere */
  float *data; /* const: owned values (numel floats) or NULL if bound later */
  int line;    /* source line (spec or .ir text), 0 if unknown */
} ir_node;

typedef struct {
  char *name; /* owned */
  int node;
} ir_output;

typedef struct {
  ir_node *nodes;
  int n_nodes, cap_nodes;
  ir_output *outs;
  int n_outs, cap_outs;
} ir_func;

typedef struct {
  char msg[IR_MSG_MAX];
} ir_error;

/* Shape rule: given the input nodes and attributes, fill *out (which holds
 * the declared type for IR_ATTR_TYPE ops) or write a message in the user's
 * terms ("matmul: inner sizes differ, 8 vs 16") and return -1. */
typedef int (*ir_shape_rule)(ir_op op, const ir_node *const *in, int n_in,
                             const ir_attrs *a, ir_type *out, ir_error *err);

typedef struct {
  const char *name;
  int arity;      /* -1: 1..IR_MAX_INPUTS */
  unsigned attrs; /* IR_ATTR_* mask */
  ir_shape_rule shape;
} ir_op_info;

/* ---- op table and types (op.c) ---- */
const ir_op_info *ir_op_get(ir_op op);
const char *ir_op_name(ir_op op);
int ir_op_from_name(const char *name); /* -1 if unknown */
bool ir_op_is_leaf(ir_op op);
bool ir_op_is_unary(ir_op op);  /* unary elementwise f32 */
bool ir_op_is_binary(ir_op op); /* broadcasting binary */
int64_t ir_numel(const ir_type *t);
bool ir_type_eq(const ir_type *a, const ir_type *b);
ir_type ir_type_make(ir_dtype dt, int rank, const int *dim);
/* "f32[64,8]"; returns buf */
char *ir_type_str(const ir_type *t, char *buf, size_t n);
const char *ir_dtype_name(ir_dtype dt);
/* Broadcast two shapes numpy-style; -1 with message on mismatch. */
int ir_broadcast(const ir_type *a, const ir_type *b, ir_type *out,
                 const char *opname, ir_error *err);
void ir_err(ir_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- building (func.c) ---- */
ir_func *ir_func_new(void);
void ir_func_free(ir_func *f);
ir_func *ir_func_clone(const ir_func *f);
/* Add a node: checks arity, input ids, attributes and infers the type with
 * the op's shape rule. `type` is required for IR_ATTR_TYPE ops (leaves,
 * fill, reshape, expand) and, if given for others, must equal the inferred
 * type. `name` is required for input/param/const (copied). Returns the new
 * id, or -1 with a message. */
int ir_add(ir_func *f, ir_op op, const int *in, int n_in, const ir_attrs *a,
           const ir_type *type, const char *name, ir_error *err);
/* Shorthands for the common cases (-1 on error, message in err). */
int ir_leaf(ir_func *f, ir_op op, const char *name, ir_type type,
            ir_error *err);
int ir_fill(ir_func *f, double value, ir_type type, ir_error *err);
int ir_unary(ir_func *f, ir_op op, int x, ir_error *err);
int ir_binary(ir_func *f, ir_op op, int a, int b, ir_error *err);
int ir_add_output(ir_func *f, const char *name, int node, ir_error *err);
int ir_find_output(const ir_func *f, const char *name); /* index or -1 */
int ir_find_leaf(const ir_func *f, const char *name);   /* node id or -1 */
/* The type a node with these inputs and attributes would have (self: the id
 * it would get; inputs must be earlier). Used by ir_add and the verifier. */
int ir_infer_type(const ir_func *f, ir_op op, const int *in, int n_in,
                  const ir_attrs *a, const ir_type *declared, int self,
                  ir_type *out, ir_error *err);
/* Attach const data (copied; numel floats). */
int ir_set_const_data(ir_func *f, int node, const float *data, ir_error *err);

/* ---- verifier (verify.c) ---- */
/* Checks topological order, arity, input ids, dtypes, every shape against
 * its rule, attribute ranges, unique leaf and output names. Message names
 * the node: "%7 (line 9): matmul: inner sizes differ, 8 vs 16". */
int ir_verify(const ir_func *f, ir_error *err);

/* ---- text form (print.c, parse.c) ----
 *   %7 = matmul %5, %6 {tb} : f32[64,8]
 *   %0 = param "layers.0.norm.weight" : f32[8]
 *   output "loss" = %12
 * Print -> parse -> print is the identity. */
void ir_print(FILE *out, const ir_func *f);
char *ir_print_str(const ir_func *f); /* malloc'd */
void ir_print_node(FILE *out, const ir_func *f, int id);
/* Parse text; errors are "FILE:LINE: message". Verifies the result. */
ir_func *ir_parse(const char *text, const char *filename, ir_error *err);
ir_func *ir_parse_file(const char *path, ir_error *err);
/* Graphviz dot: one box per node (op, name, type), edges from inputs. */
void ir_print_dot(FILE *out, const ir_func *f);

/* ---- reference interpreter (interp.c) ----
 * Values are held as double arrays (i32 values are exact in double).
 * IR_F32: every node's result is rounded to float32 as it is produced (each
 * op computed in double, then rounded): the reference for the JIT, which
 * may differ only in accumulation order. IR_F64: no rounding (gradient
 * checks). leaves[i] must point at numel doubles for every input and param
 * node i; a const uses leaves[i] if non-NULL, else its data. */
typedef enum { IR_PREC_F32, IR_PREC_F64 } ir_precision;
double **ir_interp(const ir_func *f, ir_precision prec,
                   const double *const *leaves, ir_error *err);
void ir_values_free(const ir_func *f, double **vals);

/* ---- autodiff (autodiff.c) ----
 * ad_grad: a copy of f with the reverse-mode gradient appended: a new input
 * "grad.<loss>" (the upstream gradient, the loss output's type) and an
 * output "grad.<param>" for every param, after f's own outputs. Params that
 * the loss does not depend on get a zero fill. Backward nodes are ordinary
 * IR emitted by one VJP rule per op.
 * ad_split: cut a function made by ad_grad into a forward function (its
 * original outputs plus "saved.<id>" outputs for every forward value the
 * backward reads) and a backward function (inputs: the leaves it reads,
 * "saved.<id>" inputs and the upstream gradient; outputs: grad.<param>).
 * n_fwd is the node count of the original forward function. */
ir_func *ad_grad(const ir_func *f, const char *loss, ir_error *err);
int ad_split(const ir_func *g, int n_fwd, ir_func **fwd, ir_func **bwd,
             ir_error *err);

/* ---- passes (passes.c) ----
 * Each pass returns a new function with the same outputs (in order) and the
 * same leaves, or NULL with a message. */
typedef ir_func *(*ir_pass_fn)(const ir_func *f, ir_error *err);
typedef struct {
  const char *name;
  ir_pass_fn run;
} ir_pass;
ir_func *ir_pass_dce(const ir_func *f, ir_error *err);
ir_func *ir_pass_cse(const ir_func *f, ir_error *err);
ir_func *ir_pass_fold(const ir_func *f, ir_error *err);     /* constants */
ir_func *ir_pass_simplify(const ir_func *f, ir_error *err); /* algebra */
/* factor.c: sum_rows((sum_i A_i B_i) C) as sum_i sum_rows(B_i (A_i^T C))
 * where A_i^T (C w + b) is taken anyway (a first layer's norm gradient):
 * the products A_i B_i are then not needed. */
ir_func *ir_pass_factor(const ir_func *f, ir_error *err);
/* demand.c: every node computed over just the part its users read (a
 * range along one axis, e.g. the one row of a select_row at a constant
 * position and everything row-wise before it). Leaves are kept whole. */
ir_func *ir_pass_demand(const ir_func *f, ir_error *err);
/* sink.c: row-wise work after a gather (a first layer's norm and
 * projections after the embedding) done on the table's rows instead,
 * where the table has fewer rows than the gather makes; run on a forward
 * function, before its gradient is taken, so that the gradient is
 * computed on the table's rows too. */
ir_func *ir_pass_sink(const ir_func *f, ir_error *err);
/* A copy of f with its scalar input `name` replaced by the constant
 * `value` (a fill; the input is gone from the leaves). */
ir_func *ir_bind_scalar(const ir_func *f, const char *name, double value,
                        ir_error *err);
/* The standard pipeline, run to a fixed point. If trace is non-NULL each
 * pass that changed the function prints "# after <name>" and the IR. */
const ir_pass *ir_passes(int *count);
ir_func *ir_optimize(const ir_func *f, FILE *trace, ir_error *err);

#endif
