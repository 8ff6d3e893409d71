// Stage 3: parameters, gradients and optimizer state all live partitioned. The model sees a unit's full
// parameters only between the coordinator's fetch and release around each use; a unit's full gradient exists from
// its first backward use until backward is done with it, then is reduce-scattered into the owned partition.
#include <algorithm>
#include <vector>

#include "engine/zero/engine_common.h"
#include "engine/zero/gradient_bucketer.h"
#include "engine/zero/owned_partition.h"
#include "engine/zero/param_coordinator.h"
#include "engine/zero/param_swapper.h"
#include "engine/zero/unit_buffer_pool.h"
#include "engine/zero/zero_engine.h"

namespace zt {

class Stage3Engine : public ZeroEngine, private UnitHooks {
 public:
  Stage3Engine(const Config& cfg, GPT2& model, ProcessGroup& pg)
      : cfg_(cfg),
        model_(model),
        pg_(pg),
        precision_(working_precision(cfg)),
        owned_(cfg, model, pg),
        bucketer_(owned_.map(), pg, static_cast<size_t>(std::max<int64_t>(cfg.zero.reduce_bucket_size, 1)),
                  cfg.zero.overlap_comm),
        unit_grads_(static_cast<size_t>(model.num_units()), nullptr) {
    model_.release_own_buffers();  // from here on the model sees parameters only through the hooks
    // fp32: the coordinator gathers straight from the master partition (from an fp32 copy of it when the master
    // lives in the optimizer's swap file); bf16/fp16: from a 16-bit copy of it; offload_param nvme: from that
    // working-precision partition in a swap file, which replaces the in-memory copy.
    const void* working = owned_.master_in_memory();
    if (cfg.zero.offload_param.device == OffloadDevice::Nvme) {
      swapper_ = std::make_unique<ParamSwapper>(owned_.map(), cfg, pg.rank(), precision_);
    } else if (is_mixed(precision_)) {
      working_.resize(owned_.size());
      working = working_.data();
    } else if (!working) {
      working_f32_.resize(owned_.size());
      working = working_f32_.data();
    }
    coordinator_ =
        std::make_unique<ParamCoordinator>(owned_.map(), pg, cfg.zero, working, precision_, swapper_.get());
    publish_master();  // gathers the persistent units
    model_.set_hooks(this);
  }

  ~Stage3Engine() override { model_.set_hooks(nullptr); }

  void begin_step() override {
    owned_.zero_grads();
    coordinator_->begin_step();
  }

  void end_micro_batch(bool) override { bucketer_.finish(owned_.grads()); }

  StepResult step(double lr, int64_t step) override {
    StepResult r;
    // Every gathered copy goes before the update: the optimizer hands the master to the working copy sub-group by
    // sub-group. Skipped step: weights unchanged, but the step's gathers end here too.
    coordinator_->drop_all();
    if (owned_.update(lr, step, r, to_working()) && swapper_) swapper_->finish_write();
    coordinator_->end_step();
    if (swapper_) {
      // Parameter reads waited on during forward and backward, and this step's write-back.
      r.io_wait_s += swapper_->io_wait_seconds() - param_io_wait_s_;
      param_io_wait_s_ = swapper_->io_wait_seconds();
    }
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    const bool mixed = is_mixed(precision_);
    // fp32: the partition is the master copy itself (an fp32 copy of it when the master is in the optimizer's swap
    // file); mixed: a 16-bit working partition plus the fp32 master. offload_param nvme: the working partition is on
    // disk and only the swapper's buffers are in memory. The fp32 master is in memory unless offload_optimizer nvme
    // keeps it in a swap file.
    m.param_bytes = swapper_ ? swapper_->buffer_bytes() : owned_.size() * (mixed ? sizeof(uint16_t) : sizeof(float));
    m.grad_bytes = owned_.size() * sizeof(float);
    const bool master_is_working = !mixed && !swapper_ && owned_.master_in_memory();
    m.optimizer_bytes = master_is_working ? owned_.optimizer_state_bytes() : owned_.optimizer_bytes();
    m.comm_bytes = bucketer_.comm_bytes() + coordinator_->pool_peak_bytes() + grad_pool_.peak_bytes_in_use();
    return m;
  }

