/* test_text.c — the IR text form: print, parse, print is the identity for
 * every op; hand-written text (comments, %names) parses; each kind of
 * mistake is reported as "file:line: message". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir.h"

#define T0(dt) {dt, 0, {0}}
#define T1(dt, a) {dt, 1, {a}}
#define T2(dt, a, b) {dt, 2, {a, b}}
#define T3(dt, a, b, c) {dt, 3, {a, b, c}}
#define F IR_F32
#define I IR_I32

/* ---- comparing two functions node by node ---- */

static bool same_double(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return a == b && signbit(a) == signbit(b);
}

static void assert_same_func(const ir_func *f, const ir_func *g) {
  assert_int_equal(f->n_nodes, g->n_nodes);
  for (int i = 0; i < f->n_nodes; i++) {
    const ir_node *a = &f->nodes[i], *b = &g->nodes[i];
    assert_int_equal(a->op, b->op);
    assert_true(ir_type_eq(&a->type, &b->type));
    assert_int_equal(a->n_in, b->n_in);
    for (int k = 0; k < a->n_in; k++) assert_int_equal(a->in[k], b->in[k]);
    assert_int_equal(a->attr.axis, b->attr.axis);
    assert_int_equal(a->attr.start, b->attr.start);
    assert_int_equal(a->attr.end, b->attr.end);
    assert_int_equal(a->attr.n, b->attr.n);
    for (int k = 0; k < IR_MAX_RANK; k++)
      assert_int_equal(a->attr.perm[k], b->attr.perm[k]);
    assert_int_equal(a->attr.ta, b->attr.ta);
    assert_int_equal(a->attr.tb, b->attr.tb);
    assert_int_equal(a->attr.causal, b->attr.causal);
    assert_true(same_double(a->attr.value, b->attr.value));
    if (a->name || b->name) {
      assert_non_null(a->name);
      assert_non_null(b->name);
      assert_string_equal(a->name, b->name);
    }
  }
  assert_int_equal(f->n_outs, g->n_outs);
  for (int i = 0; i < f->n_outs; i++) {
    assert_string_equal(f->outs[i].name, g->outs[i].name);
    assert_int_equal(f->outs[i].node, g->outs[i].node);
  }
}

static ir_func *parse_ok(const char *text) {
  ir_error e = {{0}};
  ir_func *f = ir_parse(text, "t.ir", &e);
  if (!f) fail_msg("parse failed: %s\n--- text:\n%s", e.msg, text);
  return f;
}

/* print -> parse -> print: same text, same nodes; the parsed nodes carry
 * their line numbers (node i is on line i + 1 of the printed text). */
static void assert_round_trip(const ir_func *f) {
  char *s1 = ir_print_str(f);
  ir_func *g = parse_ok(s1);
  char *s2 = ir_print_str(g);
  assert_string_equal(s1, s2);
  assert_same_func(f, g);
  for (int i = 0; i < g->n_nodes; i++) assert_int_equal(g->nodes[i].line, i + 1);
  free(s1);
  free(s2);
  ir_func_free(g);
}

/* ---- one small function per op ---- */

typedef struct {
  ir_op op;
  int n_in;
  ir_type in[IR_MAX_INPUTS]; /* leaves: f32 as param "x<i>", i32 as input */
  ir_attrs a;
  ir_type type; /* the result, worked out by hand */
  const char *line; /* the op node's printed line; NULL: "%N = name %0, .." */
  const char *name; /* for unary/binary cases, the op's name */
} op_case;

