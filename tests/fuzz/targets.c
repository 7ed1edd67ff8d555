/* targets.c — fuzz target bodies (see targets.h). */
#include "targets.h"

#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "ir.h"
#include "runtime.h"

/* Graphs bigger than this are parsed and transformed but not interpreted:
 * the fuzzer looks for crashes, not for slow big tensors. */
enum { FZ_MAX_NUMEL = 1 << 12, FZ_MAX_TOTAL = 1 << 16 };

static char *cstr(const uint8_t *data, size_t n) {
  char *s = malloc(n + 1);
  if (!s) abort();
  memcpy(s, data, n);
  s[n] = 0;
  return s;
}

int fz_safetensors(const uint8_t *data, size_t n) {
  ir_error err;
  rt_tensors *ts = rt_st_read_mem(data, n, "fuzz.safetensors", &err);
  if (ts) { /* touch what was read */
    for (int i = 0; i < ts->n; i++) {
      char buf[128];
      rt_tensor_type_str(ts->t[i], buf, sizeof buf);
      if (ts->t[i]->numel > 0)
        memcpy(buf, ts->t[i]->data, rt_dtype_size(ts->t[i]->dtype));
      (void)rt_tensors_find(ts, ts->t[i]->name);
    }
    rt_tensors_free(ts);
  }
  return 0;
}

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return *s >> 33;
}

static int small_enough(const ir_func *f) {
  int64_t total = 0;
  for (int i = 0; i < f->n_nodes; i++) {
    int64_t k = ir_numel(&f->nodes[i].type);
    if (k < 0 || k > FZ_MAX_NUMEL) return 0;
    total += k;
  }
  return total <= FZ_MAX_TOTAL;
}

/* Interprets f on leaves drawn from seed: f32 in [-1, 1), i32 in {0, 1}
 * (an index 0 or 1 is valid for most gathers; errors are fine). */
static void interp(const ir_func *f, uint64_t seed) {
  if (!small_enough(f)) return;
  double **leaves = calloc((size_t)f->n_nodes + 1, sizeof *leaves);
  if (!leaves) abort();
  for (int i = 0; i < f->n_nodes; i++) {
    ir_op op = f->nodes[i].op;
    if (op != IR_OP_INPUT && op != IR_OP_PARAM) continue;
    int64_t k = ir_numel(&f->nodes[i].type);
    leaves[i] = malloc(sizeof(double) * (size_t)(k + 1));
    if (!leaves[i]) abort();
    for (int64_t j = 0; j < k; j++)
      leaves[i][j] = f->nodes[i].type.dtype == IR_I32 ? (double)(lcg(&seed) & 1)
                                                      : (double)(lcg(&seed) % 2000) / 1000 - 1;
  }
  ir_error err;
  double **v = ir_interp(f, IR_PREC_F32, (const double *const *)leaves, &err);
  if (v) ir_values_free(f, v);
  for (int i = 0; i < f->n_nodes; i++) free(leaves[i]);
  free(leaves);
}

/* Verifies f, differentiates its first scalar f32 output, optimises and
 * interprets each stage. */
static void exercise(const ir_func *f, uint64_t seed) {
  ir_error err;
  if (ir_verify(f, &err)) return;
  interp(f, seed);
  const char *loss = NULL;
  for (int i = 0; i < f->n_outs && !loss; i++) {
    const ir_node *o = &f->nodes[f->outs[i].node];
    if (o->type.dtype == IR_F32 && o->type.rank == 0) loss = f->outs[i].name;
  }
  ir_func *g = loss ? ad_grad(f, loss, &err) : NULL;
  if (g) {
    if (ir_verify(g, &err) == 0) interp(g, seed);
    ir_func *fwd = NULL, *bwd = NULL;
    if (ad_split(g, f->n_nodes, &fwd, &bwd, &err) == 0) {
      ir_func_free(fwd);
      ir_func_free(bwd);
    }
  }
  ir_func *o = ir_optimize(g ? g : f, NULL, &err);
  if (o) {
    if (ir_verify(o, &err) == 0) interp(o, seed);
    char *text = ir_print_str(o);
    free(text);
    ir_func_free(o);
  }
  ir_func_free(g);
}

static uint64_t hash(const uint8_t *data, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ data[i]) * 1099511628211ULL;
  return h;
}

int fz_ir_parse(const uint8_t *data, size_t n) {
  char *text = cstr(data, n);
  ir_error err;
  ir_func *f = ir_parse(text, "fuzz.ir", &err);
  if (f) {
    char *back = ir_print_str(f); /* print -> parse -> print is the identity */
    ir_func *f2 = ir_parse(back, "fuzz.ir", &err);
    if (!f2) abort();
    char *back2 = ir_print_str(f2);
    if (strcmp(back, back2)) abort();
    free(back2);
    free(back);
    ir_func_free(f2);
    exercise(f, hash(data, n));
    ir_func_free(f);
  }
  free(text);
  return 0;
}

int fz_lua_graph(const uint8_t *data, size_t n) {
  if (memchr(data, 0, n)) return 0; /* a spec is text */
  char *code = cstr(data, n);
  const char *root = getenv("RECALL_ROOT");
  fe_options opt = {.root = root ? root : ".", .max_instructions = 1000000,
                    .max_memory = 32 << 20};
  fe_model *m = NULL;
  fe_error *err = malloc(sizeof *err);
  if (!err) abort();
  if (fe_load_string(code, "fuzz.lua", &opt, &m, err) == 0) {
    exercise(m->f, hash(data, n));
    fe_model_free(m);
  }
  free(err);
  free(code);
  return 0;
}
