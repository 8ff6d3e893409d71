#pragma once
// CRC-32 (IEEE 802.3, the zlib/PNG polynomial) of files and buffers: the checksum a checkpoint manifest records per
// file, so a truncated or corrupted shard is caught before it is loaded.
#include <cstddef>
#include <cstdint>
#include <string>

namespace zt {

uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
// CRC-32 and size of a whole file; throws RuntimeError naming it when it cannot be read.
uint32_t crc32_file(const std::string& path, uint64_t* size = nullptr);

}  // namespace zt