#define UN(E, nm) {IR_OP_##E, 1, {T2(F, 2, 3)}, {0}, T2(F, 2, 3), NULL, #nm}
#define BIN(E, nm) \
  {IR_OP_##E, 2, {T2(F, 4, 3), T1(F, 3)}, {0}, T2(F, 4, 3), NULL, #nm}

static const op_case cases[] = {
    {IR_OP_INPUT, 0, {{0}}, {0}, T1(I, 16), "%0 = input \"leaf\" : i32[16]", 0},
    {IR_OP_PARAM, 0, {{0}}, {0}, T2(F, 8, 8), "%0 = param \"leaf\" : f32[8,8]", 0},
    {IR_OP_CONST, 0, {{0}}, {0}, T1(F, 4), "%0 = const \"leaf\" : f32[4]", 0},
    {IR_OP_FILL, 0, {{0}}, {.value = 0.1}, T0(F),
     "%0 = fill {value=0.1} : f32[]", 0},
    UN(NEG, neg), UN(EXP, exp), UN(LOG, log), UN(SQRT, sqrt), UN(RSQRT, rsqrt),
    UN(RECIP, recip), UN(SIGMOID, sigmoid), UN(SILU, silu),
    UN(SOFTPLUS, softplus), UN(TANH, tanh), UN(RELU, relu),
    BIN(ADD, add), BIN(SUB, sub), BIN(MUL, mul), BIN(DIV, div), BIN(MAX, max),
    BIN(GT, gt),
    /* ta: a stored [2, k=5, m=3]; tb: b stored [2, n=4, k=5] */
    {IR_OP_MATMUL, 2, {T3(F, 2, 5, 3), T3(F, 2, 4, 5)}, {.ta = true, .tb = true},
     T3(F, 2, 3, 4), "%2 = matmul %0, %1 {ta, tb} : f32[2,3,4]", 0},
    {IR_OP_PERMUTE, 1, {T3(F, 2, 3, 4)}, {.perm = {2, 0, 1}}, T3(F, 4, 2, 3),
     "%1 = permute %0 {perm=[2,0,1]} : f32[4,2,3]", 0},
    {IR_OP_RESHAPE, 1, {T3(F, 2, 3, 4)}, {0}, T2(F, 6, 4),
     "%1 = reshape %0 : f32[6,4]", 0},
    {IR_OP_EXPAND, 1, {T2(F, 3, 1)}, {0}, T3(F, 2, 3, 5),
     "%1 = expand %0 : f32[2,3,5]", 0},
    {IR_OP_SLICE, 1, {T2(F, 8, 6)}, {.axis = 1, .start = 2, .end = 5},
     T2(F, 8, 3), "%1 = slice %0 {axis=1, start=2, end=5} : f32[8,3]", 0},
    {IR_OP_PAD, 1, {T2(F, 4, 3)}, {.axis = 0, .start = 1, .end = 2}, T2(F, 7, 3),
     "%1 = pad %0 {axis=0, start=1, end=2} : f32[7,3]", 0},
    {IR_OP_CONCAT, 3, {T2(F, 2, 3), T2(F, 2, 1), T2(F, 2, 2)}, {.axis = 1},
     T2(F, 2, 6), "%3 = concat %0, %1, %2 {axis=1} : f32[2,6]", 0},
    {IR_OP_SUM, 1, {T2(F, 4, 3)}, {.axis = 0}, T2(F, 1, 3),
     "%1 = sum %0 {axis=0} : f32[1,3]", 0},
    {IR_OP_AMAX, 1, {T2(F, 4, 3)}, {.axis = 1}, T2(F, 4, 1),
     "%1 = amax %0 {axis=1} : f32[4,1]", 0},
    {IR_OP_MEAN, 1, {T3(F, 2, 3, 4)}, {.axis = 1}, T3(F, 2, 1, 4),
     "%1 = mean %0 {axis=1} : f32[2,1,4]", 0},
    {IR_OP_SOFTMAX, 1, {T2(F, 3, 5)}, {.causal = true}, T2(F, 3, 5),
     "%1 = softmax %0 {causal} : f32[3,5]", 0},
    {IR_OP_GATHER, 2, {T2(F, 10, 4), T2(I, 2, 3)}, {0}, T3(F, 2, 3, 4),
     "%2 = gather %0, %1 : f32[2,3,4]", 0},
    {IR_OP_SCATTER_ADD, 2, {T3(F, 2, 3, 4), T2(I, 2, 3)}, {.n = 10},
     T2(F, 10, 4), "%2 = scatter_add %0, %1 {n=10} : f32[10,4]", 0},
    {IR_OP_SELECT_ROW, 2, {T2(F, 5, 4), T0(I)}, {0}, T1(F, 4),
     "%2 = select_row %0, %1 : f32[4]", 0},
    {IR_OP_ONEHOT, 1, {T1(I, 3)}, {.n = 7}, T2(F, 3, 7),
     "%1 = onehot %0 {n=7} : f32[3,7]", 0},
    {IR_OP_CROSS_ENTROPY, 2, {T2(F, 3, 7), T1(I, 3)}, {0}, T1(F, 3),
     "%2 = cross_entropy %0, %1 : f32[3]", 0},
    {IR_OP_CONV1D, 2, {T2(F, 6, 4), T2(F, 4, 3)}, {0}, T2(F, 6, 4),
     "%2 = conv1d %0, %1 : f32[6,4]", 0},
    {IR_OP_CONV1D_BWD_X, 2, {T2(F, 6, 4), T2(F, 4, 3)}, {0}, T2(F, 6, 4),
     "%2 = conv1d_bwd_x %0, %1 : f32[6,4]", 0},
    {IR_OP_CONV1D_BWD_W, 2, {T2(F, 6, 4), T2(F, 6, 4)}, {.n = 3}, T2(F, 4, 3),
     "%2 = conv1d_bwd_w %0, %1 {n=3} : f32[4,3]", 0},
    /* u, delta [L=6,E=4], A [E=4,N=2], bc [L=6,2N=4] */
    {IR_OP_SCAN, 4, {T2(F, 6, 4), T2(F, 6, 4), T2(F, 4, 2), T2(F, 6, 4)}, {0},
     T2(F, 6, 4), "%4 = scan %0, %1, %2, %3 : f32[6,4]", 0},
    {IR_OP_ROPE, 3, {T3(F, 6, 2, 8), T2(F, 6, 4), T2(F, 6, 4)}, {0}, T3(F, 6, 2, 8),
     "%3 = rope %0, %1, %2 : f32[6,2,8]", 0},
    /* du 24 + ddelta 24 + dA 8 + dbc 24 = 80 */
    {IR_OP_SCAN_BWD, 4, {T2(F, 6, 8), T2(F, 4, 2), T2(F, 6, 4), T2(F, 6, 4)},
     {0}, T1(F, 80), "%4 = scan_bwd %0, %1, %2, %3 : f32[80]", 0},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* Builds the case's function: its leaves, the op node, output "y" (and
 * output "x" for the first leaf, so outputs come in numbers). */
static ir_func *build_case(const op_case *c) {
  ir_func *f = ir_func_new();
  ir_error e = {{0}};
  for (int i = 0; i < c->n_in; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "x%d", i);
    ir_op op = c->in[i].dtype == IR_I32 ? IR_OP_INPUT : IR_OP_PARAM;
    if (ir_leaf(f, op, nm, c->in[i], &e) != i) fail_msg("%s", e.msg);
  }
  int in[IR_MAX_INPUTS] = {0, 1, 2, 3};
  bool typed = ir_op_get(c->op)->attrs & IR_ATTR_TYPE;
  const char *name = ir_op_get(c->op)->attrs & IR_ATTR_NAME ? "leaf" : NULL;
  int id = ir_add(f, c->op, in, c->n_in, &c->a, typed ? &c->type : NULL, name, &e);
  if (id < 0) fail_msg("%s: %s", ir_op_name(c->op), e.msg);
  assert_true(ir_type_eq(&f->nodes[id].type, &c->type));
  assert_int_equal(ir_add_output(f, "y", id, &e), 0);
  if (c->n_in) assert_int_equal(ir_add_output(f, "x", 0, &e), 1);
  assert_int_equal(ir_verify(f, &e), 0);
  return f;
}

