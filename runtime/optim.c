/* optim.c — SGD (momentum), Adam and AdamW over one flat parameter buffer,
 * with learning-rate schedules and clipping by global norm. The arithmetic
 * follows torch.optim's single-tensor code in float32, operation by
 * operation, with torch's scalar conversions (Python floats become float32
 * scalars inside tensor ops; bias corrections and the step size are
 * computed in double as Python does). */
#include "runtime.h"

#include <math.h>
#include <stdlib.h>

struct rt_optim {
  rt_optim_config c;
  size_t n;
  long t;         /* updates done */
  float *m, *v;   /* Adam moments; m is SGD's momentum buffer */
};

void rt_optim_defaults(rt_optim_config *c, rt_optimizer kind) {
  *c = (rt_optim_config){.kind = kind, .lr = kind == RT_OPT_SGD ? 1e-2 : 1e-3,
                         .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                         .weight_decay = kind == RT_OPT_ADAMW ? 1e-2 : 0,
                         .schedule = RT_SCHED_CONSTANT};
}

int rt_optim_check(const rt_optim_config *c, ir_error *err) {
  if (!(c->lr > 0 && isfinite(c->lr)))
    ir_err(err, "optimiser: learning rate %g, need lr > 0", c->lr);
  else if (c->kind != RT_OPT_SGD && !(c->beta1 >= 0 && c->beta1 < 1))
    ir_err(err, "optimiser: beta1 %g, need 0 <= beta1 < 1", c->beta1);
  else if (c->kind != RT_OPT_SGD && !(c->beta2 >= 0 && c->beta2 < 1))
    ir_err(err, "optimiser: beta2 %g, need 0 <= beta2 < 1", c->beta2);
  else if (c->kind != RT_OPT_SGD && !(c->eps >= 0))
    ir_err(err, "optimiser: eps %g, need eps >= 0", c->eps);
  else if (!(c->weight_decay >= 0))
    ir_err(err, "optimiser: weight decay %g, need >= 0", c->weight_decay);
  else if (c->kind == RT_OPT_SGD && !(c->momentum >= 0))
    ir_err(err, "optimiser: momentum %g, need >= 0", c->momentum);
  else if (c->kind == RT_OPT_SGD && c->nesterov &&
           (c->momentum <= 0 || c->dampening != 0))
    ir_err(err, "optimiser: Nesterov momentum needs momentum > 0 and "
           "dampening 0 (as in torch.optim.SGD)");
  else if (!(c->clip >= 0))
    ir_err(err, "optimiser: clip %g, need a norm >= 0 (0: no clipping)", c->clip);
  else if (c->warmup < 0)
    ir_err(err, "optimiser: warm-up of %ld steps", c->warmup);
  else if (c->schedule == RT_SCHED_COSINE && c->total <= c->warmup)
    ir_err(err, "optimiser: the cosine schedule needs total steps (%ld) > "
           "warm-up steps (%ld)", c->total, c->warmup);
  else if (c->schedule == RT_SCHED_COSINE && !(c->min_lr >= 0 && c->min_lr <= c->lr))
    ir_err(err, "optimiser: min_lr %g, need 0 <= min_lr <= lr", c->min_lr);
  else
    return 0;
  return -1;
}

double rt_optim_lr(const rt_optim_config *c, long t) {
  if (c->schedule == RT_SCHED_CONSTANT) return c->lr;
  if (t <= c->warmup && c->warmup > 0) return c->lr * (double)t / (double)c->warmup;
  if (c->schedule == RT_SCHED_WARMUP) return c->lr;
  double x = (double)(t - c->warmup) / (double)(c->total - c->warmup);
  if (x > 1) x = 1;
  return c->min_lr + (c->lr - c->min_lr) * 0.5 * (1 + cos(M_PI * x));
}

rt_optim *rt_optim_new(const rt_optim_config *c, size_t n) {
  rt_optim *o = calloc(1, sizeof *o);
  if (!o) abort();
  o->c = *c;
  o->n = n;
  o->m = calloc(n ? n : 1, sizeof *o->m);
  o->v = calloc(n ? n : 1, sizeof *o->v);
  if (!o->m || !o->v) abort();
  return o;
}

void rt_optim_free(rt_optim *o) {
  if (!o) return;
  free(o->m);
  free(o->v);
  free(o);
}

long rt_optim_steps(const rt_optim *o) { return o->t; }

/* Adam's branches on the configuration are taken outside its loop, which
 * runs in blocks of BLOCK elements (the rest one by one): a block of
 * known size without branches is what GCC vectorises at -O2 (with
 * -fno-math-errno for sqrtf, see CMakeLists.txt). Each element's
 * arithmetic is the same, operation by operation, whatever the path. */
enum { BLOCK = 16 };

static void scale_into(float *restrict p, float k, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = p[i] * k;
}

/* g += wd p (L2 weight decay, into the gradient, as torch does) */
static void add_decay(float *restrict g, const float *restrict p, float wd, size_t n) {
  for (size_t i = 0; i < n; i++) g[i] = g[i] + wd * p[i];
}

