/* mathfn.c — exp, log and friends as inline float32 IR: range reduction
 * and a polynomial, branch-free (selects), so that loops containing them
 * vectorise. llvm.exp.f32 would be scalarised into libm calls.
 *
 * The polynomials are the classic Cephes single-precision ones (minimax on
 * the reduced range); tests/test_codegen.c measures the max error of each
 * function against libm in double over dense ranges. No fast-math flags
 * here: the magic-number rounding and the Cody-Waite split rely on exact
 * IEEE evaluation order. */
#include "cgint.h"

#include <math.h>
#include <string.h>

/* Constants and types follow c->vw: scalars, or vectors of vw lanes. */
static LLVMValueRef K(cg_ctx *c, double v) { return cg_splat(c, cg_f32c(c, v)); }
static LLVMValueRef I(cg_ctx *c, int32_t v) { return cg_splat(c, cg_i32c(c, v)); }
static LLVMValueRef sel(cg_ctx *c, LLVMValueRef cond, LLVMValueRef a,
                        LLVMValueRef b) {
  return LLVMBuildSelect(c->B, cond, a, b, "");
}
static LLVMValueRef fcmp(cg_ctx *c, LLVMRealPredicate p, LLVMValueRef a,
                         LLVMValueRef b) {
  return LLVMBuildFCmp(c->B, p, a, b, "");
}
static LLVMValueRef as_int(cg_ctx *c, LLVMValueRef x) {
  return LLVMBuildBitCast(c->B, x, cg_vty(c, c->i32), "");
}
static LLVMValueRef as_float(cg_ctx *c, LLVMValueRef x) {
  return LLVMBuildBitCast(c->B, x, cg_vty(c, c->f32), "");
}
static LLVMValueRef add(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return cg_fadd(c, a, b, 0);
}
static LLVMValueRef mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b) {
  return cg_fmul(c, a, b, 0);
}
static LLVMValueRef horner(cg_ctx *c, LLVMValueRef x, const double *k, int n) {
  LLVMValueRef p = K(c, k[0]);
  for (int i = 1; i < n; i++) p = cg_fmuladd(c, p, x, K(c, k[i]));
  return p;
}
static LLVMValueRef fabs_(cg_ctx *c, LLVMValueRef x) {
  return cg_intrin(c, "llvm.fabs", LLVMTypeOf(x), &x, 1);
}

/* exp(x) = 2^k exp(r), k = round(x/ln2), r = x - k ln2 (Cody-Waite: ln2 =
 * C1 + C2 with C1 exact in 9 bits, so k*C1 is exact). k comes from the
 * 1.5*2^23 magic addition (no fptosi: it would be poison for NaN). 2^k is
 * built as two exponent fields so that k in [-150, 128] needs no special
 * case: overflow gives inf, underflow denormals then 0. */
