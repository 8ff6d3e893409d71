// dtype helpers and the backend factory.
#include "engine/comm/process_group.h"

#include <algorithm>

#include "engine/base/error.h"
#include "engine/comm/store.h"

#include "engine/comm/host_staged_process_group.h"

#ifdef ZT_HAVE_CUDA
#include "engine/comm/cuda/cuda_device_copier.h"
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
                                                 std::shared_ptr<Store> store, double timeout_s, Device buffers,
                                                 int local_world_size) {
  if (buffers == Device::Cpu) {
    if (backend == CommBackend::Nccl)
      throw RuntimeError("comm.backend is \"nccl\", but this run's buffers are in host memory and nccl serves GPU "
                         "buffers only; use \"gloo\" or \"auto\"");
    return make_gloo_process_group(rank, world_size, std::move(store), timeout_s);
  }
#ifdef ZT_HAVE_CUDA
  const int gpus = cuda::nccl_visible_device_count();
  if (gpus == 0)
    throw RuntimeError("rank " + std::to_string(rank) + " has GPU buffers to reduce but no GPU is visible" +
                       (backend == CommBackend::Nccl ? std::string(" (comm.backend \"nccl\")") : std::string()));
  const bool own_gpu = local_world_size <= gpus;
  if (backend == CommBackend::Nccl || (backend == CommBackend::Auto && own_gpu))
    return cuda::make_nccl_process_group(rank, world_size, std::move(store), timeout_s);
  return make_host_staged_process_group(make_gloo_process_group(rank, world_size, std::move(store), timeout_s),
                                        cuda::make_cuda_device_copier());
#else
  (void)local_world_size;
  throw RuntimeError(std::string("comm.backend \"") + (backend == CommBackend::Nccl ? "nccl" : "auto/gloo") +
                     "\" for GPU buffers, but this zerotrain was built without CUDA");
#endif
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
