/* test_rng.c — numpy-compatible MT19937 against published values and the
 * golden V files; Philox against Random123's known answers; the counter
 * generator's independence from call order and its uniformity. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* ---- helpers ---- */

/* Chi-square critical value for `df` degrees of freedom at about z standard
 * deviations (Wilson-Hilferty); z = 7 is a p-value near 1e-12, so a correct
 * generator with a fixed seed cannot plausibly fail. */
static double chi2_crit(int df, double z) {
  double k = df, h = 2.0 / (9.0 * k);
  return k * pow(1.0 - h + z * sqrt(h), 3);
}

static double chi2(const long *count, int cells, long total) {
  double e = (double)total / cells, s = 0;
  for (int i = 0; i < cells; i++) s += (count[i] - e) * (count[i] - e) / e;
  return s;
}

/* The golden V file: block 0 is raw randn, block 1 the normalised rows. */
static int read_golden_V(const char *name, double *raw, double *norm, int n) {
  const char *root = getenv("RECALL_ROOT");
  if (!root) fail_msg("RECALL_ROOT is not set (run the tests through ctest)");
  char path[1024];
  snprintf(path, sizeof path, "%s/../shared/golden/%s", root, name);
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("golden file %s is missing", path);
  char line[65536];
  int block = 0, k[2] = {0, 0};
  bool in_block = false;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    char *p = line, *e;
    bool any = false;
    for (double x = strtod(p, &e); e != p; x = strtod(p, &e)) {
      if (k[block] >= n) fail_msg("%s: more than %d numbers in block %d", path, n, block);
      (block ? norm : raw)[k[block]++] = x;
      p = e;
      any = true;
    }
    if (any) in_block = true;
    else if (in_block) block = 1, in_block = false;
  }
  fclose(f);
  assert_int_equal(k[0], n);
  assert_int_equal(k[1], n);
  return 0;
}

/* ---- MT19937 ---- */

static void mt_reference_outputs(void **s) {
  (void)s;
  rt_mt19937 g;
  rt_mt_seed(&g, 5489); /* the reference default seed */
  assert_int_equal(rt_mt_next(&g), 3499211612u);
  for (int i = 2; i < 10000; i++) rt_mt_next(&g);
  /* C++11 requires the 10000th output of default-seeded mt19937 to be this */
  assert_int_equal(rt_mt_next(&g), 4123659995u);
}

static void numpy_random_sample(void **s) {
  (void)s;
  rt_mt19937 g;
  rt_mt_seed(&g, 0); /* np.random.seed(0); np.random.rand(3) */
  assert_true(rt_mt_double(&g) == 0.5488135039273248);
  assert_true(rt_mt_double(&g) == 0.7151893663724195);
  assert_true(rt_mt_double(&g) == 0.6027633760716439);
}

static void check_V(int K, int d, const char *file) {
  int n = K * d;
  double *raw = malloc(sizeof *raw * n), *norm = malloc(sizeof *norm * n);
  double *mine = malloc(sizeof *mine * n);
  float *v32 = malloc(sizeof *v32 * n);
  read_golden_V(file, raw, norm, n);
  rt_numpy_randn(0, (size_t)n, mine);
  for (int i = 0; i < n; i++)
    if (mine[i] != raw[i])
      fail_msg("%s: randn element %d: %.17g, numpy %.17g", file, i, mine[i], raw[i]);
  rt_embedding_V64(K, d, mine);
  rt_embedding_V(K, d, v32);
  /* numpy's pairwise summation is reproduced, so the rows match exactly
   * (the brief's bound was 1e-15 relative) */
  for (int i = 0; i < n; i++) {
    if (mine[i] != norm[i])
      fail_msg("%s: V element %d: %.17g, numpy %.17g", file, i, mine[i], norm[i]);
    assert_true(v32[i] == (float)norm[i]);
  }
  /* rows have unit length */
  for (int k = 0; k < K; k++) {
    double ss = 0;
    for (int j = 0; j < d; j++) ss += mine[k * d + j] * mine[k * d + j];
    assert_true(fabs(ss - 1.0) < 1e-14);
  }
  free(raw), free(norm), free(mine), free(v32);
}

static void golden_V_K16_d8(void **s) {
  (void)s;
  check_V(16, 8, "V_K16_d8.txt");
}

static void golden_V_K16_d64(void **s) {
  (void)s;
  check_V(16, 64, "V_K16_d64.txt");
}

/* Polar method written out naively: the first gauss() of a pair is f*x2,
 * the second (cached) f*x1, and a rejected pair consumes its doubles. */
static void gauss_pairs(void **s) {
  (void)s;
  for (uint32_t seed = 0; seed < 20; seed++) {
    rt_mt19937 g, h;
    rt_mt_seed(&g, seed);
    rt_mt_seed(&h, seed);
    for (int pair = 0; pair < 50; pair++) {
      double x1, x2, r2;
      do {
        x1 = 2.0 * rt_mt_double(&h) - 1.0;
        x2 = 2.0 * rt_mt_double(&h) - 1.0;
        r2 = x1 * x1 + x2 * x2;
      } while (r2 >= 1.0 || r2 == 0.0);
      double f = sqrt(-2.0 * log(r2) / r2);
      assert_true(rt_mt_gauss(&g) == f * x2);
      assert_true(rt_mt_gauss(&g) == f * x1);
    }
  }
}

