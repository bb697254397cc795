// workspace.h: scratch memory for kernels.
//
// Kernels that need temporary buffers (im2col columns, per-chunk partial gradients) take them
// from here instead of allocating per call: each thread owns a few numbered slots that grow to
// the largest size asked for and are reused by every later call, so the steady-state training
// step allocates nothing. A slot's contents do not survive to the next call.
#pragma once

#include <cstddef>

namespace nanocnn {

// The slots, one per use, so that buffers a kernel holds at the same time never collide.
enum ScratchSlot : int {
  kScratchColumns = 0,         // conv2d: im2col columns of one image; direct: padded images
  kScratchWeightPartials = 1,  // conv2d backward: per-chunk partial weight gradients
  kScratchColumnGrads = 2,     // conv2d backward: gradient of the columns before col2im;
                               // direct: the output gradients of a chunk as flat rows
  kScratchFlatOutput = 3,      // direct conv2d + pool: one image's output on the flat padded
                               // grid, pooled from there
  kScratchPaddedGrads = 4,     // direct conv2d backward: one image's padded output gradient
  kScratchUnpooled = 5,        // conv2d + pool: one image's output before the pool (forward)
  kScratchPackedWeights = 6,   // direct conv2d: the weights packed for the forward tile (the
                               // calling thread's, read by all threads during the op)
  kScratchDensePartials = 7,   // dense backward at a small batch: the input gradient's partial
                               // sums over blocks of output rows (the calling thread's)
  kScratchTransposedGrads = 8,  // direct conv2d backward: a group's output gradients transposed
                                // to (positions, channels) for the weight-gradient tiles
  kScratchStrip = 9,            // direct conv2d: the last columns of a row-tiled grid, copied,
                                // and their output (conv2d.cpp, flat_conv)
  kScratchSlots = 10,
};

// A 64-byte-aligned buffer of at least `count` floats, owned by the calling thread.
float* thread_scratch(int slot, size_t count);

}  // namespace nanocnn
