#pragma once
// The GPU engines' offload takes its host memory (much of it page-locked) when the engine is built; a request larger
// than the host can give is refused here with the sizes, before it is made, rather than failing later (the kernel's
// OOM killer, or a partial pinning). Plain C++: tested on the CPU.
#include <cstddef>
#include <cstdint>
#include <string>

namespace zt {

// MemAvailable of a /proc/meminfo-format file, in bytes; 0 when it cannot be read (the check is then skipped).
int64_t host_memory_available(const std::string& meminfo = "/proc/meminfo");

// Throws RuntimeError naming what, the bytes it needs and the bytes available, when available (> 0) is smaller.
void check_host_memory(size_t bytes, const std::string& what, int64_t available);

}  // namespace zt