static void sgd(rt_optim *o, float *restrict p, float *restrict g, double lr) {
  const rt_optim_config *c = &o->c;
  float mu = (float)c->momentum;
  float damp = (float)(1 - c->dampening), neg_lr = (float)-lr;
  if (c->weight_decay != 0) add_decay(g, p, (float)c->weight_decay, o->n);
  if (c->momentum == 0) {
    for (size_t i = 0; i < o->n; i++) p[i] = p[i] + neg_lr * g[i];
    return;
  }
  float *restrict m = o->m;
  bool first = o->t == 1, nesterov = c->nesterov;
  for (size_t i = 0; i < o->n; i++) {
    float d = g[i];
    m[i] = first ? d : m[i] * mu + damp * d;
    d = nesterov ? d + mu * m[i] : m[i];
    p[i] = p[i] + neg_lr * d;
  }
}

/* torch.lerp(a, b, w) on CPU takes one of two formulas by which side w
 * is on; `near` is fabsf(w) < 0.5f, decided once per step. */
static inline float lerp(float a, float b, float w, bool near) {
  return near ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

typedef struct {
  float w1, b2, w2, neg_step, bc2_sqrt, eps;
} adam_k;

static inline void adam_one(float *restrict p, const float *restrict g, float *restrict m,
                            float *restrict v, size_t i, adam_k k, bool near) {
  float d = g[i];
  m[i] = lerp(m[i], d, k.w1, near);
  v[i] = v[i] * k.b2 + k.w2 * d * d;
  float denom = sqrtf(v[i]) / k.bc2_sqrt + k.eps;
  p[i] = p[i] + k.neg_step * m[i] / denom;
}

static inline __attribute__((always_inline)) void adam_run(
    float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
    size_t n, adam_k k, bool near) {
  size_t i = 0;
  for (; i + BLOCK <= n; i += BLOCK)
    for (size_t j = 0; j < BLOCK; j++) adam_one(p, g, m, v, i + j, k, near);
  for (; i < n; i++) adam_one(p, g, m, v, i, k, near);
}

/* one function (restrict pointers, `near` a constant) per lerp formula;
 * not inlined, as the restrict qualifiers would be lost in adam().
 * Cloned for AVX-512 and AVX2 hosts, picked when the program loads: the
 * same operations on wider vectors (no contraction: -ffp-contract=off),
 * so the same bits; the divisions and square roots 16 lanes at a time
 * instead of SSE's 4. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WIDE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDE_CLONES
#endif
static __attribute__((noinline)) WIDE_CLONES void adam_near(float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, size_t n, adam_k k) {
  adam_run(p, g, m, v, n, k, true);
}
static __attribute__((noinline)) WIDE_CLONES void adam_far(float *restrict p, const float *restrict g, float *restrict m,
                     float *restrict v, size_t n, adam_k k) {
  adam_run(p, g, m, v, n, k, false);
}

static void adam(rt_optim *o, float *restrict p, float *restrict g, double lr) {
  const rt_optim_config *c = &o->c;
  double bc1 = 1 - pow(c->beta1, (double)o->t), bc2 = 1 - pow(c->beta2, (double)o->t);
  adam_k k = {.w1 = (float)(1 - c->beta1), .b2 = (float)c->beta2,
              .w2 = (float)(1 - c->beta2), .neg_step = (float)-(lr / bc1),
              .bc2_sqrt = (float)sqrt(bc2), .eps = (float)c->eps};
  if (c->kind == RT_OPT_ADAMW) scale_into(p, (float)(1 - lr * c->weight_decay), o->n);
  else if (c->weight_decay != 0) add_decay(g, p, (float)c->weight_decay, o->n);
  if (fabsf(k.w1) < 0.5f) adam_near(p, g, o->m, o->v, o->n, k);
  else adam_far(p, g, o->m, o->v, o->n, k);
}

/* sum of g[i]^2 in double: 8 partial sums (i mod 8) over the whole
 * blocks of 8, added in order, then the rest in order. One running sum
 * was a chain of dependent adds, ~4 cycles an element (0.1 ms of a d 64
 * Mamba step); the partial sums vectorise. */
#define SQ(j) ((double)g[i + (j)] * g[i + (j)])
static double sum_squares(const float *g, size_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 += SQ(0), s1 += SQ(1), s2 += SQ(2), s3 += SQ(3);
    s4 += SQ(4), s5 += SQ(5), s6 += SQ(6), s7 += SQ(7);
  }
  double ss = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
  for (; i < n; i++) ss += SQ(0);
  return ss;
}
#undef SQ

double rt_optim_step(rt_optim *o, float *p, float *g) {
  double norm = sqrt(sum_squares(g, o->n));
  if (o->c.clip > 0) {
    float coef = (float)(o->c.clip / (norm + 1e-6));
    if (coef < 1.0f)
      for (size_t i = 0; i < o->n; i++) g[i] *= coef;
  }
  o->t++;
  double lr = rt_optim_lr(&o->c, o->t);
  if (o->c.kind == RT_OPT_SGD) sgd(o, p, g, lr);
  else adam(o, p, g, lr);
  return norm;
}
