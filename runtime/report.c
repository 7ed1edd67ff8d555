/* report.c — `recall report`: an experiment directory's results.csv and
 * convergence.csv turned into curves (mean, min and max over seeds),
 * gnuplot figures and report.md with tables and findings built from the
 * numbers; a study directory gets one report per experiment plus its own.
 *
 * Flow: load (CSV -> runs, report_load.c) -> scope (runs -> groups of
 * curves, stats, report_scope.c) -> figures (.dat/.gp, rendered by
 * gnuplot, report_figures.c) and findings (report_findings.c) -> markdown
 * (here). */
#include "report_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------
 * Markdown
 * --------------------------------------------------------------------- */

typedef struct {
  label_cache lc;
  char *gnuplot; /* resolved program, NULL: do not render */
  rt_report_info *info;
  ir_error first; /* the first rendering failure */
  bool failed;
} report_ctx;

static void acc_cell(rt_buf *b, const curve *c, long len) {
  const agg *a = len > 0 ? rp_acc_at(c, len) : NULL;
  if (a) rt_buf_printf(b, " %.3f (%.3f\u2013%.3f) |", a->mean, a->lo, a->hi);
  else rt_buf_printf(b, " \u2013 |");
}

static void longest_cell(rt_buf *b, const curve *c, int L) {
  char l[32];
  if (c->hold_hi > 0) rt_buf_printf(b, " %s |", rp_fmt_len(l, sizeof l, c->hold_hi, L));
  else rt_buf_printf(b, " none |");
}

static void steps_cell(rt_buf *b, const curve *c) {
  if (!c->n_conv) rt_buf_printf(b, " \u2013 |");
  else if (c->fast_n) rt_buf_printf(b, " %.0f (%d of %d) |", c->fast_mean, c->fast_n, c->n_runs);
  else rt_buf_printf(b, " not reached (0 of %d) |", c->n_runs);
}

/* The table of a group: accuracy at L/2, L, 2L, 3L, the longest length
 * held, the steps to FAST. */
static void group_table(rt_buf *md, const group *g) {
  int L = g->L;
  rt_buf_printf(md, "| model | seeds | L/2 = %d | L = %d | 2L = %d | 3L = %d | "
                "longest >= %.1f | steps to %.2f |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
                L / 2, L, 2 * L, 3 * L, HOLD, FAST);
  for (int i = 0; i < g->n_c; i++) {
    const curve *c = g->c[i];
    rt_buf_printf(md, "| %s | %d |", c->label, c->n_runs);
    acc_cell(md, c, L / 2 >= 1 ? L / 2 : -1);
    acc_cell(md, c, L);
    acc_cell(md, c, 2L * L);
    acc_cell(md, c, 3L * L);
    longest_cell(md, c, L);
    steps_cell(md, c);
    rt_buf_printf(md, "\n");
  }
}

static void group_figures(const group *g, figures *fs, rt_buf *md) {
  figure *f = rp_fig_new(fs, "length", rp_fmt("acc_%s", g->slug),
                      rp_fmt("Accuracy against context length (%s; K %d, L %d)", g->desc, g->K, g->L),
                      rp_fmt("Accuracy against context length, %s: mean over seeds, band min to max", g->desc));
  panel *p = rp_fig_panel(f, NULL, "context length", "accuracy");
  rp_acc_panel_style(p, g);
  for (int i = 0; i < g->n_c; i++)
    rp_fig_series(f, p, g->c[i]->label, g->c[i]->color, true, g->c[i]->acc, g->c[i]->n_acc);
  rt_buf_printf(md, "![%s](figures/%s.png)\n\n", f->caption, f->name);
  bool conv = false;
  for (int i = 0; i < g->n_c; i++) conv |= g->c[i]->n_conv > 0;
  if (!conv) return;
  char batch[48];
  if (g->batch_lo == g->batch_hi) snprintf(batch, sizeof batch, "batch %d", g->batch_lo);
  else snprintf(batch, sizeof batch, "batch %d to %d", g->batch_lo, g->batch_hi);
  f = rp_fig_new(fs, "step", rp_fmt("conv_%s", g->slug),
              rp_fmt("Test accuracy at L = %d during training (%s; %s)", g->L, g->desc, batch),
              rp_fmt("Test accuracy at L during training, %s: mean over seeds, band min to max", g->desc));
  p = rp_fig_panel(f, NULL, "training step", "test accuracy at L");
  p->chance = 1.0 / g->K, p->target = FAST;
  for (int i = 0; i < g->n_c; i++)
    if (g->c[i]->n_conv)
      rp_fig_series(f, p, g->c[i]->label, g->c[i]->color, true, g->c[i]->conv, g->c[i]->n_conv);
  rt_buf_printf(md, "![%s](figures/%s.png)\n\n", f->caption, f->name);
}

