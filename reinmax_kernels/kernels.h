/* kernels.c's functions, for the C++ callers (xla_ffi.cc, torch_estimator.cc); see kernels.c. */
#ifndef REINMAX_KERNELS_H
#define REINMAX_KERNELS_H

#include <stdint.h>

/* Calls with fewer entries run on one thread: waking others costs more. */
#define REINMAX_PARALLEL_MIN 32768
/* The exponentials' counter step: entry i of a call seeded s equals entry i - j of a call seeded
 * s + j * REINMAX_GOLDEN_GAMMA, so one call's entries can be generated in parts. */
#define REINMAX_GOLDEN_GAMMA 0x9e3779b97f4a7c15ULL
/* reinmax_combine's numbers per anchor: (w_y, w_D, scale, inverse temperature, kind, gap). */
#define REINMAX_ANCHOR_WEIGHTS 6
/* The anchor kind whose values are logits shifted as gapped straight-through (GST) does. */
#define REINMAX_GAPPED 3

#ifdef __cplusplus
extern "C" {
#endif

int64_t reinmax_draw_f32(const float *probs, const double *uniforms, int64_t rows, int64_t K,
                         int64_t *index, float *sample, int threads);
int64_t reinmax_draw_f64(const double *probs, const double *uniforms, int64_t rows, int64_t K,
                         int64_t *index, double *sample, int threads);
int reinmax_combine_f32(const float *const *anchors, const double *weights, int64_t n_anchors,
                        const float *probs, const int64_t *index, const float *g, const float *h,
                        double probs_scale, int64_t rows, int64_t K, float *out, int threads);
int reinmax_combine_f64(const double *const *anchors, const double *weights, int64_t n_anchors,
                        const double *probs, const int64_t *index, const double *g,
                        const double *h, double probs_scale, int64_t rows, int64_t K, double *out,
                        int threads);
void reinmax_exponentials_f32(float *out, int64_t n, uint64_t seed, int threads);
void reinmax_exponentials_f64(double *out, int64_t n, uint64_t seed, int threads);

#ifdef __cplusplus
}

/* reinmax_combine for either type, for templates. */
inline int reinmax_combine(const float *const *anchors, const double *weights, int64_t n_anchors,
                           const float *probs, const int64_t *index, const float *g,
                           const float *h, double probs_scale, int64_t rows, int64_t K,
                           float *out, int threads) {
  return reinmax_combine_f32(anchors, weights, n_anchors, probs, index, g, h, probs_scale, rows, K,
                             out, threads);
}

inline int reinmax_combine(const double *const *anchors, const double *weights, int64_t n_anchors,
                           const double *probs, const int64_t *index, const double *g,
                           const double *h, double probs_scale, int64_t rows, int64_t K,
                           double *out, int threads) {
  return reinmax_combine_f64(anchors, weights, n_anchors, probs, index, g, h, probs_scale, rows, K,
                             out, threads);
}
#endif

#endif