/* ---- Philox ---- */

static void philox_known_answers(void **s) {
  (void)s;
  static const uint32_t kat[3][10] = { /* ctr[4], key[2], expected[4] */
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
       0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
       0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
  for (int i = 0; i < 3; i++) {
    uint32_t out[4];
    rt_philox4x32_10(kat[i], kat[i] + 4, out);
    for (int j = 0; j < 4; j++) assert_int_equal(out[j], kat[i][6 + j]);
  }
}

/* The stream's words are the Philox blocks of (block, index, stream). */
static void rng_layout(void **s) {
  (void)s;
  rt_rng g;
  rt_rng_init(&g, 0x1122334455667788ull, 0xaabbccdd00000007ull, 42);
  for (uint32_t blk = 0; blk < 3 * RT_RNG_BLOCKS + 2; blk++) {
    uint32_t ctr[4] = {blk, 42, 7, 0xaabbccdd}, key[2] = {0x55667788, 0x11223344}, out[4];
    rt_philox4x32_10(ctr, key, out);
    for (int j = 0; j < 4; j++) assert_int_equal(rt_rng_u32(&g), out[j]);
  }
}

/* Draw a mixed sequence (ints, doubles, normals) for one key. */
static void draw(uint64_t seed, uint64_t stream, uint32_t index, double *out, int n) {
  rt_rng g;
  rt_rng_init(&g, seed, stream, index);
  for (int i = 0; i < n; i++)
    out[i] = i % 3 == 0 ? rt_rng_below(&g, 1000) : i % 3 == 1 ? rt_rng_uniform(&g) : rt_rng_normal(&g);
}

static void rng_independent_of_order(void **s) {
  (void)s;
  enum { E = 16, N = 50 };
  static double fwd[E][N], rev[E][N], inter[E][N];
  for (int e = 0; e < E; e++) draw(9, 3, (uint32_t)e, fwd[e], N);
  for (int e = E - 1; e >= 0; e--) draw(9, 3, (uint32_t)e, rev[e], N);
  /* interleaved: every generator alive at once, advanced round-robin */
  rt_rng g[E];
  for (int e = 0; e < E; e++) rt_rng_init(&g[e], 9, 3, (uint32_t)e);
  for (int i = 0; i < N; i++)
    for (int e = 0; e < E; e++)
      inter[e][i] = i % 3 == 0 ? rt_rng_below(&g[e], 1000) : i % 3 == 1 ? rt_rng_uniform(&g[e]) : rt_rng_normal(&g[e]);
  assert_memory_equal(fwd, rev, sizeof fwd);
  assert_memory_equal(fwd, inter, sizeof fwd);
  /* every key component changes the stream */
  double a[N], b[N], c[N], d[N];
  draw(9, 3, 0, a, N);
  draw(10, 3, 0, b, N);
  draw(9, 4, 0, c, N);
  draw(9 + (1ull << 32), 3, 0, d, N);
  assert_memory_not_equal(a, b, sizeof a);
  assert_memory_not_equal(a, c, sizeof a);
  assert_memory_not_equal(a, d, sizeof a);
  assert_memory_not_equal(fwd[0], fwd[1], sizeof a);
}

static void rng_below_chi_square(void **s) {
  (void)s;
  static const uint32_t ns[] = {2, 3, 7, 10, 100, 1000};
  for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
    uint32_t n = ns[t];
    long *cnt = calloc(n, sizeof *cnt), total = 200 * (long)n;
    rt_rng g;
    rt_rng_init(&g, 1234, t, 0);
    for (long i = 0; i < total; i++) {
      uint32_t r = rt_rng_below(&g, n);
      assert_true(r < n);
      cnt[r]++;
    }
    double x = chi2(cnt, (int)n, total);
    if (x > chi2_crit((int)n - 1, 7)) fail_msg("n = %u: chi-square %g", n, x);
    free(cnt);
  }
  assert_int_equal(rt_rng_below(&(rt_rng){0}, 1), 0);
}

/* The rejection with divisions, word by word: what the data's draws
 * have always been. */
static uint32_t below_by_division(rt_rng *g, uint32_t n) {
  if (n <= 1) return 0;
  uint32_t lim = (uint32_t)(-n) % n;
  for (;;) {
    uint32_t r = rt_rng_u32(g);
    if (r >= lim) return r % n;
  }
}

/* rt_rng_below_by draws what the rejection with divisions does, for
 * bounds small and large (its r mod n by multiplications is exact for
 * every 32-bit r); rt_rng_below too. */
