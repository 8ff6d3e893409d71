#pragma once
// Who this process is in a job, read from the environment a launcher left: ours or torchrun's (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), srun's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
// SLURM_NTASKS_PER_NODE), Open MPI's (OMPI_COMM_WORLD_*) or MPICH/Hydra's (PMI_RANK, PMI_SIZE, MPI_LOCALRANKID).
// Header-only so both the comm module and the launcher use it without a link dependency.
#include <cstdlib>
#include <optional>
#include <string>

#include "engine/base/error.h"

namespace zt {

struct WorkerEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "none";  // "zerotrain", "torchrun", "slurm", "openmpi", "pmi" or "none"
};

namespace worker_env_detail {

inline const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

inline int env_int(const char* name, int fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' && *end != '(')  // SLURM writes counts like "2(x3)"; the leading number is what we need
    throw ConfigError(std::string("environment variable ") + name + "='" + v + "' is not an integer");
  if (x < 0 || x > 1000000) throw ConfigError(std::string("environment variable ") + name + "='" + v + "' is out of range");
  return static_cast<int>(x);
}

}  // namespace worker_env_detail

// The external launcher this process runs under, if any: "slurm", "openmpi" or "pmi"; empty otherwise.
// A process we (or torchrun) started is not "external": RANK is set and the launcher's variables win.
inline std::string external_launcher_name() {
  using worker_env_detail::env;
  if (env("RANK") || env("ZT_LAUNCHED")) return "";
  if (env("OMPI_COMM_WORLD_RANK")) return "openmpi";
  if (env("PMI_RANK")) return "pmi";
  if (env("SLURM_PROCID") && env("SLURM_NTASKS") && env("SLURM_STEP_ID")) return "slurm";  // srun, not sbatch's shell
  return "";
}

inline bool running_under_external_launcher() { return !external_launcher_name().empty(); }

// Reads the environment; nullopt when no launcher set anything (a plain single process). Throws ConfigError when
// the variables are inconsistent (rank outside the world, MPI without MASTER_ADDR/MASTER_PORT).
inline std::optional<WorkerEnv> read_worker_env() {
  using namespace worker_env_detail;
  WorkerEnv w;
  std::string ext = external_launcher_name();
  if (env("RANK")) {
    w.source = env("ZT_LAUNCHED") ? "zerotrain" : "torchrun";
    w.rank = env_int("RANK", 0);
    w.world_size = env_int("WORLD_SIZE", 1);
    w.local_rank = env_int("LOCAL_RANK", 0);
    w.local_world_size = env_int("LOCAL_WORLD_SIZE", 1);
  } else if (ext == "openmpi") {
    w.source = ext;
    w.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    w.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    w.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    w.local_world_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  } else if (ext == "pmi") {
    w.source = ext;
    w.rank = env_int("PMI_RANK", 0);
    w.world_size = env_int("PMI_SIZE", 1);
    w.local_rank = env_int("MPI_LOCALRANKID", 0);
    w.local_world_size = env_int("MPI_LOCALNRANKS", 1);
  } else if (ext == "slurm") {
    w.source = ext;
    w.rank = env_int("SLURM_PROCID", 0);
    w.world_size = env_int("SLURM_NTASKS", 1);
    w.local_rank = env_int("SLURM_LOCALID", 0);
    w.local_world_size = env_int("SLURM_NTASKS_PER_NODE", 1);
  } else {
    return std::nullopt;
  }
  if (w.world_size < 1 || w.rank >= w.world_size)
    throw ConfigError("worker environment (" + w.source + "): rank " + std::to_string(w.rank) +
                      " is outside a world of " + std::to_string(w.world_size));
  if (w.world_size > 1 && w.source != "zerotrain" && w.source != "torchrun" &&
      (!env("MASTER_ADDR") || !env("MASTER_PORT")))
    throw ConfigError("running under " + w.source + " with " + std::to_string(w.world_size) +
                      " ranks needs MASTER_ADDR and MASTER_PORT in the environment (the address of the first node "
                      "and a free port; see docs/launching.md)");
  if (const char* a = env("MASTER_ADDR")) w.master_addr = a;
  w.master_port = env_int("MASTER_PORT", 29500);
  if (w.master_port < 1 || w.master_port > 65535)
    throw ConfigError("MASTER_PORT=" + std::to_string(w.master_port) + " is not a TCP port");
  return w;
}

}  // namespace zt