  float loss_scale() const override { return owned_.loss_scale(); }
  void gather_full_params(float* out) override {
    std::vector<float> scratch, master;  // a save, not a step: no buffer to keep
    allgather_partition(owned_.map(), pg_, owned_.master_for_save(master), out,
                        static_cast<size_t>(std::max<int64_t>(cfg_.zero.allgather_bucket_size, 1)), scratch);
  }
  int stage() const override { return 3; }
  const PartitionMap& partition_map() const override { return owned_.map(); }
  std::vector<std::string> state_names() const override { return owned_.state_names(); }
  void export_partition(const std::string& name, float* part) override { owned_.export_partition(name, part); }
  void import_full(const std::string& name, const float* flat) override { owned_.import_full(name, flat); }
  void finish_import() override { publish_master(); }
  ScalerState scaler_state() const override { return owned_.scaler_state(); }
  void set_scaler_state(const ScalerState& s) override { owned_.set_scaler_state(s); }
  const ParamCoordinator& coordinator() const { return *coordinator_; }

 private:
  // The master partition changed (start, checkpoint import): drop every stale gathered unit, refresh the working
  // copy from the master and gather the persistent units again.
  void publish_master() {
    coordinator_->drop_all();
    owned_.stream_master(to_working());
    if (swapper_) swapper_->finish_write();
    coordinator_->end_step();
  }

  // Master elements [begin, begin + len) into the working copy the coordinator gathers from: the 16-bit partition,
  // the fp32 copy, or the parameter swap file (which writes each unit's shard once all of it has arrived). fp32 with
  // the master in memory: the coordinator reads the master itself.
  MasterSink to_working() {
    return [this](size_t begin, size_t len, const float* master) {
      if (swapper_)
        swapper_->write_range(begin, len, master);
      else if (is_mixed(precision_))
        to_working_bits(master, working_.data() + begin, len, precision_);
      else if (!working_f32_.empty())
        std::copy(master, master + len, working_f32_.begin() + static_cast<ptrdiff_t>(begin));
    };
  }

  void before_forward(int unit) override {
    model_.set_unit_buffers(unit, coordinator_->fetch(unit), unit_grads_[static_cast<size_t>(unit)]);
  }
  void after_forward(int unit) override { coordinator_->release(unit); }
  void before_backward(int unit) override {
    const size_t u = static_cast<size_t>(unit);
    if (!unit_grads_[u]) unit_grads_[u] = grad_pool_.acquire(owned_.map().units()[u].numel, true);
    model_.set_unit_buffers(unit, coordinator_->fetch(unit), unit_grads_[u]);
  }
  void after_backward(int unit) override {
    const size_t u = static_cast<size_t>(unit);
    coordinator_->release(unit);
    round_to_working(unit_grads_[u], owned_.map().units()[u].numel, precision_);
    bucketer_.add_unit(unit, unit_grads_[u]);
    grad_pool_.release(unit_grads_[u]);
    unit_grads_[u] = nullptr;
  }

  const Config& cfg_;
  GPT2& model_;
  ProcessGroup& pg_;
  WorkingPrecision precision_;
  OwnedPartition owned_;
  GradientBucketer bucketer_;
  std::vector<uint16_t> working_;  // bf16/fp16 copy of the master partition that the coordinator gathers
  std::vector<float> working_f32_;  // fp32 copy of it when the master lives in the optimizer's swap file
  std::unique_ptr<ParamSwapper> swapper_;  // offload_param nvme: the working partition's swap file
  double param_io_wait_s_ = 0.0;           // swapper wait already reported
  std::unique_ptr<ParamCoordinator> coordinator_;
  UnitBufferPool grad_pool_;
  std::vector<float*> unit_grads_;
};

std::unique_ptr<ZeroEngine> make_stage3_engine(const Config& cfg, GPT2& model, ProcessGroup& pg) {
  return std::make_unique<Stage3Engine>(cfg, model, pg);
}

}  // namespace zt