LLVMValueRef cg_exp(cg_ctx *c, LLVMValueRef x) {
  static const double P[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  const double magic = 12582912.0; /* 1.5 * 2^23 */
  x = sel(c, fcmp(c, LLVMRealOLT, x, K(c, -104.0)), K(c, -104.0), x);
  x = sel(c, fcmp(c, LLVMRealOGT, x, K(c, 88.8)), K(c, 88.8), x); /* NaN stays */
  LLVMValueRef t = add(c, mul(c, x, K(c, 1.44269504088896341)), K(c, magic));
  LLVMValueRef kf = cg_fsub(c, t, K(c, magic), 0);
  LLVMValueRef k = LLVMBuildSub(c->B, as_int(c, t), I(c, 0x4B400000), "");
  LLVMValueRef r = cg_fmuladd(c, kf, K(c, -0.693359375), x);
  r = cg_fmuladd(c, kf, K(c, 2.12194440e-4), r);
  LLVMValueRef p = horner(c, r, P, 6);
  LLVMValueRef y = add(c, cg_fmuladd(c, p, mul(c, r, r), r), K(c, 1.0));
  LLVMValueRef k1 = LLVMBuildAShr(c->B, k, I(c, 1), "");
  LLVMValueRef k2 = LLVMBuildSub(c->B, k, k1, "");
  LLVMValueRef s1 = as_float(c, LLVMBuildShl(c->B, LLVMBuildAdd(c->B, k1, I(c, 127), ""), I(c, 23), ""));
  LLVMValueRef s2 = as_float(c, LLVMBuildShl(c->B, LLVMBuildAdd(c->B, k2, I(c, 127), ""), I(c, 23), ""));
  return mul(c, mul(c, y, s1), s2);
}

/* The kernel's usual exp when denormals are flushed (c->ftz), leaner
 * than cg_exp: one exponent field (2^k built as (k+127) << 23 from the
 * magic-rounded t's low bits, no int conversion) and a degree-6
 * polynomial fitted at Chebyshev nodes on [-ln2/2, ln2/2] (1.1 ulp).
 * For x <= 0 only: x is clamped below at -88, where k = -127 makes the
 * scale +0 so exp(-inf) is exactly 0 (results under FLT_MIN are flushed
 * anyway). NaN stays NaN. */
static LLVMValueRef exp_ftz(cg_ctx *c, LLVMValueRef x) {
  static const double P[] = {1.394116087e-03, 8.375167847e-03, 4.166635126e-02,
                             1.666641533e-01, 5.0e-01, 1.0, 1.0};
  const double magic = 12582912.0; /* 1.5 * 2^23 */
  x = sel(c, fcmp(c, LLVMRealOLT, x, K(c, -88.0)), K(c, -88.0), x);
  LLVMValueRef t = cg_fmuladd(c, x, K(c, 1.44269504088896341), K(c, magic));
  LLVMValueRef kf = cg_fsub(c, t, K(c, magic), 0);
  LLVMValueRef r = cg_fmuladd(c, kf, K(c, -0.693359375), x);
  r = cg_fmuladd(c, kf, K(c, 2.12194440e-4), r);
  LLVMValueRef y = horner(c, r, P, 7);
  /* t's bits are 0x4B400000 + k: shifted by 23 only k << 23 is left */
  LLVMValueRef sc = LLVMBuildAdd(c->B, LLVMBuildShl(c->B, as_int(c, t), I(c, 23), ""),
                                 I(c, 0x3F800000), "");
  return mul(c, y, as_float(c, sc));
}

LLVMValueRef cg_exp_nonpos(cg_ctx *c, LLVMValueRef x) {
  return c->ftz ? exp_ftz(c, x) : cg_exp(c, x);
}

/* The x86 intrinsic `name` (not overloaded, on vectors of w lanes) over
 * c->vw lanes, a multiple of w: args[i] is split into parts of w lanes
 * where split[i], else passed whole to every part; the results joined. */
static LLVMValueRef by_parts(cg_ctx *c, const char *name, int w, LLVMValueRef *args,
                             const bool *split, int n_args) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->M, id, NULL, 0);
  LLVMTypeRef fty = LLVMIntrinsicGetType(c->C, id, NULL, 0);
  int n = c->vw / w, m[32];
  for (int i = 0; i < 32; i++) m[i] = i;
  LLVMValueRef part[4] = {0}, a[5];
  for (int h = 0; h < n; h++) {
    for (int i = 0; i < n_args; i++) a[i] = split[i] && n > 1 ? cg_lanes(c, args[i], w, h) : args[i];
    part[h] = LLVMBuildCall2(c->B, fty, fn, a, (unsigned)n_args, "");
  }
  for (; n > 1; n /= 2) /* concatenate pairs: 8+8, then 16+16 */
    for (int h = 0; h < n / 2; h++)
      part[h] = cg_shuffle(c, part[2 * h], part[2 * h + 1], m, 2 * c->vw / n);
  return part[0];
}

/* Whether the AVX-512 forms apply: 16 or 32 lanes on an AVX-512 host. */
static bool zmm(const cg_ctx *c) {
  return c->isa >= CG_ISA_AVX512 && (c->vw == 16 || c->vw == 32);
}

/* 2^(j/8) for j = the low 3 bits of each lane of bits: lane by lane
 * from an 8-entry constant; with `less_j`, the entries' bit patterns
 * less j << 20 (see cg_exp2_decay). On an AVX2 host, vpermps per 8 lanes
 * (llvm.x86.avx2.permps), which reads only the low 3 bits of each index;
 * elsewhere a build_vector of variable extracts from one source, which
 * the x86 backend also turns into vpermps but after masking the index
 * with 7 (the IR's extracts need it): one operation more per 8 lanes of
 * the decay's ~14, the scan 3-5% slower (in-process A/B). The same values
 * either way. */
