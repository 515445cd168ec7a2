#include "bind_common.hpp"
#include "rnnkit/gru.hpp"

namespace rnnkit::bind {

void bind_gru(py::module_& m) {
  bind_cell<GruCell>(m, "gru", [](const py::dict& o) {
    GruCell cell;
    cell.reset_after = flag(o, "reset_after", true);
    read_gates(o, {&cell.f, &cell.g});
    return cell;
  });
}

}  // namespace rnnkit::bind