static const char *DEFS =
    "Accuracy cells: mean over seeds (min\u2013max). *longest >= 0.9*: the longest "
    "length n such that the mean accuracy is at least 0.9 at every length from L "
    "to n (none: below 0.9 at L). *steps to 0.95*: the first evaluation with test "
    "accuracy at L >= 0.95, mean over the seeds that reached it (how many of all).\n";

/* The values a column takes across the runs, in order of appearance. */
static void column_values(rt_buf *b, run *const *runs, int n, const char *col, int *count) {
  const char **seen = rp_xrealloc(NULL, sizeof *seen * (size_t)(n ? n : 1));
  int k = 0;
  for (int i = 0; i < n; i++) {
    const char *v = rp_run_get(runs[i], col);
    if (!v) continue;
    bool dup = false;
    for (int j = 0; j < k && !dup; j++) dup = !strcmp(seen[j], v);
    if (!dup) seen[k++] = v;
  }
  for (int i = 0; i < k && i < 16; i++)
    rt_buf_printf(b, "%s%s", i ? ", " : "", *seen[i] ? seen[i] : "(unset)");
  if (k > 16) rt_buf_printf(b, ", ... (%d values)", k);
  *count = k;
  free(seen);
}

static void config_section(rt_buf *md, const expdata *e) {
  rt_buf_printf(md, "## Configuration\n\n| option | value |\n|---|---|\n");
  if (e->meta.name) rt_buf_printf(md, "| experiment | %s |\n", e->meta.name);
  if (e->meta.problem) rt_buf_printf(md, "| problem | %s |\n", e->meta.problem);
  for (int i = 0; i < e->n_cols; i++) {
    const char *c = e->cols[i];
    if (!strcmp(c, "run") || !strcmp(c, "steps") || !strcmp(c, "reached_step") ||
        !strcmp(c, "status") || (!strcmp(c, "experiment") && e->meta.name) ||
        (!strcmp(c, "problem") && e->meta.problem))
      continue;
    rt_buf v = {0};
    int k;
    column_values(&v, e->runs, e->n_runs, c, &k);
    if (k) rt_buf_printf(md, "| %s | %s%s |\n", c, v.s, k > 1 ? " (varies)" : "");
    rt_buf_free(&v);
  }
  for (int i = 0; i < e->meta.n; i++) {
    bool shown = false;
    for (int j = 0; j < e->n_cols && !shown; j++) shown = !strcmp(e->cols[j], e->meta.keys[i]);
    if (!shown) rt_buf_printf(md, "| %s | %s |\n", e->meta.keys[i], e->meta.values[i]);
  }
  int n_st[3] = {0, 0, 0};
  for (int i = 0; i < e->n_runs; i++) {
    const char *st = e->runs[i]->status;
    n_st[rp_eq(st, "reached") ? 0 : rp_eq(st, "max_steps") ? 1 : 2]++;
  }
  rt_buf_printf(md, "\n%d runs: %d reached the target, %d stopped at max_steps, %d "
                "diverged or other.\n\n", e->n_runs, n_st[0], n_st[1], n_st[2]);
}

static void render_note(rt_buf *md, const report_ctx *x) {
  if (x->gnuplot) return;
  rt_buf_printf(md, "> Figures are not rendered%s. Each figure's data (NAME.dat) and "
                "gnuplot script (NAME.gp) are in figures/: run `gnuplot NAME.gp` there "
                "to render NAME.png and NAME.svg.\n\n",
                x->info->gnuplot_missing ? " (gnuplot not found)" : "");
}

