// Autograd-graph walk and backward-node instrumentation; see graph_walk.hpp for the contract.
#include "checkers/graph_walk.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace gg::flow {
namespace {

using torch::autograd::AccumulateGrad;
using torch::autograd::FunctionPostHook;
using torch::autograd::Node;
using torch::autograd::variable_list;

// Node::name() is the demangled C++ type ("torch::autograd::generated::MmBackward0"); users know nodes by the
// short name Python shows (grad_fn.name()), and Python Functions already report "MyFunctionBackward".
std::string short_name(const Node& node) {
  std::string s = node.name();
  // Strip namespaces but not template arguments: take the last "::" before any '<'.
  const auto angle = s.find('<');
  const auto pos = s.rfind("::", angle == std::string::npos ? std::string::npos : angle);
  if (pos != std::string::npos) s = s.substr(pos + 2);
  return s;
}

// Only dense floating/complex gradients can hold NaN/Inf; sparse and quantized layouts are skipped rather than
// risking an exception inside the engine (a throwing hook would abort the user's backward).
bool checkable(const at::Tensor& t) {
  return t.defined() && t.layout() == at::kStrided && (t.is_floating_point() || t.is_complex());
}

// A 0-dim bool tensor, left on the gradient's device: reading it later (after backward) avoids one host-device
// synchronisation per node while the engine is running.
std::optional<at::Tensor> finite_flag(const at::Tensor& t) {
  if (!checkable(t)) return std::nullopt;
  try {
    at::NoGradGuard no_grad;
    return t.isfinite().all();
  } catch (...) {
    return std::nullopt;  // a dtype without isfinite (e.g. some float8) is "unknown", treated as finite
  }
}

bool resolve(const std::optional<at::Tensor>& flag) {
  if (!flag) return true;
  try {
    return flag->item<bool>();
  } catch (...) {
    return true;
  }
}

struct Slot {
  bool ran = false;
  std::int64_t order = -1;
  std::vector<bool> undefined;                        // per next edge
  std::vector<std::optional<at::Tensor>> out_flags;   // per next edge
  std::vector<std::optional<at::Tensor>> in_flags;    // per incoming gradient
};

// Shared between the probe and the hooks so a hook that somehow outlives the probe still writes valid memory.
struct Recorder {
  std::mutex mu;  // CUDA backward runs on per-device engine threads; several may record at once
  std::int64_t counter = 0;
  std::vector<Slot> slots;

  void record(std::size_t idx, const variable_list& produced, const variable_list& incoming) {
    Slot s;
    s.ran = true;
    s.undefined.reserve(produced.size());
    s.out_flags.reserve(produced.size());
    for (const auto& g : produced) {
      s.undefined.push_back(!g.defined());
      s.out_flags.push_back(finite_flag(g));
    }
    s.in_flags.reserve(incoming.size());
    for (const auto& g : incoming) s.in_flags.push_back(finite_flag(g));
    std::lock_guard<std::mutex> lock(mu);
    s.order = counter++;
    if (idx < slots.size()) slots[idx] = std::move(s);
  }
};

// A post hook sees (grads the node produced = grads w.r.t. its forward inputs, one per next edge;
// grads it received). It must return the produced grads unchanged: the probe observes, never alters.
class RecordingHook final : public FunctionPostHook {
 public:
  RecordingHook(std::shared_ptr<Recorder> rec, std::size_t idx) : rec_(std::move(rec)), idx_(idx) {}
  variable_list operator()(const variable_list& outputs, const variable_list& inputs) override {
    try {
      rec_->record(idx_, outputs, inputs);
    } catch (...) {
      // Never let bookkeeping failures abort the user's backward pass.
    }
    return outputs;
  }

 private:
  std::shared_ptr<Recorder> rec_;
  std::size_t idx_;
};

}  // namespace

struct GraphProbe::Impl {
  std::vector<NodeInfo> infos;
  // Strong references keep every walked node (and so the hook keys) valid until the probe is destroyed, even
  // after backward has released the graph's saved tensors.
  std::vector<std::shared_ptr<Node>> nodes;
  std::vector<std::int64_t> parent;      // BFS tree: shortest path back to the root
  std::vector<std::int64_t> param_node;  // per param: node index of its AccumulateGrad, or -1
  std::vector<std::vector<std::size_t>> rev;  // reverse adjacency (for "which nodes lead to param p")
  std::shared_ptr<Recorder> rec;
  std::vector<std::uintptr_t> hook_keys;  // per node; 0 = no hook installed
  bool instrumented = false;
  // Resolving finiteness flags syncs with the device, so it is done once per backward: the cache is keyed by the
  // recorder's counter and recomputed if more nodes ran since (another backward with retain_graph).
  mutable std::optional<std::vector<NodeRecord>> resolved;
  mutable std::int64_t resolved_at = -1;

