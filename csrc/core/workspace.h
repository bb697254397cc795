// workspace.h: scratch memory for kernels.
//
// Kernels that need temporary buffers (im2col columns, per-chunk partial gradients) take them
// from here instead of allocating per call: each thread owns a few numbered slots that grow to
// the largest size asked for and are reused by every later call, so the steady-state training
// step allocates nothing. A slot's contents do not survive to the next call.
#pragma once

#include <cstddef>

namespace nanocnn {

// A 64-byte-aligned buffer of at least `count` floats, owned by the calling thread.
// Slots: 0 and 1 are free for any kernel; a kernel must not hold a slot across a call into
// another kernel that may use the same slot.
float* thread_scratch(int slot, size_t count);
constexpr int kScratchSlots = 4;

}  // namespace nanocnn