static void test_every_op_round_trips(void **state) {
  (void)state;
  for (int op = 0; op < IR_OP_COUNT; op++) {
    const op_case *c = NULL;
    for (int k = 0; k < N_CASES; k++)
      if ((int)cases[k].op == op) c = &cases[k];
    if (!c) fail_msg("op %s has no text round-trip case", ir_op_name(op));
    ir_func *f = build_case(c);
    /* the op node's line, as written by hand */
    char want[160], *got;
    if (c->line) {
      snprintf(want, sizeof want, "%s", c->line);
    } else {
      assert_string_equal(c->name, ir_op_name(op));
      snprintf(want, sizeof want, c->n_in == 1 ? "%%1 = %s %%0 : f32[2,3]"
                                               : "%%2 = %s %%0, %%1 : f32[4,3]",
               c->name);
    }
    size_t len;
    FILE *m = open_memstream(&got, &len);
    ir_print_node(m, f, f->n_nodes - 1);
    fclose(m);
    assert_string_equal(got, want);
    free(got);
    assert_round_trip(f);
    ir_func_free(f);
  }
}

/* The format of the design brief, every line written out by hand. */
static void test_print_format(void **state) {
  (void)state;
  ir_func *f = ir_func_new();
  ir_error e;
  assert_int_equal(ir_leaf(f, IR_OP_INPUT, "tokens", (ir_type)T1(I, 16), &e), 0);
  assert_int_equal(
      ir_leaf(f, IR_OP_PARAM, "layers.0.mixer.wq.weight", (ir_type)T2(F, 8, 8), &e), 1);
  assert_int_equal(ir_fill(f, 0.5, (ir_type)T1(F, 8), &e), 2);
  int mm[2] = {1, 1};
  ir_attrs t = {.ta = true, .tb = true};
  assert_int_equal(ir_add(f, IR_OP_MATMUL, mm, 2, &t, NULL, NULL, &e), 3);
  int x = 3, tok = 0;
  ir_attrs sl = {.axis = 0, .start = 0, .end = 4};
  assert_int_equal(ir_add(f, IR_OP_SLICE, &x, 1, &sl, NULL, NULL, &e), 4);
  ir_attrs pm = {.perm = {1, 0}};
  assert_int_equal(ir_add(f, IR_OP_PERMUTE, &x, 1, &pm, NULL, NULL, &e), 5);
  ir_attrs cz = {.causal = true};
  assert_int_equal(ir_add(f, IR_OP_SOFTMAX, &x, 1, &cz, NULL, NULL, &e), 6);
  ir_attrs oh = {.n = 16};
  assert_int_equal(ir_add(f, IR_OP_ONEHOT, &tok, 1, &oh, NULL, NULL, &e), 7);
  ir_attrs ax = {.axis = 1};
  assert_int_equal(ir_add(f, IR_OP_SUM, &x, 1, &ax, NULL, NULL, &e), 8);
  ir_attrs no = {.causal = false};
  assert_int_equal(ir_add(f, IR_OP_SOFTMAX, &x, 1, &no, NULL, NULL, &e), 9);
  assert_int_equal(ir_add_output(f, "logits", 3, &e), 0);
  char *s = ir_print_str(f);
  assert_string_equal(s,
                      "%0 = input \"tokens\" : i32[16]\n"
                      "%1 = param \"layers.0.mixer.wq.weight\" : f32[8,8]\n"
                      "%2 = fill {value=0.5} : f32[8]\n"
                      "%3 = matmul %1, %1 {ta, tb} : f32[8,8]\n"
                      "%4 = slice %3 {axis=0, start=0, end=4} : f32[4,8]\n"
                      "%5 = permute %3 {perm=[1,0]} : f32[8,8]\n"
                      "%6 = softmax %3 {causal} : f32[8,8]\n"
                      "%7 = onehot %0 {n=16} : f32[16,16]\n"
                      "%8 = sum %3 {axis=1} : f32[8,1]\n"
                      "%9 = softmax %3 : f32[8,8]\n"
                      "output \"logits\" = %3\n");
  free(s);
  /* attributes outside the op's mask are not printed */
  f->nodes[3].attr.axis = 5;
  f->nodes[3].attr.value = 2.0;
  FILE *m;
  size_t len;
  m = open_memstream(&s, &len);
  ir_print_node(m, f, 3);
  fclose(m);
  assert_string_equal(s, "%3 = matmul %1, %1 {ta, tb} : f32[8,8]");
  free(s);
  ir_func_free(f);
}

