/* model.c — a model ready to train and evaluate: the caller's per-example
 * function at length L and at the bucket lengths, compiled once (JIT
 * kernels shared process-wide through a cache keyed by the printed IR),
 * one flat parameter buffer, batches split into a fixed set of chunks so
 * that results do not depend on the thread count. */
#include "runtime.h"

#include "codegen.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) abort();
  return p;
}

enum { FLAT_ALIGN = 16 }; /* floats: params start on 64-byte boundaries */

static size_t flat_round(size_t n) { return (n + FLAT_ALIGN - 1) / FLAT_ALIGN * FLAT_ALIGN; }

/* n zeroed floats on a 64-byte boundary: the kernels' vector loads of
 * parameters, gradients and V then never straddle a cache line (from
 * malloc's 16-byte alignment conv1d_bwd_x at d 8 took 1544 cycles, 784
 * aligned). */
static float *vzalloc(size_t n) {
  size_t bytes = flat_round(n ? n : 1) * sizeof(float);
  float *p = aligned_alloc(64, bytes);
  if (!p) abort();
  memset(p, 0, bytes);
  return p;
}

/* acc += g over n floats, n a multiple of FLAT_ALIGN: in blocks of a known
 * size and without aliasing, so that the compiler vectorises it at -O2.
 * (It adds the chunks' sums; each example's gradients the kernel adds
 * into its chunk's sum itself, cg_options.accumulate.) */
static void add_into(float *restrict acc, const float *restrict g, size_t n) {
  for (size_t i = 0; i < n; i += FLAT_ALIGN)
    for (size_t j = 0; j < FLAT_ALIGN; j++) acc[i + j] += g[i + j];
}

/* ---- the JIT cache ----
 * Key: the printed function plus the bytes of every const that carries
 * data (the printer does not show const data, and RoPE tables with another
 * base print the same). A key being compiled has an entry without code;
 * other threads wanting it wait for it, while lookups of other keys go on
 * (codegen itself serialises compilations). */

typedef struct centry {
  char *key;
  size_t keylen;
  cg_module *cg; /* NULL while being compiled */
  int refs;
  struct centry *next;
} centry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cache_done = PTHREAD_COND_INITIALIZER;
static centry *cache;
static long cache_hits, cache_misses;

static void bytes_append(char **s, size_t *len, size_t *cap, const void *p,
                         size_t n) {
  if (*len + n > *cap) {
    while (*len + n > *cap) *cap = *cap ? *cap * 2 : 4096;
    *s = realloc(*s, *cap);
    if (!*s) abort();
  }
  memcpy(*s + *len, p, n);
  *len += n;
}

static char *cache_key(const ir_func *f, bool train, const bool *acc, size_t *keylen) {
  char *text = ir_print_str(f);
  size_t len = strlen(text), cap = len + 1;
  const char *kind = train ? "\ntrain" : "\nforward"; /* compiled apart (jit_acquire) */
  bytes_append(&text, &len, &cap, kind, strlen(kind));
  for (int j = 0; j < f->n_outs; j++) /* which outputs accumulate */
    bytes_append(&text, &len, &cap, acc[j] ? "+" : "=", 1);
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *n = &f->nodes[v];
    if (n->op != IR_OP_CONST || !n->data) continue;
    char tag[32];
    int k = snprintf(tag, sizeof tag, "\n%%%d data\n", v);
    bytes_append(&text, &len, &cap, tag, (size_t)k);
    bytes_append(&text, &len, &cap, n->data,
                 sizeof(float) * (size_t)ir_numel(&n->type));
  }
  *keylen = len;
  return text;
}

static centry *cache_find(const char *key, size_t keylen) {
  centry *e = cache;
  while (e && (e->keylen != keylen || memcmp(e->key, key, keylen) != 0))
    e = e->next;
  return e;
}

/* The kernel of f, compiled or from the cache. A forward kernel is read
 * at the row pos (every model is causal, see runtime.h): it computes its
 * first layer's attention and scans only up to that row
 * (cg_options.rows_to_pos). acc: the outputs it adds into their buffers
 * (cg_options.accumulate). */
