/* cmd_inspect.c — `recall inspect CHECKPOINT`: one AR example through a
 * trained model, with the values its spec probed (probe(name, x); nn.lua
 * probes every attention layer's weights and every Mamba layer's dt)
 * drawn as heatmaps and measured in inspect.md, so that a mechanism such
 * as the induction head (a previous-token head, then a head that copies
 * the value) can be seen.
 *
 * The example is sequence N of the run's sweep data at length n (what
 * `recall eval` scores there), and it runs on the reference interpreter:
 * exact, and fast enough for one sequence. What the probes show is
 * inspect_probes.c's (cmd_inspect.h). */
#include "cmd_inspect.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* printf into a new malloc'd string. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  int n = vsnprintf(NULL, 0, f, ap);
  va_end(ap);
  char *s = malloc((size_t)n + 1);
  if (!s) abort();
  va_start(ap, f);
  vsnprintf(s, (size_t)n + 1, f, ap);
  va_end(ap);
  return s;
}

static char *join(const char *dir, const char *file) { return fmt("%s/%s", dir, file); }

#define CMD "inspect"

static void usage(FILE *out) {
  fputs("usage: recall inspect CHECKPOINT [--example N] [-o DIR] [--length n]\n"
        "                      [--seed s] [--no-render]\n"
        "Runs example N (default 0) of the run's sweep data at length n\n"
        "(default L; the sequences `recall eval` scores at that length, data\n"
        "seed s, default the run's) through the checkpoint's model and writes\n"
        "to DIR (default: inspect/ next to the checkpoint):\n"
        "  NAME.dat, NAME.gp, NAME.png, NAME.svg  a heatmap per probe: the\n"
        "      attention weights of every attention layer (query x key), Mamba's\n"
        "      dt of every Mamba layer (position x channel)\n"
        "  inspect.md  the example, the prediction and what each layer does\n"
        "      (previous-token score, weight on the value at the last position,\n"
        "      dt at the query, the value and the read position)\n"
        "  --no-render  write data and gnuplot scripts only\n", out);
}

typedef struct {
  const char *ck, *dir;
  long example, seed; /* seed -1: the run's */
  int length;         /* 0: L */
  bool render;
} opts;

/* ---- arguments ---- */

