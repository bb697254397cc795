// gemm.cuh: one tiled FP32 matrix product on the GPU, shared by dense.cu and conv2d.cu.
//
//   C (M x N) = sum over k in [0, K) of  A(m, k) * B(k, n)
//
// The main loop never touches memory itself: it asks two *loaders* for the elements of A and B
// and hands each finished element of C to an *epilogue*. A loader for a plain matrix reads one
// float; a loader for a convolution gathers the element of the input image that the GEMM index
// stands for (implicit GEMM: no im2col buffer), reading zero in the padding. One main loop thus
// serves the dense layer (either operand transposed) and all three convolution directions.
//
// Block tile (Tile below): BM x BN outputs per block of 256 threads, BK = 16 deep per step; each
// thread keeps a 4 x 4 tile of C in registers, fed per k by one float4 of A and one of B from
// shared memory (16 FMAs per 2 shared loads). Two shapes: 64 x 64 (the general case) and
// 16 x 256 (few rows: 16 or 32 output channels, a small batch); launch_gemm picks the one with
// less padding. Per step the block copies the next A and B tiles from global memory into
// registers *before* it computes on the current tiles in shared memory, so the loads are in
// flight during the FMAs; a barrier after the copy into shared memory and one after the compute
// keep writers and readers apart (one buffer, no races).
//
// Loading a tile (TileFetch): 256 threads, each fetching BM*BK/256 (or BN*BK/256) elements.
// Consecutive threads take consecutive addresses: along k when the operand is contiguous along
// k (Loader::kAlongK), otherwise along m (or n). Shared rows are padded by 4 floats, so the
// transposing stores of a k-contiguous operand spread over 16 banks (a 2-way conflict instead
// of 16-way), and rows stay 16-byte aligned for the float4 reads.
//
// Loader contract (see MatrixAlongK below for the simplest one):
//   static constexpr bool kAlongK;        which index is contiguous in memory
//   struct Fixed; Fixed fixed(int i);     what depends on the row of A (column of B) alone
//   struct Red;   Red red(int k);         what depends on the reduction index alone
//   float load(const Fixed&, const Red&)  the element; the loader returns 0 where the operand
//                                         itself is zero (padding); the main loop never calls it
//                                         outside [0, M or N) x [k_begin, k_end).
// Splitting the work into fixed and reduction parts matters for convolutions: decomposing an
// index into (image, row, column) costs a few instructions, and each thread decomposes its
// fixed indices once per kernel and its reduction indices once per step, not once per element.
//
// Epilogue contract: `void operator()(int m, int n, float value) const`, called once for every
// (m, n) of the block's tile inside M x N.
//
// Deterministic split over k: blockIdx.y picks a chunk [y * chunk_len, (y+1) * chunk_len) of the
// reduction; each chunk's product goes to its own slot and the slots are summed in chunk order
// afterwards (PartialSums), so results do not depend on the GPU or on scheduling.
//
// Index arithmetic: every GEMM extent of one launch is at most kMaxGemmExtent (2^30; the callers
// split a batch into groups to stay under it), so tile indices are `int` with room to spare;
// addresses are computed in int64 (int64_t(row) * ld + col). Arithmetic is FP32 FMA only (no TF32,
// no tensor cores): the results match a float64 reference within float32 summation error.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/allocator.h"
#include "cuda/common.cuh"

namespace nanocnn::cuda {

// Every GEMM extent of one launch (M, N, K) is at most this; see check_gemm_extent.
constexpr int64_t kMaxGemmExtent = int64_t(1) << 30;

// Raises ValueError naming `op` and `what` when value > kMaxGemmExtent (defined in gemm.cu).
void check_gemm_extent(const char* op, const char* what, int64_t value);

// ---- fast division by a run-time constant ------------------------------------------------------
//
// n / d and n % d for 0 <= n < 2^31 and 1 <= d <= 2^31 - 1, with one multiply-high instead of a
// division (about 20 instructions on the GPU): q = (umulhi(n, magic) + n) >> shift, where
// shift = ceil(log2 d) and magic = floor(2^32 (2^shift - d) / d) + 1 (Granlund & Montgomery,
// "Division by invariant integers using multiplication", 1994). The sum fits 32 bits because
// umulhi(n, magic) < n < 2^31.
struct Divmod {
  int divisor = 1;
  unsigned int magic = 1;
  int shift = 0;

