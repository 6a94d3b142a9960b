#include "observe/counters.hpp"

namespace wk::observe {

counters& process_counters() {
  static counters instance;
  return instance;
}

}  // namespace wk::observe