static LLVMValueRef pow2_eighths(cg_ctx *c, LLVMValueRef bits, bool less_j) {
  LLVMValueRef el[8];
  for (int j = 0; j < 8; j++) {
    float f = (float)exp2(j / 8.0);
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u -= less_j ? (uint32_t)j << 20 : 0; /* stays a normal number */
    memcpy(&f, &u, sizeof f);
    el[j] = cg_f32c(c, f);
  }
  LLVMValueRef table = LLVMConstVector(el, 8);
  if (c->isa >= CG_ISA_AVX2 && c->vw >= 8 && c->vw <= 32 && c->vw % 8 == 0) {
    LLVMValueRef args[2] = {table, bits};
    bool split[2] = {false, true};
    return by_parts(c, "llvm.x86.avx2.permps", 8, args, split, 2);
  }
  LLVMValueRef j = LLVMBuildAnd(c->B, bits, I(c, 7), "");
  if (c->vw <= 1) return LLVMBuildExtractElement(c->B, table, j, "");
  LLVMValueRef v = LLVMGetPoison(cg_vty(c, c->f32));
  for (int i = 0; i < c->vw; i++) {
    LLVMValueRef ji = LLVMBuildExtractElement(c->B, j, cg_i32c(c, i), "");
    v = LLVMBuildInsertElement(c->B, v, LLVMBuildExtractElement(c->B, table, ji, ""),
                               cg_i32c(c, i), "");
  }
  return v;
}

/* 2^(j/32) for j = the low 5 bits of each lane of bits (AVX-512, 16 or
 * 32 lanes): one vpermi2ps per 16 lanes from a 32-entry table held in
 * two registers (llvm.x86.avx512.vpermi2var.ps.512 reads 5 bits of each
 * index). */
static LLVMValueRef pow2_32nds(cg_ctx *c, LLVMValueRef bits) {
  LLVMValueRef lo[16], hi[16];
  for (int j = 0; j < 16; j++) {
    lo[j] = cg_f32c(c, (float)exp2(j / 32.0));
    hi[j] = cg_f32c(c, (float)exp2((j + 16) / 32.0));
  }
  LLVMValueRef args[3] = {LLVMConstVector(lo, 16), bits, LLVMConstVector(hi, 16)};
  bool split[3] = {false, true, false};
  return by_parts(c, "llvm.x86.avx512.vpermi2var.ps.512", 16, args, split, 3);
}

/* The AVX-512 decay (16 or 32 lanes; x <= 127.49 or NaN): x = k + j/32
 * + r, with k + j/32 = x rounded to 32nds by the 1.5*2^18 magic addition
 * and r the rest, exactly, by vreduceps (round to nearest even, as the
 * addition); 2^r = 1 + q, q = r (P1 + P2 r) on [-1/64, 1/64] (minimax,
 * 5.3e-8 relative); 2^(j/32) from a table (pow2_32nds); T (1 + q) as
 * one fma; vscalefps scales it by 2^floor(k + j/32) = 2^k. Under 2 ulp
 * (1.7 measured, tests/test_codegen.c scan_decay). vreduceps gives r = 0
 * for +-inf, where x - (t - magic) is NaN, so T (1 + q) is finite for
 * every x but NaN and the scaling takes every x below the range to +0,
 * -inf included, without a clamp. (This host's vscalefps also turns NaN
 * 2^-inf into 0, so the test cannot see the difference here.) Per 16
 * lanes that is 5 operations on the FMA pipes (with the caller's product
 * by A) where the eighths' form, with its degree-3 polynomial and clamp,
 * took 7: forward scans 6-15% faster in an in-process A/B (mamba d 8 and
 * d 64, hybrid). NaN stays NaN. Needs AVX512DQ for vreduceps (jit.c
 * checks for it). */
