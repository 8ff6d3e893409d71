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
    // fp32: the coordinator gathers straight from the master partition; bf16/fp16: from a 16-bit copy of it;
    // offload_param nvme: from that working-precision partition in a swap file, which replaces the 16-bit copy.
    const void* working = owned_.master();
    if (cfg.zero.offload_param.device == OffloadDevice::Nvme) {
      swapper_ = std::make_unique<ParamSwapper>(owned_.map(), cfg, pg.rank(), precision_);
    } else if (is_mixed(precision_)) {
      working_.resize(owned_.size());
      working = working_.data();
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
    if (owned_.update(lr, step, r)) {
      publish_master();
    } else {
      coordinator_->end_step();  // skipped: weights unchanged, but the step's gathers end here
    }
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
    // fp32: the partition is the master copy itself; mixed: a 16-bit working partition plus the fp32 master.
    // offload_param nvme: the working partition is on disk and only the swapper's buffers are in memory; the fp32
    // master stays with the optimizer.
    m.param_bytes = swapper_ ? swapper_->buffer_bytes() : owned_.size() * (mixed ? sizeof(uint16_t) : sizeof(float));
    m.grad_bytes = owned_.size() * sizeof(float);
    m.optimizer_bytes = mixed || swapper_ ? owned_.optimizer_bytes() : owned_.optimizer_state_bytes();
    m.comm_bytes = bucketer_.comm_bytes() + coordinator_->pool_peak_bytes() + grad_pool_.peak_bytes_in_use();
    return m;
  }

  float loss_scale() const override { return owned_.loss_scale(); }
  void gather_full_params(float* out) override {
    std::vector<float> scratch;  // a save, not a step: no buffer to keep
    allgather_partition(owned_.map(), pg_, owned_.master(), out,
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
  // The master partition changed: drop every stale gathered unit, refresh the working copy (the 16-bit one, or the
  // swap file) and gather the persistent units again.
  void publish_master() {
    coordinator_->drop_all();
    if (swapper_)
      swapper_->write_partition(owned_.master());
    else if (is_mixed(precision_))
      to_working_bits(owned_.master(), working_.data(), owned_.size(), precision_);
    coordinator_->end_step();
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
