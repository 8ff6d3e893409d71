#pragma once
// Checks of the ZeRO building blocks (PartitionMap, allgather_partition, GradientBucketer, ParamCoordinator) that
// run the same way in one process (test_zero, a world of one) and in each rank of zt_zero_worker (worlds of 2-3).
// Each check appends readable failure lines to a Failures list instead of aborting, so one run reports them all.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/comm/process_group.h"
#include "engine/config/config.h"
#include "engine/model/gpt2.h"
#include "engine/zero/gradient_bucketer.h"
#include "engine/zero/param_coordinator.h"
#include "engine/zero/partition_map.h"

namespace zt::zerotest {

struct Failures {
  std::vector<std::string> lines;
  template <typename... A>
  void add(const A&... parts) {
    std::ostringstream s;
    (s << ... << parts);
    if (lines.size() < 40) lines.push_back(s.str());
    else if (lines.size() == 40) lines.push_back("... (more failures cut)");
  }
  bool ok() const { return lines.empty(); }
  std::string str() const {
    std::string out;
    for (const std::string& l : lines) out += l + "\n";
    return out;
  }
};

// No unit size is a multiple of 16 (so of no world size x 16): wte 97x36 + wpe 16x36 = 4068, a block
// 12*36^2 + 13*36 = 16020, final LN 72.
inline ModelDims odd_dims() {
  ModelDims d;
  d.n_layer = 2;
  d.n_head = 3;
  d.n_embd = 36;
  d.vocab_size = 97;
  d.block_size = 16;
  return d;
}

// A value that differs per rank, unit and element, exact in fp32 (multiples of 1/8 in [-4, 4]).
inline float pattern(int rank, size_t unit, size_t i) {
  return static_cast<float>(static_cast<int>((static_cast<size_t>(rank) * 13 + unit * 7 + i * 5) % 64) - 32) / 8.0f;
}

inline bool near_equal(float got, double want) {
  return std::fabs(static_cast<double>(got) - want) <= 1e-6 * std::fabs(want) + 1e-7;
}

// ---- PartitionMap (no communication) ----

inline void check_partition_map(const GPT2& model, int world, Failures& f) {
  PartitionMap map(model, world);
  const auto& units = map.units();
  const size_t quantum = static_cast<size_t>(world) * PartitionMap::kAlign;
  const size_t n = model.num_params();
  if (map.num_params() != n) f.add("world ", world, ": num_params ", map.num_params(), " != ", n);
  if (units.size() != static_cast<size_t>(model.num_units())) f.add("world ", world, ": unit count differs");
  size_t local = 0;
  for (size_t u = 0; u < units.size(); ++u) {
    const UnitShard& s = units[u];
    UnitRange r = model.unit_range(static_cast<int>(u));
    if (s.flat_offset != r.offset || s.numel != r.numel) f.add("world ", world, " unit ", u, ": range differs");
    if (s.padded % quantum != 0 || s.padded < s.numel || s.padded - s.numel >= quantum)
      f.add("world ", world, " unit ", u, ": padded ", s.padded, " is not numel ", s.numel, " rounded up to ", quantum);
    if (s.shard * static_cast<size_t>(world) != s.padded) f.add("world ", world, " unit ", u, ": shard*world != padded");
    if (s.local_offset != local) f.add("world ", world, " unit ", u, ": local_offset ", s.local_offset, " != ", local);
    local += s.shard;
  }
  if (map.partition_numel() != local) f.add("world ", world, ": partition_numel ", map.partition_numel(), " != ", local);

  // Every element owned exactly once, by owned_flat_range and by owned_slice.
  std::vector<int> by_range(n, 0), by_slice(n, 0);
  for (int rank = 0; rank < world; ++rank) {
    for (size_t u = 0; u < units.size(); ++u) {
      auto [b, e] = map.owned_flat_range(static_cast<int>(u), rank);
      if (b > e || b < units[u].flat_offset || e > units[u].flat_offset + units[u].numel)
        f.add("world ", world, " rank ", rank, " unit ", u, ": owned range [", b, ",", e, ") outside the unit");
      for (size_t i = b; i < e; ++i) ++by_range[i];
    }
    for (const ParamInfo& p : model.params()) {
      OwnedSlice o = map.owned_slice(p, rank);
      if (o.flat_end == o.flat_begin) continue;
      const UnitShard& s = units[static_cast<size_t>(p.unit)];
      if (o.flat_begin < p.offset || o.flat_end > p.offset + p.numel)
        f.add("world ", world, " rank ", rank, " ", p.name, ": slice outside the parameter");
      const size_t shard_begin = s.flat_offset + static_cast<size_t>(rank) * s.shard;
      if (o.local_begin != s.local_offset + (o.flat_begin - shard_begin))
        f.add("world ", world, " rank ", rank, " ", p.name, ": local_begin ", o.local_begin, " is not where flat ",
              o.flat_begin, " lands in the partition");
      for (size_t i = o.flat_begin; i < o.flat_end; ++i) ++by_slice[i];
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (by_range[i] != 1) {
      f.add("world ", world, ": flat element ", i, " owned ", by_range[i], " times by owned_flat_range");
      break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (by_slice[i] != 1) {
      f.add("world ", world, ": flat element ", i, " owned ", by_slice[i], " times by owned_slice");
      break;
    }
  }

  // Round trip, zero padding, and decay ranges that tile the partition with the right flags.
  std::vector<float> flat(n), decay_flat(n, 0.0f);
  for (size_t i = 0; i < n; ++i) flat[i] = static_cast<float>(i % 1000) + 1.0f;  // never 0: padding shows
  for (const ParamInfo& p : model.params())
    std::fill(decay_flat.begin() + static_cast<long>(p.offset), decay_flat.begin() + static_cast<long>(p.offset + p.numel),
              p.weight_decay ? 1.0f : 0.0f);
  std::vector<float> back(n, std::numeric_limits<float>::quiet_NaN());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int rank = 0; rank < world; ++rank) {
    std::vector<float> part(map.partition_numel(), nan), decay_part(map.partition_numel(), nan);
    map.flat_to_partition(flat.data(), part.data(), rank);
    map.flat_to_partition(decay_flat.data(), decay_part.data(), rank);
    std::vector<bool> real(map.partition_numel(), false);
    for (size_t u = 0; u < units.size(); ++u) {
      auto [b, e] = map.owned_flat_range(static_cast<int>(u), rank);
      for (size_t i = 0; i < e - b; ++i) {
        real[units[u].local_offset + i] = true;
        if (part[units[u].local_offset + i] != flat[b + i]) {
          f.add("world ", world, " rank ", rank, " unit ", u, ": partition element ", i, " != flat ", b + i);
          break;
        }
      }
    }
    for (size_t j = 0; j < part.size(); ++j) {
      if (!real[j] && part[j] != 0.0f) {
        f.add("world ", world, " rank ", rank, ": padding at partition element ", j, " is ", part[j], ", not 0");
        break;
      }
    }
    map.partition_to_flat(part.data(), back.data(), rank);

    std::vector<DecayRange> ranges = map.decay_ranges(model.params(), rank);
    size_t at = 0;
    for (const DecayRange& r : ranges) {
      if (r.begin != at || r.end <= r.begin) {
        f.add("world ", world, " rank ", rank, ": decay range [", r.begin, ",", r.end, ") does not continue at ", at);
        break;
      }
      for (size_t j = r.begin; j < r.end; ++j) {
        if ((decay_part[j] == 1.0f) != r.decay) {
          f.add("world ", world, " rank ", rank, ": partition element ", j, " decay flag ", r.decay, " is wrong");
          break;
        }
      }
      at = r.end;
    }
    if (at != map.partition_numel())
      f.add("world ", world, " rank ", rank, ": decay ranges end at ", at, ", partition has ", map.partition_numel());
  }
  for (size_t i = 0; i < n; ++i) {
    if (!(back[i] == flat[i])) {
      f.add("world ", world, ": round trip flat element ", i, " is ", back[i], ", want ", flat[i]);
      break;
    }
  }
}

// ---- allgather_partition ----

inline void check_allgather_partition(ProcessGroup& pg, const GPT2& model, size_t bucket_elems, Failures& f) {
  PartitionMap map(model, pg.size());
  const size_t n = model.num_params();
  std::vector<float> flat(n);
  for (size_t i = 0; i < n; ++i) flat[i] = pattern(0, 0, i) + static_cast<float>(i % 7);
  std::vector<float> part(map.partition_numel());
  map.flat_to_partition(flat.data(), part.data(), pg.rank());
  std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> scratch;
  allgather_partition(map, pg, part.data(), out.data(), bucket_elems, scratch);
  for (size_t i = 0; i < n; ++i) {
    if (!(out[i] == flat[i])) {
      f.add("allgather_partition world ", pg.size(), " rank ", pg.rank(), " bucket ", bucket_elems, ": flat element ", i,
            " is ", out[i], ", want ", flat[i]);
      return;
    }
  }
  // allgather_own_shards: only this rank's elements of the flat buffer are there to start with (written range by
  // range, as the NVMe optimizer hands them over); everything else is NaN until gathered.
  std::vector<float> own(n, std::numeric_limits<float>::quiet_NaN());
  for (size_t at = 0; at < part.size(); at += 1000)
    map.partition_range_to_flat(part.data() + at, at, std::min<size_t>(1000, part.size() - at), own.data(), pg.rank());
  allgather_own_shards(map, pg, own.data(), bucket_elems, scratch);
  for (size_t i = 0; i < n; ++i) {
    if (!(own[i] == flat[i])) {
      f.add("allgather_own_shards world ", pg.size(), " rank ", pg.rank(), " bucket ", bucket_elems,
            ": flat element ", i, " is ", own[i], ", want ", flat[i]);
      return;
    }
  }
}

// ---- GradientBucketer ----

// Two micro-batches of unit gradients (rank-dependent values), added in backward order; each rank's partition
// gradient must be base + the average over ranks of both, in its own shards, with the padding left at base.
// corrupt is added to this rank's first gradient element behind the reference's back (to see the check fail).
inline void check_bucketer(ProcessGroup& pg, const GPT2& model, size_t bucket_elems, bool overlap, Failures& f,
                           float corrupt = 0.0f) {
  const int world = pg.size(), rank = pg.rank();
  PartitionMap map(model, world);
  const auto& units = map.units();
  GradientBucketer bucketer(map, pg, bucket_elems, overlap);
  std::vector<float> part(map.partition_numel());
  for (size_t j = 0; j < part.size(); ++j) part[j] = static_cast<float>(j % 3);
  const std::vector<float> base = part;
  const int micro_batches = 2;
  for (int mb = 0; mb < micro_batches; ++mb) {
    for (int u = static_cast<int>(units.size()) - 1; u >= 0; --u) {
      std::vector<float> grad(units[static_cast<size_t>(u)].numel);
      for (size_t i = 0; i < grad.size(); ++i) grad[i] = pattern(rank + 5 * mb, static_cast<size_t>(u), i);
      if (u == 0) grad[0] += corrupt;
      bucketer.add_unit(u, grad.data());
      std::fill(grad.begin(), grad.end(), std::numeric_limits<float>::quiet_NaN());  // the bucketer copied it
    }
    bucketer.finish(part.data());
  }
  // Reference: the averaged full gradient, laid out as this rank's partition.
  std::vector<float> avg(model.num_params());
  for (size_t u = 0; u < units.size(); ++u) {
    for (size_t i = 0; i < units[u].numel; ++i) {
      double s = 0;
      for (int mb = 0; mb < micro_batches; ++mb) {
        double m = 0;
        for (int r = 0; r < world; ++r) m += pattern(r + 5 * mb, u, i);
        s += m / world;
      }
      avg[units[u].flat_offset + i] = static_cast<float>(s);
    }
  }
  std::vector<float> want(map.partition_numel());
  map.flat_to_partition(avg.data(), want.data(), rank);  // padding: 0
  for (size_t j = 0; j < part.size(); ++j) {
    if (!near_equal(part[j], static_cast<double>(base[j]) + want[j])) {
      f.add("bucketer world ", world, " rank ", rank, " bucket ", bucket_elems, " overlap ", overlap,
            ": partition element ", j, " is ", part[j], ", want ", base[j] + want[j]);
      return;
    }
  }
  if (bucketer.comm_bytes() == 0) f.add("bucketer: comm_bytes is 0 after reducing");
}

// ---- ParamCoordinator ----

struct CoordinatorRun {
  std::vector<CoordinatorEvent> events;
  size_t step2_first_event = 0;  // index in events of the second step's first event
  std::vector<int> trace;
  std::vector<bool> persistent;
  size_t peak_live = 0;
  std::vector<size_t> padded;  // per unit
};

// Drives a ParamCoordinator the way Stage3Engine does (fetch in before_*, release in after_*) through two real
// GPT-2 forward+backward steps of a model whose own buffers are gone, and compares every gathered unit, the loss and
// the gradients with a non-partitioned copy. Between the steps the partition changes (as the optimizer would); the
// second step must see the new values.
class CoordinatorHooks : public UnitHooks {
 public:
  CoordinatorHooks(GPT2& model, ParamCoordinator& coord, const PartitionMap& map, Failures& f)
      : model_(model), coord_(coord), map_(map), f_(f), grads_(map.units().size()) {
    for (size_t u = 0; u < grads_.size(); ++u) grads_[u].assign(map.units()[u].numel, 0.0f);
  }
  void set_reference(const std::vector<float>* flat) { flat_ = flat; }
  std::vector<std::vector<float>>& grads() { return grads_; }
  size_t max_live_seen() const { return max_live_seen_; }

  void before_forward(int unit) override { use(unit); }
  void after_forward(int unit) override { coord_.release(unit); }
  void before_backward(int unit) override { use(unit); }
  void after_backward(int unit) override { coord_.release(unit); }

 private:
  void use(int unit) {
    const UnitShard& s = map_.units()[static_cast<size_t>(unit)];
    float* p = coord_.fetch(unit);
    max_live_seen_ = std::max(max_live_seen_, coord_.live_elements());
    for (size_t i = 0; i < s.numel; ++i) {
      if (p[i] != (*flat_)[s.flat_offset + i]) {
        f_.add("coordinator: gathered unit ", unit, " element ", i, " is ", p[i],
               ", the partitions hold ", (*flat_)[s.flat_offset + i]);
        break;
      }
    }
    for (size_t i = s.numel; i < s.padded; ++i) {
      if (p[i] != 0.0f) {
        f_.add("coordinator: gathered unit ", unit, " padding element ", i, " is ", p[i]);
        break;
      }
    }
    model_.set_unit_buffers(unit, p, grads_[static_cast<size_t>(unit)].data());
  }
  GPT2& model_;
  ParamCoordinator& coord_;
  const PartitionMap& map_;
  Failures& f_;
  std::vector<std::vector<float>> grads_;
  const std::vector<float>* flat_ = nullptr;
  size_t max_live_seen_ = 0;
};

inline CoordinatorRun run_coordinator(ProcessGroup& pg, const ZeroConfig& zcfg, Failures& f) {
  const ModelDims dims = odd_dims();
  const int B = 2, T = 8;
  GPT2 ref(dims, false), model(dims, false);
  ref.init_weights(7);
  PartitionMap map(model, pg.size());
  std::vector<float> flat(ref.param_data(), ref.param_data() + ref.num_params());
  std::vector<float> partition(map.partition_numel());
  map.flat_to_partition(flat.data(), partition.data(), pg.rank());
  model.release_own_buffers();

  ParamCoordinator coord(map, pg, zcfg, partition.data(), WorkingPrecision::F32);
  coord.end_step();  // as Stage3Engine: gathers the persistent units
  CoordinatorHooks hooks(model, coord, map, f);
  model.set_hooks(&hooks);

  CoordinatorRun run;
  std::vector<int32_t> inputs(B * T), targets(B * T);
  for (int step = 0; step < 2; ++step) {
    if (step == 1) {
      // The optimizer's update: new partition values, and the same in the reference.
      for (size_t i = 0; i < flat.size(); ++i) flat[i] = flat[i] * 0.5f + 0.001f * static_cast<float>(i % 11);
      std::copy(flat.begin(), flat.end(), ref.param_data());
      map.flat_to_partition(flat.data(), partition.data(), pg.rank());
      coord.end_step();
      run.step2_first_event = coord.events().size();
    }
    for (int i = 0; i < B * T; ++i) {
      inputs[static_cast<size_t>(i)] = (i * 31 + step * 17) % dims.vocab_size;
      targets[static_cast<size_t>(i)] = (i * 53 + step * 5 + 3) % dims.vocab_size;
    }
    hooks.set_reference(&flat);
    for (auto& g : hooks.grads()) std::fill(g.begin(), g.end(), 0.0f);
    ref.zero_grad();
    coord.begin_step();
    const float loss = model.forward(inputs.data(), targets.data(), B, T);
    model.backward(1.0f);
    const float want = ref.forward(inputs.data(), targets.data(), B, T);
    ref.backward(1.0f);
    if (!near_equal(loss, want)) f.add("coordinator step ", step + 1, ": loss ", loss, " != non-partitioned ", want);
    for (size_t u = 0; u < map.units().size(); ++u) {
      const float* rg = ref.grad_data() + map.units()[u].flat_offset;
      for (size_t i = 0; i < map.units()[u].numel; ++i) {
        if (!near_equal(hooks.grads()[u][i], rg[i])) {
          f.add("coordinator step ", step + 1, ": unit ", u, " grad ", i, " is ", hooks.grads()[u][i], ", want ", rg[i]);
          break;
        }
      }
    }
  }
  model.set_hooks(nullptr);
  run.events = coord.events();
  run.trace = coord.trace();
  run.peak_live = coord.peak_live_elements();
  if (hooks.max_live_seen() > run.peak_live)
    f.add("coordinator: live_elements reached ", hooks.max_live_seen(), " above peak_live_elements ", run.peak_live);
  for (size_t u = 0; u < map.units().size(); ++u) {
    run.persistent.push_back(coord.is_persistent(static_cast<int>(u)));
    run.padded.push_back(map.units()[u].padded);
  }
  return run;
}

// The fetch order of one forward+backward by the documented hook order: 0, 1..L, L+1, 0 | 0, L+1, L..1, 0.
inline std::vector<int> expected_trace(int n_layer) {
  std::vector<int> t;
  for (int u = 0; u <= n_layer + 1; ++u) t.push_back(u);
  t.push_back(0);
  t.push_back(0);
  for (int u = n_layer + 1; u >= 1; --u) t.push_back(u);
  t.push_back(0);
  return t;
}

// The coordinator's event log against its rules (see param_coordinator.h).
inline void check_coordinator_events(const CoordinatorRun& run, const ZeroConfig& z, Failures& f) {
  const int n_layer = odd_dims().n_layer;
  if (run.trace != expected_trace(n_layer)) {
    std::string got;
    for (int u : run.trace) got += std::to_string(u) + " ";
    f.add("coordinator: trace is [", got, "], not the hook order of one forward+backward");
  }
  // Each use of a unit is one Fetch or Hit; each after_* is one Release or Keep.
  std::vector<int> fetches_per_step(2, 0);
  for (size_t k = 0; k < run.events.size(); ++k) {
    const CoordinatorEvent& e = run.events[k];
    const int step = k >= run.step2_first_event ? 1 : 0;
    const size_t u = static_cast<size_t>(e.unit);
    if (e.kind == CoordinatorEvent::Fetch || e.kind == CoordinatorEvent::Hit) ++fetches_per_step[static_cast<size_t>(step)];
    if (e.kind == CoordinatorEvent::Release && run.persistent[u])
      f.add("coordinator: persistent unit ", u, " was released (event ", k, ")");
    if (e.kind == CoordinatorEvent::Keep && !run.persistent[u]) {
      // Only allowed by max_reuse_distance: with 0, only when the very next use is this same unit.
      bool next_is_same = false;
      for (size_t j = k + 1; j < run.events.size(); ++j) {
        if (run.events[j].kind == CoordinatorEvent::Fetch || run.events[j].kind == CoordinatorEvent::Hit) {
          next_is_same = run.events[j].unit == e.unit;
          break;
        }
      }
      if (step == 0) f.add("coordinator: unit ", u, " kept in the first step (no trace yet), event ", k);
      else if (z.stage3_max_reuse_distance == 0 && !next_is_same)
        f.add("coordinator: unit ", u, " kept with max_reuse_distance 0 though not used next, event ", k);
    }
    if (e.kind == CoordinatorEvent::Prefetch && step == 0) f.add("coordinator: prefetch in the first step, event ", k);
  }
  const int uses = static_cast<int>(run.trace.size());
  for (int s = 0; s < 2; ++s)
    if (fetches_per_step[static_cast<size_t>(s)] != uses)
      f.add("coordinator: step ", s + 1, " has ", fetches_per_step[static_cast<size_t>(s)], " fetches, want ", uses);

  // Replaying the log gives which units are gathered at every moment: a Prefetch must fit within
  // stage3_max_live_parameters (only the unit needed right now may go over), and the replayed peak is the peak the
  // coordinator reports. end_step (before each step) leaves exactly the persistent units gathered.
  {
    std::vector<bool> held(run.padded.size(), false);
    size_t live = 0, peak = 0;
    auto start_step = [&] {
      live = 0;
      for (size_t u = 0; u < held.size(); ++u) {
        held[u] = run.persistent[u];
        if (held[u]) live += run.padded[u];
      }
      peak = std::max(peak, live);
    };
    start_step();
    for (size_t k = 0; k < run.events.size(); ++k) {
      if (k == run.step2_first_event) start_step();
      const CoordinatorEvent& e = run.events[k];
      const size_t u = static_cast<size_t>(e.unit);
      switch (e.kind) {
        case CoordinatorEvent::Fetch:
        case CoordinatorEvent::Prefetch:
          if (held[u]) f.add("coordinator: event ", k, " gathers unit ", u, " which is already gathered");
          held[u] = true;
          live += run.padded[u];
          if (e.kind == CoordinatorEvent::Prefetch && static_cast<int64_t>(live) > z.stage3_max_live_parameters)
            f.add("coordinator: prefetch of unit ", u, " (event ", k, ") makes ", live,
                  " elements live, over stage3_max_live_parameters ", z.stage3_max_live_parameters);
          break;
        case CoordinatorEvent::Hit:
        case CoordinatorEvent::Keep:
          if (!held[u]) f.add("coordinator: event ", k, " (hit/keep) on unit ", u, " which is not gathered");
          // A unit kept for reuse is one the model no longer needs: only within the live budget.
          if (e.kind == CoordinatorEvent::Keep && !run.persistent[u] &&
              static_cast<int64_t>(live) > z.stage3_max_live_parameters)
            f.add("coordinator: unit ", u, " kept (event ", k, ") with ", live,
                  " elements live, over stage3_max_live_parameters ", z.stage3_max_live_parameters);
          break;
        case CoordinatorEvent::Release:
          if (!held[u]) f.add("coordinator: release of unit ", u, " which is not gathered (event ", k, ")");
          held[u] = false;
          live -= run.padded[u];
          break;
      }
      peak = std::max(peak, live);
    }
    if (peak != run.peak_live)
      f.add("coordinator: replaying the events peaks at ", peak, " live elements, the coordinator reports ",
            run.peak_live);
  }

  // Second step: the prefetches issued during the fetch at trace position pos are units later in the trace, in
  // trace order, within one prefetch bucket; each prefetched unit is then a Hit at its next use.
  size_t pos = 0;
  bool first = true;
  size_t cursor = 0, bucket = 0;  // trace position of the last prefetch during this fetch
  size_t prefetches = 0;
  for (size_t k = run.step2_first_event; k < run.events.size(); ++k) {
    const CoordinatorEvent& e = run.events[k];
    if (e.kind == CoordinatorEvent::Fetch || e.kind == CoordinatorEvent::Hit) {
      pos = first ? 0 : pos + 1;
      first = false;
      cursor = pos;
      bucket = 0;
    } else if (e.kind == CoordinatorEvent::Prefetch) {
      ++prefetches;
      size_t j = cursor + 1;
      while (j < run.trace.size() && run.trace[j] != e.unit) ++j;
      if (j == run.trace.size()) {
        f.add("coordinator: prefetch of unit ", e.unit, " (event ", k, ") is not later in the trace than position ",
              cursor);
        continue;
      }
      cursor = j;
      bucket += run.padded[static_cast<size_t>(e.unit)];
      if (static_cast<int64_t>(bucket) > z.stage3_prefetch_bucket_size)
        f.add("coordinator: prefetches after trace position ", pos, " total ", bucket,
              " elements, over stage3_prefetch_bucket_size ", z.stage3_prefetch_bucket_size);
      for (size_t m = k + 1; m < run.events.size(); ++m) {
        const CoordinatorEvent& n = run.events[m];
        if (n.unit != e.unit || (n.kind != CoordinatorEvent::Fetch && n.kind != CoordinatorEvent::Hit)) continue;
        if (n.kind != CoordinatorEvent::Hit) f.add("coordinator: unit ", e.unit, " prefetched (event ", k,
                                                   ") but fetched again at its use (event ", m, ")");
        break;
      }
    }
  }
  if (z.stage3_prefetch_bucket_size > 0 && z.stage3_max_live_parameters > 0 && prefetches == 0)
    f.add("coordinator: no prefetch at all in the second step");
  if (z.stage3_max_live_parameters == 0 && prefetches != 0)
    f.add("coordinator: ", prefetches, " prefetches with stage3_max_live_parameters 0");
}

}  // namespace zt::zerotest
