/* The elementwise kernels of the compiled step: see _kernels.h for what each computes.
 *
 * One template (the second half of this file, read twice by the file including itself)
 * gives the float and the double variant. The loops are written so that the compiler
 * vectorises them without changing a result: the same operations in the same order
 * (column sums run across columns, each column still summed over rows in order; the
 * squared norm keeps its 8 running sums, one AVX-512 register of doubles), masks as
 * multiplies by 0/1, no fused multiply-add (setup.py builds with -ffp-contract=off;
 * -fno-trapping-math lets the clamps of hg_exp vectorise, and changes no value).
 *
 * The softmax's exp is hg_exp_f / hg_exp_d below: within about 1 ulp of the correctly
 * rounded value, vectorised, and the same bits on every target.
 * HG_NO_CLONES: one build for the compiler's default target (no runtime dispatch).
 */
#ifndef HG_T

#include "_kernels.h"

#include <math.h>
#include <string.h>

/* C99's restrict; MSVC spells it __restrict */
#if defined(_MSC_VER) && !defined(__clang__)
#define HG_RESTRICT __restrict
#else
#define HG_RESTRICT restrict
#endif

/* AVX-512, AVX2 and the baseline, chosen at load time by the CPU (an ifunc: x86-64
 * Linux with glibc, GCC or clang; musl has no ifunc); a plain build elsewhere. */
