// Stage 3: parameters, gradients and optimizer state all live partitioned. The model sees a unit's full
// parameters only between the coordinator's fetch and release around each use; a unit's full gradient exists from
// its first backward use until backward is done with it, then is reduce-scattered into the owned partition.
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/zero/engine_common.h"
#include "engine/zero/gradient_bucketer.h"
#include "engine/zero/param_coordinator.h"
#include "engine/zero/partition_map.h"
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
        scaler_(cfg.fp16),
        map_(model, pg.size()),
        master_(map_.partition_numel()),
        part_grads_(map_.partition_numel(), 0.0f),
        optimizer_(make_optimizer(cfg.optimizer, map_.partition_numel())),
        ranges_(map_.decay_ranges(model.params(), pg.rank())),
        bucketer_(map_, pg, static_cast<size_t>(std::max<int64_t>(cfg.zero.reduce_bucket_size, 1)),
                  cfg.zero.overlap_comm),
        unit_grads_(static_cast<size_t>(model.num_units()), nullptr) {
    map_.flat_to_partition(model.param_data(), master_.data(), pg.rank());
    model_.release_own_buffers();  // from here on the model sees parameters only through the hooks
    const void* working = master_.data();
    if (is_mixed(precision_)) {
      working_.resize(master_.size());
      to_working_bits(master_.data(), working_.data(), master_.size(), precision_);
      working = working_.data();
    }
    coordinator_ = std::make_unique<ParamCoordinator>(map_, pg, cfg.zero, working, precision_);
    coordinator_->end_step();  // gathers the persistent units
    model_.set_hooks(this);
  }

  ~Stage3Engine() override { model_.set_hooks(nullptr); }

  void begin_step() override {
    std::fill(part_grads_.begin(), part_grads_.end(), 0.0f);
    coordinator_->begin_step();
  }

  void end_micro_batch(bool) override {
    bucketer_.finish(part_grads_.data());
  }

  StepResult step(double lr, int64_t step) override {
    StepResult r;
    const size_t n = part_grads_.size();
    if (!finish_gradients(pg_, scaler_, part_grads_.data(), n, cfg_.gradient_clipping, true, r)) {
      coordinator_->end_step();
      return r;
    }
    optimizer_->step(master_.data(), part_grads_.data(), ranges_, lr, step);
    if (is_mixed(precision_)) to_working_bits(master_.data(), working_.data(), master_.size(), precision_);
    coordinator_->end_step();
    return r;
  }

  MemoryStats memory() const override {
    MemoryStats m;
    const bool mixed = is_mixed(precision_);
    // fp32: the partition is the master copy itself; mixed: a 16-bit working partition plus the fp32 master.
    m.param_bytes = master_.size() * (mixed ? sizeof(uint16_t) : sizeof(float));
    m.grad_bytes = part_grads_.size() * sizeof(float);
    m.optimizer_bytes = (optimizer_->state().size() * optimizer_->size() + (mixed ? master_.size() : 0)) *
                        sizeof(float);
    m.comm_bytes = bucketer_.comm_bytes() + coordinator_->pool_peak_bytes() + grad_pool_.peak_bytes_in_use();
    return m;
  }

  float loss_scale() const override { return scaler_.scale(); }

  void gather_full_params(float* out) override {
    allgather_partition(map_, pg_, master_.data(), out,
                        static_cast<size_t>(std::max<int64_t>(cfg_.zero.allgather_bucket_size, 1)));
  }

  int stage() const override { return 3; }

  const PartitionMap& partition_map() const override { return map_; }
  std::vector<std::string> state_names() const override { return checkpoint_state_names(*optimizer_); }

  void export_partition(const std::string& name, float* partition) override {
    const float* src = name == "master" ? master_.data() : optimizer_state(*optimizer_, name);
    std::memcpy(partition, src, map_.partition_numel() * sizeof(float));
  }

  void import_full(const std::string& name, const float* flat) override {
    float* dst = name == "master" ? master_.data() : optimizer_state(*optimizer_, name);
    map_.flat_to_partition(flat, dst, pg_.rank());
  }

  void finish_import() override {
    if (is_mixed(precision_)) to_working_bits(master_.data(), working_.data(), master_.size(), precision_);
    coordinator_->end_step();
  }

  ScalerState scaler_state() const override {
    return {scaler_.scale(), scaler_.hysteresis_left(), scaler_.clean_steps()};
  }
  void set_scaler_state(const ScalerState& s) override { scaler_.restore(s.scale, s.hysteresis_left, s.clean_steps); }
  const ParamCoordinator& coordinator() const { return *coordinator_; }

 private:
  void before_forward(int unit) override {
    model_.set_unit_buffers(unit, coordinator_->fetch(unit), unit_grads_[static_cast<size_t>(unit)]);
  }
  void after_forward(int unit) override { coordinator_->release(unit); }
  void before_backward(int unit) override {
    const size_t u = static_cast<size_t>(unit);
    if (!unit_grads_[u]) unit_grads_[u] = grad_pool_.acquire(map_.units()[u].numel, true);
    model_.set_unit_buffers(unit, coordinator_->fetch(unit), unit_grads_[u]);
  }
  void after_backward(int unit) override {
    const size_t u = static_cast<size_t>(unit);
    coordinator_->release(unit);
    round_to_working(unit_grads_[u], map_.units()[u].numel, precision_);
    bucketer_.add_unit(unit, unit_grads_[u]);
    grad_pool_.release(unit_grads_[u]);
    unit_grads_[u] = nullptr;
  }

  const Config& cfg_;
  GPT2& model_;
  ProcessGroup& pg_;
  WorkingPrecision precision_;
  LossScaler scaler_;
  PartitionMap map_;
  std::vector<float> master_;
  std::vector<uint16_t> working_;  // bf16/fp16 copy of master_ that the coordinator gathers
  std::vector<float> part_grads_;
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<DecayRange> ranges_;
  GradientBucketer bucketer_;
  std::unique_ptr<ParamCoordinator> coordinator_;
  UnitBufferPool grad_pool_;
  std::vector<float*> unit_grads_;
};

std::unique_ptr<ZeroEngine> make_stage3_engine(const Config& cfg, GPT2& model, ProcessGroup& pg) {
  return std::make_unique<Stage3Engine>(cfg, model, pg);
}

}  // namespace zt
