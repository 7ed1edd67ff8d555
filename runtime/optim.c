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

/* torch.lerp(a, b, w) on CPU: two formulas, by which side w is on. */
static float lerp(float a, float b, float w) {
  return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

static void sgd(rt_optim *o, float *p, const float *g, double lr) {
  const rt_optim_config *c = &o->c;
  float wd = (float)c->weight_decay, mu = (float)c->momentum;
  float damp = (float)(1 - c->dampening), neg_lr = (float)-lr;
  for (size_t i = 0; i < o->n; i++) {
    float d = g[i];
    if (c->weight_decay != 0) d = d + wd * p[i];
    if (c->momentum != 0) {
      o->m[i] = o->t == 1 ? d : o->m[i] * mu + damp * d;
      d = c->nesterov ? d + mu * o->m[i] : o->m[i];
    }
    p[i] = p[i] + neg_lr * d;
  }
}

static void adam(rt_optim *o, float *p, const float *g, double lr) {
  const rt_optim_config *c = &o->c;
  bool decoupled = c->kind == RT_OPT_ADAMW;
  float wd = (float)c->weight_decay, shrink = (float)(1 - lr * c->weight_decay);
  float w1 = (float)(1 - c->beta1), b2 = (float)c->beta2, w2 = (float)(1 - c->beta2);
  double bc1 = 1 - pow(c->beta1, (double)o->t), bc2 = 1 - pow(c->beta2, (double)o->t);
  float neg_step = (float)-(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)c->eps;
  for (size_t i = 0; i < o->n; i++) {
    float d = g[i];
    if (decoupled) p[i] = p[i] * shrink;
    else if (c->weight_decay != 0) d = d + wd * p[i];
    o->m[i] = lerp(o->m[i], d, w1);
    o->v[i] = o->v[i] * b2 + w2 * d * d;
    float denom = sqrtf(o->v[i]) / bc2_sqrt + eps;
    p[i] = p[i] + neg_step * o->m[i] / denom;
  }
}

double rt_optim_step(rt_optim *o, float *p, float *g) {
  double ss = 0;
  for (size_t i = 0; i < o->n; i++) ss += (double)g[i] * g[i];
  double norm = sqrt(ss);
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