#if !defined(HG_NO_CLONES) && defined(__x86_64__) && defined(__linux__) && \
    defined(__GLIBC__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define HG_DISPATCH __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef HG_DISPATCH
#define HG_DISPATCH
#endif

/* exp in plain arithmetic that vectorises (no call, no table, no branch), one for each
 * dtype: x = k ln2 + r with |r| <= ln2/2 (k rounded by the 1.5 · 2^p shifter; ln2 in two
 * parts, so that k · ln2_hi is exact), e^r − 1 by its Taylor series (to r^13 in double,
 * truncation < 2^-57; to r^7 in float, < 2^-27), evaluated in Estrin's order (short
 * chains: 1.5× faster than Horner here), then 2^k as two normal factors (subnormal
 * results rounded once). x is clamped first, so that −inf gives 0 and +inf gives inf;
 * NaN passes the clamps and gives NaN. Bit patterns through memcpy (no aliasing).
 * Measured against exp in long double, 4 × 10^6 arguments: 0.97 ulp at most in double,
 * 1.01 in float; 2000 of them in 2.3 µs (double) and 0.8 µs (float) with AVX-512. The
 * whole softmax of 200 × 10 (Zen 4, AVX-512): 5.5 / 3.5 µs; with glibc's vector libmvec
 * 4.3 / 2.8 µs but 3.1 / 2.5 ulp and other bits on each target; with scalar libm 11 / 7. */
static inline uint64_t hg_bits_d(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline double hg_from_bits_d(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static inline uint32_t hg_bits_f(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float hg_from_bits_f(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static inline double hg_exp_d(double x)
{
    const double shifter = 6755399441055744.0; /* 1.5 · 2^52: (t + shifter) − shifter rounds t */
    const double inv_ln2 = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01; /* 32 significant bits */
    const double ln2_lo = 1.90821492927058770002e-10;
    x = x < -746.0 ? -746.0 : x;
    x = x > 710.0 ? 710.0 : x;
    double t = x * inv_ln2 + shifter;
    double k = t - shifter;
    double r = (x - k * ln2_hi) - k * ln2_lo;
    double r2 = r * r, r4 = r2 * r2;
    double a = 1.0 / 2 + r * (1.0 / 6);
    double b = 1.0 / 24 + r * (1.0 / 120);
    double c = 1.0 / 720 + r * (1.0 / 5040);
    double d = 1.0 / 40320 + r * (1.0 / 362880);
    double e = 1.0 / 3628800 + r * (1.0 / 39916800);
    double f = 1.0 / 479001600 + r * (1.0 / 6227020800.0);
    double P = (a + r2 * b) + r4 * ((c + r2 * d) + r4 * (e + r2 * f));
    double p = 1.0 + (r + r2 * P);
    double t1 = k * 0.5 + shifter; /* 2^k = 2^k1 · 2^k2 */
    double k1 = t1 - shifter;
    double t2 = (k - k1) + shifter;
    uint64_t zero = hg_bits_d(shifter);
    double s1 = hg_from_bits_d((hg_bits_d(t1) - zero + 1023u) << 52);
    double s2 = hg_from_bits_d((hg_bits_d(t2) - zero + 1023u) << 52);
    return (p * s1) * s2;
}

static inline float hg_exp_f(float x)
{
    const float shifter = 12582912.0f; /* 1.5 · 2^23 */
    const float inv_ln2 = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f; /* 16 significant bits */
    const float ln2_lo = 1.42860676533018704e-06f;
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    float t = x * inv_ln2 + shifter;
    float k = t - shifter;
    float r = (x - k * ln2_hi) - k * ln2_lo;
    float r2 = r * r;
    float a = 0.5f + r * (1.0f / 6);
    float b = 1.0f / 24 + r * (1.0f / 120);
    float c = 1.0f / 720 + r * (1.0f / 5040);
    float P = a + r2 * (b + r2 * c);
    float p = 1.0f + (r + r2 * P);
    float t1 = k * 0.5f + shifter;
    float k1 = t1 - shifter;
    float t2 = (k - k1) + shifter;
    uint32_t zero = hg_bits_f(shifter);
    float s1 = hg_from_bits_f((hg_bits_f(t1) - zero + 127u) << 23);
    float s2 = hg_from_bits_f((hg_bits_f(t2) - zero + 127u) << 23);
    return (p * s1) * s2;
}

#define HG_CAT2(a, b) a##b
#define HG_CAT(a, b) HG_CAT2(a, b)
#define HG_NAME(base) HG_CAT(base, HG_SUFFIX)

#define HG_T float
#define HG_SUFFIX _f
#define HG_EXP hg_exp_f
#define HG_LOG logf
#define HG_SQRT sqrtf
#include "_kernels.c"
#undef HG_T
#undef HG_SUFFIX
#undef HG_EXP
#undef HG_LOG
#undef HG_SQRT

#define HG_T double
#define HG_SUFFIX _d
#define HG_EXP hg_exp_d
#define HG_LOG log
#define HG_SQRT sqrt
#include "_kernels.c"

#else /* the template, for HG_T */

HG_DISPATCH void HG_NAME(hg_add_bias)(HG_T *HG_RESTRICT Z, const HG_T *HG_RESTRICT b,
                                      ptrdiff_t n, ptrdiff_t cols)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        HG_T *HG_RESTRICT row = Z + i * cols;
        for (ptrdiff_t j = 0; j < cols; j++)
            row[j] = row[j] + b[j];
    }
}

/* The masks as selects of 1 or 0: with -fno-trapping-math GCC vectorises them for every
 * target (measured fastest of the forms tried; with trapping math the ReLU's compiles
 * to a branch, 5–15× slower on random signs). */
HG_DISPATCH void HG_NAME(hg_add_bias_relu)(HG_T *HG_RESTRICT Z, const HG_T *HG_RESTRICT b,
                                           ptrdiff_t n, ptrdiff_t cols)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        HG_T *HG_RESTRICT row = Z + i * cols;
        for (ptrdiff_t j = 0; j < cols; j++) {
            HG_T z = row[j] + b[j];
            HG_T mask = z > 0 ? (HG_T)1 : (HG_T)0;
            row[j] = z * mask;
        }
    }
}

HG_DISPATCH void HG_NAME(hg_relu_grad)(HG_T *HG_RESTRICT dA, const HG_T *HG_RESTRICT A,
                                       ptrdiff_t n, ptrdiff_t cols, HG_T *HG_RESTRICT db)
{
    for (ptrdiff_t j = 0; j < cols; j++)
        db[j] = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        HG_T *HG_RESTRICT row = dA + i * cols;
        const HG_T *HG_RESTRICT a = A + i * cols;
        for (ptrdiff_t j = 0; j < cols; j++) {
            HG_T mask = a[j] > 0 ? (HG_T)1 : (HG_T)0;
            HG_T d = row[j] * mask;
            row[j] = d;
            db[j] = db[j] + d;
        }
    }
}