static LLVMValueRef exp2_decay_zmm(cg_ctx *c, LLVMValueRef x) {
  static const double P[] = {0.2402265069591007, 0.6931573300599453};
  const double magic = 393216.0; /* 1.5 * 2^18: t's last bit is 1/32 */
  LLVMValueRef t = add(c, x, K(c, magic)), x32 = cg_fsub(c, t, K(c, magic), 0);
  LLVMValueRef all = LLVMConstInt(LLVMInt16TypeInContext(c->C), 0xFFFF, 0);
  LLVMValueRef cur = cg_i32c(c, 4); /* the current rounding mode (no {sae}) */
  LLVMValueRef ra[5] = {x, cg_i32c(c, 5 << 4 | 8 /* 5 fraction bits, to nearest, quiet */),
                        x, all, cur};
  bool rsplit[5] = {true, false, true, false, false};
  LLVMValueRef r = by_parts(c, "llvm.x86.avx512.mask.reduce.ps.512", 16, ra, rsplit, 5);
  LLVMValueRef q = mul(c, horner(c, r, P, 2), r);
  LLVMValueRef T = pow2_32nds(c, as_int(c, t));
  LLVMValueRef y = cg_fmuladd(c, T, q, T);
  LLVMValueRef sa[5] = {y, x32, y, all, cur};
  bool ssplit[5] = {true, true, true, false, false};
  return by_parts(c, "llvm.x86.avx512.mask.scalef.ps.512", 16, sa, ssplit, 5);
}

/* 2^x for the scan's decays, whose exponent comes as (delta log2 e) A:
 * the base-2 form needs no Cody-Waite reduction. x = k + j/8 + r with
 * k + j/8 = x rounded to eighths (by the 1.5*2^20 magic addition) and r
 * in [-1/16, 1/16] exactly; 2^x = 2^k 2^(j/8) (1 + q), q = 2^r - 1 by a
 * degree-3 polynomial fitted at Chebyshev nodes (2.5e-8 relative), 2^(j/8)
 * from a table (pow2_eighths), T (1 + q) as one fma: ~1 ulp (the table's
 * rounding and the fma's). The loop that computes decays is bound by the
 * FMA pipes: this takes 4 operations there per 8 lanes where a degree-6
 * polynomial over [-1/2, 1/2] took 6 and its 2^k multiply a 7th (the
 * scan alone 4-9% faster at d 8 and d 64, both forms compiled in one
 * process and timed alternately; as accurate, tests/test_codegen.c).
 * 2^k scales T before the multiply: t's bits shifted by 20 are
 * (k << 23) + (j << 20), and the table holds 2^(j/8) less j << 20, so
 * one integer add gives T 2^k (the exponent field k + 127 stays in
 * 0..254 for x clamped to [-127, 127.49]; no upper clamp where x <= 0 is
 * known: at d 8 the forward scan ~9% faster, in-process A/B), and the
 * fma T 2^k (1 + q) is T (1 + q) scaled exactly wherever the result is a
 * normal number. Scaling after the fma took a mask more (the decay's
 * operations per 8 lanes 13 -> 12 on AVX2: forward scans 4-10% faster,
 * the same outputs, in-process A/B). Below 2^-126 the result is +0 as the true value
 * flushes (FTZ; or T 2^k itself is +0 or a denormal that DAZ reads as
 * zero at k = -127, x = -127 giving exactly +0). NaN stays NaN (q is
 * NaN). On an AVX-512 host (16 or 32 lanes): exp2_decay_zmm. Against
 * exp(delta A) the rounding of delta log2 e adds |x| 2^-24 relative
 * (tests/test_codegen.c measures the whole). Without flushing: cg_exp(x ln 2). */
