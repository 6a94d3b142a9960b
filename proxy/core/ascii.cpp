#include "core/ascii.hpp"

namespace wk::core {

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = to_lower(c);
  }
  return out;
}

}  // namespace wk::core