HG_DISPATCH void HG_NAME(hg_column_sums)(const HG_T *HG_RESTRICT dZ, ptrdiff_t n,
                                         ptrdiff_t cols, HG_T *HG_RESTRICT out)
{
    for (ptrdiff_t j = 0; j < cols; j++)
        out[j] = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        const HG_T *HG_RESTRICT row = dZ + i * cols;
        for (ptrdiff_t j = 0; j < cols; j++)
            out[j] = out[j] + row[j];
    }
}

HG_DISPATCH double HG_NAME(hg_sqnorm)(const HG_T *HG_RESTRICT W, ptrdiff_t size)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t body = size - size % 8;
    for (ptrdiff_t k = 0; k < body; k += 8)
        for (int r = 0; r < 8; r++) {
            double w = (double)W[k + r];
            acc[r] = acc[r] + w * w;
        }
    for (ptrdiff_t k = body; k < size; k++) {
        double w = (double)W[k];
        acc[0] = acc[0] + w * w;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* The first argmax of a row (C,) without NaN: the scan "z > top", branch-free. */
static inline ptrdiff_t HG_NAME(ordered_argmax)(const HG_T *HG_RESTRICT row, ptrdiff_t C)
{
    HG_T top = row[0];
    ptrdiff_t best = 0;
    for (ptrdiff_t j = 1; j < C; j++) {
        HG_T z = row[j];
        best = z > top ? j : best;
        top = z > top ? z : top;
    }
    return best;
}

/* The first argmax of any row, or its first NaN's index where it holds one: the
 * sequential scan "z > top or z is NaN (then stop)". */
static inline ptrdiff_t HG_NAME(first_argmax)(const HG_T *HG_RESTRICT row, ptrdiff_t C)
{
    for (ptrdiff_t j = 0; j < C; j++)
        if (row[j] != row[j])
            return j;
    return HG_NAME(ordered_argmax)(row, C);
}

HG_DISPATCH double HG_NAME(hg_softmax_xent)(const HG_T *HG_RESTRICT S, HG_T *HG_RESTRICT dS,
                                            HG_T *HG_RESTRICT losses, int64_t *HG_RESTRICT labels,
                                            const int64_t *HG_RESTRICT y, ptrdiff_t n,
                                            ptrdiff_t C, double c)
{
    const HG_T c_r = (HG_T)c;
    double loss = 0.0;
    if (C < 1)
        return 0.0;
    /* dS = S − m, row by row (one vector test for NaN first: most blocks have none);
     * then e = exp(dS) as one pass over the block (vectorised) */
    int nan = 0;
    for (ptrdiff_t k = 0; k < n * C; k++)
        nan |= S[k] != S[k];
    for (ptrdiff_t i = 0; i < n; i++) {
        const HG_T *HG_RESTRICT row = S + i * C;
        HG_T *HG_RESTRICT d = dS + i * C;
        ptrdiff_t best = nan ? HG_NAME(first_argmax)(row, C) : HG_NAME(ordered_argmax)(row, C);
        HG_T m = row[best];
        labels[i] = (int64_t)best;
        for (ptrdiff_t j = 0; j < C; j++)
            d[j] = row[j] - m;
    }
    for (ptrdiff_t k = 0; k < n * C; k++)
        dS[k] = HG_EXP(dS[k]);
    /* total (j ascending), dS = e (c / total) − c Y; losses first hold the totals, then
     * their logs (libm's, correctly rounded or nearly: one call a row) */
    for (ptrdiff_t i = 0; i < n; i++) {
        HG_T *HG_RESTRICT d = dS + i * C;
        HG_T total = 0;
        for (ptrdiff_t j = 0; j < C; j++)
            total = total + d[j];
        HG_T scale = c_r / total;
        for (ptrdiff_t j = 0; j < C; j++)
            d[j] = d[j] * scale;
        d[y[i]] = d[y[i]] - c_r;
        losses[i] = total;
    }
    for (ptrdiff_t i = 0; i < n; i++)
        losses[i] = HG_LOG(losses[i]);
    for (ptrdiff_t i = 0; i < n; i++) {
        HG_T picked = S[i * C + y[i]] - S[i * C + labels[i]];
        losses[i] = losses[i] - picked;
        loss += (double)losses[i];
    }
    return loss;
}

HG_DISPATCH void HG_NAME(hg_adam)(HG_T *HG_RESTRICT theta, const HG_T *HG_RESTRICT g,
                                  HG_T *HG_RESTRICT m, HG_T *HG_RESTRICT v, ptrdiff_t size,
                                  double lr_t, double b1, double b2, double eps)
{
    const HG_T b1_r = (HG_T)b1, b2_r = (HG_T)b2, c1 = (HG_T)(1 - b1), c2 = (HG_T)(1 - b2);
    const HG_T lr_r = (HG_T)lr_t, eps_r = (HG_T)eps;
    for (ptrdiff_t k = 0; k < size; k++) {
        HG_T gk = g[k];
        HG_T mk = m[k] * b1_r;
        mk = mk + gk * c1;
        m[k] = mk;
        HG_T vk = v[k] * b2_r;
        HG_T tmp = gk * gk;
        vk = vk + tmp * c2;
        v[k] = vk;
        tmp = mk * lr_r;
        HG_T denom = HG_SQRT(vk);
        denom = denom + eps_r;
        theta[k] = theta[k] - tmp / denom;
    }
}

HG_DISPATCH void HG_NAME(hg_momentum)(HG_T *HG_RESTRICT theta, const HG_T *HG_RESTRICT g,
                                      HG_T *HG_RESTRICT v, ptrdiff_t size, double lr,
                                      double mu, int nesterov)
{
    const HG_T lr_r = (HG_T)lr, mu_r = (HG_T)mu;
    if (nesterov) {
        for (ptrdiff_t k = 0; k < size; k++) {
            HG_T step = g[k] * lr_r;
            HG_T vk = v[k] * mu_r;
            vk = vk - step;
            v[k] = vk;
            theta[k] = theta[k] + (vk * mu_r - step);
        }
    } else {
        for (ptrdiff_t k = 0; k < size; k++) {
            HG_T step = g[k] * lr_r;
            HG_T vk = v[k] * mu_r;
            vk = vk - step;
            v[k] = vk;
            theta[k] = theta[k] + vk;
        }
    }
}

HG_DISPATCH void HG_NAME(hg_add_scaled)(HG_T *HG_RESTRICT dW, const HG_T *HG_RESTRICT W,
                                        ptrdiff_t size, double reg)
{
    const HG_T reg_r = (HG_T)reg;
    for (ptrdiff_t k = 0; k < size; k++)
        dW[k] = dW[k] + W[k] * reg_r;
}

void HG_NAME(hg_gather_rows)(HG_T *HG_RESTRICT dst, int64_t *HG_RESTRICT t,
                             const HG_T *HG_RESTRICT X, const int64_t *HG_RESTRICT targets,
                             const int64_t *HG_RESTRICT positions,
                             const int64_t *HG_RESTRICT rows, ptrdiff_t n, ptrdiff_t D)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        int64_t r = rows ? rows[positions[i]] : positions[i];
        memcpy(dst + i * D, X + r * D, (size_t)D * sizeof(HG_T));
        if (targets)
            t[i] = targets[r];
    }
}

#endif /* HG_T */