/* fill values come back bit for bit, including inf, nan and -0. */
static void test_values_round_trip(void **state) {
  (void)state;
  const double vals[] = {0.1,      1.0 / 3,  -2.5e-300, 1e300,     5e-324,
                         -0.0,     0.0,      1e-5,      -7,        16777217,
                         INFINITY, -INFINITY, NAN,      0x1.fffffffffffffp1023};
  ir_func *f = ir_func_new();
  ir_error e;
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    assert_int_equal(ir_fill(f, vals[i], (ir_type)T0(F), &e), (int)i);
  char *s = ir_print_str(f);
  assert_non_null(strstr(s, "%10 = fill {value=inf} : f32[]\n"));
  assert_non_null(strstr(s, "%11 = fill {value=-inf} : f32[]\n"));
  assert_non_null(strstr(s, "%12 = fill {value=nan} : f32[]\n"));
  assert_non_null(strstr(s, "%5 = fill {value=-0} : f32[]\n"));
  assert_non_null(strstr(s, "%8 = fill {value=-7} : f32[]\n"));
  free(s);
  assert_round_trip(f);
  ir_func *g = parse_ok("%a = fill {value=-nan} : f32[]\n"
                        "%b = fill {value=1e-3} : i32[2]\n"
                        "%c = fill {value=+INF} : f32[]\n");
  assert_true(isnan(g->nodes[0].attr.value));
  assert_true(g->nodes[1].attr.value == 1e-3);
  assert_true(isinf(g->nodes[2].attr.value) && g->nodes[2].attr.value > 0);
  ir_func_free(g);
  /* a long hand-written number is read whole */
  char text[256];
  snprintf(text, sizeof text, "%%a = fill {value=0.%0100d25} : f32[]\n", 0);
  g = parse_ok(text);
  assert_true(g->nodes[0].attr.value == 0.25e-100);
  ir_func_free(g);
  ir_func_free(f);
}

