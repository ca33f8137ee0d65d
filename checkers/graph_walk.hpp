// Autograd-graph analysis for the gradient-flow checker (gg.check).
//
// A GraphProbe walks the backward graph of one loss once, before backward runs, and answers two kinds of
// questions:
//   * structural (before backward): is parameter i reachable from the loss, and along which path of backward
//     nodes (loss.grad_fn ... AccumulateGrad)?
//   * behavioural (after backward, when instrument() was called before it): which nodes ran, in which order,
//     which of their produced gradients were undefined (a backward function returned None), and which node was
//     the first to turn finite incoming gradients into NaN/Inf.
//
// The header deliberately includes no ATen/torch headers (DESIGN.md §5: compile time on 2 cores); at::Tensor
// is only forward-declared and the autograd types live behind a pimpl in graph_walk.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace gg::flow {

// Marker values for NodeInfo::param.
inline constexpr std::int64_t kNotALeaf = -1;      // an ordinary backward function
inline constexpr std::int64_t kUnknownLeaf = -2;   // AccumulateGrad of a leaf that is not one of the params

// One backward node of the walked graph. Indices refer to GraphProbe::nodes(); index 0 is the loss's grad_fn.
struct NodeInfo {
  std::string name;            // e.g. "MmBackward0", "MyFunctionBackward", "AccumulateGrad"
  std::uint64_t sequence_nr = 0;
  // One entry per next edge, i.e. per gradient this node produces (w.r.t. its forward inputs): the index of the
  // node that gradient flows into, or -1 when the edge is invalid (that input did not require grad).
  std::vector<std::int64_t> next;
  // Index into the params given to the probe when this node is a parameter's AccumulateGrad, else a marker above.
  std::int64_t param = kNotALeaf;
};

// What the instrumentation saw of one node during backward.
struct NodeRecord {
  bool ran = false;
  std::int64_t order = -1;                // position in execution order among the walked nodes, -1 if not run
  std::vector<bool> undefined_output;     // per next edge: the gradient produced for it was undefined (None)
  std::vector<bool> nonfinite_output;     // per next edge: the gradient produced for it had NaN/Inf
  bool inputs_finite = true;              // every defined incoming gradient was finite
};

// The node that cut a parameter off: it ran, but produced no gradient for edge `edge`, which leads to the param.
// edge == -1 means the node is on a carrying path yet never ran at all.
struct Blocker {
  std::size_t node = 0;
  std::int64_t edge = -1;
};

class GraphProbe {
 public:
  // Walks the graph of `root` (normally the scalar loss) breadth-first from root.grad_fn() through next_edges().
  // Parameters are recognised by the TensorImpl held by their AccumulateGrad node, so views, aliases and
  // `.data`/`.detach()` copies (new TensorImpls) are told apart exactly. A root without grad_fn gives an empty
  // graph in which nothing is reachable.
  GraphProbe(const at::Tensor& root, const std::vector<at::Tensor>& params);
  ~GraphProbe();
  GraphProbe(const GraphProbe&) = delete;
  GraphProbe& operator=(const GraphProbe&) = delete;

  const std::vector<NodeInfo>& nodes() const;
  std::size_t num_params() const;

  bool reachable(std::size_t param) const;
  // Node indices of one shortest path from the root to the param's AccumulateGrad (empty when unreachable).
  std::vector<std::size_t> path(std::size_t param) const;
  std::vector<std::string> path_names(std::size_t param) const;

  // Adds a post hook to every walked node; returns how many were added. Call before backward, once.
  std::size_t instrument();
  // Removes the hooks (idempotent; the destructor calls it too, so an exception in backward leaks nothing).
  void remove_hooks();

  // Per-node records, finiteness resolved (this synchronises with the device once per recorded tensor flag).
  std::vector<NodeRecord> records() const;

  // For a param that got no gradient although reachable: the first node, breadth-first from the root along
  // edges that actually carried a gradient, that ran but returned an undefined gradient for an edge leading to
  // the param. nullopt when nothing blocks it or nothing was recorded. Only meaningful for a param whose gradient
  // is None: one that also got a gradient along another path may still have a blocked edge on some path.
  std::optional<Blocker> blocker(std::size_t param) const;

  // The first node in execution order that received only finite gradients but produced a NaN/Inf one. With a
  // param, only produced gradients on edges that lead to that param count.
  std::optional<std::size_t> first_nonfinite(std::optional<std::size_t> param = std::nullopt) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gg::flow