  Divmod() = default;
  explicit Divmod(int d) : divisor(d) {
    shift = 0;
    while ((int64_t(1) << shift) < d) ++shift;
    const uint64_t two_32 = uint64_t(1) << 32;
    magic = static_cast<unsigned int>(two_32 * ((uint64_t(1) << shift) - uint64_t(d)) /
                                          uint64_t(d) + 1);
  }

  __host__ __device__ int div(int n) const {
#ifdef __CUDA_ARCH__
    const unsigned int hi = __umulhi(static_cast<unsigned int>(n), magic);
#else
    const unsigned int hi =
        static_cast<unsigned int>((uint64_t(static_cast<unsigned int>(n)) * magic) >> 32);
#endif
    return static_cast<int>((hi + static_cast<unsigned int>(n)) >> shift);
  }
  // q = n / d and r = n % d.
  __host__ __device__ void divmod(int n, int& q, int& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

// ---- tiles ---------------------------------------------------------------------------------------

// kMinBlocks (blocks per multiprocessor) caps the registers: 4 blocks of 256 threads leave 64
// per thread, enough for the square tile (no spills on sm_90); the wide tile's B operand gives
// each thread 16 rows to track when it is contiguous along k, so it gets 2 blocks (128).
template <int BM_, int BN_, int kMinBlocks_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = 16;  // block tile and depth of one step
  static constexpr int TM = 4, TN = 4;                // per-thread register tile
  static constexpr int kThreads = (BM / TM) * (BN / TN);
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr int kPad = 4;  // floats of padding per shared row
  static_assert(kThreads == 256, "the tile loaders assume 256 threads");
};
using TileSquare = Tile<64, 64, 4>;  // the general case
using TileWide = Tile<16, 256, 2>;   // few rows (M <= 16 or 32), many columns

// ---- plain matrix loaders ----------------------------------------------------------------------

// Element (i, k) of a row-major matrix at p[i * ld + k]: contiguous along k.
// As A: A(m, k) = p[m * ld + k].  As B: B(k, n) = p[n * ld + k] (a transposed B).
struct MatrixAlongK {
  static constexpr bool kAlongK = true;
  const float* p;
  int64_t ld;
  struct Fixed {
    int64_t offset;
  };
  struct Red {
    int k;
  };
  __device__ Fixed fixed(int i) const { return {int64_t(i) * ld}; }
  __device__ Red red(int k) const { return {k}; }
  __device__ float load(const Fixed& f, const Red& r) const { return p[f.offset + r.k]; }
};

// Element (i, k) at p[k * ld + i]: contiguous along i.
// As A: A(m, k) = p[k * ld + m] (a transposed A).  As B: B(k, n) = p[k * ld + n].
struct MatrixAlongI {
  static constexpr bool kAlongK = false;
  const float* p;
  int64_t ld;
  struct Fixed {
    int i;
  };
  struct Red {
    int64_t offset;
  };
  __device__ Fixed fixed(int i) const { return {i}; }
  __device__ Red red(int k) const { return {int64_t(k) * ld}; }
  __device__ float load(const Fixed& f, const Red& r) const { return p[r.offset + f.i]; }
};

// The epilogue of every plain product: row-major C with leading dimension ld, plus bias[n] per
// column when bias is not null. With a split reduction, chunk blockIdx.y writes its own slot,
// the matrix at c + blockIdx.y * slot_floats (blockIdx.y is 0 without a split).
struct StoreMatrix {
  float* c;
  int64_t ld;
  int64_t slot_floats;
  const float* bias;  // per column, or null
  __device__ void operator()(int m, int n, float value) const {
    const int64_t at = int64_t(blockIdx.y) * slot_floats + int64_t(m) * ld + n;
    c[at] = bias != nullptr ? value + bias[n] : value;
  }
};

// ---- one tile of one operand, global -> registers -> shared ------------------------------------
//
// ROWS is BM (for A) or BN (for B): the tile is ROWS x BK, stored in shared memory as
// [BK][ROWS + kPad] so that the compute loop reads 4 consecutive rows (m or n) for one k.
template <class Tile, int ROWS, class Loader>
struct TileFetch {
  static constexpr int BK = Tile::BK;
  static constexpr int kLoads = ROWS * BK / Tile::kThreads;  // elements per thread and step
  static constexpr bool kAlongK = Loader::kAlongK;
  // kAlongK: thread t takes k = t % BK and rows t / BK + j * kRowStep (j < kLoads).
  // otherwise: thread t takes row t % ROWS and k = t / ROWS + j * kKStep (j < kLoads).
  static constexpr int kRowStep = Tile::kThreads / BK;
  static constexpr int kKStep = Tile::kThreads / ROWS;
  static_assert(kLoads >= 1 && ROWS * BK == kLoads * Tile::kThreads, "tile not divisible");
  static_assert(Tile::kThreads % ROWS == 0 || kAlongK, "rows must divide the thread count");
  static constexpr int kFixed = kAlongK ? kLoads : 1;  // fixed indices per thread
  static constexpr int kRed = kAlongK ? 1 : kLoads;    // reduction indices per thread and step

