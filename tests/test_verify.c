/* test_verify.c — ill-formed graphs are refused, by ir_add as they are
 * built and by ir_verify when they were put together by hand (passes and
 * hand edits bypass ir_add), each with a message in the user's terms. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#define T0(dt) {dt, 0, {0}}
#define T1(dt, a) {dt, 1, {a}}
#define T2(dt, a, b) {dt, 2, {a, b}}
#define T3(dt, a, b, c) {dt, 3, {a, b, c}}
#define F IR_F32
#define I IR_I32
#define NONE {(ir_dtype)0, -1, {0}} /* no declared type */

static char *dup(const char *s) {
  char *d = malloc(strlen(s) + 1);
  return strcpy(d, s);
}

/* Appends a node with no checks at all: what a buggy pass could build. */
static int raw(ir_func *f, ir_op op, int n_in, const int *in, ir_attrs a,
               ir_type t, const char *name) {
  if (f->n_nodes == f->cap_nodes) {
    f->cap_nodes = f->cap_nodes ? 2 * f->cap_nodes : 8;
    f->nodes = realloc(f->nodes, sizeof *f->nodes * (size_t)f->cap_nodes);
  }
  ir_node *n = &f->nodes[f->n_nodes];
  memset(n, 0, sizeof *n);
  n->op = op, n->n_in = n_in, n->attr = a, n->type = t;
  for (int i = 0; i < n_in; i++) n->in[i] = in[i];
  n->name = name ? dup(name) : NULL;
  return f->n_nodes++;
}

static void raw_output(ir_func *f, const char *name, int node) {
  if (f->n_outs == f->cap_outs) {
    f->cap_outs = f->cap_outs ? 2 * f->cap_outs : 4;
    f->outs = realloc(f->outs, sizeof *f->outs * (size_t)f->cap_outs);
  }
  f->outs[f->n_outs++] = (ir_output){dup(name), node};
}

/* Leaves for the given types: f32 as param "x<i>", i32 as input "x<i>". */
static ir_func *leaves(int n, const ir_type *t) {
  ir_func *f = ir_func_new();
  ir_error e;
  for (int i = 0; i < n; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "x%d", i);
    if (ir_leaf(f, t[i].dtype == I ? IR_OP_INPUT : IR_OP_PARAM, nm, t[i], &e) != i)
      fail_msg("leaf %d: %s", i, e.msg);
  }
  return f;
}

static void assert_verify_fails(const ir_func *f, const char *want) {
  ir_error e = {{0}};
  assert_int_equal(ir_verify(f, &e), -1);
  if (strcmp(e.msg, want) != 0)
    fail_msg("ir_verify\n  got:  %s\n  want: %s", e.msg, want);
}

/* ---- one bad node on top of good leaves ---- */

typedef struct {
  int n_leaves;
  ir_type leaf[IR_MAX_INPUTS];
  ir_op op;
  int n_in;
  int in[IR_MAX_INPUTS + 1];
  ir_attrs a;
  ir_type type; /* declared type; rank -1: none */
  const char *msg;
} bad_node;

