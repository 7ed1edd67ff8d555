/* runtime.h — recall's runtime (rt_): tensor files, random numbers, AR data,
 * models ready to train (JIT kernels over one flat parameter buffer),
 * optimisers, the training loop, length sweeps, checkpoints and small
 * result files.
 *
 * One section per source file. Errors are reported in an ir_error (ir.h):
 * a function that can fail returns -1 or NULL and writes a message that
 * names the file or the argument and says what is wrong.
 */
#ifndef RECALL_RUNTIME_H
#define RECALL_RUNTIME_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir.h"

/* Returned by rt_train and rt_sweep when their `stop` flag was raised
 * (an interrupted call, not an error: err says where it stopped). */
#define RT_STOPPED (-2)

/* ======================================================================
 * safetensors.c — tensor containers and the safetensors file format
 *
 * File: u64 little-endian header length N, N bytes of JSON
 *   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..],
 *    "data_offsets": [begin, end]}, ...}
 * then the data buffer (offsets are relative to its start).
 * recall reads F32, I32, F64 and I64 and writes the same four. Files it
 * writes follow the reference layout: header entries sorted by name, the
 * header padded with spaces to a multiple of 8, data contiguous and
 * naturally aligned (wider dtypes first, then by name), so PyTorch's
 * safetensors loads them.
 * ====================================================================== */

enum { RT_MAX_RANK = 4 };

typedef enum { RT_F32, RT_I32, RT_F64, RT_I64 } rt_dtype;

typedef struct {
  char *name; /* owned */
  rt_dtype dtype;
  int rank;   /* 0..RT_MAX_RANK; rank 0 is a scalar */
  int64_t dim[RT_MAX_RANK];
  int64_t numel;
  void *data; /* owned, numel elements of dtype, aligned for any dtype */
} rt_tensor;

typedef struct {
  char *key, *value; /* owned */
} rt_meta;

/* A list of named tensors plus string metadata. Tensor pointers stay valid
 * until the container is freed. */
typedef struct {
  rt_tensor **t;
  int n, cap;
  rt_meta *meta;
  int n_meta, cap_meta;
  char *source; /* file name used in messages ("" if built in memory) */
} rt_tensors;

const char *rt_dtype_name(rt_dtype dt); /* "F32", "I32", "F64", "I64" */
size_t rt_dtype_size(rt_dtype dt);

rt_tensors *rt_tensors_new(void);
void rt_tensors_free(rt_tensors *ts); /* NULL is fine */

/* Add a tensor named `name` (copied) with the given type; `data` (numel
 * elements, copied) may be NULL for zeros. Fails on a duplicate name, a rank
 * outside 0..4 or a negative size. Returns the new tensor or NULL. */
rt_tensor *rt_tensors_add(rt_tensors *ts, const char *name, rt_dtype dt,
                          int rank, const int64_t *dim, const void *data,
                          ir_error *err);
/* The tensor called `name`, or NULL. */
rt_tensor *rt_tensors_find(const rt_tensors *ts, const char *name);
/* Look up `name` and require dtype `dt` (converting F64->F32, I64->I32 and
 * back in place if needed) and exactly the shape (rank, dim). On a missing
 * tensor or another shape, NULL and a message naming the source file:
 * "w.safetensors: tensor \"lm_head.weight\" is F32[4,8], expected F32[16,8]". */
rt_tensor *rt_tensors_expect(rt_tensors *ts, const char *name, rt_dtype dt,
                             int rank, const int64_t *dim, ir_error *err);
/* Convert in place between F32 and F64, or between I32 and I64. Fails
 * (tensor unchanged) for float<->int, or when a value does not fit the
 * target (|x| beyond F32's range, an integer beyond I32's). */
int rt_tensor_convert(rt_tensor *t, rt_dtype to, ir_error *err);
/* "F32[4,8]" into buf; returns buf. */
char *rt_tensor_type_str(const rt_tensor *t, char *buf, size_t n);

