// error.h: checks that raise.
//
// Every check on user input throws one of the exception types below; bindings.cpp maps them to
// Python's ValueError, TypeError and MemoryError. Nothing in nanocnn asserts, aborts or exits on
// user input. A message names the argument, what was expected and what was given, e.g.
//   conv2d: w must have 4 dimensions (K, C, R, S), got shape (16, 3, 3)
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace nanocnn {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct MemoryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

// "(64, 3, 32, 32)"
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace nanocnn

// NC_CHECK(cond, "conv2d: x must ...", shape_str(x.shape())) throws ValueError when cond is false.
#define NC_CHECK(cond, ...)                                                     \
  do {                                                                          \
    if (!(cond)) throw ::nanocnn::ValueError(::nanocnn::detail::concat(__VA_ARGS__)); \
  } while (0)

#define NC_CHECK_TYPE(cond, ...)                                                \
  do {                                                                          \
    if (!(cond)) throw ::nanocnn::TypeError(::nanocnn::detail::concat(__VA_ARGS__)); \
  } while (0)
