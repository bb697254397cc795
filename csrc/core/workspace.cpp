#include "core/workspace.h"

#include <array>
#include <memory>

#include "core/allocator.h"
#include "core/error.h"

namespace nanocnn {

namespace {
struct Scratch {
  struct Block {
    float* data = nullptr;
    size_t count = 0;
  };
  std::array<Block, kScratchSlots> blocks;
  ~Scratch() {
    for (Block& b : blocks)
      if (b.data) cpu_allocator()->deallocate(b.data, b.count * sizeof(float));
  }
};
}  // namespace

float* thread_scratch(int slot, size_t count) {
  NC_CHECK(slot >= 0 && slot < kScratchSlots, "thread_scratch: no slot ", slot);
  thread_local Scratch scratch;
  Scratch::Block& block = scratch.blocks[slot];
  if (block.count < count) {
    if (block.data) cpu_allocator()->deallocate(block.data, block.count * sizeof(float));
    block.data = nullptr;
    block.count = 0;
    block.data = static_cast<float*>(cpu_allocator()->allocate(count * sizeof(float)));
    block.count = count;
  }
  return block.data;
}

}  // namespace nanocnn
