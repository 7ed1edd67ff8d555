/* train.c — the training loop: a fresh batch per step keyed by (seed,
 * step), evaluation on a fixed test batch, stopping at a target accuracy
 * held for a few evaluations, at max steps, or at a non-finite loss. */
#include "runtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void rt_train_defaults(rt_train_config *c) {
  *c = (rt_train_config){.M = 1, .tau = 1, .seed = 0, .batch = 64,
                         .max_steps = 3000, .eval_every = 100,
                         .test_size = 1000, .target = 0.99, .patience = 2};
  rt_optim_defaults(&c->opt, RT_OPT_ADAM);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int check_config(const rt_model *m, const rt_train_config *c,
                        ir_error *err) {
  if (rt_ar_validate(rt_model_K(m), c->M, c->tau, rt_model_L(m), err) < 0)
    return -1;
  if (c->batch < 1 || c->max_steps < 0 || c->eval_every < 1 ||
      c->test_size < 1 || c->patience < 1) {
    ir_err(err, "training: batch (%d), test_size (%d), eval_every (%ld) and "
           "patience (%d) must be >= 1 and max_steps (%ld) >= 0", c->batch,
           c->test_size, c->eval_every, c->patience, c->max_steps);
    return -1;
  }
  if (!(c->target >= 0 && c->target <= 1)) {
    ir_err(err, "training: target accuracy %g is not in 0..1", c->target);
    return -1;
  }
  if ((uint64_t)c->max_steps >= RT_STREAM_TEST) {
    ir_err(err, "training: too many steps");
    return -1;
  }
  return rt_optim_check(&c->opt, err);
}

int rt_train(rt_model *m, const rt_train_config *c, const rt_train_hooks *h,
             rt_train_result *res, ir_error *err) {
  *res = (rt_train_result){.status = RT_TRAIN_MAX_STEPS, .reached_step = -1,
                           .test_loss = NAN, .test_acc = NAN};
  if (check_config(m, c, err) < 0) return -1;
  int L = rt_model_L(m), B = c->batch, T = c->test_size;
  rt_ar_task task = {rt_model_K(m), c->M, c->tau, L};
  int32_t *tok = malloc(sizeof *tok * (size_t)B * (size_t)L);
  int32_t *lab = malloc(sizeof *lab * (size_t)B);
  int32_t *ttok = malloc(sizeof *ttok * (size_t)T * (size_t)L);
  int32_t *tlab = malloc(sizeof *tlab * (size_t)T);
  rt_optim *opt = rt_optim_new(&c->opt, rt_model_size(m));
  if (!tok || !lab || !ttok || !tlab) abort();
  rt_ar_batch(c->seed, RT_STREAM_TEST, 0, T, &task, ttok, tlab);
  int rc = -1, streak = 0;
  long since = 0, streak_start = -1;
  double loss_sum = 0, t0 = now_s();
  /* Compile the evaluation kernel now, outside the timed loop. */
  if (rt_model_eval_batch(m, L, L, ttok, tlab, 1, NULL, NULL, err) < 0) goto out;
  t0 = now_s();
  for (long step = 0;; step++) {
    if (c->stop && *c->stop) {
      ir_err(err, "training: interrupted after %ld of %ld steps", step,
             c->max_steps);
      rc = RT_STOPPED;
      goto out;
    }
    bool last = step == c->max_steps;
    if ((step > 0 && step % c->eval_every == 0) || (last && since > 0)) {
      rt_batch_stats ts;
      if (rt_model_eval_batch(m, L, L, ttok, tlab, T, NULL, &ts, err) < 0) goto out;
      rt_train_row row = {step, loss_sum / (double)since, ts.loss, ts.acc, now_s() - t0};
      res->test_loss = ts.loss;
      res->test_acc = ts.acc;
      loss_sum = 0, since = 0;
      if (h && h->on_eval && h->on_eval(h->ctx, &row, err)) goto out;
      if (ts.acc >= c->target) {
        if (streak++ == 0) streak_start = step;
      } else {
        streak = 0;
      }
      if (streak >= c->patience) {
        res->status = RT_TRAIN_REACHED;
        res->reached_step = streak_start;
        snprintf(res->message, sizeof res->message,
                 "reached test accuracy %.4f >= %g at step %ld (held for %d "
                 "evaluations)", ts.acc, c->target, streak_start, c->patience);
        break;
      }
    }
    if (last) {
      snprintf(res->message, sizeof res->message,
               "stopped at max steps %ld; test accuracy %.4f (target %g)",
               c->max_steps, res->test_acc, c->target);
      break;
    }
    rt_ar_batch(c->seed, (uint64_t)step, 0, B, &task, tok, lab);
    rt_batch_stats st;
    if (rt_model_train_batch(m, tok, lab, B, &st, err) < 0) goto out;
    if (!isfinite(st.loss)) {
      res->status = RT_TRAIN_DIVERGED;
      snprintf(res->message, sizeof res->message,
               "step %ld: loss is %s; stopping (lower the learning rate?)",
               step, isnan(st.loss) ? "NaN" : "infinite");
      break;
    }
    rt_optim_step(opt, rt_model_params(m), rt_model_grads(m));
    res->steps = step + 1;
    loss_sum += st.loss;
    since++;
    if (h && h->on_step) h->on_step(h->ctx, step + 1, st.loss, st.acc, now_s() - t0);
  }
  rc = 0;
out:
  res->elapsed_s = now_s() - t0;
  rt_optim_free(opt);
  free(tok);
  free(lab);
  free(ttok);
  free(tlab);
  return rc;
}