static bool parse_count(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* 0, or the exit status of a bad command line (-1 for --help). */
static int parse_args(int argc, char **argv, opts *o) {
  *o = (opts){.seed = -1, .render = true};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    long v;
    if (!strcmp(a, "--example") && i + 1 < argc) {
      if (!parse_count(argv[++i], 0, 1L << 30, &o->example)) {
        cli_error(CMD, "--example takes an index >= 0, got '%s'", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--length") && i + 1 < argc) {
      if (!parse_count(argv[++i], 2, 1L << 16, &v)) {
        cli_error(CMD, "--length takes a sequence length 2..65536, got '%s'", argv[i]);
        return 2;
      }
      o->length = (int)v;
    } else if (!strcmp(a, "--seed") && i + 1 < argc) {
      if (!parse_count(argv[++i], 0, 1L << 53, &o->seed)) {
        cli_error(CMD, "--seed takes an integer >= 0, got '%s'", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "-o") && i + 1 < argc) {
      o->dir = argv[++i];
    } else if (!strcmp(a, "--no-render")) {
      o->render = false;
    } else {
      int k = cli_positional(CMD, a, &o->ck, usage);
      if (k) return k > 0 ? -1 : 2;
    }
  }
  if (!o->ck) {
    usage(stderr);
    return 2;
  }
  return 0;
}

/* ---- the run and its model ---- */

/* The leaves of f for the interpreter: the example's inputs, the
 * checkpoint's params, the embedding V (other consts carry their data).
 * NULL (printed) on a mismatch. */
static double **bind_leaves(const ir_func *f, rt_tensors *ck, const example *ex,
                            const char *spec) {
  double **lv = calloc((size_t)f->n_nodes, sizeof *lv);
  if (!lv) abort();
  ir_error err;
  for (int id = 0; id < f->n_nodes; id++) {
    const ir_node *nd = &f->nodes[id];
    int64_t numel = ir_numel(&nd->type);
    if (nd->op != IR_OP_INPUT && nd->op != IR_OP_PARAM &&
        !(nd->op == IR_OP_CONST && !nd->data))
      continue;
    double *x = lv[id] = calloc((size_t)(numel ? numel : 1), sizeof *x);
    if (!x) abort();
    if (nd->op == IR_OP_INPUT) {
      if (!strcmp(nd->name, "tokens") && numel == ex->n)
        for (int t = 0; t < ex->n; t++) x[t] = ex->tokens[t];
      else if (!strcmp(nd->name, "pos") && numel == 1)
        x[0] = ex->n - 1;
      else if (!strcmp(nd->name, "label") && numel == 1)
        x[0] = ex->v;
      else {
        cli_error(CMD, "%s: input \"%s\" is not part of the interface (tokens "
                  "i32[n], pos i32[], label i32[])", spec, nd->name);
        goto fail;
      }
    } else if (nd->op == IR_OP_PARAM) {
      int64_t dim[RT_MAX_RANK];
      for (int a = 0; a < nd->type.rank; a++) dim[a] = nd->type.dim[a];
      rt_tensor *t = rt_tensors_expect(ck, nd->name, RT_F32, nd->type.rank, dim, &err);
      if (!t) {
        cli_error(CMD, "%s (not a checkpoint of this model?)", err.msg);
        goto fail;
      }
      for (int64_t j = 0; j < numel; j++) x[j] = ((const float *)t->data)[j];
    } else if (!strcmp(nd->name, "embedding.weight") && nd->type.rank == 2) {
      float *V = malloc(sizeof *V * (size_t)numel);
      if (!V) abort();
      rt_embedding_V(nd->type.dim[0], nd->type.dim[1], V);
      for (int64_t j = 0; j < numel; j++) x[j] = V[j];
      free(V);
    } else {
      cli_error(CMD, "%s: const \"%s\" has no data to bind", spec, nd->name);
      goto fail;
    }
  }
  return lv;
fail:
  for (int id = 0; id < f->n_nodes; id++) free(lv[id]);
  free(lv);
  return NULL;
}

/* ---- the command ---- */

/* Sequence ex->index of the sweep at length ex->n. */
static int make_example(example *ex, const cm_run *r, const opts *o, const char *path) {
  ir_error err;
  ex->K = r->K, ex->M = r->train.M, ex->tau = r->train.tau, ex->n = o->length ? o->length : r->L;
  ex->index = o->example;
  ex->seed = o->seed >= 0 ? (uint64_t)o->seed : r->train.seed;
  if (rt_ar_validate(ex->K, ex->M, ex->tau, ex->n, &err) < 0) {
    cli_error(CMD, "--length %d: %s", ex->n, err.msg);
    return -1;
  }
  long nseq = r->sweep_n > 0 ? r->sweep_n : 1000;
  if (o->example >= nseq) {
    cli_error(CMD, "%s: example %ld is out of range: the run's sweep has %ld sequences "
              "per length (examples 0..%ld)", path, o->example, nseq, nseq - 1);
    return -1;
  }
  rt_ar_task task = {ex->K, ex->M, ex->tau, ex->n};
  ex->tokens = malloc(sizeof *ex->tokens * (size_t)ex->n);
  if (!ex->tokens) abort();
  int32_t label, i;
  rt_ar_example(ex->seed, RT_STREAM_SWEEP + (uint64_t)ex->n, (uint32_t)ex->index, &task,
                ex->tokens, &label, &i);
  ex->v = label, ex->i = i, ex->q = ex->tokens[ex->n - 1];
  return 0;
}

static char *slug_of(const char *name) {
  char *s = cli_strdup(name);
  for (char *p = s; *p; p++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p))
      *p = '_';
  return s;
}

static void classify(probe_val *p, int n) {
  const ir_type *t = &p->type;
  const char *dot = strrchr(p->name, '.');
  const char *base = dot ? dot + 1 : p->name;
  bool sq = t->rank >= 2 && t->dim[t->rank - 1] == n && t->dim[t->rank - 2] == n;
  p->kind = P_OTHER;
  if (t->dtype != IR_F32) return;
  if (sq && (!strcmp(base, "attn") || t->rank >= 3)) {
    p->kind = P_ATTN;
    p->heads = 1;
    for (int a = 0; a < t->rank - 2; a++) p->heads *= t->dim[a];
  } else if ((t->rank == 1 || t->rank == 2) && t->dim[0] == n) {
    p->kind = P_SEQ;
    p->cols = t->rank == 2 ? t->dim[1] : 1;
  }
}

/* Writes and renders the figures, inspect.md; prints the summary. */
static int report(const opts *o, const char *dir, const example *ex, const cm_run *r,
                  probe_val *pv, int np) {
  ir_error err;
  rt_buf md = {0};
  ci_describe_example(&md, ex, o->ck, r);
  printf("recall inspect: %s, example %ld (length %d): q %d at %d, v %d at %d; "
         "predicted %d (p %.3f), label %d\n", r->model, ex->index, ex->n, ex->q, ex->i,
         ex->v, ex->i + ex->tau, ex->pred, ex->p_pred, ex->v);
  const char **names = malloc(sizeof *names * (size_t)(np ? np : 1));
  if (!names) abort();
  int nf = 0, rc = 0, n_attn = 0;
  bool prev_head = false, copy_head = false, copy_after_prev = false;
  for (int k = 0; k < np && rc == 0; k++) {
    probe_val *p = &pv[k];
    rt_buf dat = {0}, gp = {0};
    if (p->kind == P_ATTN) {
      ci_attn_figure(p, ex, &dat, &gp);
      bool had_prev = prev_head, copy = false;
      ci_attn_section(&md, p, ex, &prev_head, &copy);
      copy_after_prev |= copy && had_prev;
      copy_head |= copy;
      n_attn++;
    } else if (p->kind == P_SEQ) {
      ci_seq_figure(p, ex, &dat, &gp);
      ci_seq_section(&md, p, ex);
    }
    if (dat.len) {
      rc = rt_gp_write(dir, p->slug, &dat, &gp, &err);
      names[nf++] = p->slug;
    }
    rt_buf_free(&dat), rt_buf_free(&gp);
  }
  if (rc < 0) {
    cli_error(CMD, "%s", err.msg);
    free(names), rt_buf_free(&md);
    return -1;
  }
  bool other = false;
  for (int k = 0; k < np; k++) other |= pv[k].kind == P_OTHER;
  if (other) {
    rt_buf_printf(&md, "## Other probes (not drawn)\n\n");
    for (int k = 0; k < np; k++) {
      char shape[64];
      if (pv[k].kind == P_OTHER)
        rt_buf_printf(&md, "- %s %s: neither [..., n, n] attention weights nor [n, C] "
                      "values by position\n", pv[k].name,
                      ir_type_str(&pv[k].type, shape, sizeof shape));
    }
    rt_buf_printf(&md, "\n");
  }
  if (np == 0)
    rt_buf_printf(&md, "The spec marks no values to inspect: `probe(name, x)` in a spec "
                  "(specs/lib/nn.lua does it for attention weights and Mamba's dt) adds "
                  "one.\n\n");
  if (copy_after_prev)
    rt_buf_printf(&md, "## Mechanism\n\nA head that moves the query into the value's "
                  "position (a previous-token or tau-back head) comes before a head that "
                  "copies the value at the last position: the induction-head "
                  "mechanism.\n");
  else if (n_attn && copy_head)
    rt_buf_printf(&md, "## Mechanism\n\nAn attention head copies the value at the last "
                  "position; no attention layer before it is a previous-token head (in "
                  "a hybrid, the Mamba layer can do that part).\n");
  char *prog = o->render && nf ? rt_gp_find("gnuplot") : NULL;
  if (nf && !prog)
    rt_buf_printf(&md, "\n> Figures are not rendered%s: run `gnuplot NAME.gp` in this "
                  "directory to render NAME.png and NAME.svg from NAME.dat.\n",
                  o->render ? " (gnuplot not found)" : "");
  char *md_path = join(dir, "inspect.md");
  rc = rt_write_atomic(md_path, md.s, md.len, &err);
  if (rc < 0) cli_error(CMD, "%s", err.msg);
  int rendered = 0;
  if (rc == 0 && prog && rt_gp_render(prog, dir, names, nf, &rendered, &err) < 0) {
    cli_error(CMD, "%s", err.msg);
    rc = -1;
  }
  if (rc == 0 && o->render && nf && !prog)
    fprintf(stderr, "gnuplot not found: figures skipped (scripts in %s)\n", dir);
  if (rc == 0 && nf == 0)
    printf("wrote %s (the spec probes nothing to draw)\n", md_path);
  else if (rc == 0 && o->render && prog)
    printf("wrote %s and %d figure%s (%d rendered) in %s\n", md_path, nf, nf == 1 ? "" : "s",
           rendered, dir);
  else if (rc == 0)
    printf("wrote %s and %d figure%s (data and gnuplot scripts, not rendered) in %s\n",
           md_path, nf, nf == 1 ? "" : "s", dir);
  free(prog), free(md_path), free(names);
  rt_buf_free(&md);
  return rc;
}

/* Runs the example through the model at its length; fills the prediction
 * and the probes' values (owned by *vals). */
static int run_model(rt_tensors *ck, const cm_run *r, example *ex,
                     fe_model **fm, ir_func **f, double ***vals) {
  ir_error err;
  if (!(*fm = cm_load_at(r, ex->n, &err))) {
    cli_error(CMD, "%s", err.msg);
    return -1;
  }
  if (!(*f = fe_probe_function(*fm, &err))) {
    cli_error(CMD, "%s", err.msg);
    return -1;
  }
  int lo = ir_find_output(*f, "logits"), so = ir_find_output(*f, "loss");
  if (lo < 0 || so < 0) {
    cli_error(CMD, "%s: the model has no \"logits\" and \"loss\" outputs", r->spec);
    return -1;
  }
  double **lv = bind_leaves(*f, ck, ex, r->spec);
  if (!lv) return -1;
  *vals = ir_interp(*f, IR_PREC_F32, (const double *const *)lv, &err);
  for (int id = 0; id < (*f)->n_nodes; id++) free(lv[id]);
  free(lv);
  if (!*vals) {
    cli_error(CMD, "%s: %s", r->spec, err.msg);
    return -1;
  }
  const ir_node *ln = &(*f)->nodes[(*f)->outs[lo].node];
  int K = (int)ir_numel(&ln->type);
  if (K != ex->K || ex->v >= K) {
    cli_error(CMD, "%s: the logits have %d classes but the task has K = %d", r->spec, K, ex->K);
    return -1;
  }
  const double *lg = (*vals)[(*f)->outs[lo].node];
  ex->pred = ci_row_argmax(lg, K);
  double z = 0;
  for (int k = 0; k < K; k++) z += exp(lg[k] - lg[ex->pred]);
  ex->p_pred = 1.0 / z;
  ex->p_label = exp(lg[ex->v] - lg[ex->pred]) / z;
  ex->loss = (*vals)[(*f)->outs[so].node][0];
  return 0;
}

int cmd_inspect(int argc, char **argv) {
  opts o;
  int st = parse_args(argc, argv, &o);
  if (st) return st < 0 ? 0 : st;
  ir_error err;
  rt_tensors *ck = rt_checkpoint_read(o.ck, &err);
  if (!ck) {
    cli_error(CMD, "%s", err.msg);
    return 1;
  }
  int status = 1;
  cm_run r = {0};
  example ex = {0};
  fe_model *fm = NULL;
  ir_func *f = NULL;
  double **vals = NULL;
  probe_val *pv = NULL;
  char *dir = NULL;
  if (cm_setup_checkpoint(&r, CMD, ck, o.ck) < 0 || make_example(&ex, &r, &o, o.ck) < 0 ||
      run_model(ck, &r, &ex, &fm, &f, &vals) < 0)
    goto out;
  pv = calloc((size_t)(fm->n_probes ? fm->n_probes : 1), sizeof *pv);
  if (!pv) abort();
  for (int k = 0; k < fm->n_probes; k++) {
    const fe_probe *p = &fm->probes[k];
    pv[k] = (probe_val){.name = p->name, .slug = slug_of(p->name),
                        .type = f->nodes[p->node].type, .v = vals[p->node]};
    classify(&pv[k], ex.n);
  }
  if (o.dir) {
    dir = cli_strdup(o.dir);
  } else {
    const char *slash = strrchr(o.ck, '/');
    dir = slash ? fmt("%.*s/inspect", (int)(slash - o.ck), o.ck) : cli_strdup("inspect");
  }
  if (cm_mkdirs(CMD, dir) < 0) goto out;
  if (report(&o, dir, &ex, &r, pv, fm->n_probes) == 0) status = fflush(stdout) == 0 ? 0 : 1;
out:
  for (int k = 0; pv && fm && k < fm->n_probes; k++) free(pv[k].slug);
  free(pv), free(dir), free(ex.tokens);
  if (f) ir_values_free(f, vals);
  ir_func_free(f);
  fe_model_free(fm);
  cm_free(&r);
  rt_tensors_free(ck);
  return status;
}
