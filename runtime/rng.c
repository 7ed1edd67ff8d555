/* rng.c — numpy-compatible MT19937 (legacy RandomState) and a Philox
 * counter-based generator for data.
 *
 * Bit-for-bit agreement with numpy needs every double operation rounded
 * exactly as written: no fused multiply-add contraction. */
#include "runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---- MT19937 (Matsumoto & Nishimura), numpy's legacy seeding ---- */

enum { MT_N = 624, MT_M = 397 };

void rt_mt_seed(rt_mt19937 *g, uint32_t seed) {
  g->mt[0] = seed;
  for (uint32_t i = 1; i < MT_N; i++)
    g->mt[i] = 1812433253u * (g->mt[i - 1] ^ (g->mt[i - 1] >> 30)) + i;
  g->pos = MT_N;
  g->has_gauss = false;
  g->gauss = 0.0;
}

static void mt_refill(rt_mt19937 *g) {
  uint32_t *s = g->mt;
  for (int i = 0; i < MT_N; i++) {
    uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % MT_N] & 0x7fffffffu);
    s[i] = s[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
  }
  g->pos = 0;
}

uint32_t rt_mt_next(rt_mt19937 *g) {
  if (g->pos >= MT_N) mt_refill(g);
  uint32_t y = g->mt[g->pos++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

double rt_mt_double(rt_mt19937 *g) {
  uint32_t a = rt_mt_next(g) >> 5, b = rt_mt_next(g) >> 6;
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

/* Polar Box-Muller: each accepted pair gives two normals; the first call
 * returns f*x2 and caches f*x1 for the next, as numpy's legacy_gauss. */
double rt_mt_gauss(rt_mt19937 *g) {
  if (g->has_gauss) {
    g->has_gauss = false;
    return g->gauss;
  }
  double x1, x2, r2;
  do {
    x1 = 2.0 * rt_mt_double(g) - 1.0;
    x2 = 2.0 * rt_mt_double(g) - 1.0;
    r2 = x1 * x1 + x2 * x2;
  } while (r2 >= 1.0 || r2 == 0.0);
  double f = sqrt(-2.0 * log(r2) / r2);
  g->gauss = f * x1;
  g->has_gauss = true;
  return f * x2;
}

void rt_numpy_randn(uint32_t seed, size_t n, double *out) {
  rt_mt19937 g;
  rt_mt_seed(&g, seed);
  for (size_t i = 0; i < n; i++) out[i] = rt_mt_gauss(&g);
}

/* numpy's pairwise summation (add.reduce over a contiguous axis), so the
 * row norms round exactly as np.linalg.norm's do. */
static double pairwise_sum(const double *a, size_t n) {
  if (n < 8) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i];
    return s;
  }
  if (n <= 128) {
    double r[8];
    size_t i;
    for (int j = 0; j < 8; j++) r[j] = a[j];
    for (i = 8; i < n - n % 8; i += 8)
      for (int j = 0; j < 8; j++) r[j] += a[i + (size_t)j];
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) s += a[i];
    return s;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

void rt_embedding_V64(int K, int d, double *out) {
  rt_numpy_randn(0, (size_t)K * (size_t)d, out);
  double *sq = calloc((size_t)(d > 0 ? d : 1), sizeof *sq);
  if (!sq) abort();
  for (int k = 0; k < K; k++) {
    double *row = out + (size_t)k * (size_t)d;
    for (int j = 0; j < d; j++) sq[j] = row[j] * row[j];
    double norm = sqrt(pairwise_sum(sq, (size_t)d));
    for (int j = 0; j < d; j++) row[j] /= norm;
  }
  free(sq);
}

void rt_embedding_V(int K, int d, float *out) {
  size_t n = (size_t)K * (size_t)d;
  double *v = malloc(sizeof *v * (n ? n : 1));
  if (!v) abort();
  rt_embedding_V64(K, d, v);
  for (size_t i = 0; i < n; i++) out[i] = (float)v[i];
  free(v);
}

/* ---- Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11) ---- */

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

void rt_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                      uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u; /* key schedule: golden ratio, sqrt(3) - 1 */
    k1 += 0xBB67AE85u;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* Blocks ctr .. ctr + PHILOX_LANES - 1 (the block number wrapping at
 * 2^32) into out, each block's 4 words in order: the rounds of
 * rt_philox4x32_10, the lanes independent so that the compiler
 * interleaves (or vectorises) them instead of waiting on one block's
 * chain of 10 dependent rounds. */
enum { PHILOX_LANES = RT_RNG_BLOCKS };
static void philox_lanes(const uint32_t ctr[4], const uint32_t key[2],
                         uint32_t out[4 * PHILOX_LANES]) {
  uint32_t c0[PHILOX_LANES], c1[PHILOX_LANES], c2[PHILOX_LANES], c3[PHILOX_LANES];
  for (int j = 0; j < PHILOX_LANES; j++)
    c0[j] = ctr[0] + (uint32_t)j, c1[j] = ctr[1], c2[j] = ctr[2], c3[j] = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    for (int j = 0; j < PHILOX_LANES; j++) {
      uint64_t p0 = (uint64_t)0xD2511F53u * c0[j], p1 = (uint64_t)0xCD9E8D57u * c2[j];
      uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
      c1[j] = (uint32_t)p1, c3[j] = (uint32_t)p0, c0[j] = n0, c2[j] = n2;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (int j = 0; j < PHILOX_LANES; j++)
    out[4 * j] = c0[j], out[4 * j + 1] = c1[j], out[4 * j + 2] = c2[j], out[4 * j + 3] = c3[j];
}

void rt_rng_init(rt_rng *g, uint64_t seed, uint64_t stream, uint32_t index) {
  g->key[0] = (uint32_t)seed;
  g->key[1] = (uint32_t)(seed >> 32);
  g->ctr[0] = 0; /* block number */
  g->ctr[1] = index;
  g->ctr[2] = (uint32_t)stream;
  g->ctr[3] = (uint32_t)(stream >> 32);
  g->left = 0;
  g->has_normal = false;
  g->normal = 0.0;
}

/* g's next PHILOX_LANES blocks into out */
static void next_blocks(rt_rng *g, uint32_t *out) {
  philox_lanes(g->ctr, g->key, out);
  g->ctr[0] += PHILOX_LANES;
}

static void refill(rt_rng *g) {
  next_blocks(g, g->buf);
  g->left = 4 * PHILOX_LANES;
}

uint32_t rt_rng_u32(rt_rng *g) {
  if (g->left == 0) refill(g);
  return g->buf[4 * PHILOX_LANES - g->left--];
}

/* The first k of g's unused words into out. */
static void take(rt_rng *g, uint32_t *out, size_t k) {
  memcpy(out, g->buf + 4 * PHILOX_LANES - g->left, sizeof *out * k);
  g->left -= (int)k;
}

void rt_rng_words(rt_rng *g, uint32_t *out, size_t n) {
  size_t k = n < (size_t)g->left ? n : (size_t)g->left;
  take(g, out, k);
  out += k, n -= k;
  for (; n >= 4 * PHILOX_LANES; n -= 4 * PHILOX_LANES, out += 4 * PHILOX_LANES)
    next_blocks(g, out);
  if (n > 0) {
    refill(g);
    take(g, out, n);
  }
}

uint32_t rt_rng_below(rt_rng *g, uint32_t n) {
  rt_bound b = rt_bound_make(n);
  return rt_rng_below_by(g, &b);
}

rt_bound rt_bound_make(uint32_t n) {
  rt_bound b = {.n = n};
  if (n > 1) b.lim = (uint32_t)(-n) % n, b.m = UINT64_MAX / n + 1;
  return b;
}

/* r mod n as Lemire, Kaser and Kurz's "fastmod" (exact for 32-bit r and
 * n): the high 64 bits of ((m r) mod 2^64) n, from 32-bit halves so that
 * no 128-bit type is needed. */
static uint32_t fastmod(uint32_t r, const rt_bound *b) {
  uint64_t lo = b->m * r; /* mod 2^64 */
  uint64_t h = (lo >> 32) * b->n, l = (lo & 0xFFFFFFFFu) * b->n;
  return (uint32_t)((h + (l >> 32)) >> 32);
}

/* Rejects the lowest 2^32 mod n values so that every residue is hit by
 * the same number of accepted words. */
uint32_t rt_rng_below_by(rt_rng *g, const rt_bound *b) {
  if (b->n <= 1) return 0;
  for (;;) {
    uint32_t r = rt_rng_u32(g);
    if (r >= b->lim) return fastmod(r, b);
  }
}

void rt_rng_below_n(rt_rng *g, const rt_bound *b, uint32_t *out, size_t n) {
  if (b->n <= 1) {
    memset(out, 0, sizeof *out * n);
    return;
  }
  enum { CHUNK = 128 };
  uint32_t w[CHUNK];
  while (n > 0) { /* as many words as values still wanted: none left over */
    size_t k = n < CHUNK ? n : CHUNK;
    rt_rng_words(g, w, k);
    for (size_t i = 0; i < k; i++)
      if (w[i] >= b->lim) *out++ = fastmod(w[i], b), n--;
  }
}

double rt_rng_uniform(rt_rng *g) {
  uint32_t a = rt_rng_u32(g) >> 5, b = rt_rng_u32(g) >> 6;
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

double rt_rng_normal(rt_rng *g) {
  if (g->has_normal) {
    g->has_normal = false;
    return g->normal;
  }
  double u1 = 1.0 - rt_rng_uniform(g); /* (0, 1]: log is finite */
  double u2 = rt_rng_uniform(g);
  double r = sqrt(-2.0 * log(u1)), t = 6.283185307179586 * u2;
  g->normal = r * sin(t);
  g->has_normal = true;
  return r * cos(t);
}
