// The adapter registry: one AdapterInfo per adapter, declared once in src/adapters/<name>/entry.cpp.
// Every checker, binding, benchmark and report iterates over it; nothing is written per adapter by hand elsewhere.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace gg {

using HyperParams = std::map<std::string, double>;  // flags are 0/1, integers are whole doubles

struct Dims {
  int64_t d_in = 0;
  int64_t d_out = 0;
};

struct HyperParamSpec {
  std::string name;      // PEFT's config name (r, lora_alpha, use_rslora, ...)
  double default_value;  // PEFT's default
  // derived: not set by the user but computed from the layer's dims and the other hyper-parameters by
  // AdapterInfo::derive (PEFT decides it the same way, e.g. whether LoKr factors w1); a given value must equal it.
  enum class Kind { integer, real, flag, derived } kind;
  std::string doc;
};

enum class TensorRole { frozen, trainable };

// What a tensor holds. `positions`: a frozen (2, n) table of distinct entries of the (d_out, d_in) weight grid, row
// indices in row 0 and column indices in row 1 (FourierFT's spectrum entries, SHiRA's sparse update), stored as whole
// numbers in the tensor's floating-point type (exact below 2^24, so float32 holds any real layer's index). Seeded
// cases draw distinct random entries; every call checks the values (validate_positions), since an index out of range
// or a repeated entry would otherwise read out of bounds or silently change the maths (PEFT overwrites or sums).
enum class TensorKind { values, positions };

struct TensorSpec {
  std::string name;  // gradguard's name; equal to PEFT's attribute name where PEFT has one
  TensorRole role;
  std::function<Shape(const Dims&, const HyperParams&)> shape;
  std::string peft_key;   // state-dict key inside the PEFT layer, "{adapter}" stands for the adapter name
  std::string peft_init;  // PEFT's default initialisation, in words
  // Non-empty when this parameter gets an exactly zero gradient at PEFT's default init, with the reason.
  std::string zero_grad_at_init;
  // Optional: whether the tensor exists for these hyper-parameters (e.g. lora_bias). Empty = always.
  std::function<bool(const HyperParams&)> present;
  TensorKind kind = TensorKind::values;

  bool exists(const HyperParams& hp) const { return !present || present(hp); }
};

template <class T>
struct EigenImpl {
  Mat<T> (*forward)(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) = nullptr;
  Grads<T> (*backward)(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) = nullptr;
};

struct BackendSupport {
  std::string backend;              // eigen | torch | cuda
  std::vector<std::string> dtypes;  // float64, float32, bfloat16, float16
  std::string note;                 // why a dtype is missing, if one is
};

struct ToleranceOverride {
  std::string check;  // gradcheck | compare | peft (a known PEFT deviation, in comparisons against PEFT only)
  double atol;
  double rtol;
  std::string reason;
};

// A confirmed defect of the pinned PEFT's own layer (finite differences in float64 decide): comparisons against PEFT
// mark the affected values instead of failing, the goldens tests assert the defect still shows (so a PEFT upgrade that
// fixes it is noticed), and tests that need PEFT's layer to be right use `avoid` to stay out of its reach.
struct PeftDefect {
  std::string tensor;                       // "y", "dx" or "d <tensor name>" (the golden key is "grad.x" / "grad.<name>")
  bool (*applies)(const HyperParams&);      // for these resolved hyper-parameters
  HyperParams avoid;                        // hyper-parameters under which PEFT's layer is free of it
  std::string reason;
  std::string regression_test;              // the test that reproduces it on PEFT's layer
};

struct Cost {
  double flops;  // floating-point operations
  double bytes;  // minimum bytes moved (each input read once, each output written once), in float32
};