static const bad_node cases[] = {
    /* matmul [4,8] x [16,4] */
    {2, {T2(F, 4, 8), T2(F, 16, 4)}, IR_OP_MATMUL, 2, {0, 1}, {0}, NONE,
     "matmul: inner sizes differ, 8 vs 16"},
    /* with tb, b [4,16] is read as [16,4]: still 8 vs 16 */
    {2, {T2(F, 4, 8), T2(F, 4, 16)}, IR_OP_MATMUL, 2, {0, 1}, {.tb = true}, NONE,
     "matmul: inner sizes differ, 8 vs 16"},
    {2, {T3(F, 2, 4, 8), T3(F, 3, 8, 4)}, IR_OP_MATMUL, 2, {0, 1}, {0}, NONE,
     "matmul: batch sizes differ on axis 0, 2 vs 3"},
    {2, {T2(F, 8, 4), T1(F, 3)}, IR_OP_ADD, 2, {0, 1}, {0}, NONE,
     "add: shapes f32[8,4] and f32[3] do not broadcast (axis 1: 4 vs 3)"},
    {2, {T2(F, 8, 4), T2(I, 8, 4)}, IR_OP_MUL, 2, {0, 1}, {0}, NONE,
     "mul: right operand must be f32, got i32"},
    {1, {T1(I, 8)}, IR_OP_EXP, 1, {0}, {0}, NONE, "exp: input must be f32, got i32"},
    {1, {T2(F, 8, 4)}, IR_OP_SLICE, 1, {0}, {.axis = 1, .start = 2, .end = 6},
     NONE, "slice: range [2, 6) is empty or outside axis 1 of size 4"},
    {1, {T2(F, 8, 4)}, IR_OP_SLICE, 1, {0}, {.axis = 0, .start = 3, .end = 3},
     NONE, "slice: range [3, 3) is empty or outside axis 0 of size 8"},
    {1, {T2(F, 8, 4)}, IR_OP_SUM, 1, {0}, {.axis = 2}, NONE,
     "sum: axis 2 out of range for rank 2"},
    {1, {T3(F, 2, 3, 4)}, IR_OP_PERMUTE, 1, {0}, {.perm = {0, 0, 2}}, NONE,
     "permute: perm is not a permutation of 0..2"},
    {1, {T2(F, 2, 3)}, IR_OP_PERMUTE, 1, {0}, {.perm = {1, 2}}, NONE,
     "permute: perm is not a permutation of 0..1"},
    {1, {T2(F, 8, 4)}, IR_OP_RESHAPE, 1, {0}, {0}, T2(F, 5, 6),
     "reshape: element counts differ, f32[8,4] has 32, f32[5,6] has 30"},
    {1, {T2(F, 3, 2)}, IR_OP_EXPAND, 1, {0}, {0}, T2(F, 3, 4),
     "expand: cannot broadcast f32[3,2] to f32[3,4]"},
    {2, {T2(F, 2, 3), T2(F, 3, 3)}, IR_OP_CONCAT, 2, {0, 1}, {.axis = 1}, NONE,
     "concat: sizes on axis 0 differ, 2 vs 3"},
    {2, {T2(F, 10, 4), T1(F, 3)}, IR_OP_GATHER, 2, {0, 1}, {0}, NONE,
     "gather: index must be i32 (token or position ids), got f32"},
    {2, {T2(F, 8, 10), T1(I, 7)}, IR_OP_CROSS_ENTROPY, 2, {0, 1}, {0}, NONE,
     "cross_entropy: batch sizes of logits and labels differ, 8 vs 7"},
    {2, {T2(F, 8, 10), T2(I, 8, 1)}, IR_OP_CROSS_ENTROPY, 2, {0, 1}, {0}, NONE,
     "cross_entropy: labels i32[8,1] do not match logits f32[8,10]"},
    /* u, delta [6,4] but A has 5 channels */
    {4, {T2(F, 6, 4), T2(F, 6, 4), T2(F, 5, 3), T2(F, 6, 6)}, IR_OP_SCAN, 4,
     {0, 1, 2, 3}, {0}, NONE, "scan: channel counts of u and A differ, 4 vs 5"},
    /* A [4,3] wants bc [6,6], got [6,8] */
    {4, {T2(F, 6, 4), T2(F, 6, 4), T2(F, 4, 3), T2(F, 6, 8)}, IR_OP_SCAN, 4,
     {0, 1, 2, 3}, {0}, NONE, "scan: state sizes 2N of A and bc differ, 6 vs 8"},
    {2, {T2(F, 6, 4), T2(F, 3, 2)}, IR_OP_CONV1D, 2, {0, 1}, {0}, NONE,
     "conv1d: channel counts of input and weight differ, 4 vs 3"},
    /* rope: x [L,H,D], cos and sin [L,D/2] */
    {3, {T3(F, 6, 1, 7), T2(F, 6, 3), T2(F, 6, 3)}, IR_OP_ROPE, 3, {0, 1, 2}, {0}, NONE,
     "rope: head size 7 is odd (pairs are rotated)"},
    {3, {T3(F, 6, 1, 8), T2(F, 6, 4), T2(F, 6, 3)}, IR_OP_ROPE, 3, {0, 1, 2}, {0}, NONE,
     "rope: table width and half the head size differ, 4 vs 3"},
    {3, {T2(F, 6, 8), T2(F, 6, 4), T2(F, 6, 4)}, IR_OP_ROPE, 3, {0, 1, 2}, {0}, NONE,
     "rope: input [L,H,D] must have rank 3, got f32[6,8]"},
    {1, {T2(F, 8, 4)}, IR_OP_SOFTMAX, 1, {0}, {.causal = true}, NONE,
     "softmax: causal mask needs no more query rows than keys, 8 vs 4"},
    {2, {T2(F, 5, 4), T1(I, 1)}, IR_OP_SELECT_ROW, 2, {0, 1}, {0}, NONE,
     "select_row: position must have rank 0, got i32[1]"},
    {1, {T1(I, 3)}, IR_OP_ONEHOT, 1, {0}, {.n = 0}, NONE,
     "onehot: class count n must be >= 1, got 0"},
    /* arity */
    {1, {T2(F, 8, 4)}, IR_OP_ADD, 1, {0}, {0}, NONE, "add: takes 2 inputs, got 1"},
    {1, {T2(F, 8, 4)}, IR_OP_NEG, 2, {0, 0}, {0}, NONE, "neg: takes 1 input, got 2"},
    {1, {T2(F, 8, 4)}, IR_OP_CONCAT, 0, {0}, {.axis = 0}, NONE,
     "concat: takes 1 to 4 inputs, got 0"},
    /* declared type disagrees with the rule */
    {2, {T2(F, 8, 4), T2(F, 8, 4)}, IR_OP_ADD, 2, {0, 1}, {0}, T2(F, 8, 5),
     "add: declared type f32[8,5] but the inputs give f32[8,4]"},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* Each case twice: ir_add refuses it (and adds nothing); the same node
 * appended raw is what ir_verify reports, as "%id: message". */
static void test_bad_nodes(void **state) {
  (void)state;
  for (int k = 0; k < N_CASES; k++) {
    const bad_node *c = &cases[k];
    ir_func *f = leaves(c->n_leaves, c->leaf);
    const ir_type *decl = c->type.rank >= 0 ? &c->type : NULL;
    ir_error e = {{0}};
    assert_int_equal(ir_verify(f, &e), 0); /* the leaves alone are fine */
    if (ir_add(f, c->op, c->in, c->n_in, &c->a, decl, NULL, &e) != -1)
      fail_msg("case %d (%s): ir_add accepted it", k, ir_op_name(c->op));
    if (strcmp(e.msg, c->msg) != 0)
      fail_msg("case %d ir_add\n  got:  %s\n  want: %s", k, e.msg, c->msg);
    assert_int_equal(f->n_nodes, c->n_leaves);
    ir_type t = decl ? *decl : (ir_type)T1(F, 1);
    int id = raw(f, c->op, c->n_in, c->in, c->a, t, NULL);
    char want[IR_MSG_MAX];
    snprintf(want, sizeof want, "%%%d: %s", id, c->msg);
    assert_verify_fails(f, want);
    /* with a source line, the verifier names it */
    f->nodes[id].line = 9;
    snprintf(want, sizeof want, "%%%d (line 9): %s", id, c->msg);
    assert_verify_fails(f, want);
    ir_func_free(f);
  }
}

/* A well-formed graph passes: the failures above are not spurious. */
static void test_good_graph(void **state) {
  (void)state;
  ir_type t[] = {T2(F, 4, 8), T2(F, 16, 8), T1(I, 4)};
  ir_func *f = leaves(3, t);
  ir_error e;
  int in[2] = {0, 1};
  ir_attrs tb = {.tb = true};
  int mm = ir_add(f, IR_OP_MATMUL, in, 2, &tb, NULL, NULL, &e);
  assert_int_equal(mm, 3);
  int ce[2] = {mm, 2};
  int loss = ir_add(f, IR_OP_CROSS_ENTROPY, ce, 2, NULL, NULL, NULL, &e);
  assert_int_equal(ir_add_output(f, "loss", loss, &e), 0);
  assert_int_equal(ir_verify(f, &e), 0);
  /* the same nodes appended raw verify too */
  ir_func *g = leaves(3, t);
  raw(g, IR_OP_MATMUL, 2, in, tb, (ir_type)T2(F, 4, 16), NULL);
  raw(g, IR_OP_CROSS_ENTROPY, 2, ce, (ir_attrs){0}, (ir_type)T1(F, 4), NULL);
  raw_output(g, "loss", 4);
  assert_int_equal(ir_verify(g, &e), 0);
  /* a type-giving op without its type has nothing to check against */
  int x = 0;
  assert_int_equal(ir_add(f, IR_OP_RESHAPE, &x, 1, NULL, NULL, NULL, &e), -1);
  assert_string_equal(e.msg, "reshape: needs a result type");
  ir_func_free(f);
  ir_func_free(g);
}

/* Inputs that are not defined before the node: ir_add refuses them, and a
 * hand-edited id (forward, self, negative) is caught by the verifier. */
static void test_undefined_input(void **state) {
  (void)state;
  ir_type t[] = {T1(F, 4)};
  ir_func *f = leaves(1, t);
  ir_error e;
  int bad = 5;
  assert_int_equal(ir_add(f, IR_OP_NEG, &bad, 1, NULL, NULL, NULL, &e), -1);
  assert_string_equal(e.msg, "neg: input 0 refers to %5, which is not defined before it");
  int x = 0;
  int n1 = ir_unary(f, IR_OP_NEG, x, &e), n2 = ir_unary(f, IR_OP_EXP, n1, &e);
  assert_int_equal(ir_verify(f, &e), 0);
  const int ids[] = {n2, 7, -1}; /* a cycle onto itself, past the end, negative */
  const char *want[] = {
      "%1: neg: input 0 refers to %2, which is not defined before it",
      "%1: neg: input 0 refers to %7, which is not defined before it",
      "%1: neg: input 0 refers to %-1, which is not defined before it"};
  for (int i = 0; i < 3; i++) {
    f->nodes[n1].in[0] = ids[i];
    assert_verify_fails(f, want[i]);
  }
  f->nodes[n1].in[0] = 0;
  int in2[2] = {0, 0};
  int a = ir_add(f, IR_OP_ADD, in2, 2, NULL, NULL, NULL, &e);
  f->nodes[a].in[1] = a;
  assert_verify_fails(f, "%3: add: input 1 refers to %3, which is not defined before it");
  ir_func_free(f);
}

/* Names: unique among leaves, present on leaves, absent elsewhere. */
static void test_names(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  ir_error e;
  ir_type t = T1(F, 4);
  assert_int_equal(ir_leaf(f, IR_OP_PARAM, "w", t, &e), 0);
  assert_int_equal(ir_leaf(f, IR_OP_CONST, "w", t, &e), -1);
  assert_string_equal(e.msg, "const: name \"w\" is already used by %0");
  assert_int_equal(ir_leaf(f, IR_OP_INPUT, "", t, &e), -1);
  assert_string_equal(e.msg, "input: needs a name");
  raw(f, IR_OP_INPUT, 0, NULL, (ir_attrs){0}, t, "w");
  assert_verify_fails(f, "%1: input: name \"w\" is already used by %0");
  free(f->nodes[1].name);
  f->nodes[1].name = NULL;
  assert_verify_fails(f, "%1: input: needs a name");
  f->nodes[1].name = dup("x");
  assert_int_equal(ir_verify(f, &e), 0);
  int n = ir_unary(f, IR_OP_NEG, 0, &e);
  f->nodes[n].name = dup("neg");
  assert_verify_fails(f, "%2: neg: only input, param and const nodes carry a name");
  free(f->nodes[n].name);
  f->nodes[n].name = NULL;
  f->nodes[n].data = calloc(4, sizeof(float));
  assert_verify_fails(f, "%2: neg: only const nodes carry data");
  ir_func_free(f);
}

/* Outputs: defined nodes, unique names. */
static void test_outputs(void **state) {
  (void)state;
  ir_type t[] = {T1(F, 4)};
  ir_func *f = leaves(1, t);
  ir_error e;
  assert_int_equal(ir_add_output(f, "y", 0, &e), 0);
  assert_int_equal(ir_add_output(f, "y", 0, &e), -1);
  assert_string_equal(e.msg, "output \"y\" is defined twice");
  assert_int_equal(ir_add_output(f, "z", 7, &e), -1);
  assert_string_equal(e.msg, "output \"z\": %7 is not defined");
  assert_int_equal(ir_verify(f, &e), 0);
  raw_output(f, "z", 1);
  assert_verify_fails(f, "output \"z\": %1 is not defined");
  f->outs[1].node = 0;
  assert_int_equal(ir_verify(f, &e), 0);
  raw_output(f, "y", 0);
  assert_verify_fails(f, "output \"y\" is defined twice");
  ir_func_free(f);
}

/* Hand edits after building: the stored type, an attribute, the op. */
static void test_hand_edited(void **state) {
  (void)state;
  ir_type t[] = {T2(F, 8, 8), T2(F, 8, 16)};
  ir_func *f = leaves(2, t);
  ir_error e;
  int in[2] = {0, 1};
  int mm = ir_add(f, IR_OP_MATMUL, in, 2, NULL, NULL, NULL, &e);
  assert_int_equal(mm, 2);
  assert_int_equal(ir_verify(f, &e), 0);
  f->nodes[mm].type.dim[1] = 8; /* the rule gives [8,16] */
  assert_verify_fails(f, "%2: matmul: declared type f32[8,8] but the inputs give f32[8,16]");
  f->nodes[mm].type.dim[1] = 16;
  f->nodes[mm].type.dtype = IR_I32;
  assert_verify_fails(f, "%2: matmul: declared type i32[8,16] but the inputs give f32[8,16]");
  f->nodes[mm].type.dtype = IR_F32;
  f->nodes[mm].attr.ta = true; /* a read as [8,8]^T: still fine */
  assert_int_equal(ir_verify(f, &e), 0);
  f->nodes[mm].attr.tb = true; /* b read as [16,8]: 8 vs 16 */
  assert_verify_fails(f, "%2: matmul: inner sizes differ, 8 vs 16");
  f->nodes[mm].attr.tb = false;
  f->nodes[0].type.dim[0] = 0;
  assert_verify_fails(f, "%0: param: size 0 on axis 0: sizes must be >= 1");
  f->nodes[0].type.dim[0] = 8;
  f->nodes[0].type.rank = 5;
  assert_verify_fails(f, "%0: param: rank 5 outside 0..4");
  f->nodes[0].type.rank = 2;
  f->nodes[mm].op = (ir_op)IR_OP_COUNT;
  char want[64];
  snprintf(want, sizeof want, "%%2: unknown op %d", (int)IR_OP_COUNT);
  assert_verify_fails(f, want);
  ir_func_free(f);
}

/* The first bad node is the one reported. */
static void test_first_error_wins(void **state) {
  (void)state;
  ir_type t[] = {T2(F, 4, 8), T2(F, 16, 4)};
  ir_func *f = leaves(2, t);
  int in[2] = {0, 1};
  raw(f, IR_OP_MATMUL, 2, in, (ir_attrs){0}, (ir_type)T2(F, 4, 4), NULL);
  raw(f, IR_OP_ADD, 2, in, (ir_attrs){0}, (ir_type)T2(F, 4, 8), NULL);
  f->nodes[3].line = 12;
  f->nodes[2].line = 11;
  assert_verify_fails(f, "%2 (line 11): matmul: inner sizes differ, 8 vs 16");
  ir_func_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_nodes),       cmocka_unit_test(test_good_graph),
      cmocka_unit_test(test_undefined_input), cmocka_unit_test(test_names),
      cmocka_unit_test(test_outputs),         cmocka_unit_test(test_hand_edited),
      cmocka_unit_test(test_first_error_wins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
