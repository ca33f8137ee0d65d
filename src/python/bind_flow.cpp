// Python bindings for the gradient-flow checker's native half (checkers/graph_walk.*).
//
// The project's module gradguard._C calls bind_flow(m); nothing here defines a module of its own, so the same
// file also links into a throw-away torch.utils.cpp_extension shim during development.
#include <torch/extension.h>

#include <pybind11/stl.h>

#include "checkers/graph_walk.hpp"

namespace py = pybind11;

namespace {

py::object blocker_to_py(const gg::flow::GraphProbe& probe, std::size_t param) {
  const auto b = probe.blocker(param);
  if (!b) return py::none();
  py::dict d;
  d["node"] = b->node;
  d["name"] = probe.nodes()[b->node].name;
  d["edge"] = b->edge;
  return d;
}

py::object nonfinite_to_py(const gg::flow::GraphProbe& probe, std::optional<std::size_t> param) {
  const auto n = probe.first_nonfinite(param);
  if (!n) return py::none();
  py::dict d;
  d["node"] = *n;
  d["name"] = probe.nodes()[*n].name;
  return d;
}

}  // namespace

void bind_flow(py::module_& m) {
  using gg::flow::GraphProbe;

  py::class_<GraphProbe>(m, "GraphProbe",
                         "Walks the autograd graph of `root` (the loss) and, once instrument()ed, records what each "
                         "backward node did during loss.backward(). Parameters are matched by their AccumulateGrad "
                         "node's tensor.")
      .def(py::init<const at::Tensor&, const std::vector<at::Tensor>&>(), py::arg("root"), py::arg("params"))
      .def_property_readonly("num_nodes", [](const GraphProbe& p) { return p.nodes().size(); })
      .def_property_readonly("num_params", &GraphProbe::num_params)
      .def("node_names",
           [](const GraphProbe& p) {
             std::vector<std::string> out;
             for (const auto& n : p.nodes()) out.push_back(n.name);
             return out;
           })
      .def("nodes",
           [](const GraphProbe& p) {
             py::list out;
             for (const auto& n : p.nodes()) {
               py::dict d;
               d["name"] = n.name;
               d["sequence_nr"] = n.sequence_nr;
               d["next"] = n.next;
               d["param"] = n.param;
               out.append(d);
             }
             return out;
           },
           "Per node: name, sequence_nr, next (target node index per next edge, -1 = invalid edge), param "
           "(param index for a parameter's AccumulateGrad, -1 = ordinary node, -2 = some other leaf).")
      .def("reachable", &GraphProbe::reachable, py::arg("param"))
      .def("path", &GraphProbe::path_names, py::arg("param"),
           "Node names of one shortest path loss.grad_fn -> ... -> AccumulateGrad; empty if unreachable.")
      .def("instrument", &GraphProbe::instrument, "Add a recording post hook to every walked node (before backward).")
      .def("remove_hooks", &GraphProbe::remove_hooks)
      .def("records",
           [](const GraphProbe& p) {
             py::list out;
             const auto recs = p.records();
             for (std::size_t i = 0; i < recs.size(); ++i) {
               const auto& r = recs[i];
               py::dict d;
               d["name"] = p.nodes()[i].name;
               d["ran"] = r.ran;
               d["order"] = r.order;
               d["undefined_output"] = r.undefined_output;
               d["nonfinite_output"] = r.nonfinite_output;
               d["inputs_finite"] = r.inputs_finite;
               out.append(d);
             }
             return out;
           },
           "Per node, after backward: ran, order (execution order), undefined_output / nonfinite_output (per next "
           "edge), inputs_finite.")
      .def("blocker", &blocker_to_py, py::arg("param"),
           "For a reachable param that got no gradient: {node, name, edge} of the first node (from the loss, along "
           "edges that carried a gradient) that ran but returned None toward it; None if there is none.")
      .def(
          "first_nonfinite",
          [](const GraphProbe& p, std::optional<std::size_t> param) { return nonfinite_to_py(p, param); },
          py::arg("param") = py::none(),
          "{node, name} of the first node in execution order that turned finite incoming gradients into NaN/Inf "
          "(restricted to gradients flowing toward `param` when given); None if there is none.");

  m.def(
      "autograd_paths",
      [](const at::Tensor& root, const std::vector<at::Tensor>& params) {
        GraphProbe probe(root, params);
        std::vector<std::vector<std::string>> out;
        out.reserve(params.size());
        for (std::size_t i = 0; i < params.size(); ++i) out.push_back(probe.path_names(i));
        return out;
      },
      py::arg("root"), py::arg("params"),
      "For each param, the node names of one shortest path from root.grad_fn to its AccumulateGrad ([] if the "
      "param is unreachable from root).");
}
