// pyro_reinmax's estimators as one PyTorch operator with a C++ autograd function: the draw and
// the backward of kernels.c without the Python of a torch.autograd.Function (which, on small
// tensors, costs more than the work).
//
// reinmax::estimate(logits, recipe, rule, options, validate) -> (sample, probs)
//   logits: contiguous float32/float64 CPU, (..., K). recipe: (temperature, perturbation,
//   noise_sets, the anchor term's REINMAX_ANCHOR_WEIGHTS weights (w_y, w_D, scale, inverse
//   temperature or -1, kind, gap), probs_scale).
//   Forward: probs = softmax(logits), one float64 uniform per row and the draw (reinmax_draw,
//   which writes the one-hot sample too), then noise_sets sets of exponentials -log U from
//   PyTorch's generator: the random numbers of pyro_reinmax's Python path, in the same order. Backward: reinmax_combine over one anchor
//   term (the recipe's weights) applied to each set of the anchor's values: the exponentials
//   (perturbation 2, Gumbel), the logits (1, GST's gap, which the kernel applies; or an inverse
//   temperature >= 0), else probs. Under create_graph the backward calls
//   reinmax::differentiable_backward, which pyro_reinmax implements in Python with
//   differentiable operations (rule and options name the estimator there).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <limits>
#include <new>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "kernels.h"

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kShiftedByGap = 1, kGumbelNoise = 2;  // the perturbations
// The error for a NaN row of softmax(logits) (with validate): pyro_reinmax.native.estimate raises
// pyro_reinmax's own message in its place.
constexpr const char *kNanRows = "reinmax::estimate: a row of softmax(logits) is NaN";

// The draw's index and one-hot sample (reinmax_draw).
int64_t draw(const Tensor &probs, const Tensor &uniforms, Tensor &index, Tensor &sample) {
  const int64_t rows = index.numel(), K = probs.size(-1);
  const int threads = at::get_num_threads();
  if (probs.scalar_type() == at::kFloat)
    return reinmax_draw_f32(probs.const_data_ptr<float>(), uniforms.const_data_ptr<double>(),
                            rows, K, index.data_ptr<int64_t>(), sample.data_ptr<float>(),
                            threads);
  return reinmax_draw_f64(probs.const_data_ptr<double>(), uniforms.const_data_ptr<double>(), rows,
                          K, index.data_ptr<int64_t>(), sample.data_ptr<double>(), threads);
}

// Standard exponentials -log U shaped and typed like `like`, from PyTorch's generator as
// pyro_reinmax.sampling.draw_exponentials draws them (float32 uniforms at least), floored at the
// dtype's smallest normal number: the same noise on both paths for the same seed.
Tensor exponentials(at::IntArrayRef shape, const Tensor &like) {
  Tensor uniforms = at::rand(shape, like.options());
  uniforms.log_().neg_();
  const double tiny = like.scalar_type() == at::kFloat ? std::numeric_limits<float>::min()
                                                       : std::numeric_limits<double>::min();
  const double largest = like.scalar_type() == at::kFloat ? std::numeric_limits<float>::max()
                                                          : std::numeric_limits<double>::max();
  return uniforms.clamp_(tiny, largest);
}

// sum_s scale J(w_y y_s + w_D D) g + J(p)(h + b g) over the sets s of `values` (see kernels.c).
template <typename T>
Tensor combine(const Tensor &values, const std::vector<double> &term, const Tensor &probs,
               const Tensor &index, const Tensor &g, const Tensor &h, double probs_scale) {
  const int64_t rows = index.numel(), K = probs.size(-1), size = rows * K;
  const int64_t sets = size > 0 ? values.numel() / size : 0;
  std::vector<const T *> anchors;
  std::vector<double> weights;
  for (int64_t s = 0; s < sets; ++s) {
    anchors.push_back(values.const_data_ptr<T>() + s * size);
    weights.insert(weights.end(), term.begin(), term.end());
  }
  Tensor out = at::empty_like(probs);
  const int status =
      reinmax_combine(anchors.data(), weights.data(), sets, probs.const_data_ptr<T>(),
                      index.const_data_ptr<int64_t>(), g.const_data_ptr<T>(),
                      h.defined() ? h.const_data_ptr<T>() : nullptr, probs_scale, rows, K,
                      out.data_ptr<T>(), at::get_num_threads());
  if (status != 0) throw std::bad_alloc();
  return out;
}

// The recipe's entries.
enum Recipe {
  kTemperature,
  kPerturbation,
  kNoiseSets,
  kTerm,
  kProbsScale = kTerm + REINMAX_ANCHOR_WEIGHTS,
  kSize
};

// Whether the anchor term's values are the logits (GST's, which the kernel shifts, or logits to
// temper) rather than the noise or probs: what the forward keeps and the backward passes on.
bool values_are_logits(const std::vector<double> &recipe) {
  const auto perturbation = static_cast<int64_t>(recipe[kPerturbation]);
  const double inverse_temperature = recipe[kTerm + 3];
  return perturbation == kShiftedByGap || (perturbation == 0 && inverse_temperature >= 0);
}