/* Writes the figures into dir/figures and renders them. */
static int emit_figures(report_ctx *x, const char *dir, const figures *fs, ir_error *err) {
  if (fs->n == 0) return 0;
  char *figdir = rp_join(dir, "figures");
  if (mkdir(figdir, 0777) < 0 && errno != EEXIST) {
    ir_err(err, "cannot create directory %s: %s", figdir, strerror(errno));
    free(figdir);
    return -1;
  }
  for (int i = 0; i < fs->n; i++)
    if (rp_fig_write(figdir, fs->f[i], err) < 0) {
      free(figdir);
      return -1;
    }
  x->info->figures += fs->n;
  ir_error e;
  if (x->gnuplot && rp_render(x->gnuplot, figdir, fs, &x->info->rendered, &e) < 0 && !x->failed)
    x->first = e, x->failed = true;
  free(figdir);
  return 0;
}

static int write_md(const char *dir, const rt_buf *md, ir_error *err) {
  char *path = rp_join(dir, "report.md");
  int rc = rt_write_atomic(path, md->s, md->len, err);
  free(path);
  return rc;
}

static int report_experiment(report_ctx *x, expdata *e, ir_error *err) {
  scope s = {.runs = e->runs, .n_runs = e->n_runs, .cols = e->cols,
             .n_cols = e->n_cols};
  rp_scope_build(&s, &x->lc);
  figures fs = {0};
  rt_buf body = {0}, summary = {0}, cmp = {0}, cmp_find = {0};
  if (s.n_g == 0) rt_buf_printf(&body, "No completed runs yet.\n\n");
  else rt_buf_printf(&body, "%s\n", DEFS);
  for (int gi = 0; gi < s.n_g; gi++) {
    const group *g = s.g[gi];
    rt_buf find = {0};
    rp_group_findings(&find, g);
    rt_buf_printf(&body, "## %s\n\nK %d, L %d, chance 1/K = %.4g; lengths %d to %d.\n\n",
                  g->desc, g->K, g->L, 1.0 / g->K, g->min_len, g->max_len);
    group_table(&body, g);
    rt_buf_printf(&body, "\n");
    group_figures(g, &fs, &body);
    rt_buf_printf(&body, "Findings:\n\n%s\n", find.s ? find.s : "");
    rt_buf_printf(&summary, "#### %s\n\n", g->desc);
    group_table(&summary, g);
    rt_buf_printf(&summary, "\n%s\n", find.s ? find.s : "");
    rt_buf_free(&find);
  }
  for (int f = 0; f < N_F; f++) rp_comparisons(&s, f, false, &fs, &cmp, &cmp_find);
  if (cmp.len) {
    rt_buf_printf(&body, "## Comparisons\n%s", cmp.s);
    rt_buf_printf(&body, "Findings:\n\n%s\n", cmp_find.s ? cmp_find.s : "");
    rt_buf_printf(&summary, "#### Comparisons\n\n%s\n", cmp_find.s ? cmp_find.s : "");
  }
  int rc = emit_figures(x, e->dir, &fs, err);
  rt_buf md = {0};
  const char *title = e->meta.title ? e->meta.title : e->meta.name ? e->meta.name : e->name;
  rt_buf_printf(&md, "# %s\n\nReport of `%s` written by `recall report` from results.csv%s.\n\n",
                title, e->dir, e->has_conv ? " and convergence.csv" : "");
  render_note(&md, x);
  config_section(&md, e);
  rt_buf_printf(&md, "%s", body.s ? body.s : "");
  if (rc == 0) rc = write_md(e->dir, &md, err);
  if (rc == 0) x->info->experiments++;
  e->findings = summary.s;
  rt_buf_free(&md), rt_buf_free(&body), rt_buf_free(&cmp), rt_buf_free(&cmp_find);
  rp_figures_free(&fs);
  rp_scope_free(&s);
  return rc;
}

