// XLA FFI handler of numpyro_reinmax: the categorical draw of kernels.c as a CPU custom call.
//
// ReinmaxDraw(probs (..., K) float32 or float64, uniforms (...) float32 or float64)
//   -> index (...) int32 or int64: for each row, the first k whose float64 prefix sum of probs
//   exceeds uniform * total (see reinmax_draw in kernels.c). XLA runs it on one of its own
//   threads, so the kernel gets one thread.
#include <cstdint>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

extern "C" {
int64_t reinmax_draw_f32(const float *probs, const double *uniforms, int64_t rows, int64_t K,
                         int64_t *index, int threads);
int64_t reinmax_draw_f64(const double *probs, const double *uniforms, int64_t rows, int64_t K,
                         int64_t *index, int threads);
}

namespace {

template <typename T>
void copy_to(const ffi::AnyBuffer &buffer, std::vector<T> &values) {
  if (buffer.element_type() == ffi::F64) {
    const double *data = buffer.typed_data<double>();
    values.assign(data, data + values.size());
  } else {
    const float *data = buffer.typed_data<float>();
    values.assign(data, data + values.size());
  }
}

ffi::Error Draw(ffi::AnyBuffer probs, ffi::AnyBuffer uniforms, ffi::Result<ffi::AnyBuffer> index) {
  const auto dims = probs.dimensions();
  const auto type = probs.element_type();
  if (dims.size() == 0 || (type != ffi::F32 && type != ffi::F64)) {
    return ffi::Error::InvalidArgument("ReinmaxDraw: probs must be float32 or float64, (..., K)");
  }
  const int64_t categories = dims.back();
  const int64_t rows = categories > 0 ? static_cast<int64_t>(probs.element_count()) / categories
                                      : 0;
  const auto uniform_type = uniforms.element_type();
  const auto index_type = index->element_type();
  if (static_cast<int64_t>(uniforms.element_count()) != rows ||
      (uniform_type != ffi::F32 && uniform_type != ffi::F64) ||
      static_cast<int64_t>(index->element_count()) != rows ||
      (index_type != ffi::S32 && index_type != ffi::S64)) {
    return ffi::Error::InvalidArgument(
        "ReinmaxDraw: one float uniform and one int32/int64 index per row of probs");
  }
  if (rows == 0) return ffi::Error::Success();
  std::vector<double> targets(rows);
  copy_to(uniforms, targets);
  std::vector<int64_t> drawn(index_type == ffi::S64 ? 0 : rows);
  int64_t *out = index_type == ffi::S64 ? index->typed_data<int64_t>() : drawn.data();
  const int64_t status =
      type == ffi::F64
          ? reinmax_draw_f64(probs.typed_data<double>(), targets.data(), rows, categories, out, 1)
          : reinmax_draw_f32(probs.typed_data<float>(), targets.data(), rows, categories, out, 1);
  if (status < 0) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted, "ReinmaxDraw: out of memory");
  }
  if (index_type == ffi::S32) {
    int32_t *narrow = index->typed_data<int32_t>();
    for (int64_t row = 0; row < rows; ++row) narrow[row] = static_cast<int32_t>(drawn[row]);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ReinmaxDraw, Draw,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