/* Names with quotes, backslashes, control bytes, '#' and UTF-8. */
static void test_names_round_trip(void **state) {
  (void)state;
  const char *names[] = {"a\"b\\c", "tab\there", "new\nline", "# not a comment",
                         "\x01\x1f\x7f", "caf\xc3\xa9", "x = %1, %2 : f32[3]"};
  ir_func *f = ir_func_new();
  ir_error e;
  int n = (int)(sizeof names / sizeof names[0]);
  for (int i = 0; i < n; i++) {
    assert_int_equal(ir_leaf(f, IR_OP_PARAM, names[i], (ir_type)T1(F, 2), &e), i);
    assert_int_equal(ir_add_output(f, names[i], i, &e), i);
  }
  char *s = ir_print_str(f);
  assert_non_null(strstr(s, "%0 = param \"a\\\"b\\\\c\" : f32[2]\n"));
  assert_non_null(strstr(s, "%1 = param \"tab\\there\" : f32[2]\n"));
  assert_non_null(strstr(s, "%2 = param \"new\\nline\" : f32[2]\n"));
  assert_non_null(strstr(s, "%4 = param \"\\x01\\x1f\\x7f\" : f32[2]\n"));
  assert_non_null(strstr(s, "output \"a\\\"b\\\\c\" = %0\n"));
  free(s);
  assert_round_trip(f);
  ir_func_free(f);
}

/* Text a person writes: comments, blank lines, free spacing, CRLF, named
 * values; nodes keep their source lines; it prints in canonical form. */