static int report_study(report_ctx *x, const char *dir, expdata *es, int n, ir_error *err) {
  run **all = NULL;
  int n_all = 0, cap = 0, n_cols = 0, cap_cols = 0;
  char **cols = NULL;
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < es[i].n_runs; j++) {
      es[i].runs[j]->exp = i;
      PUSH(all, n_all, cap, es[i].runs[j]);
    }
    for (int j = 0; j < es[i].n_cols; j++) {
      bool dup = false;
      for (int k = 0; k < n_cols && !dup; k++) dup = !strcmp(cols[k], es[i].cols[j]);
      if (!dup) PUSH(cols, n_cols, cap_cols, es[i].cols[j]);
    }
  }
  scope s = {.runs = all, .n_runs = n_all, .cols = cols, .n_cols = n_cols};
  rp_scope_build(&s, &x->lc);
  figures fs = {0};
  rt_buf cmp = {0}, cmp_find = {0}, md = {0};
  for (int f = 0; f < N_F; f++) rp_comparisons(&s, f, true, &fs, &cmp, &cmp_find);
  int rc = emit_figures(x, dir, &fs, err);
  rt_buf_printf(&md, "# Study report\n\nReport of the study in `%s` written by `recall "
                "report`: %d experiments, %d runs.\n\n", dir, n, n_all);
  render_note(&md, x);
  rt_buf_printf(&md, "| experiment | title | problem | runs | models | report |\n"
                "|---|---|---|---:|---|---|\n");
  for (int i = 0; i < n; i++) {
    rt_buf models = {0};
    int k;
    column_values(&models, es[i].runs, es[i].n_runs, "model", &k);
    rt_buf_printf(&md, "| %s | %s | %s | %d | %s | [report](%s/report.md) |\n", es[i].name,
                  es[i].meta.title ? es[i].meta.title : "", es[i].meta.problem ? es[i].meta.problem : "",
                  es[i].n_runs, models.s ? models.s : "", es[i].name);
    rt_buf_free(&models);
  }
  rt_buf_printf(&md, "\n%s\n", s.n_g ? DEFS : "");
  for (int i = 0; i < n; i++) {
    const char *t = es[i].meta.title;
    rt_buf_printf(&md, "## %s%s%s\n\nFull report: [%s/report.md](%s/report.md).\n\n%s",
                  es[i].name, t ? ": " : "", t ? t : "", es[i].name, es[i].name,
                  es[i].findings ? es[i].findings : "No completed runs yet.\n\n");
  }
  rt_buf_printf(&md, "## Across experiments\n\n");
  if (cmp.len)
    rt_buf_printf(&md, "%s\nFindings:\n\n%s\n", cmp.s, cmp_find.s ? cmp_find.s : "");
  else
    rt_buf_printf(&md, "No model was run in two experiments with only M, tau or d "
                  "changed, so there is nothing to compare across them.\n");
  if (rc == 0) rc = write_md(dir, &md, err);
  rt_buf_free(&cmp), rt_buf_free(&cmp_find), rt_buf_free(&md);
  rp_figures_free(&fs);
  rp_scope_free(&s);
  free(all), free(cols);
  return rc;
}

int rt_report(const char *dir, const rt_report_options *o, rt_report_info *info,
              ir_error *err) {
  rt_report_info scratch;
  if (!info) info = &scratch;
  *info = (rt_report_info){0};
  report_ctx x = {.info = info};
  const char *prog = o && o->gnuplot ? o->gnuplot : "gnuplot";
  if (*prog) {
    x.gnuplot = rt_gp_find(prog);
    info->gnuplot_missing = !x.gnuplot;
  }
  int n_sub, rc = 0;
  char **subs = rp_experiment_dirs(dir, &n_sub);
  if (n_sub == 0 && !rp_has_file(dir, "results.csv")) {
    ir_err(err, "%s: no results.csv and no experiment directories in it", dir);
    rc = -1;
  } else if (n_sub == 0) {
    expdata e = {.dir = rp_xstrdup(dir), .name = rp_base_name(dir)};
    rc = rp_load_experiment(&e, o, err);
    if (rc == 0) rc = report_experiment(&x, &e, err);
    rp_exp_free(&e);
  } else {
    info->study = true;
    expdata *es = rp_xrealloc(NULL, sizeof *es * (size_t)n_sub);
    int n = 0;
    for (; n < n_sub && rc == 0; n++) {
      es[n] = (expdata){.dir = rp_join(dir, subs[n]), .name = rp_xstrdup(subs[n])};
      rc = rp_load_experiment(&es[n], o, err);
      if (rc == 0) rc = report_experiment(&x, &es[n], err);
    }
    if (rc == 0) rc = report_study(&x, dir, es, n, err);
    for (int i = 0; i < n; i++) rp_exp_free(&es[i]);
    free(es);
  }
  for (int i = 0; i < n_sub; i++) free(subs[i]);
  free(subs);
  if (rc == 0 && x.failed) {
    *err = x.first;
    rc = -1;
  }
  free(x.gnuplot);
  rp_label_cache_free(&x.lc);
  return rc;
}
