// pool2d.cpp: max pooling on the CPU, forward and backward.
//
// Layout: x is (N,C,H,W), y is (N,C,P,Q). Each (n, c) plane is independent, so planes are split
// over threads. Window (p, q) covers rows p*sh - pt .. +kh-1 and columns q*sw - pl .. +kw-1,
// clipped to the input (padding never wins).
// Tie rule: the first maximum in row-major order wins (PyTorch's rule; ties are common after
// ReLU, where whole windows are 0). A NaN wins over anything before it (PyTorch's CPU rule:
// `v > best || isnan(v)`), so NaN propagates.
// The backward pass recomputes each window's winner from x (no index tensor is stored) and adds
// dy there; windows that overlap (stride < kernel) add into the same cell, which is safe because
// a plane belongs to one thread.
// Cost: N*C*P*Q*kh*kw comparisons; memory-bound (reads x once, writes y once).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/pool_kernels.h"
#include "cpu/kernels.h"

namespace nanocnn::cpu {

namespace {

struct Window {
  int64_t h0, h1, w0, w1;  // clipped: rows [h0, h1), columns [w0, w1)
};

inline Window window(const Pool2dShape& sh, int64_t p, int64_t q) {
  const Pool2dGeometry& g = sh.g;
  const int64_t h = p * g.stride_h - g.pad_top, w = q * g.stride_w - g.pad_left;
  return Window{std::max<int64_t>(h, 0), std::min(h + g.kernel_h, sh.H),
                std::max<int64_t>(w, 0), std::min(w + g.kernel_w, sh.W)};
}

// Offset (h*W + w) of the window's winner in its plane.
inline int64_t argmax(const Pool2dShape& sh, const float* plane, const Window& win) {
  int64_t best = win.h0 * sh.W + win.w0;
  float best_value = plane[best];
  for (int64_t h = win.h0; h < win.h1; ++h)
    for (int64_t w = win.w0; w < win.w1; ++w) {
      const float v = plane[h * sh.W + w];
      if (v > best_value || std::isnan(v)) {
        best = h * sh.W + w;
        best_value = v;
      }
    }
  return best;
}

// Branch-free selection. The winner of a window depends on the data, so a compiled branch is
// mispredicted about half the time on real activations; GCC turns `take ? a : b` on floats into
// such branches, so the 2x2 path below selects with bit masks instead (measured: backward
// 2.8 ms -> 0.25 ms on 64x16x32x32, one thread).
inline uint32_t bits_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
inline float float_of(uint32_t u) {
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
inline uint32_t mask_of(bool take) { return 0u - static_cast<uint32_t>(take); }
// take ? a : b
inline float blend(bool take, float a, float b) {
  const uint32_t m = mask_of(take);
  return float_of((bits_of(a) & m) | (bits_of(b) & ~m));
}
// take ? v : 0 (exactly +0, and a NaN or infinite v only where taken)
inline float keep(bool take, float v) { return float_of(bits_of(v) & mask_of(take)); }

// The common 2x2 window with stride 2 and no padding: four values in row-major order, the
// winner chosen by the same rule as argmax(). Returns the winner's value; *which is 0..3.
inline float max4(float a, float b, float c, float d, uint32_t* which) {
  float m = a;
  uint32_t w = 0;
  const bool tb = (b > m) | (b != b);
  m = blend(tb, b, m);
  w = tb ? 1 : w;
  const bool tc = (c > m) | (c != c);
  m = blend(tc, c, m);
  w = tc ? 2 : w;
  const bool td = (d > m) | (d != d);
  m = blend(td, d, m);
  *which = td ? 3 : w;
  return m;
}

// The AVX-512 kernels for the 2x2 / stride 2 window, or nullptr. Follows sgemm's ISA choice, so
// that tests forcing another ISA check the scalar code on the same machine.
const pool_detail::PoolKernelSet* simd_kernels() {
#if defined(NANOCNN_X86_SIMD)
  if (std::strcmp(sgemm_isa(), "avx512") == 0) return &pool_detail::kAvx512PoolKernels;
#endif
  return nullptr;
}

bool is_2x2_stride_2(const Pool2dShape& sh) {
  const Pool2dGeometry& g = sh.g;
  return g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 &&
         g.pad_top == 0 && g.pad_left == 0 && 2 * g.out_h <= sh.H && 2 * g.out_w <= sh.W;
}

// Planes of exactly 2P x 2Q with Q in {1, 2, 4, 8} (8x8 and smaller feature maps): the SIMD
// kernels then take 16 windows over several rows at once instead of Q per row.
bool packs(const Pool2dShape& sh) {
  const int64_t Q = sh.g.out_w;
  return sh.H == 2 * sh.g.out_h && sh.W == 2 * Q && (Q == 1 || Q == 2 || Q == 4 || Q == 8);
}

// The 2x2 / stride 2 window over planes of sh.H rows of ld >= sh.W floats, `plane` floats apart.
void check_rows(const char* op, const Pool2dShape& sh, int64_t ld, int64_t plane) {
  NC_CHECK(is_2x2_stride_2(sh), op, ": needs the 2x2 / stride 2 window");
  NC_CHECK(ld >= sh.W && plane >= sh.H * ld, op, ": rows of ", ld, " floats and planes of ",
           plane, " cannot hold ", sh.H, "x", sh.W, " planes");
}

// Runs body(j_begin, j_end) over the windows [0, windows) in groups of 16 split over threads.
template <class Body>
void for_window_groups(int64_t windows, const Body& body) {
  parallel_for((windows + 15) / 16, 64, [&](int64_t begin, int64_t end) {
    body(16 * begin, std::min(windows, 16 * end));
  });
}

}  // namespace

namespace {

// The forward pass, plus each window's winner code (see pool_kernels.h) when codes is not null
// (the 2x2 / stride 2 geometry only).
void pool_forward(const Pool2dShape& sh, const float* x, float* y, float* codes) {
  const int64_t P = sh.g.out_h, Q = sh.g.out_w, HW = sh.H * sh.W;
  const bool fast = is_2x2_stride_2(sh);
  const pool_detail::PoolKernelSet* simd = fast ? simd_kernels() : nullptr;
  if (simd != nullptr && packs(sh)) {
    for_window_groups(sh.N * sh.C * P * Q, [&](int64_t j0, int64_t j1) {
      simd->forward_packed(x + 4 * j0, j1 - j0, Q, y + j0, codes != nullptr ? codes + j0 : nullptr);
    });
    return;
  }
  parallel_for(sh.N * sh.C, HW, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const float* plane = x + nc * HW;
      float* out = y + nc * P * Q;
      float* code = codes != nullptr ? codes + nc * P * Q : nullptr;
      if (simd != nullptr) {
        simd->forward(plane, sh.W, P, Q, out, code);
        continue;
      }
      for (int64_t p = 0; p < P; ++p) {
        if (fast) {
          const float* r0 = plane + 2 * p * sh.W;
          const float* r1 = r0 + sh.W;
          uint32_t which;
          for (int64_t q = 0; q < Q; ++q) {
            const float m = max4(r0[2 * q], r0[2 * q + 1], r1[2 * q], r1[2 * q + 1], &which);
            out[p * Q + q] = m;
            if (code != nullptr) code[p * Q + q] = m > 0.f ? static_cast<float>(which) : 4.f;
          }
        } else {
          for (int64_t q = 0; q < Q; ++q) out[p * Q + q] = plane[argmax(sh, plane, window(sh, p, q))];
        }
      }
    }
  });
}

}  // namespace

