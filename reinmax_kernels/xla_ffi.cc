// XLA FFI handlers of numpyro_reinmax: kernels.c's draw and backward as CPU custom calls. A call
// of REINMAX_PARALLEL_MIN entries or more splits its rows into parts that the calling thread and
// XLA's intra-op thread pool run (each part a one-thread kernel call); smaller ones run on the
// calling thread.
//
// ReinmaxDraw(probs (..., K) float32 or float64, uniforms (...) float32 or float64)
//   -> index (...) int32 or int64: for each row, the first k whose float64 prefix sum of probs
//   exceeds uniform * total (see reinmax_draw in kernels.c).
// ReinmaxCombine(probs (B, ..., K), index (B, ...) int32 or int64, g (B, ..., K),
//   h (B, ..., K), values (B, S, ..., K), weights (B, 7)) -> (B, ..., K): one anchor term's
//   backward (reinmax_combine in kernels.c) for each block b with its own weights
//   (w_y, w_D, scale, inverse temperature or -1, kind, gap, probs_scale), the S sets of values
//   its anchors. B is 1 (no leading axis), or the batch of a vmap.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// ReinmaxCombine's weights per block: an anchor's, then probs_scale.
constexpr int64_t kBlockWeights = REINMAX_ANCHOR_WEIGHTS + 1;

namespace {

// work(begin, end) over the rows [0, rows) of `row_size` entries each, in parts taken in turn by
// the calling thread and by tasks on XLA's intra-op thread pool. The caller takes parts too and
// waits only for parts already taken, so a pool too busy to start the tasks costs time, never a
// deadlock; a task that starts after every part is taken returns at once (it shares only the
// counters, kept alive by the tasks that hold them).
template <typename Work>
void parallel_rows(ffi::ThreadPool &pool, int64_t rows, int64_t row_size, const Work &work) {
  const int64_t threads = pool.num_threads();
  if (threads < 1 || rows < 2 || rows * row_size < REINMAX_PARALLEL_MIN) {
    work(0, rows);
    return;
  }
  struct Progress {
    std::atomic<int64_t> next{0};
    int64_t done = 0;
    std::mutex mutex;
    std::condition_variable finished;
  };
  const int64_t parts = std::min(rows, 4 * (threads + 1));
  auto progress = std::make_shared<Progress>();
  auto take_parts = [progress, parts, rows, work_pointer = &work] {
    for (int64_t part; (part = progress->next.fetch_add(1)) < parts;) {
      (*work_pointer)(part * rows / parts, (part + 1) * rows / parts);
      std::lock_guard<std::mutex> lock(progress->mutex);
      if (++progress->done == parts) progress->finished.notify_one();
    }
  };
  for (int64_t t = 0; t < std::min(threads, parts - 1); ++t) {
    auto task = take_parts;  // Schedule moves its own copy to the heap
    pool.Schedule(std::move(task));
  }
  take_parts();
  std::unique_lock<std::mutex> lock(progress->mutex);
  progress->finished.wait(lock, [&] { return progress->done == parts; });
}

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

ffi::Error Draw(ffi::ThreadPool pool, ffi::AnyBuffer probs, ffi::AnyBuffer uniforms,
                ffi::Result<ffi::AnyBuffer> index) {
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
  std::atomic<bool> failed{false};
  parallel_rows(pool, rows, categories, [&](int64_t begin, int64_t end) {
    const int64_t offset = begin * categories, count = end - begin;
    const int64_t status =
        type == ffi::F64
            ? reinmax_draw_f64(probs.typed_data<double>() + offset, targets.data() + begin, count,
                               categories, out + begin, nullptr, 1)
            : reinmax_draw_f32(probs.typed_data<float>() + offset, targets.data() + begin, count,
                               categories, out + begin, nullptr, 1);
    if (status < 0) failed = true;
  });
  if (failed) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted, "ReinmaxDraw: out of memory");
  }
  if (index_type == ffi::S32) {
    int32_t *narrow = index->typed_data<int32_t>();
    for (int64_t row = 0; row < rows; ++row) narrow[row] = static_cast<int32_t>(drawn[row]);
  }
  return ffi::Error::Success();
}