static centry *jit_acquire(const ir_func *f, bool train, const bool *acc, ir_error *err) {
  size_t keylen;
  char *key = cache_key(f, train, acc, &keylen);
  pthread_mutex_lock(&cache_lock);
  centry *e;
  while ((e = cache_find(key, keylen)) && !e->cg)
    pthread_cond_wait(&cache_done, &cache_lock);
  if (e) {
    cache_hits++;
    e->refs++;
    free(key);
  } else { /* compile it, unlocked, behind a placeholder */
    e = xmalloc(sizeof *e);
    *e = (centry){.key = key, .keylen = keylen, .refs = 1, .next = cache};
    cache = e;
    pthread_mutex_unlock(&cache_lock);
    cg_module *cg = cg_compile(
        f, &(cg_options){.rows_to_pos = !train, .hoist = true, .accumulate = acc}, err);
    pthread_mutex_lock(&cache_lock);
    if (cg) {
      cache_misses++;
      e->cg = cg;
    } else { /* unlink; a waiter retries and reports its own error */
      centry **p = &cache;
      while (*p != e) p = &(*p)->next;
      *p = e->next;
      free(e->key);
      free(e);
      e = NULL;
    }
    pthread_cond_broadcast(&cache_done);
  }
  pthread_mutex_unlock(&cache_lock);
  return e;
}

static void jit_release(centry *e) {
  if (!e) return;
  pthread_mutex_lock(&cache_lock);
  e->refs--;
  pthread_mutex_unlock(&cache_lock);
}

void rt_jit_cache_info_get(rt_jit_cache_info *out) {
  pthread_mutex_lock(&cache_lock);
  int n = 0;
  for (centry *e = cache; e; e = e->next) n += e->cg != NULL;
  *out = (rt_jit_cache_info){cache_hits, cache_misses, n};
  pthread_mutex_unlock(&cache_lock);
}

void rt_jit_cache_trim(void) {
  pthread_mutex_lock(&cache_lock);
  for (centry **p = &cache; *p;) {
    centry *e = *p;
    if (e->refs > 0 || !e->cg) {
      p = &e->next;
      continue;
    }
    *p = e->next;
    cg_free(e->cg);
    free(e->key);
    free(e);
  }
  pthread_mutex_unlock(&cache_lock);
}

/* ---- kernels: a compiled function with its leaves and outputs bound ---- */

typedef enum { L_TOKENS, L_POS, L_LABEL, L_GRAD_LOSS, L_PARAM, L_EMBED, L_CONST } leaf_role;
typedef enum { O_LOGITS, O_LOSS, O_GRAD, O_OTHER } out_role;

/* Per-thread room for one kernel: its inputs, outputs and arena. */
typedef struct {
  void *arena;
  const void **leaves;
  void **outs;
  int32_t *tokens, pos, label;
  float gloss, loss;
  float *logits, *other;
  double **dl; /* interpreter: leaf values by node id */
  double *dtok, dpos, dlabel, dgloss;
} workspace;

typedef struct {
  int len;    /* sequence length compiled for */
  bool train; /* outputs gradients */
  ir_func *f; /* the compiled function */
  centry *jit; /* NULL: interpreter */
  int n_leaves;
  int *leaf_node;
  leaf_role *leaf_role;
  size_t *leaf_off; /* L_PARAM: offset in the flat buffer */
  out_role *out_role;
  size_t *out_off; /* O_GRAD: param offset; O_OTHER: offset in `other` */
  size_t n_other;
  workspace **ws; /* [threads], made when first used */
  int n_ws;
} kernel;

struct rt_model {
  rt_build_fn build;
  void *ctx;
  int L, K, threads;
  rt_backend backend;
  ir_func *f; /* at L */
  rt_param *params;
  int n_params;
  size_t n_flat;
  float *theta, *grad, *chunk_grad; /* chunk_grad: [RT_CHUNKS][n_flat] */
  double *theta64;                  /* interpreter: theta as doubles */
  float *V;                         /* embedding.weight, or NULL */
  double *V64;
  ir_type V_type;
  kernel *train;
  kernel **fwd;
  int n_fwd;
};

static void ws_free(workspace *w) {
  if (!w) return;
  free(w->arena);
  free(w->leaves);
  free(w->outs);
  free(w->tokens);
  free(w->logits);
  free(w->other);
  free(w->dl);
  free(w->dtok);
  free(w);
}

static void kernel_free(kernel *k) {
  if (!k) return;
  for (int t = 0; t < k->n_ws; t++) ws_free(k->ws[t]);
  free(k->ws);
  jit_release(k->jit);
  ir_func_free(k->f);
  free(k->leaf_node);
  free(k->leaf_role);
  free(k->leaf_off);
  free(k->out_role);
  free(k->out_off);
  free(k);
}