static void test_hand_written(void **state) {
  (void)state;
  const char *text =
      "# a tiny attention score\n"                        /* 1 */
      "\n"                                                /* 2 */
      "%x   = input \"x\" : f32[4, 3]   # the activations\n" /* 3 */
      "  %w=param \"w\":f32[ 3 ,3 ]\r\n"                 /* 4 */
      "%q.0 = matmul %x,%w { tb } : f32[4,3]\n"           /* 5 */
      "   # indented comment\n"                           /* 6 */
      "%s = matmul %q.0 , %x{tb}:f32[4,4]\n"              /* 7 */
      "%p_1 = softmax %s {causal} : f32[4,4]\n"           /* 8 */
      "%12 = sum %p_1 { axis = 1 } : f32[4,1]\n"          /* 9 */
      "%13 = permute %q.0 {perm=[ 1 , 0 ]} : f32[3,4]\n"  /* 10 */
      "output \"scores\" = %p_1\n"                        /* 11 */
      "output \"rowsum\"=%12 # trailing\n"                /* 12 */
      "%3 = neg %x : f32[4,3]";                           /* 13, no newline */
  ir_func *f = parse_ok(text);
  assert_int_equal(f->n_nodes, 8);
  const int lines[] = {3, 4, 5, 7, 8, 9, 10, 13};
  for (int i = 0; i < 8; i++) assert_int_equal(f->nodes[i].line, lines[i]);
  assert_int_equal(f->nodes[2].op, IR_OP_MATMUL);
  assert_int_equal(f->nodes[2].in[0], 0);
  assert_int_equal(f->nodes[2].in[1], 1);
  assert_true(f->nodes[2].attr.tb && !f->nodes[2].attr.ta);
  assert_int_equal(f->nodes[3].in[0], 2);
  assert_int_equal(f->nodes[3].in[1], 0);
  assert_int_equal(f->nodes[5].in[0], 4);
  assert_int_equal(f->nodes[5].attr.axis, 1);
  assert_int_equal(f->nodes[7].in[0], 0); /* %3 names node 7, uses %x */
  assert_int_equal(f->n_outs, 2);
  assert_int_equal(f->outs[0].node, 4);
  assert_int_equal(f->outs[1].node, 5);
  char *s = ir_print_str(f);
  assert_string_equal(s,
                      "%0 = input \"x\" : f32[4,3]\n"
                      "%1 = param \"w\" : f32[3,3]\n"
                      "%2 = matmul %0, %1 {tb} : f32[4,3]\n"
                      "%3 = matmul %2, %0 {tb} : f32[4,4]\n"
                      "%4 = softmax %3 {causal} : f32[4,4]\n"
                      "%5 = sum %4 {axis=1} : f32[4,1]\n"
                      "%6 = permute %2 {perm=[1,0]} : f32[3,4]\n"
                      "%7 = neg %0 : f32[4,3]\n"
                      "output \"scores\" = %4\n"
                      "output \"rowsum\" = %5\n");
  free(s);
  ir_func_free(f);
  /* empty text and comment-only text are empty functions */
  f = parse_ok("");
  assert_int_equal(f->n_nodes, 0);
  ir_func_free(f);
  f = parse_ok("# nothing\n\n   \n");
  assert_int_equal(f->n_nodes + f->n_outs, 0);
  ir_func_free(f);
}

/* Enough %names to make the id map grow several times. */
static void test_long_chain(void **state) {
  (void)state;
  size_t cap = 64 * 1024, n = 0;
  char *text = malloc(cap);
  n += (size_t)snprintf(text + n, cap - n, "%%v0 = param \"p\" : f32[2]\n");
  for (int i = 1; i < 500; i++)
    n += (size_t)snprintf(text + n, cap - n, "%%v%d = %s %%v%d : f32[2]\n", i,
                          i % 2 ? "neg" : "exp", i - 1);
  snprintf(text + n, cap - n, "output \"y\" = %%v499\n");
  ir_func *f = parse_ok(text);
  assert_int_equal(f->n_nodes, 500);
  for (int i = 1; i < 500; i++) {
    assert_int_equal(f->nodes[i].in[0], i - 1);
    assert_int_equal(f->nodes[i].op, i % 2 ? IR_OP_NEG : IR_OP_EXP);
  }
  assert_int_equal(f->outs[0].node, 499);
  assert_round_trip(f);
  ir_func_free(f);
  free(text);
}

/* ---- errors: each kind with its exact message ---- */

typedef struct {
  const char *text, *msg;
} bad_case;

#define LEAVES "%a = param \"a\" : f32[8,8]\n%b = param \"b\" : f32[16,4]\n"