struct Estimate : public torch::autograd::Function<Estimate> {
  static variable_list forward(AutogradContext *ctx, const Tensor &logits,
                               std::vector<double> recipe, std::string rule,
                               std::vector<double> options, bool validate) {
    const Tensor probs = logits.softmax(-1);
    std::vector<int64_t> row_shape = logits.sizes().vec();
    row_shape.back() = 1;
    const Tensor uniforms = at::rand(row_shape, logits.options().dtype(at::kDouble));
    Tensor index = at::empty(row_shape, logits.options().dtype(at::kLong));
    Tensor sample = at::empty_like(probs);
    const int64_t nan_rows = draw(probs, uniforms, index, sample);
    if (nan_rows < 0) throw std::bad_alloc();
    TORCH_CHECK_VALUE(!(validate && nan_rows > 0), kNanRows);
    Tensor noise;
    const auto noise_sets = static_cast<int64_t>(recipe[kNoiseSets]);
    if (noise_sets > 0) {
      std::vector<int64_t> shape = logits.sizes().vec();
      shape.insert(shape.begin(), noise_sets);
      noise = exponentials(shape, logits);
    }
    ctx->save_for_backward({values_are_logits(recipe) ? logits : Tensor(), noise, index, probs});
    ctx->saved_data["recipe"] = std::move(recipe);
    ctx->saved_data["rule"] = std::move(rule);
    ctx->saved_data["options"] = std::move(options);
    ctx->set_materialize_grads(false);
    return {sample, probs};
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &logits = saved[0], &noise = saved[1], &index = saved[2], &probs = saved[3];
    const Tensor &g = grads[0], &h = grads[1];
    variable_list out(5);
    if (!g.defined() && !h.defined()) return out;
    const std::vector<double> recipe = ctx->saved_data["recipe"].toDoubleVector();
    if (at::GradMode::is_enabled()) {  // create_graph: differentiable operations, in Python
      static auto differentiable =
          c10::Dispatcher::singleton()
              .findSchemaOrThrow("reinmax::differentiable_backward", "")
              .typed<Tensor(const std::optional<Tensor> &, const std::optional<Tensor> &,
                            const Tensor &, const Tensor &, const std::optional<Tensor> &,
                            const std::optional<Tensor> &, c10::string_view, double,
                            at::ArrayRef<double>)>();
      const auto optional = [](const Tensor &t) {
        return t.defined() ? std::optional<Tensor>(t) : std::nullopt;
      };
      const std::vector<double> options = ctx->saved_data["options"].toDoubleVector();
      out[0] = differentiable.call(optional(logits), optional(noise), index, probs, optional(g),
                                   optional(h), ctx->saved_data["rule"].toStringRef(),
                                   recipe[kTemperature], options);
      return out;
    }
    if (!g.defined()) {  // J(p) h
      const Tensor ph = probs * h;
      out[0] = ph - probs * ph.sum(-1, true);
      return out;
    }
    const std::vector<double> term(recipe.begin() + kTerm, recipe.begin() + kProbsScale);
    const bool gumbel = static_cast<int64_t>(recipe[kPerturbation]) == kGumbelNoise;
    const Tensor &values = gumbel ? noise : values_are_logits(recipe) ? logits : probs;
    const auto dtype = probs.scalar_type();
    const Tensor g_c = g.to(dtype).contiguous(), values_c = values.contiguous();
    const Tensor h_c = h.defined() ? h.to(dtype).contiguous() : Tensor();
    const double probs_scale = recipe[kProbsScale];
    out[0] = dtype == at::kFloat
                 ? combine<float>(values_c, term, probs, index, g_c, h_c, probs_scale)
                 : combine<double>(values_c, term, probs, index, g_c, h_c, probs_scale);
    return out;
  }
};

std::tuple<Tensor, Tensor> estimate(const Tensor &logits, at::ArrayRef<double> recipe,
                                    c10::string_view rule, at::ArrayRef<double> options,
                                    bool validate) {
  TORCH_CHECK(logits.device().is_cpu() && logits.is_contiguous() &&
                  (logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kDouble) &&
                  logits.dim() >= 1,
              "reinmax::estimate takes contiguous float32 or float64 CPU logits (..., K)");
  TORCH_CHECK(recipe.size() == kSize, "reinmax::estimate: the recipe holds ", kSize, " numbers");
  const variable_list result =
      Estimate::apply(logits, recipe.vec(), std::string(rule), options.vec(), validate);
  return {result[0], result[1]};
}

}  // namespace

TORCH_LIBRARY(reinmax, m) {
  m.def(
      "estimate(Tensor logits, float[] recipe, str rule, float[] options, bool validate) "
      "-> (Tensor, Tensor)");
  m.def(
      "differentiable_backward(Tensor? logits, Tensor? noise, Tensor index, Tensor probs, "
      "Tensor? g, Tensor? h, str rule, float temperature, float[] options) -> Tensor");
}

TORCH_LIBRARY_IMPL(reinmax, CompositeImplicitAutograd, m) { m.impl("estimate", estimate); }
