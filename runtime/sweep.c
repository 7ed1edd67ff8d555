/* sweep.c — accuracy at every sequence length of a range, each length on
 * its own data stream, run on the model's bucketed forward kernels. */
#include "runtime.h"

#include <stdlib.h>

int rt_sweep(rt_model *m, const rt_sweep_config *c, rt_sweep_row **rows,
             int *n_rows, void (*progress)(void *ctx, int done, int total),
             void *ctx, ir_error *err) {
  *rows = NULL;
  *n_rows = 0;
  int lo = c->lo ? c->lo : c->tau + 2, hi = c->hi ? c->hi : 3 * rt_model_L(m);
  int n_seq = c->n_seq ? c->n_seq : 1000;
  if (rt_ar_validate(rt_model_K(m), c->M, c->tau, lo, err) < 0) return -1;
  if (hi < lo || n_seq < 1) {
    ir_err(err, "sweep: empty range of lengths %d..%d or %d sequences", lo,
           hi, n_seq);
    return -1;
  }
  int total = hi - lo + 1;
  rt_sweep_row *out = malloc(sizeof *out * (size_t)total);
  int32_t *tok = malloc(sizeof *tok * (size_t)n_seq * (size_t)hi);
  int32_t *lab = malloc(sizeof *lab * (size_t)n_seq);
  if (!out || !tok || !lab) abort();
  int rc = 0;
  for (int n = lo; n <= hi && rc == 0; n++) {
    if (c->stop && *c->stop) {
      ir_err(err, "sweep: interrupted after %d of %d lengths", n - lo, total);
      rc = RT_STOPPED;
      break;
    }
    rt_ar_task task = {rt_model_K(m), c->M, c->tau, n};
    rt_ar_batch(c->seed, RT_STREAM_SWEEP + (uint64_t)n, 0, n_seq, &task, tok, lab);
    rt_batch_stats st;
    rc = rt_model_eval_batch(m, n, 0, tok, lab, n_seq, NULL, &st, err);
    if (rc < 0) break;
    out[n - lo] = (rt_sweep_row){n, st.acc, st.loss, n_seq};
    if (progress) progress(ctx, n - lo + 1, total);
  }
  free(tok);
  free(lab);
  if (rc < 0) {
    free(out);
    return rc;
  }
  *rows = out;
  *n_rows = total;
  return 0;
}