int rt_model_find_param(const rt_model *m, const char *name) {
  for (int i = 0; i < m->n_params; i++)
    if (!strcmp(m->params[i].name, name)) return i;
  return -1;
}

static const char *type_str(const ir_type *t, char *buf) {
  return ir_type_str(t, buf, 64);
}

/* The per-example interface at length n: inputs tokens i32[n], pos i32[],
 * label i32[]; outputs logits f32[K], loss f32[]. *K = the class count. */
static int check_interface(const ir_func *f, int n, int *K, ir_error *err) {
  static const char *const in_names[] = {"tokens", "pos", "label"};
  for (int i = 0; i < 3; i++) {
    int v = ir_find_leaf(f, in_names[i]);
    const ir_node *nd = v >= 0 ? &f->nodes[v] : NULL;
    int rank = i == 0 ? 1 : 0;
    if (!nd || nd->op != IR_OP_INPUT || nd->type.dtype != IR_I32 ||
        nd->type.rank != rank || (i == 0 && nd->type.dim[0] != n)) {
      char b[64];
      if (!nd || nd->op != IR_OP_INPUT)
        ir_err(err, "model at length %d: no input \"%s\" (the interface is "
               "inputs tokens i32[n], pos i32[], label i32[])", n, in_names[i]);
      else
        ir_err(err, "model at length %d: input \"%s\" is %s, expected %s", n,
               in_names[i], type_str(&nd->type, b),
               i == 0 ? "i32[n]" : "i32[]");
      return -1;
    }
  }
  int jl = ir_find_output(f, "logits"), jo = ir_find_output(f, "loss");
  if (jl < 0 || jo < 0) {
    ir_err(err, "model at length %d: no output \"%s\" (the interface is "
           "outputs logits f32[K], loss f32[])", n, jl < 0 ? "logits" : "loss");
    return -1;
  }
  const ir_type *tl = &f->nodes[f->outs[jl].node].type;
  const ir_type *to = &f->nodes[f->outs[jo].node].type;
  char b[64];
  if (tl->dtype != IR_F32 || tl->rank != 1) {
    ir_err(err, "model at length %d: output \"logits\" is %s, expected f32[K]",
           n, type_str(tl, b));
    return -1;
  }
  if (to->dtype != IR_F32 || to->rank != 0) {
    ir_err(err, "model at length %d: output \"loss\" is %s, expected f32[]", n,
           type_str(to, b));
    return -1;
  }
  *K = tl->dim[0];
  return 0;
}

