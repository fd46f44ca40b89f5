/* kernels.c's functions, for the C++ callers (xla_ffi.cc, torch_estimator.cc); see kernels.c. */
#ifndef REINMAX_KERNELS_H
#define REINMAX_KERNELS_H

#include <stdint.h>

/* Calls with fewer entries run on one thread: waking others costs more. */
#define REINMAX_PARALLEL_MIN 32768
/* reinmax_combine's numbers per anchor: (w_y, w_D, scale, inverse temperature, kind, gap). */
#define REINMAX_ANCHOR_WEIGHTS 6
/* The anchor kinds (reinmax_core.rules.ANCHOR_KINDS): values that are the anchor or logits to
 * temper (0), exponentials of Gumbel noise conditional on the draw at the probabilities (1) or at
 * the midpoint (2), and logits shifted as gapped straight-through (GST) does (3). */
#define REINMAX_PLAIN 0
#define REINMAX_AT_PROBS 1
#define REINMAX_AT_MIDPOINT 2
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