struct AdapterInfo {
  std::string name;       // snake_case registry key
  std::string peft_type;  // the PEFT type it mirrors, or the gradguard PEFT-side type
  std::string summary;    // the forward in one line
  std::vector<HyperParamSpec> hyper;
  // The integer hyper-parameter that sets the rank of the adapter's factors, under PEFT's name (LoRA's "r",
  // AdaLoRA's "init_r"); empty for adapters without one (IA3). Generic checks set it to their shape's rank.
  std::string rank_param;
  std::vector<TensorSpec> tensors;  // frozen first (weight, bias, ...), then trainable
  // The factor the update is multiplied by, derived from the hyper-parameters (1 where PEFT has none).
  double (*scaling)(const HyperParams&) = nullptr;
  // Adapter-specific checks beyond the generic ones (e.g. rank bounds); throws InputError. Null when there are none.
  void (*validate)(const Dims&, const HyperParams&) = nullptr;
  // Hyper-parameters a generic check must set for a case of these dims and rank r beyond the rank itself: block
  // counts and sizes that PEFT requires to divide d_in or d_out (GraLoRA's gralora_k, ...), chosen as the largest
  // block structure the shape allows so that odd and prime shapes still run; and sizes that keep a check case small
  // and valid (SHiRA's rank where r (d_in + d_out) entries would not fit, VB-LoRA's bank). Null when the rank alone
  // suffices.
  void (*shape_hyper)(const Dims&, int64_t r, HyperParams&) = nullptr;
  // Generic checks run every adapter at the same few shapes (aligned, odd/prime, rank 1); an adapter that cannot
  // take some widths at all (RoAd pairs output rows, so d_out must be even) moves a shape to the nearest one it
  // accepts. Null when every shape is fine. Use check_dims(), never the shape as given, for a generic case.
  void (*fit_dims)(Dims&) = nullptr;
  // Sets every Kind::derived hyper-parameter from the dims and the others (after validate). Null when there are none.
  void (*derive)(const Dims&, HyperParams&) = nullptr;
  EigenImpl<double> eigen64;
  EigenImpl<float> eigen32;
  std::vector<BackendSupport> backends;
  Cost (*forward_cost)(int64_t n, const Dims&, const HyperParams&) = nullptr;
  Cost (*backward_cost)(int64_t n, const Dims&, const HyperParams&) = nullptr;
  std::vector<ToleranceOverride> tolerance_overrides;
  // Constants of the gradient (PEFT's stop-gradients, e.g. DoRA's detached weight norm). derive_detached() adds
  // them to a tensor map at a point; forward/backward use a given one instead of recomputing it. A finite-difference
  // check derives them once at its base point, so it checks the gradient the adapter declares with them held fixed.
  std::vector<TensorSpec> detached;
  void (*derive_detached)(TensorMap<double>& t, const HyperParams& hp) = nullptr;
  std::vector<PeftDefect> peft_defects;
  bool identity_at_init = true;  // does PEFT's default init make the adapted layer equal the base layer?
  // The base layer types the adapter is implemented for, under PEFT's names: "Linear", and those of "Conv1d",
  // "Conv2d", "Conv3d", "Embedding", HF's GPT-2 "Conv1D" where PEFT wraps them with the same maths on the input lowered to a
  // Linear (gradguard/layers.py: unfolded patches, one-hot ids, the transposed weight), which the comparisons
  // against PEFT's own layers confirm (tests/python/test_layer_types.py).
  std::vector<std::string> layer_types = {"Linear"};
  // Grouped convolutions (groups > 1): supported where PEFT's adapter on them is a grouped weight of the base's own
  // shape (out, in/groups, kernel...), so the Linear maths applies per group (layers.py stacks the groups' patches),
  // or where it acts on every channel and its grouped tensors expand block-diagonally (LoRA, DoRA, OFT, IA3).
  bool grouped_convolutions = false;
  std::vector<std::string> notes;  // semantics worth knowing (e.g. which gradient DoRA's check uses)

  const TensorSpec& tensor(const std::string& tensor_name) const;
  std::vector<const TensorSpec*> trainable(const HyperParams& hp) const;
  std::vector<const TensorSpec*> present_tensors(const HyperParams& hp) const;
  bool supports(const std::string& backend, const std::string& dtype) const;
};

// All registered adapters, in registration order.
const std::vector<const AdapterInfo*>& registry();
// Throws InputError listing the known names when `name` is not registered.
const AdapterInfo& find_adapter(const std::string& name);
std::vector<std::string> adapter_names();

// {rank_param: r} for an adapter with a rank hyper-parameter ({} for one without) plus what shape_hyper sets: how
// generic checks ask for "rank r at this shape" without knowing the parameters' names.
HyperParams rank_hyper(const AdapterInfo& info, const Dims& dims, int64_t r);

// The dims a generic check runs the adapter at for a requested shape (AdapterInfo::fit_dims; unchanged without one).
Dims check_dims(const AdapterInfo& info, Dims dims);

// Throws InputError naming tensors['<name>'] unless `values` (2 x n, row-major) are whole numbers, row indices in
// [0, d_out), column indices in [0, d_in), and no (row, col) entry repeats (TensorKind::positions).
void validate_positions(const std::string& name, const Dims& dims, const double* values, int64_t n);

// Defaults from the registry overlaid with `given`; throws InputError on unknown names, non-integers for integer
// hyper-parameters, flags other than 0/1, non-positive sizes, and whatever the adapter's own validate() rejects.
HyperParams resolve_hyper(const AdapterInfo& info, const Dims& dims, const HyperParams& given);

// The reason when PEFT's value of `tensor` ("y", "dx", "d <name>") is a known PEFT defect at these hyper-parameters.
const PeftDefect* known_peft_defect(const AdapterInfo& info, const std::string& tensor, const HyperParams& hp);

// Shape of every present tensor for these dims and hyper-parameters.
std::map<std::string, Shape> tensor_shapes(const AdapterInfo& info, const Dims& dims, const HyperParams& hp);

// Validates x (N, d_in) and every tensor's shape against the registry; names the tensor and both shapes on error.
template <class T>
void validate_call(const AdapterInfo& info, const Dims& dims, const HyperParams& hp, const Mat<T>& x,
                   const TensorMap<T>& tensors);

}  // namespace gg