/* Metadata value for `key`, or NULL. */
const char *rt_meta_get(const rt_tensors *ts, const char *key);
/* Set (or replace) a metadata entry; both strings are copied. */
void rt_meta_set(rt_tensors *ts, const char *key, const char *value);

/* Read a safetensors file / an in-memory image of one (`name` is used in
 * messages). Returns a new container (free with rt_tensors_free) holding
 * the file's dtypes as stored, or NULL with a message naming the file:
 * too short, header length past the end, bad JSON (with the byte offset
 * in the file), unsupported dtype, rank above 4, negative or non-integer
 * sizes, data_offsets out of range / not matching the shape / overlapping,
 * duplicate names. Data bytes no tensor covers are allowed. */
rt_tensors *rt_st_read(const char *path, ir_error *err);
rt_tensors *rt_st_read_mem(const void *buf, size_t len, const char *name,
                           ir_error *err);
/* Write `ts` (tensors and metadata) to `path` atomically: a temporary file
 * next to it, fsync, rename. On any failure returns -1 with a message
 * saying what failed, and leaves neither a temporary file nor a changed
 * `path`. A `path` that exists and is not a regular file (a device such as
 * /dev/null) is written in place, since it cannot be replaced. */
int rt_st_write(const char *path, const rt_tensors *ts, ir_error *err);

/* ======================================================================
 * rng.c — random numbers
 *
 * (a) numpy's legacy generator (RandomState): MT19937 seeded like
 *     numpy.random.seed(int), random_sample() doubles and the polar
 *     Box-Muller gauss with its cached second value, bit for bit; it
 *     gives the frozen embedding V of the study.
 * (b) A counter-based generator (Philox4x32-10) for data: every draw is a
 *     pure function of (seed, stream, index, draw number), so an example's
 *     data does not depend on threads or on what was drawn before.
 * ====================================================================== */

typedef struct {
  uint32_t mt[624];
  int pos;
  bool has_gauss;
  double gauss;
} rt_mt19937;

/* numpy.random.seed(seed) for an integer seed in 0..2^32-1 (init_genrand). */
void rt_mt_seed(rt_mt19937 *g, uint32_t seed);
uint32_t rt_mt_next(rt_mt19937 *g);  /* next 32-bit output */
double rt_mt_double(rt_mt19937 *g);  /* random_sample(): 53 bits in [0, 1) */
double rt_mt_gauss(rt_mt19937 *g);   /* legacy standard_normal() */
/* numpy.random.seed(seed); numpy.random.randn(n) into out[0..n-1]. */
void rt_numpy_randn(uint32_t seed, size_t n, double *out);
/* The study's embedding: numpy seed 0, randn(K, d), each row divided by its
 * Euclidean norm (summed in numpy's pairwise order), row-major [K, d]. The
 * float version rounds the double result. */
void rt_embedding_V64(int K, int d, double *out);
void rt_embedding_V(int K, int d, float *out);

/* Philox4x32-10 block function (Salmon et al., Random123). */
void rt_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                      uint32_t out[4]);

/* A Philox stream for one (seed, stream, index): key = seed, counter =
 * (block, index, stream lo, stream hi). At most 2^34 draws per stream.
 * Blocks are made RT_RNG_BLOCKS at a time (their rounds interleave). */
enum { RT_RNG_BLOCKS = 8 };
typedef struct {
  uint32_t key[2], ctr[4]; /* ctr[0]: the next block to make */
  uint32_t buf[4 * RT_RNG_BLOCKS];
  int left; /* unused words at the end of buf */
  bool has_normal;
  double normal;
} rt_rng;

void rt_rng_init(rt_rng *g, uint64_t seed, uint64_t stream, uint32_t index);
uint32_t rt_rng_u32(rt_rng *g);
/* Uniform in [0, n) for n >= 1, by rejection (no modulo bias). */
uint32_t rt_rng_below(rt_rng *g, uint32_t n);
/* The same draws for a bound used many times, its divisions done once
 * (the data's filler tokens: a few percent of a length sweep). */