// reinmax_combine over each block of rows with the block's weights (see ReinmaxCombine).
template <typename T>
int combine_blocks(ffi::ThreadPool &pool, const ffi::AnyBuffer &values,
                   const std::vector<double> &block_weights, const ffi::AnyBuffer &probs,
                   const int64_t *drawn, const ffi::AnyBuffer &g, const ffi::AnyBuffer &h,
                   int64_t rows, int64_t K, int64_t sets, ffi::AnyBuffer &out) {
  const int64_t blocks = static_cast<int64_t>(block_weights.size()) / kBlockWeights;
  const int64_t block_rows = rows / blocks, block_size = block_rows * K;
  std::vector<double> anchor_weights(REINMAX_ANCHOR_WEIGHTS * sets);
  std::atomic<bool> failed{false};
  for (int64_t b = 0; b < blocks; ++b) {
    const double *w = block_weights.data() + kBlockWeights * b;
    for (int64_t s = 0; s < sets; ++s)
      std::copy(w, w + REINMAX_ANCHOR_WEIGHTS, anchor_weights.begin() + REINMAX_ANCHOR_WEIGHTS * s);
    parallel_rows(pool, block_rows, K, [&](int64_t begin, int64_t end) {
      const int64_t offset = b * block_size + begin * K;
      std::vector<const T *> anchors(sets);
      for (int64_t s = 0; s < sets; ++s)
        anchors[s] = values.typed_data<T>() + (b * sets + s) * block_size + begin * K;
      const int status = reinmax_combine(
          anchors.data(), anchor_weights.data(), sets, probs.typed_data<T>() + offset,
          drawn + b * block_rows + begin, g.typed_data<T>() + offset,
          h.typed_data<T>() + offset, w[REINMAX_ANCHOR_WEIGHTS], end - begin, K,
          out.typed_data<T>() + offset, 1);
      if (status != 0) failed = true;
    });
    if (failed) return -1;
  }
  return 0;
}

ffi::Error Combine(ffi::ThreadPool pool, ffi::AnyBuffer probs, ffi::AnyBuffer index,
                   ffi::AnyBuffer g, ffi::AnyBuffer h, ffi::AnyBuffer values,
                   ffi::AnyBuffer weights, ffi::Result<ffi::AnyBuffer> out) {
  const auto dims = probs.dimensions();
  const auto type = probs.element_type();
  const int64_t size = static_cast<int64_t>(probs.element_count());
  const int64_t blocks = static_cast<int64_t>(weights.element_count()) / kBlockWeights;
  const auto index_type = index.element_type();
  if (dims.size() == 0 || (type != ffi::F32 && type != ffi::F64) || g.element_type() != type ||
      h.element_type() != type || values.element_type() != type ||
      weights.element_type() != type || out->element_type() != type ||
      (index_type != ffi::S32 && index_type != ffi::S64) || blocks == 0 ||
      static_cast<int64_t>(weights.element_count()) != blocks * kBlockWeights ||
      static_cast<int64_t>(g.element_count()) != size ||
      static_cast<int64_t>(h.element_count()) != size ||
      static_cast<int64_t>(out->element_count()) != size) {
    return ffi::Error::InvalidArgument(
        "ReinmaxCombine: float32/float64 probs, g, h, out (..., K), values (S, ..., K), "
        "weights (B, 7) of that type, int32/int64 index (...)");
  }
  const int64_t K = dims.back();
  const int64_t rows = K > 0 ? size / K : 0;
  if (rows == 0) return ffi::Error::Success();
  const int64_t sets = static_cast<int64_t>(values.element_count()) / size;
  if (rows % blocks != 0 || static_cast<int64_t>(index.element_count()) != rows ||
      sets * size != static_cast<int64_t>(values.element_count())) {
    return ffi::Error::InvalidArgument("ReinmaxCombine: shapes of index or values do not match");
  }
  std::vector<int64_t> wide(index_type == ffi::S64 ? 0 : rows);
  if (index_type == ffi::S32) {
    const int32_t *narrow = index.typed_data<int32_t>();
    for (int64_t row = 0; row < rows; ++row) wide[row] = narrow[row];
  }
  const int64_t *drawn = index_type == ffi::S64 ? index.typed_data<int64_t>() : wide.data();
  std::vector<double> block_weights(kBlockWeights * blocks);
  copy_to(weights, block_weights);
  const int status =
      type == ffi::F64
          ? combine_blocks<double>(pool, values, block_weights, probs, drawn, g, h, rows, K,
                                   sets, *out)
          : combine_blocks<float>(pool, values, block_weights, probs, drawn, g, h, rows, K, sets,
                                  *out);
  if (status != 0) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted, "ReinmaxCombine: out of memory");
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ReinmaxDraw, Draw,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(ReinmaxCombine, Combine,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
