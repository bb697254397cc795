// parallel.h: how nanocnn uses threads.
//
// One OpenMP thread count for all of nanocnn, set with nc.set_num_threads (default: what OpenMP
// would use, which honours OMP_NUM_THREADS). It is passed explicitly to every parallel region, so
// other libraries sharing the OpenMP runtime (PyTorch does) neither change nor see it.
// Rules the kernels follow:
//   - one parallel region per op call; work is split over batch / channels / output tiles;
//   - never nest: code that may run inside a region (e.g. the GEMM) checks in_parallel() and
//     runs on the calling thread;
//   - an op too small for two threads runs whole on the calling thread (SerialScope);
//   - results do not depend on the thread count (no reductions whose order changes with it);
//   - an exception must never leave an OpenMP region (that terminates the process):
//     parallel_for catches it in the thread and rethrows it on the caller's thread afterwards.
#pragma once

#include <omp.h>

#include <cstdint>
#include <exception>

namespace nanocnn {

int get_num_threads();
void set_num_threads(int n);  // n >= 1, else ValueError

// How many SerialScopes are open on this thread (parallel.cpp).
int& serial_scopes();

// True where a new parallel region must not be opened: inside one already, or in a SerialScope.
inline bool in_parallel() { return omp_in_parallel() != 0 || serial_scopes() > 0; }

// While one is alive, every parallel_for (and GEMM) on this thread runs inline. For an op too
// small to repay a parallel region: opening one costs 1.5-4 us on the 2-core Zen 4 VM, and a
// cache line written by one core and read by the other took 90-350 ns there (a round trip,
// measured). A batch-1 2x2 conv of ~1 MFLOP took 13-60 us on two threads, 7-17 on one.
class SerialScope {
 public:
  explicit SerialScope(bool active = true) : active_(active) {
    if (active_) ++serial_scopes();
  }
  ~SerialScope() {
    if (active_) --serial_scopes();
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool active_;
};

// Calls body(begin, end) on disjoint chunks that cover [0, total), one static chunk per thread.
// Runs inline when the work is small (total * cost_per_item < ~32k operations), when only one
// thread is configured, or when already inside a parallel region or a SerialScope.
template <class Body>
void parallel_for(int64_t total, int64_t cost_per_item, const Body& body) {
  if (total <= 0) return;
  const int threads = get_num_threads();
  if (threads == 1 || in_parallel() || total == 1 || total * cost_per_item < (1 << 15)) {
    body(int64_t{0}, total);
    return;
  }
  std::exception_ptr error;
#pragma omp parallel num_threads(threads)
  {
    const int64_t nt = omp_get_num_threads();
    const int64_t t = omp_get_thread_num();
    const int64_t chunk = (total + nt - 1) / nt;
    const int64_t begin = t * chunk;
    const int64_t end = begin + chunk < total ? begin + chunk : total;
    try {
      if (begin < end) body(begin, end);
    } catch (...) {
#pragma omp critical(nanocnn_parallel_for_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace nanocnn