typedef struct {
  uint32_t n, lim; /* lim = 2^32 mod n: words below it are rejected */
  uint64_t m;      /* 2^64 / n rounded up: r mod n by multiplications */
} rt_bound;
rt_bound rt_bound_make(uint32_t n);
uint32_t rt_rng_below_by(rt_rng *g, const rt_bound *b);
/* The next n words, or n draws below b->n: the values and the state after
 * them as n calls of rt_rng_u32 or rt_rng_below_by would leave, made
 * several blocks at a time (the data's fillers). */
void rt_rng_words(rt_rng *g, uint32_t *out, size_t n);
void rt_rng_below_n(rt_rng *g, const rt_bound *b, uint32_t *out, size_t n);
double rt_rng_uniform(rt_rng *g); /* 53 bits in [0, 1) */
double rt_rng_normal(rt_rng *g);  /* N(0, 1), Box-Muller, pairs cached */

/* ======================================================================
 * data.c — associative-recall sequences (DESIGN.md section 1)
 *
 * One sequence of length n for (K, M, tau): q uniform in 0..M-1, v uniform
 * in 0..K-1; i uniform in 0..n-tau-2; x[i] = q, x[i+tau] = v, x[n-1] = q;
 * every other position iid uniform over [K] \ {q}; label v. Draws come from
 * rt_rng(seed, stream = step, index = example) in the order q, v, i, then
 * the fillers by increasing position.
 * ====================================================================== */

typedef struct {
  int K;   /* vocabulary size */
  int M;   /* number of query tokens (0..M-1) */
  int tau; /* distance from query to value */
  int n;   /* sequence length */
} rt_ar_task;

/* 0 if (K, M, tau, n) describes valid sequences, else -1 with a message:
 * K < 2, M outside 1..K, tau < 1, n < tau + 2. */
int rt_ar_validate(int K, int M, int tau, int n, ir_error *err);
/* Example `example` of training step `step`: tokens[0..n-1], *label = v,
 * *i_out = first position of q (label and i_out may be NULL). Returns -1
 * (and draws nothing) if the task is invalid. */
int rt_ar_example(uint64_t seed, uint64_t step, uint32_t example,
                  const rt_ar_task *task, int32_t *tokens, int32_t *label,
                  int32_t *i_out);
/* Examples first..first+count-1 of a step: tokens [count, n] row-major,
 * labels [count] (may be NULL). */
int rt_ar_batch(uint64_t seed, uint64_t step, uint32_t first, int count,
                const rt_ar_task *task, int32_t *tokens, int32_t *labels);

/* Streams of the data generator (the `step` argument of rt_ar_example and
 * rt_ar_batch, which keys rt_rng's stream). Training step s draws its batch
 * from stream s; everything else lives at or above 2^63, which no training
 * run reaches, so test, sweep and initialisation data never coincide with
 * a training batch (nor with each other). */
#define RT_STREAM_TEST UINT64_C(0x8000000000000000)  /* the fixed test batch */
#define RT_STREAM_SWEEP UINT64_C(0x9000000000000000) /* + sequence length */
#define RT_STREAM_INIT UINT64_C(0xA000000000000000)  /* + parameter index
                                                     (the CLI draws param i
                                                     from rt_rng(seed, this
                                                     + i, 0)) */

/* ======================================================================
 * files.c — small result files (CSV, JSON) and the text buffer they are
 * built in
 * ====================================================================== */

/* Writes len bytes to path atomically: a temporary file next to it, fsync,
 * rename. -1 with a message naming path on failure (no temporary file is
 * left behind and path is unchanged). */
int rt_write_atomic(const char *path, const void *data, size_t len,
                    ir_error *err);

