#include "bind_common.hpp"
#include "rnnkit/lstm.hpp"

namespace rnnkit::bind {

void bind_lstm(py::module_& m) {
  bind_cell<LstmCell>(m, "lstm", [](const py::dict& o) {
    LstmCell cell;
    cell.peepholes = flag(o, "peepholes");
    read_gates(o, {&cell.f, &cell.g, &cell.h}, 2);  // the clip limits the gates, not c_t where it enters h
    return cell;
  });
}

}  // namespace rnnkit::bind
