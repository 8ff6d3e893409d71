#include "engine/runtime/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "engine/base/error.h"
#include "engine/base/logging.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/config/config_parser.h"
#include "engine/config/train_device.h"
#include "engine/data/data_loader.h"
#include "engine/model/gpt2.h"
#include "engine/model/step_model.h"
#include "engine/optim/optimizer.h"
#include "engine/runtime/device_choice.h"
#include "engine/runtime/metrics_writer.h"
#include "engine/runtime/model_io.h"
#include "engine/runtime/progress_bar.h"
#include "engine/zero/zero_engine.h"

#ifdef ZT_HAVE_CUDA
#include "engine/zero/cuda/cuda_training.h"
#endif

namespace zt {

namespace {

namespace fs = std::filesystem;

std::string default_data_dir() {
  if (const char* env = std::getenv("ZT_DATA_DIR")) return env;
  // Next to the binary (build tree: build/data) or in an installed prefix (share/zerotrain/data).
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path cand : {exe.parent_path() / "data", exe.parent_path().parent_path() / "data",
                          exe.parent_path().parent_path() / "share/zerotrain/data"}) {
      if (fs::exists(cand / "fortunes_train_000000.bin")) return cand.string();
    }
  }
  return ZT_DEFAULT_DATA_DIR;
}

double mean_over_ranks(ProcessGroup& pg, double local) {
  float v = static_cast<float>(local);
  if (pg.size() > 1) pg.allreduce(&v, 1, DType::F32, ReduceOp::Avg);
  return pg.size() > 1 ? static_cast<double>(v) : local;
}

}  // namespace

std::vector<std::string> embedded_corpus_shards(bool val) {
  fs::path dir = default_data_dir();
  fs::path shard = dir / (val ? "fortunes_val_000000.bin" : "fortunes_train_000000.bin");
  if (!fs::exists(shard))
    throw RuntimeError("the embedded default corpus is missing (" + shard.string() +
                       "): install Debian's fortunes packages and rebuild (the README's setup command does both), "
                       "set ZT_DATA_DIR, or give data.train in the config");
  return {shard.string()};
}

Trainer::Trainer(const Config& cfg, ProcessGroup& pg, ProcessGroup* device_pg)
    : cfg_(cfg), pg_(pg), device_pg_(device_pg) {}

