#include "core/parallel.h"

#include "core/error.h"

namespace nanocnn {

namespace {
int& thread_count() {
  static int count = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
  return count;
}
}  // namespace

int get_num_threads() { return thread_count(); }

int& serial_scopes() {
  thread_local int depth = 0;
  return depth;
}

void set_num_threads(int n) {
  NC_CHECK(n >= 1, "set_num_threads: n must be >= 1, got ", n);
  thread_count() = n;
}

}  // namespace nanocnn
