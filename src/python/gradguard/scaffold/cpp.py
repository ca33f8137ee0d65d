"""The C++ side of a scaffolded adapter: src/adapters/<name>/{entry.cpp, eigen.hpp, torch.cpp, cuda.cpp}. The stubs
compile (under the project's -Wall -Wextra -Werror) and throw gg::NotImplemented naming themselves, so the generic
suites run on the new adapter at once and say what is missing."""
from __future__ import annotations

from string import Template

from .spec import INITS, AdapterDesc, TensorDesc

_CPP_SIZE = {"d_in": "d.d_in", "d_out": "d.d_out", "r": "lowrank::rank(hp)"}


def _cpp_shape(t: TensorDesc) -> str:
    return "Shape{" + ", ".join(_CPP_SIZE.get(s, f"int64_t{{{s}}}") for s in t.shape) + "}"


def _eigen_layout(t: TensorDesc) -> str:
    if len(t.shape) == 2:
        return f"({t.shape[0]}, {t.shape[1]})"
    return f"(1, {t.shape[0]}) row" if t.shape else "(1, 1)"


ENTRY = Template('''\
// Registry entry for `$name`, scaffolded by `gradguard new-adapter`: the maths go in eigen.hpp (the float64 oracle)
// and torch.cpp; this file says what the adapter is. PEFT side: src/python/gradguard/peft/$name/.
#include "adapters/$name/eigen.hpp"

namespace gg {

const AdapterInfo& ${name}_info() {
  static const AdapterInfo info = [] {
    // LoRA's hyper-parameters (r, lora_alpha, use_rslora; scaling = lora_alpha / r), the frozen base tensors (weight,
    // bias), the eigen and torch backends at float64/float32 and the rank-r cost model. Override what differs.
    AdapterInfo a = lowrank::family_entry("$name", "$peft_type",
                                          "$name (scaffolded: say its forward here, e.g. Y = X Wᵀ + b + s·X Aᵀ Bᵀ)",
                                          {${name}::forward<double>, ${name}::backward<double>},
                                          {${name}::forward<float>, ${name}::backward<float>});
    // Trainable tensors: name, shape from (d_in, d_out, hyper-parameters), PEFT's state-dict key, PEFT's init and,
    // last, why the tensor gets an exactly zero gradient at that init ("" when it does not: the generic test
    // PeftDefaultInitIsIdentityAndZerosAreWherePredicted holds this to the maths).
$tensors
    // When PEFT's default init does not leave the layer equal to its base layer: a.identity_at_init = false;
    // Once cuda.cpp is written: a.backends.push_back(linear::cuda_support());
    return a;
  }();
  return info;
}

}  // namespace gg
''')

TENSOR = Template('''\
    a.tensors.push_back({"$tname", TensorRole::trainable,
                         [](const Dims& d, const HyperParams& hp) { return $shape; },
                         "$tname.{adapter}", "$init", "", {}});''')

EIGEN = Template('''\
// $name, scaffolded by `gradguard new-adapter`: write the forward and its analytic backward here. The float64
// instantiation is the oracle that central finite differences check (`gradguard gradcheck $name --mode full`).
// Tensors as t.at(name), each a matrix:
//   x (N, d_in) input rows; weight (d_out, d_in) and bias (1, d_out) frozen; hp.at("r"), lowrank::scaling(hp)
$layout
#pragma once
#include "core/errors.hpp"
#include "core/lowrank.hpp"

namespace gg::$name {

// Y (N, d_out) = X Wᵀ + b + the adapter's term.
template <class T>
Mat<T> forward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp) {
  throw NotImplemented("not implemented: $name forward (eigen): "
                       "write it in src/adapters/$name/eigen.hpp");
}

// dx (N, d_in) and dparams[name] (each tensor's layout above) for the upstream gradient dy (N, d_out).
template <class T>
Grads<T> backward(const Mat<T>& x, const TensorMap<T>& t, const HyperParams& hp, const Mat<T>& dy) {
  throw NotImplemented("not implemented: $name backward (eigen): "
                       "write it in src/adapters/$name/eigen.hpp");
}

}  // namespace gg::$name
''')

# The torch and cuda backends share one interface (TorchImpl): one stub, with each backend's header and includes.
TORCH_HEADER = """\
// $name on LibTorch, scaffolded by `gradguard new-adapter`: the forward and the analytic backward that gradguard's
// autograd op, the flow check and gg.fast_path run. Tensors keep their registry shapes here (a scalar is 0-d, a
// vector 1-d). `saved` (forward) keeps intermediates for the backward; `request.wants(name)` / `request.dx` say which
// gradients are needed.
#include <ATen/ATen.h>

#include "core/errors.hpp"
#include "core/lowrank.hpp"
#include "core/torch_backend.hpp"
"""

CUDA_HEADER = """\
// $name on the cuda backend, scaffolded by `gradguard new-adapter`: compiled in every CUDA build but offered only once
// entry.cpp declares the backend (a.backends.push_back(linear::cuda_support())). Compose cuBLAS GEMMs and fused
// kernels here, as src/core/cuda/gated_lowrank.hpp does for the LoRA family.
#include "core/errors.hpp"
#include "core/torch_backend.hpp"
"""

BACKEND_STUB = Template('''\
$header
namespace gg {
namespace {

at::Tensor forward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, TorchTensors* saved) {
  throw NotImplemented("not implemented: $name forward ($backend): "
                       "write it in src/adapters/$name/$backend.cpp");
}

TorchGrads backward(const at::Tensor& x, const TorchTensors& t, const HyperParams& hp, const at::Tensor& dy,
                    const TorchTensors& saved, const GradRequest& request) {
  throw NotImplemented("not implemented: $name backward ($backend): "
                       "write it in src/adapters/$name/$backend.cpp");
}

}  // namespace

const TorchImpl& ${name}_$backend() {
  static const TorchImpl impl{forward, backward};
  return impl;
}

}  // namespace gg
''')


def _backend_stub(name: str, backend: str, header: str) -> str:
    return BACKEND_STUB.substitute(name=name, backend=backend, header=Template(header).substitute(name=name))


def cpp_files(desc: AdapterDesc) -> dict[str, str]:
    """Relative path -> text of the adapter's C++ folder."""
    tensors = "\n".join(TENSOR.substitute(tname=t.name, shape=_cpp_shape(t), init=INITS[t.init]) for t in desc.tensors)
    width = max(len(t.name) for t in desc.tensors)
    layout = "\n".join(f"//   {t.name.ljust(width)}  {_eigen_layout(t):<16} registry shape {t.words}, "
                       f"PEFT init {t.init}" for t in desc.tensors)
    common = dict(name=desc.name, peft_type=desc.peft_type)
    folder = f"src/adapters/{desc.name}"
    return {
        f"{folder}/entry.cpp": ENTRY.substitute(common, tensors=tensors),
        f"{folder}/eigen.hpp": EIGEN.substitute(common, layout=layout),
        f"{folder}/torch.cpp": _backend_stub(desc.name, "torch", TORCH_HEADER),
        f"{folder}/cuda.cpp": _backend_stub(desc.name, "cuda", CUDA_HEADER),
    }
