/* CPU kernels of pyro_reinmax and numpyro_reinmax: the categorical draw and the backward.
 *
 * Built on first use by reinmax_kernels/__init__.py with the system C compiler: pyro_reinmax loads
 * them with ctypes, numpyro_reinmax through XLA FFI handlers (xla_ffi.cc).
 * Every array is contiguous row-major (rows, K); each function exists for float ("_f32") and
 * double ("_f64"). Built with OpenMP, large calls split their rows over `threads` threads of the
 * OpenMP runtime that PyTorch has loaded (the same libgomp, so the same pool of threads: threads
 * of its own would compete with those PyTorch keeps spinning after each parallel operation);
 * built without, they run on the calling thread.
 *
 * reinmax_draw: for each row, the prefix sums c_k of probs accumulated in double in index order
 *   (the sums of torch.cumsum in float64), a target t = u * c_{K-1} kept strictly below c_{K-1},
 *   and the first k with c_k > t (searchsorted, right). A zero-probability category k has
 *   c_k = c_{k-1}, so it is never that first k. Returns the number of rows whose total is NaN
 *   (they get index K - 1), or -1 when out of memory. sample, where not NULL, gets the one-hot
 *   rows of the draw.
 *
 * reinmax_combine: out = sum_i scale_i J(a_i) g + J(p)(h + b g), J(a) v = a * (v - <a, v>), over
 *   anchors a_i = wy_i y_i + wd_i D (D the one-hot draw), expanded as
 *   J(a) g = wy y * (g - s) + wd D (g_D - s), s = <a, g> = wy <y, g> + wd g_D. weights holds
 *   REINMAX_ANCHOR_WEIGHTS numbers (wy_i, wd_i, scale_i, inverse_temperature_i, kind_i, gap_i)
 *   for each anchor. kind 0: y_i is the given row x where the inverse temperature is negative,
 *   else softmax((x - max x) * inverse_temperature). kind 1 (2): the given row holds
 *   exponentials E, and y_i is the Gumbel softmax of log b + G drawn conditionally on D, b the
 *   probabilities (the midpoint (p + D) / 2): y proportional to w^inverse_temperature (w itself
 *   where that is negative) with w_k = b_k / (E_k + b_k E_D), w_D = 1 / E_D. kind 3
 *   (REINMAX_GAPPED): the given row holds logits x, and y_i is the tempered softmax of GST's
 *   shifted logits, max x at D and min(x_k, max x - gap_i) elsewhere (an inverse temperature
 *   >= 0). h may be NULL (zero). Returns 0, or -1 when out of memory.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Rows whose prefix sums the draw advances in lockstep, so the dependent adds overlap. */
#define LANES 8
/* Independent partial sums (and maxima) of a row: one running sum would wait on every add. */
#define BLOCK 16
/* The backward takes rows of at most SHORT_ROWS categories SHORT_CHUNK entries (whole rows) at
 * a time (combine_short), longer ones row by row. */
#define SHORT_ROWS 64
#define SHORT_CHUNK 256

/* exp(x) for x <= 0 (0 below the smallest normal result, so -inf gives 0), in operations a
 * compiler vectorises: x = n ln2 + r with |r| <= ln2 / 2, n rounded by adding and subtracting
 * 1.5 * 2^23 (2^52), ln 2 split in a part with trailing zero bits (n * ln2_hi is exact) and the
 * rest; exp(r) by its Taylor series to r^7 (r^13), whose remainder is below 6e-9 (2e-16)
 * relative; 2^n built in the exponent bits. */
