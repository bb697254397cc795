// cpu/peak.h: what this CPU can do at best, measured (for the benchmarks' "fraction of peak").
#pragma once

#include <cstdint>

namespace nanocnn::cpu {

// FP32 fused multiply-add throughput in GFLOP/s (one FMA = 2 FLOP), summed over `threads`
// threads that all run at once, each for about `seconds`. Uses the widest FMA this CPU has
// (see peak_fma_isa). Raises ValueError for threads < 1 or seconds outside (0, 60].
double peak_fma_gflops(int threads, double seconds);

// The instruction set peak_fma_gflops uses: "avx512", "avx2" or "generic" (plain C++ multiply
// and add, as the compiler vectorises it for the baseline ISA; a lower bound, not a peak).
const char* peak_fma_isa();

// Memory copy bandwidth in GB/s (bytes read + bytes written, 1 GB = 1e9 bytes) of `threads`
// threads copying `bytes` in all (each its own part, read once, written once), best of repeats
// over about `seconds`. With `bytes` well above the last-level cache this is main memory's.
double peak_copy_gbs(int threads, int64_t bytes, double seconds);

namespace peak_detail {
// Defined in peak_avx512.cpp / peak_avx2.cpp (x86-64 builds only): run `iterations` rounds of
// independent FMA chains on registers and return the FLOPs done. *sink receives a value that
// depends on every chain, so the compiler cannot drop the work.
int64_t fma_chains_avx512(int64_t iterations, float* sink);
int64_t fma_chains_avx2(int64_t iterations, float* sink);
}  // namespace peak_detail

}  // namespace nanocnn::cpu