  typename Loader::Fixed fixed[kFixed];
  bool row_ok[kFixed];
  float value[kLoads];

  __device__ int row_of(int j) const {
    return kAlongK ? int(threadIdx.x) / BK + j * kRowStep : int(threadIdx.x) % ROWS;
  }
  __device__ int k_of(int j) const {
    return kAlongK ? int(threadIdx.x) % BK : int(threadIdx.x) / ROWS + j * kKStep;
  }

  // Once per kernel: the fixed parts of this thread's rows row0 + row_of(j), bounded by `rows`.
  __device__ void init(const Loader& loader, int row0, int rows) {
#pragma unroll
    for (int j = 0; j < kFixed; ++j) {
      const int row = row0 + row_of(j);
      row_ok[j] = row < rows;
      fixed[j] = loader.fixed(row_ok[j] ? row : row0);  // row0 < rows: always a valid index
    }
  }

  // The step starting at k0: this thread's elements into registers, zero outside [.., k_end).
  __device__ void fetch(const Loader& loader, int k0, int k_end) {
#pragma unroll
    for (int j = 0; j < kRed; ++j) {
      const int k = k0 + k_of(j);
      const bool k_ok = k < k_end;
      const typename Loader::Red red = loader.red(k_ok ? k : k0);  // k0 < k_end: valid
      if constexpr (kAlongK) {
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
          value[i] = (k_ok && row_ok[i]) ? loader.load(fixed[i], red) : 0.f;
      } else {
        value[j] = (k_ok && row_ok[0]) ? loader.load(fixed[0], red) : 0.f;
      }
    }
  }

  __device__ void store(float (*shared)[ROWS + Tile::kPad]) const {
#pragma unroll
    for (int j = 0; j < kLoads; ++j) shared[k_of(j)][row_of(j)] = value[j];
  }
};

// ---- the kernel ----------------------------------------------------------------------------------
//
// Grid: x = output tiles (row-major over (M / BM, N / BN), so neighbouring blocks share A rows),
//       y = chunks of the reduction, chunk c covering [c * chunk_len, min(K, (c+1) * chunk_len)).
// With several chunks the epilogue itself keeps them apart (StoreMatrix writes slot blockIdx.y).
template <class Tile, class LoaderA, class LoaderB, class Epilogue>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocks)
    gemm_kernel(int M, int N, int K, int chunk_len, LoaderA a, LoaderB b, Epilogue epilogue) {
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;
  constexpr int kPad = Tile::kPad;
  __shared__ __align__(16) float As[BK][BM + kPad];
  __shared__ __align__(16) float Bs[BK][BN + kPad];

  const int n_tiles = (N + BN - 1) / BN;
  const int m0 = int(blockIdx.x / n_tiles) * BM;
  const int n0 = int(blockIdx.x % n_tiles) * BN;
  const int k_begin = int(blockIdx.y) * chunk_len;
  const int k_end = min(K, k_begin + chunk_len);
  const int steps = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;

  // This thread's 4 x 4 outputs: rows m0 + ty*4 + i, columns n0 + tx*4 + j.
  const int tx = int(threadIdx.x) % (BN / TN);
  const int ty = int(threadIdx.x) / (BN / TN);

  TileFetch<Tile, BM, LoaderA> fa;
  TileFetch<Tile, BN, LoaderB> fb;
  fa.init(a, m0, M);
  fb.init(b, n0, N);

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  if (steps > 0) {
    fa.fetch(a, k_begin, k_end);
    fb.fetch(b, k_begin, k_end);
  }
  for (int step = 0; step < steps; ++step) {
    fa.store(As);
    fb.store(Bs);
    __syncthreads();  // the tiles are complete
    if (step + 1 < steps) {  // the next tiles' loads fly while this one is computed
      fa.fetch(a, k_begin + (step + 1) * BK, k_end);
      fb.fetch(b, k_begin + (step + 1) * BK, k_end);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 av = *reinterpret_cast<const float4*>(&As[k][ty * TM]);
      const float4 bv = *reinterpret_cast<const float4*>(&Bs[k][tx * TN]);
      const float ar[TM] = {av.x, av.y, av.z, av.w};
      const float br[TN] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
    }
    __syncthreads();  // everyone is done reading before the next store overwrites
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + ty * TM + i;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + tx * TN + j;
      if (m < M && n < N) epilogue(m, n, acc[i][j]);
    }
  }
}