/* A growable NUL-terminated string. Zero-initialise; rt_buf_free frees. */
typedef struct {
  char *s;
  size_t len, cap;
} rt_buf;
void rt_buf_printf(rt_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A JSON string literal (quotes and escapes) for s. */
void rt_buf_json_str(rt_buf *b, const char *s);
void rt_buf_free(rt_buf *b);

/* ======================================================================
 * model.c — a model ready to train and evaluate
 *
 * The caller supplies the per-example forward function for any sequence
 * length n (the CLI runs a Lua spec with --set n=<n>). Its interface:
 * inputs "tokens" i32[n], "pos" i32[] (the position read out), "label"
 * i32[]; outputs "logits" f32[K] and "loss" f32[]; params; consts — the
 * const "embedding.weight" [K,d] is bound to rt_embedding_V(K, d), every
 * other const must carry its data.
 *
 * Parameters live in ONE flat float buffer, each param at an offset, in
 * node order of the function at length L; gradients in a second buffer of
 * the same layout. The training kernel is ad_grad(f, "loss") optimised;
 * the upstream gradient is 1/B so the gradient is that of the mean loss.
 *
 * Determinism: a batch is cut into RT_CHUNKS consecutive chunks whatever
 * the thread count; a chunk sums its examples' gradients in example order
 * into its own buffer (the kernel adds each gradient into it as it is
 * computed, cg_options.accumulate) and the chunks are summed in chunk
 * order, so results are bit-identical for any number of threads.
 *
 * Evaluation at another length n runs a forward-only kernel compiled for
 * n's bucket, the sequence padded with token 0 and read at pos n-1 (every
 * model is causal, so the padding is never seen). Buckets, with q =
 * ceil(L/4): q, 2q, 3q, 4q (>= L), then steps of 2q (6q, 8q, ...), the
 * result capped at 3L when n <= 3L. For L = 64: 16 32 48 64 96 128 160
 * 192; padding wastes at most a third of the work, eight compilations
 * cover a sweep up to 3L. A kernel is compiled when first needed. Its
 * heaviest parts stop at the row read (cg_options.rows_to_pos): the
 * first layer's causal attention (scores, softmax, weighted values) and
 * scans whose whole output is read, so padding costs there only the
 * row-wise work.
 *
 * JIT kernels are cached for the process, keyed by the printed IR of the
 * compiled function plus its consts' data: a second model with the same
 * graph and sizes reuses the machine code.
 * ====================================================================== */

enum { RT_CHUNKS = 8 };

typedef enum { RT_BACKEND_JIT, RT_BACKEND_INTERP } rt_backend;

/* Returns a new function (the caller's model at sequence length n; the
 * model takes ownership), or NULL with a message. */
typedef ir_func *(*rt_build_fn)(void *ctx, int n, ir_error *err);

typedef struct {
  rt_build_fn build;
  void *ctx;          /* passed to build */
  int L;              /* training length */
  rt_backend backend; /* RT_BACKEND_JIT (0) by default */
  int threads;        /* worker threads for batches; <= 1: the caller's */
} rt_model_options;

typedef struct {
  const char *name; /* owned by the model */
  ir_type type;
  size_t offset, numel; /* in floats, within the flat buffers; each
                           param starts on a 64-byte boundary (16 floats),
                           the gaps between them stay zero */
} rt_param;

/* What a batch did: mean loss, fraction with argmax(logits) == label
 * (the first maximum; a NaN logit never counts as right), batch size. */
typedef struct {
  double loss, acc;
  int count;
} rt_batch_stats;

typedef struct rt_model rt_model;

/* Builds the function at length L through opt->build, checks the
 * interface, lays out the parameters (all zero) and compiles the training
 * kernel. NULL with a message naming what is wrong. */
rt_model *rt_model_new(const rt_model_options *opt, ir_error *err);
void rt_model_free(rt_model *m); /* NULL is fine */

int rt_model_L(const rt_model *m);
int rt_model_K(const rt_model *m); /* classes: the size of "logits" */
rt_backend rt_model_backend(const rt_model *m);
/* The model's function at length L (owned by the model). */
const ir_func *rt_model_function(const rt_model *m);
int rt_model_threads(const rt_model *m);
void rt_model_set_threads(rt_model *m, int threads);

int rt_model_n_params(const rt_model *m);
const rt_param *rt_model_param(const rt_model *m, int i); /* NULL: no i */
int rt_model_find_param(const rt_model *m, const char *name); /* -1 */
size_t rt_model_size(const rt_model *m);    /* floats in the flat buffer, gaps included */
float *rt_model_params(rt_model *m);        /* the flat parameter buffer */
float *rt_model_grads(rt_model *m); /* last batch's gradient */
/* The values of param `name` inside the flat buffer, or NULL. */
float *rt_model_param_data(rt_model *m, const char *name);

/* Forward + backward of B examples of length L (tokens [B, L] row-major,
 * labels [B]), each read at pos L-1. Overwrites the gradient buffer with
 * the gradient of the mean loss; fills *st. -1 with a message on error
 * (a token or label out of range, a kernel failing to compile). */
int rt_model_train_batch(rt_model *m, const int32_t *tokens,
                         const int32_t *labels, int B, rt_batch_stats *st,
                         ir_error *err);

/* The function rt_model compiles from the model's function f (at any
 * length n): train, the training kernel (ad_grad(f, "loss"), read at the
 * last position n-1, optimised); else the forward kernel (f optimised,
 * read at its input "pos"). Both cut to what the position read needs
 * (ir_pass_demand) and with the first layer's row-wise work on the
 * embedding's rows (ir_pass_sink) before the gradient. New function or
 * NULL with a message. Shown by `recall llvm` and `recall ir --stage
 * kernel|eval`. */
ir_func *rt_model_kernel_function(const ir_func *f, bool train, ir_error *err);

/* The bucket length a sequence of length n runs at (see above). */
int rt_model_bucket(const rt_model *m, int n);
/* Forward only: B sequences of length n (tokens [B, n]), read at n-1, run
 * on the kernel for length run_len (>= n; 0: rt_model_bucket(m, n)),
 * padded with token 0. logits [B, K] if non-NULL. Compiles the kernel for
 * run_len when first asked for. */
int rt_model_eval_batch(rt_model *m, int n, int run_len,
                        const int32_t *tokens, const int32_t *labels, int B,
                        float *logits, rt_batch_stats *st, ir_error *err);

/* The process-wide JIT kernel cache. */
typedef struct {
  long hits, misses; /* lookups that found / compiled a kernel */
  int entries;       /* kernels held */
} rt_jit_cache_info;
void rt_jit_cache_info_get(rt_jit_cache_info *out);
/* Frees the cached kernels no model holds. */
void rt_jit_cache_trim(void);

/* ======================================================================
 * optim.c — optimisers over one flat parameter buffer
 *
 * PyTorch's update rules, in float32 in the order torch computes them
 * (torch.optim.SGD, Adam, AdamW, single-tensor path):
 *  SGD:   g += wd*p; buf = g (first step) or momentum*buf + (1-dampening)*g;
 *         g = nesterov ? g + momentum*buf : buf (if momentum); p -= lr*g
 *  Adam:  g += wd*p; m = lerp(m, g, 1-beta1); v = beta2*v + (1-beta2)*g*g;
 *         p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
 *  AdamW: p *= 1 - lr*wd, then Adam's update without the L2 term.
 * Learning rate of update t = 1, 2, ...: constant lr; warmup: lr *
 * min(1, t/warmup); cosine: the warm-up, then min_lr + (lr - min_lr) *
 * (1 + cos(pi * min(1, (t-warmup)/(total-warmup)))) / 2.
 * Clipping (clip > 0) scales the gradient by clip/(norm + 1e-6) when that
 * is below 1, norm being the global L2 norm (torch's clip_grad_norm_).
 * ====================================================================== */

typedef enum { RT_OPT_SGD, RT_OPT_ADAM, RT_OPT_ADAMW } rt_optimizer;
typedef enum {
  RT_SCHED_CONSTANT,
  RT_SCHED_WARMUP, /* linear warm-up, then constant */
  RT_SCHED_COSINE  /* linear warm-up, then cosine decay to min_lr */
} rt_schedule;

typedef struct {
  rt_optimizer kind;
  double lr;
  double momentum, dampening; /* SGD */
  bool nesterov;              /* SGD */
  double beta1, beta2, eps;   /* Adam, AdamW */
  double weight_decay;        /* SGD, Adam: L2 in the gradient; AdamW: decoupled */
  rt_schedule schedule;
  long warmup;   /* warm-up updates (warmup, cosine) */
  long total;    /* cosine: the update where min_lr is reached */
  double min_lr; /* cosine */
  double clip;   /* max global gradient norm; 0: no clipping */
} rt_optim_config;

/* torch's defaults for kind: lr 1e-3 (SGD 1e-2), betas 0.9/0.999, eps
 * 1e-8, weight decay 0 (AdamW 1e-2), no momentum, constant schedule, no
 * clipping. */
void rt_optim_defaults(rt_optim_config *c, rt_optimizer kind);
/* -1 with a message for a config that cannot run (lr <= 0, beta outside
 * [0,1), nesterov without momentum, cosine without total > warmup, ...). */
int rt_optim_check(const rt_optim_config *c, ir_error *err);
/* The learning rate of update t (1-based). */
double rt_optim_lr(const rt_optim_config *c, long t);

typedef struct rt_optim rt_optim;
/* State for n parameters (zeros; update count 0). */
rt_optim *rt_optim_new(const rt_optim_config *c, size_t n);
void rt_optim_free(rt_optim *o);
long rt_optim_steps(const rt_optim *o); /* updates done */
/* One update of p[0..n) with gradient g (clipped in place if configured,
 * and with Adam's or SGD's L2 weight decay added in place, as torch
 * does). Returns the global gradient norm before clipping. */
double rt_optim_step(rt_optim *o, float *p, float *g);

/* ======================================================================
 * train.c — the training loop
 *
 * Step s (0-based) trains on batch rt_ar_batch(seed, s, 0, batch) at
 * length L. Every eval_every updates (and after the last one) the model is
 * evaluated on a FIXED test batch of test_size sequences at length L from
 * stream RT_STREAM_TEST, and a row goes to the hook. The run stops when
 * the test accuracy is >= target at `patience` evaluations in a row, at
 * max_steps, or at the first non-finite loss (status DIVERGED, message
 * "step 412: loss is NaN; stopping (lower the learning rate?)"; the
 * update that would use it is not applied).
 *
 * Interruption: `stop` (may be NULL) is read before every step; once it is
 * nonzero (a SIGINT/SIGTERM handler sets it) rt_train returns RT_STOPPED
 * at once. Nothing is written by the runtime itself, so the caller decides
 * what an unfinished run leaves behind.
 * ====================================================================== */

typedef struct {
  int M, tau;         /* the task (K and L are the model's) */
  uint64_t seed;      /* data */
  int batch;          /* 64 */
  long max_steps;     /* 3000 */
  long eval_every;    /* 100 */
  int test_size;      /* 1000 */
  double target;      /* 0.99 */
  int patience;       /* 2 */
  rt_optim_config opt; /* Adam, lr 1e-3 */
  const volatile sig_atomic_t *stop; /* NULL; nonzero *stop: RT_STOPPED */
} rt_train_config;

void rt_train_defaults(rt_train_config *c);

typedef struct {
  long step;         /* updates done */
  double train_loss; /* mean batch loss over the updates since the last row */
  double test_loss, test_acc;
  double elapsed_s;  /* wall time since training started */
} rt_train_row;

typedef struct {
  /* After every update (may be NULL): progress display. */
  void (*on_step)(void *ctx, long step, double loss, double acc,
                  double elapsed_s);
  /* At every evaluation (may be NULL); nonzero stops the run with err. */
  int (*on_eval)(void *ctx, const rt_train_row *row, ir_error *err);
  void *ctx;
} rt_train_hooks;

typedef enum {
  RT_TRAIN_REACHED,   /* target accuracy held for `patience` evaluations */
  RT_TRAIN_MAX_STEPS, /* ran out of steps */
  RT_TRAIN_DIVERGED   /* non-finite loss */
} rt_train_status;

typedef struct {
  rt_train_status status;
  long steps;        /* updates applied */
  long reached_step; /* first evaluation of the final streak at >= target, or -1 */
  double test_loss, test_acc; /* last evaluation (NaN if none) */
  double elapsed_s;
  char message[160]; /* a sentence saying how it ended */
} rt_train_result;

/* Trains m in place (parameters as the caller initialised them). Returns 0
 * when the run ended (even DIVERGED: see res->status), RT_STOPPED when
 * *c->stop was raised (res holds the steps done so far) and -1 with a
 * message on an error (bad config, failed hook). */
int rt_train(rt_model *m, const rt_train_config *c, const rt_train_hooks *h,
             rt_train_result *res, ir_error *err);

/* ======================================================================
 * sweep.c — accuracy across sequence lengths
 *
 * For every length n in lo..hi: `n_seq` sequences rt_ar_batch(seed,
 * RT_STREAM_SWEEP + n, 0, n_seq) of that length, run on the bucketed
 * kernels (rt_model_eval_batch).
 * ====================================================================== */

typedef struct {
  int M, tau;
  uint64_t seed;
  int lo, hi; /* lengths; 0, 0: tau+2 .. 3L */
  int n_seq;  /* sequences per length; 0: 1000 */
  const volatile sig_atomic_t *stop; /* NULL, or read before each length */
} rt_sweep_config;

typedef struct {
  int length;
  double acc, loss; /* accuracy, mean loss */
  int n;            /* sequences */
} rt_sweep_row;

/* Fills *rows (malloc'd, *n_rows = hi - lo + 1). progress (may be NULL)
 * is called after each length. -1 with a message on error; RT_STOPPED
 * (nothing in *rows) when *c->stop was raised. */
int rt_sweep(rt_model *m, const rt_sweep_config *c, rt_sweep_row **rows,
             int *n_rows, void (*progress)(void *ctx, int done, int total),
             void *ctx, ir_error *err);

/* ======================================================================
 * checkpoint.c — checkpoints: safetensors with every param by name (F32)
 * and metadata "format" = "recall-checkpoint-1", "config" (the run's
 * config as a JSON string), "model" (its name) and "spec" (its path)
 * ====================================================================== */

int rt_checkpoint_save(rt_model *m, const char *path, const char *model,
                       const char *spec, const char *config_json,
                       ir_error *err);
/* Reads path and checks it is a recall checkpoint (metadata present). */
rt_tensors *rt_checkpoint_read(const char *path, ir_error *err);
/* Copies the checkpoint's params into m after checking that its tensors
 * are exactly the model's params (names, shapes; F64 is converted to F32
 * in ck); the message names
 * the first mismatch: "ck.safetensors: not a checkpoint of this model:
 * parameter \"layers.0.mixer.wq.weight\" is F32[8,8] there, the model's is
 * F32[16,16]". m is unchanged on error. */
int rt_checkpoint_load(rt_model *m, rt_tensors *ck, ir_error *err);

/* ======================================================================
 * report.c — reports of experiment directories (.notes/results-format.md)
 *
 * results.csv and convergence.csv become curves: per (problem, K, L, M,
 * tau, d) and model, accuracy by length and test accuracy by step, as the
 * mean, min and max over seeds. Each figure is written to DIR/figures as
 * NAME.dat (gnuplot data blocks) and NAME.gp (a script that renders
 * NAME.png and NAME.svg when run from that directory), and rendered when
 * gnuplot is found. DIR/report.md holds the configuration, tables,
 * figure links and findings written from the measured values.
 * ====================================================================== */

/* What an experiment's experiment.json says (every field may be empty). */
typedef struct {
  char *name, *title, *problem;  /* malloc'd or NULL */
  char **keys, **values;         /* options shared by every run */
  int n;
} rt_report_meta;
void rt_report_meta_free(rt_report_meta *m);

typedef struct {
  /* Fills *out from the experiment directory dir (its experiment.json);
   * 0, or -1 with a message. NULL: no metadata. */
  int (*meta)(void *ctx, const char *dir, rt_report_meta *out, ir_error *err);
  void *ctx;
  /* Program that renders the scripts. NULL: "gnuplot" searched on PATH;
   * "": write data and scripts only. */
  const char *gnuplot;
} rt_report_options;

typedef struct {
  bool study;           /* DIR held experiment directories */
  int experiments;      /* experiment reports written */
  int figures;          /* figures written (NAME.dat + NAME.gp) */
  int rendered;         /* of which rendered to PNG and SVG */
  bool gnuplot_missing; /* no gnuplot on PATH: nothing was rendered */
} rt_report_info;

/* Reports DIR: an experiment directory (DIR/results.csv, optional
 * convergence.csv and experiment.json), or a study directory whose
 * sub-directories are experiment directories (a report in each, plus
 * DIR/report.md and DIR/figures for the whole study). -1 with a message
 * naming the file (and line) on a missing or malformed CSV, a failure to
 * write, or a script gnuplot rejected (everything else is still
 * written). */
int rt_report(const char *dir, const rt_report_options *o,
              rt_report_info *info, ir_error *err);

/* ======================================================================
 * report_figures.c — gnuplot figures, for the report and `recall inspect`
 *
 * A figure is NAME.dat (data) and NAME.gp (a script) in one directory;
 * run from that directory, the script writes NAME.png and NAME.svg. Without
 * gnuplot the data and scripts are still written and nothing is rendered.
 * ====================================================================== */

/* The renderer's path: prog as given when it has a slash, else searched on
 * PATH; NULL if not found (malloc'd). */
char *rt_gp_find(const char *prog);
/* A gnuplot string literal (single quotes, '' for a quote) of s. */
void rt_gp_str(rt_buf *b, const char *s);
/* The opening of NAME.gp: a comment naming the writer (`by`, e.g. "recall
 * report") and how to re-render, `dat = 'NAME.dat'`, then `do for [t =
 * 1:2] {` with the PNG terminal (t 1) or the SVG one (t 2), w x h pixels,
 * and its output set. The caller writes the plot commands (indented two
 * spaces) and closes with rt_gp_end. */
void rt_gp_begin(rt_buf *b, const char *by, const char *name,
                 const char *title, int w, int h);
void rt_gp_end(rt_buf *b);
/* Writes dir/NAME.dat and dir/NAME.gp atomically. */
int rt_gp_write(const char *dir, const char *name, const rt_buf *dat,
                const rt_buf *gp, ir_error *err);
/* Runs `prog NAME.gp` in dir for each name (at most 8 at a time), stderr
 * to dir/NAME.log, removed on success; *rendered counts the successes.
 * Each renders to temporary names renamed when complete, in a process
 * group of its own (a Ctrl-C for recall leaves no half-written figure). On
 * a failure the first error line of its script goes into err (naming the
 * script and the log, which is kept) and -1 is returned; the other names
 * are still rendered. */
int rt_gp_render(const char *prog, const char *dir, const char *const *names,
                 int n, int *rendered, ir_error *err);

#endif