TrainSummary Trainer::run() {
  const int rank = pg_.rank(), world = pg_.size();
  const BatchConfig batch = resolve_batch(cfg_, world);
  const int B = static_cast<int>(batch.micro_batch_per_gpu);
  const int T = cfg_.data.seq_len;
  const int64_t gas = batch.gradient_accumulation_steps;
  const TrainDevice device = choose_train_device(cfg_);

  const ModelDims dims = resolve_model_dims(cfg_.model);
  // On the GPU the host keeps the layout only: the initial weights are streamed to the device (engine/model/
  // initial_weights.h), so no host copy of the parameters and gradients (8 bytes per parameter) exists.
  const bool on_gpu = device == TrainDevice::Cuda;
  GPT2 model(dims, cfg_.activation_checkpointing.enabled, on_gpu ? GPT2Buffers::None : GPT2Buffers::Own);
  std::unique_ptr<InitialWeights> init;  // the GPU path's
  if (on_gpu) {
    init = cfg_.model.init_from.empty() ? seeded_initial_weights(model, cfg_.train.seed)
                                        : file_initial_weights(model, cfg_.model.init_from);
  } else if (!cfg_.model.init_from.empty()) {
    load_model_weights(model, cfg_.model.init_from);
  } else {
    model.init_weights(cfg_.train.seed);
  }

  std::vector<std::string> train_shards = cfg_.data.train, val_shards = cfg_.data.val;
  if (train_shards.empty()) {
    train_shards = embedded_corpus_shards(false);
    if (val_shards.empty()) val_shards = embedded_corpus_shards(true);
    if (rank == 0) spdlog::info("data: training on the embedded default corpus ({})", train_shards[0]);
  }
  DataLoader train(train_shards, B, T, rank, world, cfg_.train.seed, cfg_.data.shuffle, dims.vocab_size);
  std::unique_ptr<DataLoader> val;
  if (!val_shards.empty() && cfg_.train.eval_interval > 0)
    val = std::make_unique<DataLoader>(val_shards, B, T, rank, world, cfg_.train.seed, false, dims.vocab_size);

  // The step model computes; the engine owns the step. On the GPU both work on device buffers, and the GPT2 above
  // is the layout only (checkpoints, final weights).
  std::unique_ptr<StepModel> step_model;
  std::unique_ptr<ZeroEngine> engine;
  if (device == TrainDevice::Cuda) {
#ifdef ZT_HAVE_CUDA
    CudaTraining t = make_cuda_training(cfg_, model, *init, pg_, device_pg_);
    step_model = std::move(t.model);
    engine = std::move(t.engine);
    init.reset();  // the weights are on the device; a model.init_from file is unmapped
#else
    throw RuntimeError("train.device: \"cuda\", but this zerotrain was built without CUDA");
#endif
  } else {
    engine = make_zero_engine(cfg_, model, pg_);
    step_model = std::make_unique<CpuStepModel>(model);
  }

  int64_t start_step = 0, updates = 0;  // updates: optimizer steps taken
  if (!cfg_.train.resume.empty()) {
    const std::string dir = resolve_checkpoint_dir(cfg_.train.resume, cfg_.train.save_dir);
    TrainingProgress p = load_checkpoint(dir, model, *engine, pg_, B, cfg_.data.shuffle);
    start_step = p.step;
    updates = p.updates;
    train.restore(p.loader);
  }

  std::string metrics_path = cfg_.train.metrics_file.empty()
                                 ? (fs::path(cfg_.train.save_dir) / "metrics.jsonl").string()
                                 : cfg_.train.metrics_file;
  std::unique_ptr<MetricsWriter> metrics;
  if (rank == 0) {
    metrics = std::make_unique<MetricsWriter>(metrics_path, /*append=*/start_step > 0);
    metrics->write({{"type", "run"},
                   {"resumed_from_step", start_step},
                   {"version", ZT_VERSION},
                   {"world_size", world},
                   {"num_params", model.num_params()},
                   {"config", config_to_json(cfg_)}});
  }

  if (rank == 0)
    spdlog::info("model: {} layers, {} heads, {} embd, vocab {}, {} parameters; ZeRO stage {}, world size {}, "
                 "batch {} = micro {} x accumulation {} x ranks {}, seq_len {}; device {}",
                 dims.n_layer, dims.n_head, dims.n_embd, dims.vocab_size, model.num_params(), engine->stage(), world,
                 batch.train_batch_size, B, gas, world, T, train_device_name(device));

  if (rank == 0) {
    const MemoryStats mem = engine->memory();
    spdlog::info("model states at start (rank 0): params {} B, grads {} B, optimizer {} B, total {} B",
                 mem.param_bytes, mem.grad_bytes, mem.optimizer_bytes, mem.model_state_bytes());
  }
  std::vector<int32_t> inputs(static_cast<size_t>(B) * T), targets(inputs.size());
  TrainSummary summary;
  const int64_t max_steps = cfg_.train.max_steps;
  const double tokens_per_step = static_cast<double>(batch.train_batch_size) * T;
  ProgressBar bar(max_steps, rank == 0 && isatty(STDOUT_FILENO));

  for (int64_t step = start_step; step < max_steps; ++step) {
    auto t0 = std::chrono::steady_clock::now();
    engine->begin_step();
    double loss_sum = 0.0;
    for (int64_t m = 0; m < gas; ++m) {
      train.next_batch(inputs.data(), targets.data());
      engine->begin_micro_batch(m + 1 == gas);
      loss_sum += step_model->forward(inputs.data(), targets.data(), B, T);
      step_model->backward(engine->loss_scale() / static_cast<float>(gas));
      engine->end_micro_batch(m + 1 == gas);
    }
    // Skipped steps (fp16 overflow) advance neither the schedule nor Adam's step count, as in DeepSpeed.
    const double lr = scheduled_lr(cfg_.scheduler, cfg_.optimizer.lr, updates);
    StepResult r = engine->step(lr, updates + 1);
    if (!r.skipped) ++updates;
    const double loss = mean_over_ranks(pg_, loss_sum / static_cast<double>(gas));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    summary.losses.push_back(loss);
    summary.steps = step + 1;
    if (!std::isfinite(loss)) throw RuntimeError("loss became " + std::to_string(loss) + " at step " +
                                                 std::to_string(step + 1) + ": training diverged");

    if (rank == 0) {
      const MemoryStats mem = engine->memory();
      metrics->write({{"type", "step"},
                     {"step", step + 1},
                     {"loss", loss},
                     {"lr", lr},
                     {"grad_norm", r.skipped ? nlohmann::json(nullptr) : nlohmann::json(r.grad_norm)},
                     {"loss_scale", r.loss_scale},
                     {"skipped", r.skipped},
                     {"tokens_per_s", tokens_per_step / secs},
                     {"ms_per_step", secs * 1e3},
                     {"io_wait_ms", r.io_wait_s * 1e3},
                     {"model_state_bytes", mem.model_state_bytes()},
                     {"param_bytes", mem.param_bytes},
                     {"grad_bytes", mem.grad_bytes},
                     {"optimizer_bytes", mem.optimizer_bytes},
                     {"transient_bytes", mem.comm_bytes},
                     {"peak_rss_bytes", peak_rss_bytes()}});
      if (r.skipped)
        spdlog::warn("step {}: gradient overflow (inf/NaN) at loss scale {}: step skipped, loss scale now {}",
                     step + 1, r.loss_scale, engine->loss_scale());
      if (step == 0)
        spdlog::info("memory after the first step (rank 0): params {} B, grads {} B, optimizer {} B, transient "
                     "buffers (peak) {} B, peak RSS {} B",
                     mem.param_bytes, mem.grad_bytes, mem.optimizer_bytes, mem.comm_bytes, peak_rss_bytes());
      const bool print = cfg_.steps_per_print > 0 && ((step + 1) % cfg_.steps_per_print == 0 || step == 0);
      if (print) {
        bar.finish();
        spdlog::info("step {:>5}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.4f} | {:.0f} tok/s | {:.1f} ms",
                     step + 1, max_steps, loss, lr, r.grad_norm, tokens_per_step / secs, secs * 1e3);
      }
      bar.update(step + 1, fmt::format("loss {:.4f}", loss));
    }

    const bool last = step + 1 == max_steps;
    if (last || (cfg_.train.save_interval > 0 && (step + 1) % cfg_.train.save_interval == 0)) {
      bar.finish();
      TrainingProgress progress{step + 1, updates, train.state(), B};
      const std::string tag = save_checkpoint(cfg_, model, *engine, pg_, progress);
      if (rank == 0) spdlog::info("saved checkpoint {}", tag);
    }
    if (val && ((step + 1) % cfg_.train.eval_interval == 0 || last)) {
      val->reset();
      double vsum = 0.0;
      for (int64_t e = 0; e < cfg_.train.eval_steps; ++e) {
        val->next_batch(inputs.data(), targets.data());
        vsum += step_model->forward(inputs.data(), targets.data(), B, T);
      }
      const double vloss = mean_over_ranks(pg_, vsum / static_cast<double>(std::max<int64_t>(1, cfg_.train.eval_steps)));
      summary.last_val_loss = vloss;
      if (rank == 0) {
        bar.finish();
        spdlog::info("eval at step {}: val loss {:.4f}", step + 1, vloss);
        metrics->write({{"type", "eval"}, {"step", step + 1}, {"val_loss", vloss}});
      }
    }
  }
  bar.finish();

  {
    std::vector<float> full(model.num_params());
    engine->gather_full_params(full.data());
    if (rank == 0) {
      fs::path out = fs::path(cfg_.train.save_dir) / "model.safetensors";
      save_model_weights(model, full.data(), out.string());
      spdlog::info("saved final weights to {}", out.string());
    }
  }
  pg_.barrier();
  return summary;
}

}  // namespace zt
