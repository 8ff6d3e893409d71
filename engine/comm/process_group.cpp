// dtype helpers and the backend factory.
#include "engine/comm/process_group.h"

#include <algorithm>

#include "engine/base/error.h"
#include "engine/comm/store.h"

#ifdef ZT_HAVE_CUDA
#include "engine/comm/cuda/nccl_process_group.h"
#endif

namespace zt {

size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
  }
  return "?";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

bool nccl_available() {
#ifdef ZT_HAVE_CUDA
  return cuda::nccl_visible_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<ProcessGroup> make_process_group(CommBackend backend, int rank, int world_size,
                                                 std::shared_ptr<Store> store, double timeout_s) {
  if (backend == CommBackend::Nccl && !nccl_available())
    throw RuntimeError(
#ifdef ZT_HAVE_CUDA
        "comm.backend is \"nccl\" but no GPU is visible to rank " + std::to_string(rank) +
        "; use \"gloo\" or \"auto\" on a machine without GPUs"
#else
        "comm.backend is \"nccl\" but this zerotrain was built without CUDA; use \"gloo\" or \"auto\""
#endif
    );
#ifdef ZT_HAVE_CUDA
  if (backend == CommBackend::Nccl || (backend == CommBackend::Auto && nccl_available()))
    return cuda::make_nccl_process_group(rank, world_size, std::move(store), timeout_s);
#endif
  return make_gloo_process_group(rank, world_size, std::move(store), timeout_s);
}

SubgroupMembers subgroup_members(const std::vector<int>& requested, int global_rank,
                                 const std::vector<int>& parent_ranks, const std::string& parent_name) {
  SubgroupMembers m;
  m.ranks = requested;
  std::sort(m.ranks.begin(), m.ranks.end());
  m.ranks.erase(std::unique(m.ranks.begin(), m.ranks.end()), m.ranks.end());
  auto me = std::find(m.ranks.begin(), m.ranks.end(), global_rank);
  if (me == m.ranks.end())
    throw RuntimeError("new_group: rank " + std::to_string(global_rank) + " is not in the requested group");
  m.rank_in_group = static_cast<int>(me - m.ranks.begin());
  for (int r : m.ranks) {
    if (std::find(parent_ranks.begin(), parent_ranks.end(), r) == parent_ranks.end())
      throw RuntimeError("new_group: rank " + std::to_string(r) + " is not a member of group '" + parent_name + "'");
    if (!m.key.empty()) m.key += ',';
    m.key += std::to_string(r);
  }
  return m;
}

}  // namespace zt