static const bad_case bad[] = {
    {LEAVES "%c = matmull %a, %b : f32[8,4]\n", "m.ir:3: unknown op 'matmull'"},
    {"%0 = param \"a\" : f32[8]\n%1 = neg %3 : f32[8]\n", "m.ir:2: %3 is not defined"},
    {"%1 = param \"a\" : f32[8]\n%2 = add %1, %2 : f32[8]\n", "m.ir:2: %2 is not defined"},
    {"%x = param \"a\" : f32[8]\n\n%x = neg %x : f32[8]\n",
     "m.ir:3: %x is already defined on line 1"},
    {LEAVES "%c = neg %a\n", "m.ir:3: expected ':' and a type"},
    {LEAVES "%c = matmul %a, %b : f32[8,4]\n", "m.ir:3: matmul: inner sizes differ, 8 vs 16"},
    {LEAVES "# comment\n\n%c = add %a, %b : f32[8,8]\n",
     "m.ir:5: add: shapes f32[8,8] and f32[16,4] do not broadcast (axis 0: 8 vs 16)"},
    {LEAVES "%c = slice %a {perm=[1,0]} : f32[8,8]\n", "m.ir:3: slice: unknown attribute 'perm'"},
    {LEAVES "%c = slice %a {axis=0, start=1, color=2} : f32[8,8]\n",
     "m.ir:3: slice: unknown attribute 'color'"},
    {LEAVES "%c = slice %a {axis=0, start=1} : f32[8,8]\n",
     "m.ir:3: slice: missing attribute 'end'"},
    {LEAVES "%c = sum %a : f32[1,8]\n", "m.ir:3: sum: missing attribute 'axis'"},
    {LEAVES "%c = sum %a {axis=0, axis=1} : f32[1,8]\n",
     "m.ir:3: sum: attribute 'axis' given twice"},
    {LEAVES "%c = matmul %a, %a {tb=1} : f32[8,8]\n",
     "m.ir:3: matmul: attribute 'tb' takes no value"},
    {LEAVES "%c = sum %a {axis=x} : f32[1,8]\n",
     "m.ir:3: expected an integer for 'axis', got 'x'"},
    {LEAVES "%c = sum %a {axis=0 : f32[1,8]\n",
     "m.ir:3: expected ',' or '}' in the attributes, got ':'"},
    {"%c = fill {value=abc} : f32[]\n", "m.ir:1: expected a number for 'value', got 'abc'"},
    {"%c = fill {value=1.5x} : f32[]\n", "m.ir:1: expected a number for 'value', got '1.5x'"},
    {LEAVES "%c = permute %a {perm=[1,0,2]} : f32[8,8]\n",
     "m.ir:3: permute: perm has 3 entries for an input of rank 2"},
    {LEAVES "%c = permute %a {perm=[1,1]} : f32[8,8]\n",
     "m.ir:3: permute: perm is not a permutation of 0..1"},
    {LEAVES "%c = add %a, %a : f32[8,4]\n",
     "m.ir:3: add: declared type f32[8,4] but the inputs give f32[8,8]"},
    {LEAVES "%c = add %a : f32[8,8]\n", "m.ir:3: add: takes 2 inputs, got 1"},
    {LEAVES "%c = add %a, %a, %a, %a, %a : f32[8,8]\n", "m.ir:3: add: more than 4 inputs"},
    {"%a = param \"a : f32[8]\n", "m.ir:1: unterminated string"},
    {"%a = param \"a\\q\" : f32[8]\n", "m.ir:1: bad escape '\\q' in a name"},
    {LEAVES "%c = neg \"c\" %a : f32[8,8]\n", "m.ir:3: neg: takes no name"},
    {"%a = param : f32[8]\n", "m.ir:1: param: needs a name"},
    {LEAVES "%c = const \"a\" : f32[2]\n",
     "m.ir:3: const: name \"a\" is already used by %0"},
    {"%a = param \"a\" : f16[8]\n", "m.ir:1: expected a type such as f32[8,4], got 'f16'"},
    {"%a = param \"a\" : f32[1,2,3,4,5]\n", "m.ir:1: a type has at most 4 axes"},
    {"%a = param \"a\" : f32[8,0]\n", "m.ir:1: param: size 0 on axis 1: sizes must be >= 1"},
    {"%a = param \"a\" : f32[8\n", "m.ir:1: expected ',' or ']' in the type, got end of line"},
    {"%a = param \"a\" : f32[99999999999]\n", "m.ir:1: a size is out of range"},
    {"%a = param \"a\" : f32[8] foo\n",
     "m.ir:1: expected end of line after the type, got 'foo'"},
    {"%a param \"a\" : f32[8]\n", "m.ir:1: expected '=' after the value, got 'param'"},
    {"% = param \"a\" : f32[8]\n", "m.ir:1: expected a value such as %3 or %x, got '%'"},
    {"%a = = : f32[8]\n", "m.ir:1: expected an op name, got '='"},
    {"param \"a\" : f32[8]\n",
     "m.ir:1: expected '%id = op ...' or 'output \"name\" = %id', got 'param'"},
    {LEAVES "output \"y\" = %z\n", "m.ir:3: %z is not defined"},
    {LEAVES "output \"y\" = %a\noutput \"y\" = %b\n",
     "m.ir:4: output \"y\" is defined twice"},
    {LEAVES "output y = %a\n", "m.ir:3: expected a name in quotes, got 'y'"},
    {LEAVES "output \"y\" = %a, %b\n",
     "m.ir:3: expected end of line after the output, got ','"},
    {LEAVES "%c = softmax %a {causal} : f32[8,8]\n%d = softmax %b {causal} : f32[16,4]\n",
     "m.ir:4: softmax: causal mask needs no more query rows than keys, 16 vs 4"},
};
enum { N_BAD = sizeof bad / sizeof bad[0] };

