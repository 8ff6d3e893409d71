#pragma once
// CRC-32 (IEEE 802.3, the zlib/PNG polynomial) of files and buffers: the checksum a checkpoint manifest records per
// file, so a truncated or corrupted shard is caught before it is loaded.
#include <cstddef>
#include <cstdint>
#include <string>

namespace zt {

// crc: the CRC of the bytes before (0 to start). Uses carry-less multiplication folding where the CPU has it.
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
// The same CRC by other means, for tests: slicing-by-8 tables only, and one bit at a time.
uint32_t crc32_update_portable(uint32_t crc, const void* data, size_t n);
uint32_t crc32_reference(uint32_t crc, const void* data, size_t n);
// CRC-32 and size of a whole file; throws RuntimeError naming it when it cannot be read. With prefix_crc, also the
// CRC-32 of the file's first prefix_bytes bytes, in the same pass.
uint32_t crc32_file(const std::string& path, uint64_t* size = nullptr, uint64_t prefix_bytes = 0,
                    uint32_t* prefix_crc = nullptr);

}  // namespace zt