void max_pool2d_forward(const Pool2dShape& sh, const float* x, float* y) {
  pool_forward(sh, x, y, nullptr);
}

void max_pool2x2_forward_codes_relu(const Pool2dShape& sh, const float* x, int64_t ld,
                                    int64_t plane, const float* b, float* y, float* codes) {
  check_rows("max_pool2x2_forward_codes_relu", sh, ld, plane);
  // Only the AVX-512 direct convolution calls this (it has no other ISA), so the SIMD kernel is
  // the only one.
  const pool_detail::PoolKernelSet* simd = simd_kernels();
  NC_CHECK(simd != nullptr, "max_pool2x2_forward_codes_relu: needs the AVX-512 pool kernels");
  const int64_t PQ = sh.g.out_h * sh.g.out_w;
  parallel_for(sh.N * sh.C, plane, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      simd->forward_relu(x + i * plane, ld, sh.g.out_h, sh.g.out_w,
                         b != nullptr ? b[i % sh.C] : 0.f, y + i * PQ,
                         codes != nullptr ? codes + i * PQ : nullptr);
  });
}

void max_pool2x2_forward_codes(const Pool2dShape& sh, const float* x, float* y, float* codes) {
  NC_CHECK(is_2x2_stride_2(sh), "max_pool2x2_forward_codes: needs the 2x2 / stride 2 window");
  pool_forward(sh, x, y, codes);
}

