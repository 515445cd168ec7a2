#include "bind_common.hpp"
#include "rnnkit/gru.hpp"

namespace rnnkit::bind {

void bind_gru(py::module_& m) {
  bind_cell<GruCell>(m, "gru", [](const py::dict& o) {
    GruCell cell;
    cell.reset_after = !o.contains("reset_after") || py::cast<bool>(o["reset_after"]);
    return cell;
  });
}

}  // namespace rnnkit::bind