static void test_parse_errors(void **state) {
  (void)state;
  for (int i = 0; i < N_BAD; i++) {
    ir_error e = {{0}};
    ir_func *f = ir_parse(bad[i].text, "m.ir", &e);
    if (f) fail_msg("case %d parsed, expected: %s", i, bad[i].msg);
    if (strcmp(e.msg, bad[i].msg) != 0)
      fail_msg("case %d\n  got:  %s\n  want: %s", i, e.msg, bad[i].msg);
  }
  /* no file name, and a NULL error sink, are both fine */
  ir_error e;
  assert_null(ir_parse("%a = nope\n", NULL, &e));
  assert_string_equal(e.msg, "<string>:1: unknown op 'nope'");
  assert_null(ir_parse("%a = nope\n", NULL, NULL));
}

static void test_parse_file(void **state) {
  (void)state;
  char path[] = "/tmp/recall_text_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *fp = fdopen(fd, "w");
  fputs("%x = input \"x\" : f32[2,3]\n%y = sum %x {axis=2} : f32[2,1]\n", fp);
  fclose(fp);
  ir_error e;
  assert_null(ir_parse_file(path, &e));
  char want[128];
  snprintf(want, sizeof want, "%s:2: sum: axis 2 out of range for rank 2", path);
  assert_string_equal(e.msg, want);
  fp = fopen(path, "w");
  fputs("%x = input \"x\" : f32[2,3]\n%y = sum %x {axis=1} : f32[2,1]\n"
        "output \"y\" = %y\n", fp);
  fclose(fp);
  ir_func *f = ir_parse_file(path, &e);
  assert_non_null(f);
  assert_int_equal(f->n_nodes, 2);
  assert_int_equal(f->nodes[1].line, 2);
  ir_func_free(f);
  unlink(path);
  assert_null(ir_parse_file(path, &e));
  snprintf(want, sizeof want, "%s: cannot open: ", path);
  assert_memory_equal(e.msg, want, strlen(want));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_op_round_trips),
      cmocka_unit_test(test_print_format),
      cmocka_unit_test(test_values_round_trip),
      cmocka_unit_test(test_names_round_trip),
      cmocka_unit_test(test_hand_written),
      cmocka_unit_test(test_long_chain),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_parse_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