  std::vector<char> leads_to(std::size_t param) const {
    std::vector<char> mark(infos.size(), 0);
    const auto start = param_node.at(param);
    if (start < 0) return mark;
    std::deque<std::size_t> q{static_cast<std::size_t>(start)};
    mark[start] = 1;
    while (!q.empty()) {
      const auto n = q.front();
      q.pop_front();
      for (const auto p : rev[n]) {
        if (!mark[p]) {
          mark[p] = 1;
          q.push_back(p);
        }
      }
    }
    return mark;
  }

  const std::vector<NodeRecord>& records() const {
    std::unique_lock<std::mutex> lock;
    if (rec) lock = std::unique_lock<std::mutex>(rec->mu);
    const std::int64_t now = rec ? rec->counter : 0;
    if (resolved && resolved_at == now) return *resolved;
    std::vector<NodeRecord> out(infos.size());
    if (rec) {
      for (std::size_t i = 0; i < out.size() && i < rec->slots.size(); ++i) {
        const auto& s = rec->slots[i];
        auto& r = out[i];
        r.ran = s.ran;
        r.order = s.order;
        r.undefined_output = s.undefined;
        r.nonfinite_output.resize(s.out_flags.size());
        for (std::size_t e = 0; e < s.out_flags.size(); ++e) r.nonfinite_output[e] = !resolve(s.out_flags[e]);
        r.inputs_finite = std::all_of(s.in_flags.begin(), s.in_flags.end(), resolve);
      }
    }
    resolved = std::move(out);
    resolved_at = now;
    return *resolved;
  }
};

GraphProbe::GraphProbe(const at::Tensor& root, const std::vector<at::Tensor>& params)
    : impl_(std::make_unique<Impl>()) {
  auto& I = *impl_;
  I.param_node.assign(params.size(), -1);

  std::unordered_map<const c10::TensorImpl*, std::int64_t> param_of;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i].defined()) param_of.emplace(params[i].unsafeGetTensorImpl(), static_cast<std::int64_t>(i));
  }

  if (!root.defined() || !root.requires_grad()) return;
  // gradient_edge covers a root that is itself a leaf (its AccumulateGrad) as well as the usual grad_fn.
  auto start = torch::autograd::impl::gradient_edge(root).function;
  if (!start) return;

  std::unordered_map<const Node*, std::size_t> index;
  auto add = [&](const std::shared_ptr<Node>& fn, std::int64_t parent) {
    const auto idx = I.nodes.size();
    index.emplace(fn.get(), idx);
    I.nodes.push_back(fn);
    I.parent.push_back(parent);
    NodeInfo info;
    info.name = short_name(*fn);
    info.sequence_nr = fn->sequence_nr();
    if (auto* acc = dynamic_cast<AccumulateGrad*>(fn.get())) {
      auto it = param_of.find(acc->variable.unsafeGetTensorImpl());
      if (it != param_of.end()) {
        info.param = it->second;
        I.param_node[it->second] = static_cast<std::int64_t>(idx);
      } else {
        info.param = kUnknownLeaf;
      }
    }
    I.infos.push_back(std::move(info));
    I.rev.emplace_back();
    return idx;
  };

  add(start, -1);
  // Breadth-first so that the recorded parent chain is a shortest path: the most readable one to show a user.
  for (std::size_t head = 0; head < I.nodes.size(); ++head) {
    const auto node = I.nodes[head];  // copy: I.nodes may reallocate inside the loop
    std::vector<std::int64_t> next;
    next.reserve(node->num_outputs());
    for (const auto& edge : node->next_edges()) {
      if (!edge.is_valid()) {
        next.push_back(-1);
        continue;
      }
      auto it = index.find(edge.function.get());
      const auto target = it != index.end() ? it->second : add(edge.function, static_cast<std::int64_t>(head));
      next.push_back(static_cast<std::int64_t>(target));
      I.rev[target].push_back(head);
    }
    I.infos[head].next = std::move(next);
  }
}

