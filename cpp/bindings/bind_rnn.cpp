#include "bind_common.hpp"
#include "rnnkit/rnn.hpp"

namespace rnnkit::bind {

void bind_rnn(py::module_& m) {
  bind_cell<RnnCell>(m, "rnn", [](const py::dict& o) {
    RnnCell cell;
    read_gates(o, {&cell.f});
    return cell;
  });
}

}  // namespace rnnkit::bind