static inline float exp_nonpositive_f32(float x) {
  const float clamped = x < -87.0f ? -87.0f : x;
  const float n = (clamped * 1.44269504f + 12582912.0f) - 12582912.0f;
  const float r = (clamped - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  union {
    int32_t bits;
    float value;
  } power = {(int32_t)(n + 127.0f) << 23};
  return x < -87.0f ? 0.0f : p * power.value;
}

static inline double exp_nonpositive_f64(double x) {
  const double clamped = x < -708.0 ? -708.0 : x;
  const double n = (clamped * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
  const double r = (clamped - n * 0.693145751953125) - n * 1.4286068202862268e-06;
  static const double inverse_factorials[] = {
      1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
      1.0 / 40320.0,      1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,     1.0 / 24.0,
      1.0 / 6.0,          0.5,               1.0,              1.0};
  double p = inverse_factorials[0];
  for (int i = 1; i < 14; ++i) p = p * r + inverse_factorials[i];
  union {
    int64_t bits;
    double value;
  } power = {(int64_t)(n + 1023.0) << 52};
  return x < -708.0 ? 0.0 : p * power.value;
}

/* log x for x >= 0 (log 0 = -inf), in operations a compiler vectorises: x = m 2^e with m in
 * [sqrt(1/2), sqrt(2)) from the bits (a subnormal x scaled by 2^64 first), log m = 2 atanh(z) =
 * 2 (z + z^3/3 + z^5/5 + ...) with z = (m - 1)/(m + 1), |z| <= 0.172, to z^9 (z^19): a remainder
 * below 1e-9 (1e-17) relative. */
static inline float log_positive_f32(float x) {
  const int subnormal = x < 1.17549435e-38f;
  const float factor = subnormal ? 18446744073709551616.0f : 1.0f;
  union {
    float value;
    int32_t bits;
  } v = {x * factor};
  int32_t exponent = ((v.bits >> 23) & 0xff) - 127;
  v.bits = (v.bits & 0x007fffff) | 0x3f800000;
  const int halve = v.value > 1.41421356f;
  const float m = halve ? v.value * 0.5f : v.value;
  exponent += halve - 64 * subnormal;
  const float z = (m - 1.0f) / (m + 1.0f), z2 = z * z;
  float series = 1.0f / 9.0f;
  series = series * z2 + 1.0f / 7.0f;
  series = series * z2 + 1.0f / 5.0f;
  series = series * z2 + 1.0f / 3.0f;
  series = series * z2 + 1.0f;
  union {
    float value;
    int32_t bits;
  } out = {(float)exponent * 0.693147180559945309f + 2.0f * z * series},
    minus_infinity = {-INFINITY};
  const int32_t keep = -(int32_t)(x > 0); /* all ones where x > 0: a select GCC vectorises */
  out.bits = (out.bits & keep) | (minus_infinity.bits & ~keep);
  return out.value;
}

static inline double log_positive_f64(double x) {
  const int subnormal = x < 2.2250738585072014e-308;
  const double factor = subnormal ? 18446744073709551616.0 : 1.0;
  union {
    double value;
    int64_t bits;
  } v = {x * factor};
  int64_t exponent = ((v.bits >> 52) & 0x7ff) - 1023;
  v.bits = (v.bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL;
  const int halve = v.value > 1.4142135623730951;
  const double m = halve ? v.value * 0.5 : v.value;
  exponent += halve - 64 * subnormal;
  const double z = (m - 1.0) / (m + 1.0), z2 = z * z;
  double series = 1.0 / 19.0;
  for (int k = 17; k >= 1; k -= 2) series = series * z2 + 1.0 / k;
  union {
    double value;
    int64_t bits;
  } out = {(double)exponent * 0.693147180559945309417 + 2.0 * z * series},
    minus_infinity = {-INFINITY};
  const int64_t keep = -(int64_t)(x > 0);
  out.bits = (out.bits & keep) | (minus_infinity.bits & ~keep);
  return out.value;
}

#define DEFINE_KERNELS(T, SUFFIX)                                                                  \
  /* sum_k a_k b_k (b NULL: sum_k a_k): short rows in one running sum (a vector reduction costs    \
   * more there), longer ones as a vector reduction (partial sums in registers, folded once). */   \
  static inline T dot_##SUFFIX(const T *a, const T *b, int64_t K) {                                \
    T sum = 0;                                                                                     \
    if (K < BLOCK) {                                                                               \
      if (b)                                                                                       \
        for (int64_t k = 0; k < K; ++k) sum += a[k] * b[k];                                        \
      else                                                                                         \
        for (int64_t k = 0; k < K; ++k) sum += a[k];                                               \
    } else if (b) {                                                                                \
      _Pragma("omp simd reduction(+ : sum)") for (int64_t k = 0; k < K; ++k) sum += a[k] * b[k];   \
    } else {                                                                                       \
      _Pragma("omp simd reduction(+ : sum)") for (int64_t k = 0; k < K; ++k) sum += a[k];          \
    }                                                                                              \
    return sum;                                                                                    \
  }                                                                                                \
                                                                                                   \
  static inline T max_##SUFFIX(const T *x, int64_t K) {                                            \
    T top = -INFINITY;                                                                             \
    if (K < BLOCK) {                                                                               \
      for (int64_t k = 0; k < K; ++k) top = x[k] > top ? x[k] : top;                               \
    } else {                                                                                       \
      _Pragma("omp simd reduction(max : top)") for (int64_t k = 0; k < K; ++k) top =               \
          x[k] > top ? x[k] : top;                                                                 \
    }                                                                                              \
    return top;                                                                                    \
  }                                                                                                \
                                                                                                   \
  /* e = exp((x - max x) * inverse), returning sum_k e_k: y = e / sum is the tempered softmax,     \
   * with exact zeros for -inf and e = 1 at the maximum (so the sum is at least 1). */             \
  static inline T tempered_exp_##SUFFIX(const T *x, T inverse, int64_t K, T *e) {                  \
    const T top = max_##SUFFIX(x, K);                                                              \
    _Pragma("omp simd") for (int64_t k = 0; k < K; ++k) e[k] =                                     \
        exp_nonpositive_##SUFFIX((x[k] - top) * inverse);                                          \
    return dot_##SUFFIX(e, NULL, K);                                                               \
  }                                                                                                \
                                                                                                   \
  /* Rows of at most SHORT_ROWS categories go through the backward a chunk of rows at a            \
   * time: the exponentials, logarithms and divisions run over the chunk's n K entries as one      \
   * vector loop (row by row they would be latency chains of a few entries), the sums and maxima   \
   * of each row in scalar loops, and a value per row is spread over the row's entries to enter    \
   * a vector loop. Every entry gets the expression the row-by-row path computes, in the same      \
   * order. */                                                                                     \
  static inline void spread_##SUFFIX(const T *per_row, int64_t n, int64_t K, T *out) {             \
    for (int64_t j = 0; j < n; ++j)                                                                \
      for (int64_t k = 0; k < K; ++k) out[j * K + k] = per_row[j];                                 \
  }                                                                                                \
                                                                                                   \
  /* tempered_exp on each of the n rows of x: e, and the sum of e per row (top: scratch) */        \
  static inline void tempered_exp_rows_##SUFFIX(const T *x, T inverse, int64_t n, int64_t K, T *e, \
                                               T *sums, T *top, T *spread) {                       \
    for (int64_t j = 0; j < n; ++j) top[j] = max_##SUFFIX(x + j * K, K);                           \
    spread_##SUFFIX(top, n, K, spread);                                                            \
    _Pragma("omp simd") for (int64_t i = 0; i < n * K; ++i) e[i] =                                 \
        exp_nonpositive_##SUFFIX((x[i] - spread[i]) * inverse);                                    \
    for (int64_t j = 0; j < n; ++j) sums[j] = dot_##SUFFIX(e + j * K, NULL, K);                    \
  }                                                                                                \
                                                                                                   \
  /* reinmax_combine on n rows of at most SHORT_ROWS categories (n K <= SHORT_CHUNK); the          \
   * anchors start at row `first` */                                                               \
  static void combine_short_##SUFFIX(const T *const *anchors, const double *weights,               \
                                     int64_t n_anchors, const T *p, const int64_t *index,          \
                                     const T *g, const T *h, T b, int64_t first, int64_t n,        \
                                     int64_t K, T *o) {                                            \
    const int64_t N = n * K;                                                                       \
    T work[SHORT_CHUNK], spread[SHORT_CHUNK], spread2[SHORT_CHUNK];                                \
    T top[SHORT_CHUNK], norm[SHORT_CHUNK], s[SHORT_CHUNK], coefficient[SHORT_CHUNK];               \
    if (h) {                                                                                       \
      _Pragma("omp simd") for (int64_t i = 0; i < N; ++i) o[i] = h[i] + b * g[i];                  \
      for (int64_t j = 0; j < n; ++j) s[j] = dot_##SUFFIX(p + j * K, o + j * K, K);                \
      spread_##SUFFIX(s, n, K, spread);                                                            \
      _Pragma("omp simd") for (int64_t i = 0; i < N; ++i) o[i] = p[i] * (o[i] - spread[i]);        \
    } else {                                                                                       \
      for (int64_t j = 0; j < n; ++j) s[j] = dot_##SUFFIX(p + j * K, g + j * K, K);                \
      spread_##SUFFIX(s, n, K, spread);                                                            \
      _Pragma("omp simd") for (int64_t i = 0; i < N; ++i) o[i] =                                   \
          b * (p[i] * (g[i] - spread[i]));                                                         \
    }                                                                                              \
    for (int64_t a = 0; a < n_anchors; ++a) {                                                      \
      const double *w = weights + REINMAX_ANCHOR_WEIGHTS * a;                                      \
      const T wy = (T)w[0], wd = (T)w[1], scale = (T)w[2], inverse = (T)w[3];                      \
      const T *y = anchors[a] + first * K;                                                         \
      for (int64_t j = 0; j < n; ++j) norm[j] = 1;                                                 \
      if (w[4] == REINMAX_GAPPED) {                                                                \
        const T gap = (T)w[5];                                                                     \
        for (int64_t j = 0; j < n; ++j) top[j] = max_##SUFFIX(y + j * K, K);                       \
        spread_##SUFFIX(top, n, K, spread);                                                        \
        _Pragma("omp simd") for (int64_t i = 0; i < N; ++i) {                                      \
          const T cap = spread[i] - gap;                                                           \
          work[i] = y[i] < cap ? y[i] : cap;                                                       \
        }                                                                                          \
        for (int64_t j = 0; j < n; ++j) work[j * K + index[j]] = top[j];                           \
        tempered_exp_rows_##SUFFIX(work, inverse, n, K, work, norm, top, spread);                  \
        y = work;                                                                                  \
      } else if (w[4] != REINMAX_PLAIN) {                                                          \
        const T half = w[4] == REINMAX_AT_MIDPOINT ? (T)0.5 : (T)1;                                \
        for (int64_t j = 0; j < n; ++j) top[j] = y[j * K + index[j]];                              \
        spread_##SUFFIX(top, n, K, spread);                                                        \
        _Pragma("omp simd") for (int64_t i = 0; i < N; ++i) work[i] =                              \
            (half * p[i]) / (y[i] + (half * p[i]) * spread[i]);                                    \
        for (int64_t j = 0; j < n; ++j) work[j * K + index[j]] = 1 / top[j];                       \
        if (inverse >= 0) {                                                                        \
          _Pragma("omp simd") for (int64_t i = 0; i < N; ++i) work[i] =                            \
              log_positive_##SUFFIX(work[i]);                                                      \
          tempered_exp_rows_##SUFFIX(work, inverse, n, K, work, norm, top, spread);                \
        } else {                                                                                   \
          for (int64_t j = 0; j < n; ++j) norm[j] = dot_##SUFFIX(work + j * K, NULL, K);           \
        }                                                                                          \
        y = work;                                                                                  \
      } else if (inverse >= 0) {                                                                   \
        tempered_exp_rows_##SUFFIX(y, inverse, n, K, work, norm, top, spread);                     \
        y = work;                                                                                  \
      }                                                                                            \
      for (int64_t j = 0; j < n; ++j) {                                                            \
        s[j] = wy * (dot_##SUFFIX(y + j * K, g + j * K, K) / norm[j]) + wd * g[j * K + index[j]];  \
        coefficient[j] = wy / norm[j];                                                             \
      }                                                                                            \
      if (wy != 0) {                                                                               \
        spread_##SUFFIX(s, n, K, spread);                                                          \
        spread_##SUFFIX(coefficient, n, K, spread2);                                               \
        _Pragma("omp simd") for (int64_t i = 0; i < N; ++i) o[i] +=                                \
            (spread2[i] * (y[i] * (g[i] - spread[i]))) * scale;                                    \
      }                                                                                            \
      if (wd != 0)                                                                                 \
        for (int64_t j = 0; j < n; ++j) {                                                          \
          const int64_t d = j * K + index[j];                                                      \
          o[d] += (wd * (g[d] - s[j])) * scale;                                                    \
        }                                                                                          \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  int64_t reinmax_draw_##SUFFIX(const T *probs, const double *uniforms, int64_t rows, int64_t K,   \
                                int64_t *index, T *sample, int threads) {                          \
    const int64_t blocks = (rows + LANES - 1) / LANES;                                             \
    const int parallel = rows * K >= REINMAX_PARALLEL_MIN;                                         \
    (void)parallel, (void)threads; /* unused without OpenMP */                                     \
    int64_t nan_rows = 0, failed = 0;                                                              \
    _Pragma("omp parallel if (parallel) num_threads(threads) reduction(+ : nan_rows, failed)")     \
    {                                                                                              \
      double *sums = malloc(sizeof(double) * LANES * K); /* sums[k * LANES + j]: c_k of row j */   \
      failed += !sums;                                                                             \
      _Pragma("omp for schedule(static)")                                                          \
      for (int64_t block = 0; block < blocks; ++block) {                                           \
        if (!sums) continue;                                                                       \
        const int64_t r = block * LANES;                                                           \
        const int lanes = rows - r < LANES ? (int)(rows - r) : LANES;                              \
        const T *p[LANES];                                                                         \
        double sum[LANES] = {0.0};                                                                 \
        for (int j = 0; j < LANES; ++j) p[j] = probs + (r + (j < lanes ? j : 0)) * K;              \
        for (int64_t k = 0; k < K; ++k)                                                            \
          for (int j = 0; j < LANES; ++j) {                                                        \
            sum[j] += (double)p[j][k];                                                             \
            sums[k * LANES + j] = sum[j];                                                          \
          }                                                                                        \
        for (int j = 0; j < lanes; ++j) {                                                          \
          const double total = sum[j];                                                             \
          if (isnan(total)) {                                                                      \
            nan_rows += 1;                                                                         \
            index[r + j] = K - 1;                                                                  \
            continue;                                                                              \
          }                                                                                        \
          double target = uniforms[r + j] * total;                                                 \
          if (!(target < total)) target = nextafter(total, 0.0);                                   \
          int64_t low = 0, high = K; /* the first k in [low, high) with c_k > target */            \
          while (low < high) {                                                                     \
            const int64_t middle = low + (high - low) / 2;                                         \
            if (sums[middle * LANES + j] > target)                                                 \
              high = middle;                                                                       \
            else                                                                                   \
              low = middle + 1;                                                                    \
          }                                                                                        \
          index[r + j] = low < K ? low : K - 1;                                                    \
        }                                                                                          \
        if (sample && K > 0)                                                                       \
          for (int j = 0; j < lanes; ++j) {                                                        \
            T *row = sample + (r + j) * K;                                                         \
            memset(row, 0, sizeof(T) * K);                                                         \
            row[index[r + j]] = 1;                                                                 \
          }                                                                                        \
      }                                                                                            \
      free(sums);                                                                                  \
    }                                                                                              \
    return failed ? -1 : nan_rows;                                                                 \
  }                                                                                                \
                                                                                                   \
  int reinmax_combine_##SUFFIX(const T *const *anchors, const double *weights, int64_t n_anchors,  \
                               const T *probs, const int64_t *index, const T *g, const T *h,       \
                               double probs_scale, int64_t rows, int64_t K, T *out, int threads) { \
    const T b = (T)probs_scale;                                                                    \
    const int parallel = rows * K >= REINMAX_PARALLEL_MIN;                                         \
    (void)parallel, (void)threads; /* unused without OpenMP */                                     \
    int failed = 0;                                                                                \
    _Pragma("omp parallel if (parallel) num_threads(threads) reduction(+ : failed)")               \
    {                                                                                              \
      const int short_rows = K <= SHORT_ROWS;                                                      \
      /* the tempered anchor's exponentials, row by row */                                         \
      T *tempered = short_rows ? NULL : malloc(sizeof(T) * K);                                     \
      failed += !short_rows && !tempered;                                                          \
      if (short_rows && K > 0) { /* K = 0: nothing to write */                                     \
        const int64_t chunk_rows = SHORT_CHUNK / K, chunks = (rows + chunk_rows - 1) / chunk_rows; \
        _Pragma("omp for schedule(static)")                                                        \
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {                                         \
          const int64_t r = chunk * chunk_rows;                                                    \
          const int64_t n = rows - r < chunk_rows ? rows - r : chunk_rows;                         \
          combine_short_##SUFFIX(anchors, weights, n_anchors, probs + r * K, index + r, g + r * K, \
                                 h ? h + r * K : NULL, b, r, n, K, out + r * K);                   \
        }                                                                                          \
      } else {                                                                                     \
        _Pragma("omp for schedule(static)")                                                        \
        for (int64_t r = 0; r < rows; ++r) {                                                       \
          if (!tempered) continue;                                                                 \
          const T *p = probs + r * K, *g_r = g + r * K, *h_r = h ? h + r * K : NULL;               \
          T *o = out + r * K;                                                                      \
          const int64_t d = index[r];                                                              \
          const T g_d = g_r[d];                                                                    \
          if (h_r) {                                                                               \
            _Pragma("omp simd") for (int64_t k = 0; k < K; ++k) o[k] = h_r[k] + b * g_r[k];        \
            const T pw = dot_##SUFFIX(p, o, K); /* <p, h + b g> */                                 \
            _Pragma("omp simd") for (int64_t k = 0; k < K; ++k) o[k] = p[k] * (o[k] - pw);         \
          } else {                                                                                 \
            const T pg = dot_##SUFFIX(p, g_r, K);                                                  \
            _Pragma("omp simd") for (int64_t k = 0; k < K; ++k) o[k] = b * (p[k] * (g_r[k] - pg)); \
          }                                                                                        \
          for (int64_t i = 0; i < n_anchors; ++i) {                                                \
            const double *w = weights + REINMAX_ANCHOR_WEIGHTS * i;                                \
            const T wy = (T)w[0], wd = (T)w[1], scale = (T)w[2], inverse = (T)w[3];                \
            const T *y = anchors[i] + r * K;                                                       \
            T normaliser = 1; /* the anchor is y / normaliser */                                   \
            if (w[4] == REINMAX_GAPPED) { /* y holds logits: GST's shift first */                  \
              const T top = max_##SUFFIX(y, K), cap = top - (T)w[5];                               \
              _Pragma("omp simd") for (int64_t k = 0; k < K; ++k) tempered[k] =                    \
                  y[k] < cap ? y[k] : cap;                                                         \
              tempered[d] = top;                                                                   \
              normaliser = tempered_exp_##SUFFIX(tempered, inverse, K, tempered);                  \
              y = tempered;                                                                        \
            } else if (w[4] != REINMAX_PLAIN) { /* y holds exponentials E */                       \
              const T half = w[4] == REINMAX_AT_MIDPOINT ? (T)0.5 : (T)1, e_top = y[d];            \
              _Pragma("omp simd") for (int64_t k = 0; k < K; ++k) tempered[k] =                    \
                  (half * p[k]) / (y[k] + (half * p[k]) * e_top);                                  \
              tempered[d] = 1 / e_top;                                                             \
              if (inverse >= 0) {                                                                  \
                _Pragma("omp simd") for (int64_t k = 0; k < K; ++k) tempered[k] =                  \
                    log_positive_##SUFFIX(tempered[k]);                                            \
                normaliser = tempered_exp_##SUFFIX(tempered, inverse, K, tempered);                \
              } else {                                                                             \
                normaliser = dot_##SUFFIX(tempered, NULL, K);                                      \
              }                                                                                    \
              y = tempered;                                                                        \
            } else if (inverse >= 0) {                                                             \
              normaliser = tempered_exp_##SUFFIX(y, inverse, K, tempered);                         \
              y = tempered;                                                                        \
            }                                                                                      \
            const T s = wy * (dot_##SUFFIX(y, g_r, K) / normaliser) + wd * g_d;                    \
            /* J(a) g before the scale: a huge scale (tiny temperature) multiplies exact zeros */  \
            if (wy != 0) {                                                                         \
              const T coefficient = wy / normaliser;                                               \
              _Pragma("omp simd") for (int64_t k = 0; k < K; ++k) o[k] +=                          \
                  (coefficient * (y[k] * (g_r[k] - s))) * scale;                                   \
            }                                                                                      \
            if (wd != 0) o[d] += (wd * (g_d - s)) * scale;                                         \
          }                                                                                        \
        }                                                                                          \
      }                                                                                            \
      free(tempered);                                                                              \
    }                                                                                              \
    return failed ? -1 : 0;                                                                        \
  }

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