/* Binds a function's leaves and outputs to the model's buffers. */
static kernel *kernel_new(rt_model *m, ir_func *f, int len, bool train,
                          ir_error *err) {
  kernel *k = xcalloc(1, sizeof *k);
  k->len = len;
  k->train = train;
  k->f = f;
  k->out_role = xcalloc((size_t)f->n_outs, sizeof *k->out_role);
  k->out_off = xcalloc((size_t)f->n_outs, sizeof *k->out_off);
  for (int j = 0; j < f->n_outs; j++) {
    const char *name = f->outs[j].name;
    const ir_type *t = &f->nodes[f->outs[j].node].type;
    int p = train && !strncmp(name, "grad.", 5) ? rt_model_find_param(m, name + 5) : -1;
    if (!strcmp(name, "logits")) {
      k->out_role[j] = O_LOGITS;
    } else if (!strcmp(name, "loss")) {
      k->out_role[j] = O_LOSS;
    } else if (p >= 0 && ir_type_eq(t, &m->params[p].type)) {
      k->out_role[j] = O_GRAD;
      k->out_off[j] = m->params[p].offset;
    } else {
      k->out_role[j] = O_OTHER;
      k->out_off[j] = k->n_other;
      k->n_other += (size_t)ir_numel(t);
    }
  }
  if (m->backend == RT_BACKEND_JIT) {
    /* gradients are added into the caller's sum by the kernel itself */
    bool *acc = xcalloc((size_t)f->n_outs + 1, sizeof *acc);
    for (int j = 0; j < f->n_outs; j++) acc[j] = k->out_role[j] == O_GRAD;
    k->jit = jit_acquire(f, train, acc, err);
    free(acc);
    if (!k->jit) goto fail;
    k->n_leaves = cg_n_leaves(k->jit->cg);
  } else {
    for (int v = 0; v < f->n_nodes; v++) k->n_leaves += ir_op_is_leaf(f->nodes[v].op) && f->nodes[v].op != IR_OP_FILL;
  }
  k->leaf_node = xcalloc((size_t)k->n_leaves, sizeof *k->leaf_node);
  k->leaf_role = xcalloc((size_t)k->n_leaves, sizeof *k->leaf_role);
  k->leaf_off = xcalloc((size_t)k->n_leaves, sizeof *k->leaf_off);
  for (int i = 0, v = 0; i < k->n_leaves; i++, v++) {
    if (k->jit) {
      v = cg_leaf_node(k->jit->cg, i);
    } else {
      while (!ir_op_is_leaf(f->nodes[v].op) || f->nodes[v].op == IR_OP_FILL) v++;
    }
    k->leaf_node[i] = v;
    const ir_node *nd = &f->nodes[v];
    char b1[64], b2[64];
    if (nd->op == IR_OP_INPUT) {
      if (!strcmp(nd->name, "tokens")) k->leaf_role[i] = L_TOKENS;
      else if (!strcmp(nd->name, "pos")) k->leaf_role[i] = L_POS;
      else if (!strcmp(nd->name, "label")) k->leaf_role[i] = L_LABEL;
      else if (train && !strcmp(nd->name, "grad.loss")) k->leaf_role[i] = L_GRAD_LOSS;
      else {
        ir_err(err, "model at length %d: unexpected input \"%s\" (the runtime "
               "feeds tokens, pos and label)", len, nd->name);
        goto fail;
      }
    } else if (nd->op == IR_OP_PARAM) {
      int p = rt_model_find_param(m, nd->name);
      if (p < 0) {
        ir_err(err, "model at length %d: param \"%s\" is not in the model at "
               "length L = %d", len, nd->name, m->L);
        goto fail;
      }
      if (!ir_type_eq(&nd->type, &m->params[p].type)) {
        ir_err(err, "model at length %d: param \"%s\" is %s, at length L = %d "
               "it is %s", len, nd->name, type_str(&nd->type, b1), m->L,
               type_str(&m->params[p].type, b2));
        goto fail;
      }
      k->leaf_role[i] = L_PARAM;
      k->leaf_off[i] = m->params[p].offset;
    } else if (nd->name && !strcmp(nd->name, "embedding.weight") && !nd->data) {
      if (!ir_type_eq(&nd->type, &m->V_type)) {
        ir_err(err, "model at length %d: const \"embedding.weight\" is %s, at "
               "length L it is %s", len, type_str(&nd->type, b1),
               type_str(&m->V_type, b2));
        goto fail;
      }
      k->leaf_role[i] = L_EMBED;
    } else if (nd->data) {
      k->leaf_role[i] = L_CONST;
    } else {
      ir_err(err, "model: const \"%s\" has no data (the runtime binds only "
             "\"embedding.weight\")", nd->name ? nd->name : "?");
      goto fail;
    }
  }
  return k;
fail:
  kernel_free(k);
  return NULL;
}

static workspace *ws_new(rt_model *m, kernel *k) {
  workspace *w = xcalloc(1, sizeof *w);
  const ir_func *f = k->f;
  w->tokens = xcalloc((size_t)k->len, sizeof *w->tokens);
  w->logits = xcalloc((size_t)m->K, sizeof *w->logits);
  w->other = xcalloc(k->n_other, sizeof *w->other);
  w->outs = xcalloc((size_t)f->n_outs, sizeof *w->outs);
  for (int j = 0; j < f->n_outs; j++) {
    switch (k->out_role[j]) {
    case O_LOGITS: w->outs[j] = w->logits; break;
    case O_LOSS: w->outs[j] = &w->loss; break;
    case O_GRAD: w->outs[j] = NULL; break; /* the chunk's sum (run_chunk) */
    case O_OTHER: w->outs[j] = w->other + k->out_off[j]; break;
    }
  }
  if (k->jit) {
    w->arena = cg_arena_new(k->jit->cg);
    w->leaves = xcalloc((size_t)k->n_leaves, sizeof *w->leaves);
    for (int i = 0; i < k->n_leaves; i++) {
      switch (k->leaf_role[i]) {
      case L_TOKENS: w->leaves[i] = w->tokens; break;
      case L_POS: w->leaves[i] = &w->pos; break;
      case L_LABEL: w->leaves[i] = &w->label; break;
      case L_GRAD_LOSS: w->leaves[i] = &w->gloss; break;
      case L_PARAM: w->leaves[i] = m->theta + k->leaf_off[i]; break;
      case L_EMBED: w->leaves[i] = m->V; break;
      case L_CONST: w->leaves[i] = NULL; break; /* the module's copy */
      }
    }
  } else {
    w->dl = xcalloc((size_t)f->n_nodes, sizeof *w->dl);
    w->dtok = xcalloc((size_t)k->len, sizeof *w->dtok);
    for (int i = 0; i < k->n_leaves; i++) {
      double **d = &w->dl[k->leaf_node[i]];
      switch (k->leaf_role[i]) {
      case L_TOKENS: *d = w->dtok; break;
      case L_POS: *d = &w->dpos; break;
      case L_LABEL: *d = &w->dlabel; break;
      case L_GRAD_LOSS: *d = &w->dgloss; break;
      case L_PARAM: *d = m->theta64 + k->leaf_off[i]; break;
      case L_EMBED: *d = m->V64; break;
      case L_CONST: *d = NULL; break;
      }
    }
  }
  return w;
}

