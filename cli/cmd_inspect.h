/* cmd_inspect.h — `recall inspect`: cmd_inspect.c is the command (the
 * example, the model run on the interpreter, the files written);
 * inspect_probes.c measures, draws and describes the probes' values. */
#ifndef RECALL_CMD_INSPECT_H
#define RECALL_CMD_INSPECT_H

#include <stdbool.h>
#include <stdint.h>

#include "cmd_model.h"

/* The example and what the model made of it. */
typedef struct {
  int n, K, M, tau, q, i, v; /* q at i and n-1, v at i+tau, label v */
  long index;
  uint64_t seed;
  int32_t *tokens;
  int pred;                  /* argmax of the logits (first maximum) */
  double p_pred, p_label, loss;
} example;

typedef enum { P_ATTN, P_SEQ, P_OTHER } probe_kind;

/* One probe's values: P_ATTN [heads..., n, n] (query, key); P_SEQ [n, C]
 * (position, channel; [n] is [n, 1]). */
typedef struct {
  const char *name;
  char *slug; /* its files' base name */
  probe_kind kind;
  ir_type type;
  int heads, cols;
  const double *v;
} probe_val;

/* ---- inspect_probes.c ---- */

/* The first index of row's maximum over n values. */
int ci_row_argmax(const double *row, int n);

/* Heatmaps: gnuplot data into dat and the script into gp (rt_gp_begin's
 * form): attention as query x key panels, a panel per head, with the
 * cells an induction circuit uses outlined; a P_SEQ probe as position x
 * channel, the rows of q (i), v (i+tau) and the read position outlined. */
void ci_attn_figure(const probe_val *p, const example *ex, rt_buf *dat, rt_buf *gp);
void ci_seq_figure(const probe_val *p, const example *ex, rt_buf *dat, rt_buf *gp);

/* inspect.md's sections: the example and the prediction; per attention
 * probe a table of per-head scores and findings (*prev_head, *copy_head
 * set when a head passes the threshold), per P_SEQ probe its values at
 * the positions that matter; each also prints a summary line. */
void ci_describe_example(rt_buf *md, const example *ex, const char *ck, const cm_run *r);
void ci_attn_section(rt_buf *md, const probe_val *p, const example *ex, bool *prev_head,
                     bool *copy_head);
void ci_seq_section(rt_buf *md, const probe_val *p, const example *ex);

#endif
