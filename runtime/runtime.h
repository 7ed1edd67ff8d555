/* runtime.h — recall's runtime (rt_): tensor files, random numbers, AR data,
 * and (later) optimisers, training loop, evaluation, results and reports.
 *
 * One section per source file. Errors are reported in an ir_error (ir.h):
 * a function that can fail returns -1 or NULL and writes a message that
 * names the file or the argument and says what is wrong.
 */
#ifndef RECALL_RUNTIME_H
#define RECALL_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir.h"

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
 * (block, index, stream lo, stream hi). At most 2^34 draws per stream. */
typedef struct {
  uint32_t key[2], ctr[4], buf[4];
  int left; /* unused words in buf */
  bool has_normal;
  double normal;
} rt_rng;

void rt_rng_init(rt_rng *g, uint64_t seed, uint64_t stream, uint32_t index);
uint32_t rt_rng_u32(rt_rng *g);
/* Uniform in [0, n) for n >= 1, by rejection (no modulo bias). */
uint32_t rt_rng_below(rt_rng *g, uint32_t n);
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

#endif