/* Runs one example already placed in w. */
static int run_one(kernel *k, workspace *w, ir_error *err) {
  if (k->jit) {
    int rc = cg_run(k->jit->cg, w->leaves, w->outs, w->arena);
    if (rc != 0) {
      ir_err(err, "model: the kernel met %d out-of-range index(es): a token "
             "or label outside 0..K-1, or a read position outside the "
             "sequence", rc);
      return -1;
    }
    return 0;
  }
  for (int i = 0; i < k->len; i++) w->dtok[i] = w->tokens[i];
  w->dpos = w->pos, w->dlabel = w->label, w->dgloss = w->gloss;
  double **vals = ir_interp(k->f, IR_PREC_F32, (const double *const *)w->dl, err);
  if (!vals) return -1;
  for (int j = 0; j < k->f->n_outs; j++) {
    int v = k->f->outs[j].node;
    int64_t n = ir_numel(&k->f->nodes[v].type);
    float *dst = w->outs[j];
    if (k->out_role[j] == O_GRAD) /* added, as the JIT kernel does */
      for (int64_t i = 0; i < n; i++) dst[i] += (float)vals[v][i];
    else
      for (int64_t i = 0; i < n; i++) dst[i] = (float)vals[v][i];
  }
  ir_values_free(k->f, vals);
  return 0;
}

/* ---- batches ---- */

typedef struct {
  rt_model *m;
  kernel *k;
  const int32_t *tokens, *labels;
  int n, B, threads;
  float *logits;
  double loss[RT_CHUNKS];
  long correct[RT_CHUNKS];
  int failed[RT_CHUNKS];
  ir_error err[RT_CHUNKS];
} job;

typedef struct {
  job *j;
  int t;
} worker_arg;