// ---- launching -----------------------------------------------------------------------------------

// The tile with less padding for an M x N product (ties go to the square tile).
inline bool use_wide_tile(int64_t M, int64_t N) {
  auto padded = [](int64_t v, int64_t t) { return (v + t - 1) / t * t; };
  return padded(M, TileWide::BM) * padded(N, TileWide::BN) <
         padded(M, TileSquare::BM) * padded(N, TileSquare::BN);
}

// How a reduction of length K is cut into chunks: chunk c is [c * chunk_len, (c+1) * chunk_len).
struct SplitPlan {
  int chunks = 1;
  int chunk_len = 0;
};
inline SplitPlan no_split(int64_t K) { return SplitPlan{1, static_cast<int>(K)}; }

// Queues C = A B on the current device's default stream: M x N outputs, the reduction [0, K)
// cut as `plan` says (chunk c is block row blockIdx.y = c, see StoreMatrix). Raises ValueError
// when an extent passes kMaxGemmExtent.
template <class LoaderA, class LoaderB, class Epilogue>
void launch_gemm(const char* op, int64_t M, int64_t N, int64_t K, const SplitPlan& plan,
                 const LoaderA& a, const LoaderB& b, const Epilogue& epilogue) {
  check_gemm_extent(op, "M", M);
  check_gemm_extent(op, "N", N);
  check_gemm_extent(op, "K", K);
  auto launch = [&](auto tile) {
    using T = decltype(tile);
    const int64_t tiles = ((M + T::BM - 1) / T::BM) * ((N + T::BN - 1) / T::BN);
    check_gemm_extent(op, "the number of output tiles", tiles);
    const dim3 grid(static_cast<unsigned int>(tiles), static_cast<unsigned int>(plan.chunks));
    gemm_kernel<T, LoaderA, LoaderB, Epilogue><<<grid, T::kThreads>>>(
        int(M), int(N), int(K), plan.chunk_len, a, b, epilogue);
    NC_CUDA_LAUNCH_CHECK(op);
  };
  if (use_wide_tile(M, N))
    launch(TileWide{});
  else
    launch(TileSquare{});
}

// A product whose reduction is long (a weight gradient sums over every pixel of the batch) is
// computed as a deterministic sum of partial products, in groups (a batch too large for one
// launch; one group almost always) and chunks (plan_split: enough blocks to fill a GPU):
//
//   PartialSums sums("conv2d_backward", M, N, {K of group 0, K of group 1, ...}, dw);
//   for each group g: launch_gemm(op, M, N, K_g, sums.plan(g), a_g, b_g, sums.store(g));
//   sums.finish();
//
// With one slot in all the products write straight into `out`; otherwise each chunk writes its
// own slot of a scratch buffer and finish() sums the slots in order (gemm.cu). The plan is a
// pure function of the shapes, never of the GPU, so every run sums in the same order.
class PartialSums {
 public:
  PartialSums(const char* op, int64_t M, int64_t N, const std::vector<int64_t>& group_k,
              float* out);
  PartialSums(const PartialSums&) = delete;
  PartialSums& operator=(const PartialSums&) = delete;

  const SplitPlan& plan(size_t group) const { return plans_[group]; }
  StoreMatrix store(size_t group) const;  // the epilogue of group g's launch
  void finish();                          // sums the slots into out (when there are several)

 private:
  const char* op_;
  int64_t N_, mn_;  // columns and size of one M x N slot
  float* out_;
  std::vector<SplitPlan> plans_;
  std::vector<int> first_slot_;  // group g writes slots [first_slot_[g], + plans_[g].chunks)
  int slots_ = 0;
  std::unique_ptr<Storage> scratch_;  // slots_ * mn_ floats when slots_ > 1
};

// db[k] = sum over images i and positions j of dy[(i * K + k) * L + j]: the bias gradient of a
// convolution (L = P*Q) or of a dense layer (L = 1), in a fixed order (gemm.cu).
void bias_gradient(const char* op, int64_t N, int64_t K, int64_t L, const float* dy, float* db);

}  // namespace nanocnn::cuda
