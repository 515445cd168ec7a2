#include "bind_common.hpp"
#include "rnnkit/lstm.hpp"

namespace rnnkit::bind {

void bind_lstm(py::module_& m) {
  bind_cell<LstmCell>(m, "lstm", [](const py::dict&) { return LstmCell{}; });
}

}  // namespace rnnkit::bind