static int argmax(const float *x, int K) {
  int best = 0;
  for (int i = 1; i < K; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

static void run_chunk(job *j, int c, workspace *w) {
  rt_model *m = j->m;
  kernel *k = j->k;
  int lo = (int)((long)c * j->B / RT_CHUNKS), hi = (int)((long)(c + 1) * j->B / RT_CHUNKS);
  float *acc = k->train ? m->chunk_grad + (size_t)c * m->n_flat : NULL;
  if (acc) memset(acc, 0, sizeof *acc * m->n_flat);
  for (int o = 0; acc && o < k->f->n_outs; o++) /* the kernel adds into it */
    if (k->out_role[o] == O_GRAD) w->outs[o] = acc + k->out_off[o];
  double loss = 0;
  long correct = 0;
  for (int b = lo; b < hi; b++) {
    memcpy(w->tokens, j->tokens + (size_t)b * (size_t)j->n, sizeof *w->tokens * (size_t)j->n);
    memset(w->tokens + j->n, 0, sizeof *w->tokens * (size_t)(k->len - j->n));
    w->pos = j->n - 1;
    w->label = j->labels[b];
    w->gloss = (float)(1.0 / j->B);
    if (run_one(k, w, &j->err[c]) < 0) {
      j->failed[c] = 1;
      return;
    }
    loss += w->loss;
    int a = argmax(w->logits, m->K);
    correct += a == w->label && !isnan(w->logits[a]);
    if (j->logits) memcpy(j->logits + (size_t)b * (size_t)m->K, w->logits, sizeof(float) * (size_t)m->K);
  }
  j->loss[c] = loss;
  j->correct[c] = correct;
}

static void *worker(void *p) {
  worker_arg *a = p;
  for (int c = a->t; c < RT_CHUNKS; c += a->j->threads)
    run_chunk(a->j, c, a->j->k->ws[a->t]);
  return NULL;
}

static int run_batch(rt_model *m, kernel *k, int n, const int32_t *tokens,
                     const int32_t *labels, int B, float *logits,
                     rt_batch_stats *st, ir_error *err) {
  if (B < 1) {
    ir_err(err, "model: batch of %d sequences", B);
    return -1;
  }
  job j = {.m = m, .k = k, .tokens = tokens, .labels = labels, .n = n, .B = B,
           .logits = logits};
  j.threads = m->threads < 1 ? 1 : m->threads > RT_CHUNKS ? RT_CHUNKS : m->threads;
  if (k->n_ws < j.threads) {
    k->ws = realloc(k->ws, sizeof *k->ws * (size_t)j.threads);
    if (!k->ws) abort();
    for (int t = k->n_ws; t < j.threads; t++) k->ws[t] = ws_new(m, k);
    k->n_ws = j.threads;
  }
  if (m->backend == RT_BACKEND_INTERP)
    for (size_t i = 0; i < m->n_flat; i++) m->theta64[i] = m->theta[i];
  /* what the kernel computes from the params alone, for this batch's
   * params (cg_options.hoist): once per thread's arena */
  for (int t = 0; k->jit && t < j.threads; t++)
    if (cg_prepare(k->jit->cg, k->ws[t]->leaves, k->ws[t]->arena) != 0) {
      ir_err(err, "model: preparing the kernel failed (a missing leaf)");
      return -1;
    }
  worker_arg args[RT_CHUNKS];
  pthread_t tid[RT_CHUNKS];
  int started = 1;
  for (int t = 0; t < j.threads; t++) args[t] = (worker_arg){&j, t};
  for (int t = 1; t < j.threads; t++) {
    if (pthread_create(&tid[t], NULL, worker, &args[t]) != 0) break;
    started++;
  }
  /* Chunks of threads that failed to start run here, in the same order. */
  for (int c = 0; c < RT_CHUNKS; c++)
    if (c % j.threads == 0 || c % j.threads >= started) run_chunk(&j, c, k->ws[0]);
  for (int t = 1; t < started; t++) pthread_join(tid[t], NULL);
  for (int c = 0; c < RT_CHUNKS; c++)
    if (j.failed[c]) {
      *err = j.err[c];
      return -1;
    }
  double loss = 0;
  long correct = 0;
  for (int c = 0; c < RT_CHUNKS; c++) loss += j.loss[c], correct += j.correct[c];
  if (k->train) {
    memcpy(m->grad, m->chunk_grad, sizeof *m->grad * m->n_flat);
    for (int c = 1; c < RT_CHUNKS; c++)
      add_into(m->grad, m->chunk_grad + (size_t)c * m->n_flat, m->n_flat);
  }
  if (st) *st = (rt_batch_stats){loss / B, (double)correct / B, B};
  return 0;
}

static int check_data(const rt_model *m, const int32_t *tokens,
                      const int32_t *labels, int B, int n, ir_error *err) {
  int V = m->V ? m->V_type.dim[0] : 0;
  for (int b = 0; b < B; b++) {
    if (labels[b] < 0 || labels[b] >= m->K) {
      ir_err(err, "model: label %d of sequence %d is outside 0..%d", labels[b], b, m->K - 1);
      return -1;
    }
    for (int i = 0; V && i < n; i++) {
      int32_t x = tokens[(size_t)b * (size_t)n + (size_t)i];
      if (x < 0 || x >= V) {
        ir_err(err, "model: token %d at position %d of sequence %d is outside "
               "the vocabulary 0..%d", x, i, b, V - 1);
        return -1;
      }
    }
  }
  return 0;
}

int rt_model_train_batch(rt_model *m, const int32_t *tokens,
                         const int32_t *labels, int B, rt_batch_stats *st,
                         ir_error *err) {
  if (check_data(m, tokens, labels, B, m->L, err) < 0) return -1;
  return run_batch(m, m->train, m->L, tokens, labels, B, NULL, st, err);
}

int rt_model_bucket(const rt_model *m, int n) {
  int L = m->L, q = (L + 3) / 4;
  if (n < 1) return 1;
  long b = n <= 4 * q ? (long)(n + q - 1) / q * q
                      : 4L * q + (long)(n - 4 * q + 2 * q - 1) / (2 * q) * (2 * q);
  if (n <= 3 * L && b > 3 * L) b = 3 * L;
  return (int)b;
}

/* Training reads the last position: "pos" becomes the constant n-1, and
 * the demand pass cuts every node down to what that one position needs
 * (the last layer to one row); the sink pass moves the first layer's
 * row-wise work (norm, projections) onto the embedding's K rows. Both
 * before the gradient is taken, so that the backward is cut down too. */
ir_func *rt_model_kernel_function(const ir_func *f, bool train, ir_error *err) {
  ir_func *b = NULL, *d, *s, *g, *o;
  int tok = ir_find_leaf(f, "tokens"), pos = ir_find_leaf(f, "pos");
  if (train && tok >= 0 && pos >= 0 && f->nodes[tok].type.rank == 1 &&
      f->nodes[pos].op == IR_OP_INPUT && f->nodes[pos].type.rank == 0 &&
      f->nodes[pos].type.dtype == IR_I32) {
    if (!(b = ir_bind_scalar(f, "pos", f->nodes[tok].type.dim[0] - 1, err))) return NULL;
    f = b;
  }
  d = ir_pass_demand(f, err);
  ir_func_free(b);
  if (!d) return NULL;
  s = ir_pass_sink(d, err);
  ir_func_free(d);
  if (!(d = s)) return NULL;
  if (!train) {
    o = ir_optimize(d, NULL, err);
    ir_func_free(d);
    return o;
  }
  g = ad_grad(d, "loss", err);
  ir_func_free(d);
  if (!g) return NULL;
  o = ir_optimize(g, NULL, err);
  ir_func_free(g);
  return o;
}

/* The forward kernel for length len, compiled when first asked for. */
static kernel *make_fwd(rt_model *m, int len, ir_error *err) {
  ir_func *f = len == m->L ? ir_func_clone(m->f) : m->build(m->ctx, len, err);
  if (!f) return NULL;
  int K;
  if (check_interface(f, len, &K, err) < 0) {
    ir_func_free(f);
    return NULL;
  }
  if (K != m->K) {
    ir_err(err, "model at length %d: logits have %d classes, at length L %d", len, K, m->K);
    ir_func_free(f);
    return NULL;
  }
  ir_func *fo = rt_model_kernel_function(f, false, err);
  ir_func_free(f);
  if (!fo) return NULL;
  return kernel_new(m, fo, len, false, err);
}

static kernel *add_fwd(rt_model *m, kernel *k) {
  m->fwd = realloc(m->fwd, sizeof *m->fwd * (size_t)(m->n_fwd + 1));
  if (!m->fwd) abort();
  m->fwd[m->n_fwd++] = k;
  return k;
}

static kernel *fwd_kernel(rt_model *m, int len, ir_error *err) {
  for (int i = 0; i < m->n_fwd; i++)
    if (m->fwd[i]->len == len) return m->fwd[i];
  kernel *k = make_fwd(m, len, err);
  return k ? add_fwd(m, k) : NULL;
}


int rt_model_eval_batch(rt_model *m, int n, int run_len,
                        const int32_t *tokens, const int32_t *labels, int B,
                        float *logits, rt_batch_stats *st, ir_error *err) {
  if (n < 1) {
    ir_err(err, "model: sequence length %d", n);
    return -1;
  }
  if (run_len == 0) run_len = rt_model_bucket(m, n);
  if (run_len < n) {
    ir_err(err, "model: cannot run sequences of length %d on a kernel for "
           "length %d", n, run_len);
    return -1;
  }
  if (check_data(m, tokens, labels, B, n, err) < 0) return -1;
  kernel *k = fwd_kernel(m, run_len, err);
  if (!k) return -1;
  return run_batch(m, k, n, tokens, labels, B, logits, st, err);
}

/* ---- the model ---- */

rt_model *rt_model_new(const rt_model_options *opt, ir_error *err) {
  if (!opt || !opt->build) {
    ir_err(err, "model: no function builder given");
    return NULL;
  }
  if (opt->L < 1) {
    ir_err(err, "model: training length L = %d, need L >= 1", opt->L);
    return NULL;
  }
  rt_model *m = xcalloc(1, sizeof *m);
  m->build = opt->build;
  m->ctx = opt->ctx;
  m->L = opt->L;
  m->backend = opt->backend;
  m->threads = opt->threads < 1 ? 1 : opt->threads;
  if (!(m->f = opt->build(opt->ctx, opt->L, err))) goto fail;
  if (check_interface(m->f, m->L, &m->K, err) < 0) goto fail;
  if (m->K < 1) {
    ir_err(err, "model: logits have %d classes", m->K);
    goto fail;
  }
  const ir_func *f = m->f;
  for (int v = 0; v < f->n_nodes; v++) {
    const ir_node *nd = &f->nodes[v];
    if (nd->op == IR_OP_PARAM) {
      if (nd->type.dtype != IR_F32) {
        ir_err(err, "model: param \"%s\" is i32; params must be f32", nd->name);
        goto fail;
      }
      m->params = realloc(m->params, sizeof *m->params * (size_t)(m->n_params + 1));
      if (!m->params) abort();
      size_t numel = (size_t)ir_numel(&nd->type);
      m->n_flat = flat_round(m->n_flat);
      m->params[m->n_params++] = (rt_param){nd->name, nd->type, m->n_flat, numel};
      m->n_flat += numel;
    } else if (nd->op == IR_OP_CONST && !strcmp(nd->name, "embedding.weight") && !nd->data) {
      if (nd->type.dtype != IR_F32 || nd->type.rank != 2) {
        char b[64];
        ir_err(err, "model: const \"embedding.weight\" is %s, expected f32[K,d]",
               type_str(&nd->type, b));
        goto fail;
      }
      m->V_type = nd->type;
    }
  }
  if (m->V_type.rank == 2) {
    int K = m->V_type.dim[0], d = m->V_type.dim[1];
    m->V = vzalloc((size_t)K * (size_t)d);
    m->V64 = xmalloc(sizeof *m->V64 * (size_t)K * (size_t)d);
    rt_embedding_V(K, d, m->V);
    for (int i = 0; i < K * d; i++) m->V64[i] = m->V[i];
  }
  m->n_flat = flat_round(m->n_flat);
  m->theta = vzalloc(m->n_flat);
  m->grad = vzalloc(m->n_flat);
  m->chunk_grad = vzalloc((size_t)RT_CHUNKS * m->n_flat);
  if (m->backend == RT_BACKEND_INTERP) m->theta64 = xcalloc(m->n_flat, sizeof *m->theta64);
  ir_func *go = rt_model_kernel_function(m->f, true, err);
  if (!go) goto fail;
  if (!(m->train = kernel_new(m, go, m->L, true, err))) goto fail;
  return m;
fail:
  rt_model_free(m);
  return NULL;
}

void rt_model_free(rt_model *m) {
  if (!m) return;
  kernel_free(m->train);
  for (int i = 0; i < m->n_fwd; i++) kernel_free(m->fwd[i]);
  free(m->fwd);
  free(m->params);
  ir_func_free(m->f);
  free(m->theta);
  free(m->grad);
  free(m->chunk_grad);
  free(m->theta64);
  free(m->V);
  free(m->V64);
  free(m);
}

int rt_model_L(const rt_model *m) { return m->L; }
int rt_model_K(const rt_model *m) { return m->K; }
rt_backend rt_model_backend(const rt_model *m) { return m->backend; }
const ir_func *rt_model_function(const rt_model *m) { return m->f; }
int rt_model_threads(const rt_model *m) { return m->threads; }
void rt_model_set_threads(rt_model *m, int threads) {
  m->threads = threads < 1 ? 1 : threads;
}
int rt_model_n_params(const rt_model *m) { return m->n_params; }
const rt_param *rt_model_param(const rt_model *m, int i) {
  return i >= 0 && i < m->n_params ? &m->params[i] : NULL;
}
size_t rt_model_size(const rt_model *m) { return m->n_flat; }
float *rt_model_params(rt_model *m) { return m->theta; }
float *rt_model_grads(rt_model *m) { return m->grad; }
float *rt_model_param_data(rt_model *m, const char *name) {
  int i = rt_model_find_param(m, name);
  return i < 0 ? NULL : m->theta + m->params[i].offset;
}