LLVMValueRef cg_exp2_decay(cg_ctx *c, LLVMValueRef x, bool nonpos) {
  static const double Q[] = {5.5496221798e-02, 2.4025762984e-01, 6.9314721426e-01};
  const double magic = 1572864.0; /* 1.5 * 2^20: t's last bit is 1/8 */
  if (!c->ftz) return cg_exp(c, mul(c, x, K(c, 0.693147180559945309)));
  if (!nonpos) x = sel(c, fcmp(c, LLVMRealOGT, x, K(c, 127.49)), K(c, 127.49), x);
  if (zmm(c)) return exp2_decay_zmm(c, x);
  x = sel(c, fcmp(c, LLVMRealOLT, x, K(c, -127.0)), K(c, -127.0), x);
  LLVMValueRef t = add(c, x, K(c, magic)), x8 = cg_fsub(c, t, K(c, magic), 0);
  LLVMValueRef r = cg_fsub(c, x, x8, 0);
  LLVMValueRef q = mul(c, horner(c, r, Q, 3), r);
  /* t's bits are 0x49C00000 + 8k + j, so shifted by 20 they are
   * (k << 23) + (j << 20); the table entry less j << 20, plus those,
   * is 2^(j/8) with k added to its exponent field: T 2^k */
  LLVMValueRef Tk = as_float(c, LLVMBuildAdd(c->B, as_int(c, pow2_eighths(c, as_int(c, t), true)),
                                             LLVMBuildShl(c->B, as_int(c, t), I(c, 20), ""), ""));
  return cg_fmuladd(c, Tk, q, Tk);
}

/* log(x) = e ln2 + log(m), m in [sqrt(1/2), sqrt(2)), from the exponent
 * and mantissa bits (denormals pre-scaled by 2^23); log(1+z) by a degree-9
 * polynomial. x < 0 or NaN -> NaN, 0 -> -inf, +inf -> +inf. */
LLVMValueRef cg_log(cg_ctx *c, LLVMValueRef x) {
  static const double P[] = {7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                             -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                             2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1};
  LLVMValueRef tiny = fcmp(c, LLVMRealOLT, x, K(c, 1.17549435e-38));
  LLVMValueRef xs = sel(c, tiny, mul(c, x, K(c, 8388608.0)), x);
  LLVMValueRef bits = as_int(c, xs);
  LLVMValueRef e = LLVMBuildSub(c->B, LLVMBuildLShr(c->B, bits, I(c, 23), ""),
                                I(c, 126), "");
  e = LLVMBuildSub(c->B, e, sel(c, tiny, I(c, 23), I(c, 0)), "");
  LLVMValueRef m = as_float(
      c, LLVMBuildOr(c->B, LLVMBuildAnd(c->B, bits, I(c, 0x007fffff), ""),
                     I(c, 0x3f000000), ""));
  LLVMValueRef low = fcmp(c, LLVMRealOLT, m, K(c, 0.707106781186547524));
  e = LLVMBuildSub(c->B, e, sel(c, low, I(c, 1), I(c, 0)), "");
  LLVMValueRef z = cg_fsub(c, sel(c, low, add(c, m, m), m), K(c, 1.0), 0);
  LLVMValueRef z2 = mul(c, z, z);
  LLVMValueRef y = mul(c, mul(c, horner(c, z, P, 9), z), z2);
  LLVMValueRef fe = LLVMBuildSIToFP(c->B, e, cg_vty(c, c->f32), "");
  y = cg_fmuladd(c, fe, K(c, -2.12194440e-4), y);
  y = cg_fmuladd(c, z2, K(c, -0.5), y);
  LLVMValueRef r = cg_fmuladd(c, fe, K(c, 0.693359375), add(c, z, y));
  r = sel(c, fcmp(c, LLVMRealOEQ, x, K(c, INFINITY)), x, r);
  r = sel(c, fcmp(c, LLVMRealOEQ, x, K(c, 0.0)), K(c, -INFINITY), r);
  return sel(c, fcmp(c, LLVMRealULT, x, K(c, 0.0)), K(c, NAN), r);
}

/* log(1+y) for y >= 0 without losing y when 1+y rounds: with u = 1+y,
 * log(u) * y/(u-1) cancels u's rounding error (Goldberg's trick). */
LLVMValueRef cg_log1p_pos(cg_ctx *c, LLVMValueRef y) {
  LLVMValueRef u = add(c, y, K(c, 1.0));
  LLVMValueRef um1 = cg_fsub(c, u, K(c, 1.0), 0);
  LLVMValueRef r = mul(c, cg_log(c, u), cg_fdiv(c, y, um1));
  LLVMValueRef same = fcmp(c, LLVMRealOEQ, u, K(c, 1.0));
  r = sel(c, same, y, r);
  /* u = inf: log(u) * (inf/inf) would be NaN */
  return sel(c, fcmp(c, LLVMRealOEQ, u, K(c, INFINITY)), u, r);
}