static void rng_below_by_same_draws(void **s) {
  (void)s;
  static const uint32_t ns[] = {1, 2, 3, 7, 15, 16, 17, 1000, 65535, 65537,
                                0x7FFFFFFFu, 0x80000001u, 0xFFFFFFFEu, 0xFFFFFFFFu};
  for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
    rt_bound b = rt_bound_make(ns[t]);
    rt_rng g1, g2, g3;
    rt_rng_init(&g1, 99, t, 3);
    rt_rng_init(&g2, 99, t, 3);
    rt_rng_init(&g3, 99, t, 3);
    for (int i = 0; i < 100000; i++) {
      uint32_t x = below_by_division(&g1, ns[t]), y = rt_rng_below_by(&g2, &b);
      if (rt_rng_below(&g3, ns[t]) != x) fail_msg("n = %u, draw %d: rt_rng_below", ns[t], i);
      if (x != y) fail_msg("n = %u, draw %d: %u vs %u", ns[t], i, x, y);
    }
  }
}

/* rt_rng_words and rt_rng_below_n give what as many rt_rng_u32 and
 * rt_rng_below_by calls give, and leave the stream where those leave it:
 * from any word of a block, over counts short and long (several blocks
 * at once), across the block number's wrap, for bounds that never and
 * that often (n = 2^31 + 1: half the words) reject. */
static void rng_bulk_same_draws(void **s) {
  (void)s;
  static const uint32_t ns[] = {1, 2, 15, 1000, 0x80000001u, 0xFFFFFFFFu};
  static const size_t counts[] = {0, 1, 3, 31, 32, 33, 100, 200, 1000};
  for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++)
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
      for (int skip = 0; skip < 5; skip++) {
        size_t n = counts[c];
        rt_bound b = rt_bound_make(ns[t]);
        rt_rng g1, g2;
        rt_rng_init(&g1, 7, t, (uint32_t)c);
        if (c % 2) g1.ctr[0] = 0xFFFFFFF0u; /* the block number wraps inside */
        g2 = g1;
        for (int k = 0; k < skip; k++) assert_int_equal(rt_rng_u32(&g1), rt_rng_u32(&g2));
        uint32_t *a = malloc(sizeof *a * (n + 1)), *w = malloc(sizeof *w * (n + 1));
        rt_rng h1 = g1, h2 = g2;
        rt_rng_words(&g1, a, n);
        for (size_t i = 0; i < n; i++)
          if (a[i] != rt_rng_u32(&g2)) fail_msg("words: count %zu, skip %d, word %zu", n, skip, i);
        assert_int_equal(rt_rng_u32(&g1), rt_rng_u32(&g2)); /* where they stopped */
        rt_rng_below_n(&h1, &b, w, n);
        for (size_t i = 0; i < n; i++)
          if (w[i] != rt_rng_below_by(&h2, &b))
            fail_msg("below %u: count %zu, skip %d, draw %zu", ns[t], n, skip, i);
        assert_int_equal(rt_rng_u32(&h1), rt_rng_u32(&h2));
        free(a), free(w);
      }
}

/* n = 2^31 + 1 is the worst case for modulo bias: plain r % n would put
 * 2/3 of the draws in the lower half. */
static void rng_below_no_modulo_bias(void **s) {
  (void)s;
  rt_rng g;
  rt_rng_init(&g, 5, 0, 0);
  uint32_t n = 0x80000001u;
  long low = 0, total = 200000;
  for (long i = 0; i < total; i++) low += rt_rng_below(&g, n) < n / 2;
  assert_true(fabs((double)low / total - 0.5) < 0.01);
}

static void rng_uniform_and_normal(void **s) {
  (void)s;
  rt_rng g;
  rt_rng_init(&g, 77, 1, 2);
  enum { BINS = 64, N = 640000 };
  long cnt[BINS] = {0};
  for (int i = 0; i < N; i++) {
    double u = rt_rng_uniform(&g);
    assert_true(u >= 0.0 && u < 1.0);
    cnt[(int)(u * BINS)]++;
  }
  double x = chi2(cnt, BINS, N);
  if (x > chi2_crit(BINS - 1, 7)) fail_msg("uniform: chi-square %g", x);
  double m = 0, v = 0;
  for (int i = 0; i < N; i++) {
    double z = rt_rng_normal(&g);
    m += z, v += z * z;
  }
  m /= N, v = v / N - m * m;
  /* standard errors: 1/sqrt(N) = 0.00125 for the mean, sqrt(2/N) for var */
  assert_true(fabs(m) < 7 * 0.00125);
  assert_true(fabs(v - 1.0) < 7 * 0.00177);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(mt_reference_outputs),
      cmocka_unit_test(numpy_random_sample),
      cmocka_unit_test(golden_V_K16_d8),
      cmocka_unit_test(golden_V_K16_d64),
      cmocka_unit_test(gauss_pairs),
      cmocka_unit_test(philox_known_answers),
      cmocka_unit_test(rng_layout),
      cmocka_unit_test(rng_independent_of_order),
      cmocka_unit_test(rng_below_chi_square),
      cmocka_unit_test(rng_below_no_modulo_bias),
      cmocka_unit_test(rng_below_by_same_draws),
      cmocka_unit_test(rng_bulk_same_draws),
      cmocka_unit_test(rng_uniform_and_normal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