// Backward of the 2x2 / stride 2 window on one plane, without branches: the windows tile the
// plane, so each of a window's four cells gets either the window's gradient (if it is the
// winner under the same rule as max4) or zero, written directly with no memset and no scatter.
// Rows and columns past the last whole window (odd H or W) take no part and get zero. The winners
// come from the plane, or from the forward pass's codes when `codes` is not null.
void max_pool2x2_backward_plane(const Pool2dShape& sh, const pool_detail::PoolKernelSet* simd,
                                const float* plane, const float* codes, const float* grad,
                                float* out) {
  const int64_t P = sh.g.out_h, Q = sh.g.out_w, W = sh.W;
  if (simd != nullptr) {
    if (codes != nullptr)
      simd->unpool(codes, grad, W, P, Q, out);
    else
      simd->backward(plane, grad, W, P, Q, out);
  } else {
    for (int64_t p = 0; p < P; ++p) {
      const float* r0 = plane != nullptr ? plane + 2 * p * W : nullptr;
      const float* r1 = r0 != nullptr ? r0 + W : nullptr;
      float* o0 = out + 2 * p * W;
      float* o1 = o0 + W;
      for (int64_t q = 0; q < Q; ++q) {
        uint32_t win;
        if (codes != nullptr)
          win = static_cast<uint32_t>(codes[p * Q + q]);  // 4: no cell
        else
          max4(r0[2 * q], r0[2 * q + 1], r1[2 * q], r1[2 * q + 1], &win);
        const float g = grad[p * Q + q];
        o0[2 * q] = keep(win == 0, g);
        o0[2 * q + 1] = keep(win == 1, g);
        o1[2 * q] = keep(win == 2, g);
        o1[2 * q + 1] = keep(win == 3, g);
      }
    }
    for (int64_t p = 0; p < P && 2 * Q < W; ++p)  // the SIMD kernels zero these columns too
      for (int64_t w = 2 * Q; w < W; ++w) out[2 * p * W + w] = out[(2 * p + 1) * W + w] = 0.f;
  }
  std::memset(out + 2 * P * W, 0, (sh.H - 2 * P) * W * sizeof(float));
}

void max_pool2x2_unpool(const Pool2dShape& sh, const float* codes, const float* dy, float* dx) {
  NC_CHECK(is_2x2_stride_2(sh), "max_pool2x2_unpool: needs the 2x2 / stride 2 window");
  const int64_t P = sh.g.out_h, Q = sh.g.out_w, HW = sh.H * sh.W;
  const pool_detail::PoolKernelSet* simd = simd_kernels();
  if (simd != nullptr && packs(sh)) {
    for_window_groups(sh.N * sh.C * P * Q, [&](int64_t j0, int64_t j1) {
      simd->unpool_packed(codes + j0, dy + j0, j1 - j0, Q, dx + 4 * j0);
    });
    return;
  }
  parallel_for(sh.N * sh.C, HW, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc)
      max_pool2x2_backward_plane(sh, simd, nullptr, codes + nc * P * Q, dy + nc * P * Q,
                                 dx + nc * HW);
  });
}

void max_pool2x2_unpool_rows(const Pool2dShape& sh, const float* codes, const float* dy, float* dx,
                             int64_t ld, int64_t plane) {
  check_rows("max_pool2x2_unpool_rows", sh, ld, plane);
  if (ld == sh.W && plane == sh.H * sh.W) {
    max_pool2x2_unpool(sh, codes, dy, dx);
    return;
  }
  Pool2dShape wide = sh;  // the same windows in rows of ld floats: the columns past W get zeros
  wide.W = ld;
  const int64_t PQ = sh.g.out_h * sh.g.out_w;
  const pool_detail::PoolKernelSet* simd = simd_kernels();
  parallel_for(sh.N * sh.C, plane, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      max_pool2x2_backward_plane(wide, simd, nullptr, codes + i * PQ, dy + i * PQ, dx + i * plane);
      std::memset(dx + i * plane + sh.H * ld, 0, (plane - sh.H * ld) * sizeof(float));
    }
  });
}

void max_pool2d_backward(const Pool2dShape& sh, const float* dy, const float* x, float* dx) {
  const int64_t P = sh.g.out_h, Q = sh.g.out_w, HW = sh.H * sh.W;
  const bool fast = is_2x2_stride_2(sh);
  const pool_detail::PoolKernelSet* simd = fast ? simd_kernels() : nullptr;
  if (simd != nullptr && packs(sh)) {
    for_window_groups(sh.N * sh.C * P * Q, [&](int64_t j0, int64_t j1) {
      simd->backward_packed(x + 4 * j0, dy + j0, j1 - j0, Q, dx + 4 * j0);
    });
    return;
  }
  parallel_for(sh.N * sh.C, HW, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      if (fast) {
        max_pool2x2_backward_plane(sh, simd, x + nc * HW, nullptr, dy + nc * P * Q, dx + nc * HW);
        continue;
      }
      const float* plane = x + nc * HW;
      const float* grad = dy + nc * P * Q;
      float* out = dx + nc * HW;
      std::memset(out, 0, HW * sizeof(float));
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) out[argmax(sh, plane, window(sh, p, q))] += grad[p * Q + q];
    }
  });
}

}  // namespace nanocnn::cpu