GraphProbe::~GraphProbe() {
  try {
    remove_hooks();
  } catch (...) {
  }
}

const std::vector<NodeInfo>& GraphProbe::nodes() const { return impl_->infos; }

std::size_t GraphProbe::num_params() const { return impl_->param_node.size(); }

bool GraphProbe::reachable(std::size_t param) const { return impl_->param_node.at(param) >= 0; }

std::vector<std::size_t> GraphProbe::path(std::size_t param) const {
  std::vector<std::size_t> out;
  for (auto n = impl_->param_node.at(param); n >= 0; n = impl_->parent[n]) out.push_back(static_cast<std::size_t>(n));
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> GraphProbe::path_names(std::size_t param) const {
  std::vector<std::string> out;
  for (const auto n : path(param)) out.push_back(impl_->infos[n].name);
  return out;
}

std::size_t GraphProbe::instrument() {
  auto& I = *impl_;
  if (I.instrumented) throw std::logic_error("GraphProbe::instrument() called twice");
  I.instrumented = true;
  I.rec = std::make_shared<Recorder>();
  I.rec->slots.resize(I.nodes.size());
  I.hook_keys.assign(I.nodes.size(), 0);
  for (std::size_t i = 0; i < I.nodes.size(); ++i) {
    I.hook_keys[i] = I.nodes[i]->add_post_hook(std::make_unique<RecordingHook>(I.rec, i));
  }
  return I.nodes.size();
}

void GraphProbe::remove_hooks() {
  auto& I = *impl_;
  for (std::size_t i = 0; i < I.hook_keys.size(); ++i) {
    if (I.hook_keys[i] != 0) {
      I.nodes[i]->del_post_hook(I.hook_keys[i]);
      I.hook_keys[i] = 0;
    }
  }
}

std::vector<NodeRecord> GraphProbe::records() const { return impl_->records(); }

std::optional<Blocker> GraphProbe::blocker(std::size_t param) const {
  const auto& I = *impl_;
  if (!I.rec || !reachable(param) || I.nodes.empty()) return std::nullopt;
  const auto& recs = I.records();
  const auto leads = I.leads_to(param);
  // Follow only edges that really carried a gradient; the first node met whose gradient toward the param is
  // missing is where the flow stopped. Nodes further down that edge merely never received anything.
  std::vector<char> seen(I.nodes.size(), 0);
  std::deque<std::size_t> q{0};
  seen[0] = 1;
  while (!q.empty()) {
    const auto n = q.front();
    q.pop_front();
    const auto& r = recs[n];
    if (!r.ran) {
      if (leads[n]) return Blocker{n, -1};
      continue;
    }
    const auto& next = I.infos[n].next;
    for (std::size_t e = 0; e < next.size(); ++e) {
      const auto t = next[e];
      if (t < 0 || !leads[t]) continue;
      if (e < r.undefined_output.size() && r.undefined_output[e]) return Blocker{n, static_cast<std::int64_t>(e)};
      if (!seen[t]) {
        seen[t] = 1;
        q.push_back(static_cast<std::size_t>(t));
      }
    }
  }
  return std::nullopt;
}

std::optional<std::size_t> GraphProbe::first_nonfinite(std::optional<std::size_t> param) const {
  const auto& I = *impl_;
  if (!I.rec) return std::nullopt;
  const auto& recs = I.records();
  std::vector<char> leads;
  if (param) {
    if (!reachable(*param)) return std::nullopt;
    leads = I.leads_to(*param);
  }
  std::optional<std::size_t> best;
  for (std::size_t n = 0; n < recs.size(); ++n) {
    const auto& r = recs[n];
    if (!r.ran || !r.inputs_finite) continue;
    if (best && recs[*best].order <= r.order) continue;
    const auto& next = I.infos[n].next;
    bool produced = false;
    for (std::size_t e = 0; e < r.nonfinite_output.size() && !produced; ++e) {
      // Gradients produced for invalid edges are dropped by the engine, so they cannot poison anything.
      if (!r.nonfinite_output[e] || e >= next.size() || next[e] < 0) continue;
      produced = !param || leads[next[e]];
    }
    if (produced) best = n;
  }
  return best;
}

}  // namespace gg::flow