/* With e = exp(-|x|) <= 1 (never overflows): sigmoid = 1/(1+e) for
 * x >= 0, e/(1+e) below, accurate down to the denormal tail. */
static LLVMValueRef sig_parts(cg_ctx *c, LLVMValueRef x, LLVMValueRef *den,
                              LLVMValueRef *neg) {
  LLVMValueRef e = cg_exp_nonpos(c, LLVMBuildFNeg(c->B, fabs_(c, x), ""));
  *den = add(c, e, K(c, 1.0));
  *neg = fcmp(c, LLVMRealOLT, x, K(c, 0.0));
  return e;
}

LLVMValueRef cg_sigmoid(cg_ctx *c, LLVMValueRef x) {
  LLVMValueRef den, neg, e = sig_parts(c, x, &den, &neg);
  return cg_fdiv(c, sel(c, neg, e, K(c, 1.0)), den);
}

LLVMValueRef cg_silu(cg_ctx *c, LLVMValueRef x) {
  LLVMValueRef den, neg, e = sig_parts(c, x, &den, &neg);
  return cg_fdiv(c, sel(c, neg, mul(c, x, e), x), den);
}

/* max(x,0) + log1p(e), e = exp(-|x|): never overflows, exact tail for
 * x << 0. log1p(e) = 2 atanh(s) with s = e/(2+e) in [0, 1/3]:
 * 2s (1 + z q(z)), z = s^2, q fitted at Chebyshev nodes on [0, 1/9]
 * (2.3 ulp overall): a third of log1p's cost. */
static LLVMValueRef softplus_of(cg_ctx *c, LLVMValueRef x, LLVMValueRef e) {
  static const double Q[] = {1.342601329e-01, 1.411827356e-01, 2.000378221e-01,
                             3.333331943e-01};
  LLVMValueRef sv = cg_fdiv(c, e, add(c, e, K(c, 2.0)));
  LLVMValueRef z = mul(c, sv, sv), t = add(c, sv, sv);
  LLVMValueRef l = cg_fmuladd(c, t, mul(c, z, horner(c, z, Q, 4)), t);
  LLVMValueRef pos = sel(c, fcmp(c, LLVMRealOGT, x, K(c, 0.0)), x, K(c, 0.0));
  return add(c, pos, l); /* NaN: e and so l are NaN */
}

LLVMValueRef cg_softplus(cg_ctx *c, LLVMValueRef x) {
  return softplus_of(c, x, cg_exp_nonpos(c, LLVMBuildFNeg(c->B, fabs_(c, x), "")));
}

LLVMValueRef cg_softplus_sigmoid(cg_ctx *c, LLVMValueRef x, LLVMValueRef *sig) {
  LLVMValueRef den, neg, e = sig_parts(c, x, &den, &neg);
  *sig = cg_fdiv(c, sel(c, neg, e, K(c, 1.0)), den);
  return softplus_of(c, x, e);
}

/* |x| < 0.625: odd polynomial (Cephes tanhf); else 1 - 2/(exp(2|x|)+1)
 * with x's sign. */
LLVMValueRef cg_tanh(cg_ctx *c, LLVMValueRef x) {
  static const double P[] = {-5.70498872745E-3, 2.06390887954E-2,
                             -5.37397155531E-2, 1.33314422036E-1,
                             -3.33332819422E-1};
  LLVMValueRef a = fabs_(c, x);
  LLVMValueRef z = mul(c, x, x);
  LLVMValueRef small = cg_fmuladd(c, mul(c, horner(c, z, P, 5), z), x, x);
  LLVMValueRef e = cg_exp(c, add(c, a, a));
  LLVMValueRef big = cg_fsub(c, K(c, 1.0),
                             cg_fdiv(c, K(c, 2.0), add(c, e, K(c, 1.0))), 0);
  LLVMValueRef args[2] = {big, x};
  big = cg_intrin(c, "llvm.copysign", LLVMTypeOf(x), args, 2);
  return sel(c, fcmp(c, LLVMRealOLT, a, K(c, 0.625)), small, big);
}
