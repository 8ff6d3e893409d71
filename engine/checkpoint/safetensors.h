#pragma once
// safetensors files: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, and
// optionally "__metadata__": {string: string}}, padded with spaces to a multiple of 8, then the tensor bytes.
// Reading converts F32/BF16/F16 to float; writing converts float to the chosen dtype, tensor by tensor.
// Layout written here: tensor data in the order the tensors are given (the JSON header lists names sorted, as a JSON
// object); sharded sets as model-0000i-of-0000N.safetensors plus model.safetensors.index.json (weight_map).
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace zt {

enum class StDtype { F32, F16, BF16 };

const char* st_dtype_name(StDtype dtype);
size_t st_dtype_size(StDtype dtype);
// "F32", "F16", "BF16" (case-sensitive, as in the format); throws ConfigError otherwise.
StDtype st_dtype_from_name(const std::string& name);

struct StTensorInfo {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets within the data section
  size_t numel() const;
};

// One .safetensors file, memory-mapped. Every error (I/O, header, offsets, dtype) names the file and the tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // In data-offset order.
  const std::vector<StTensorInfo>& tensors() const { return tensors_; }
  const StTensorInfo* find(const std::string& name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Byte offset of the data section in the file (8 + header length): tensor t's bytes are at
  // data_offset() + t.begin, for readers that stream with pread instead of touching the mapping.
  uint64_t data_offset() const { return data_offset_; }
  // Converts to float; n must equal the tensor's element count. Throws RuntimeError for an unknown name.
  void read_float(const std::string& name, float* out, size_t n) const;
  std::vector<float> read_float(const std::string& name) const;
  // Elements [begin, begin + n) of the tensor, converted to float; the range must lie inside the tensor.
  void read_float_range(const std::string& name, size_t begin, size_t n, float* out) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const unsigned char* data_ = nullptr;  // start of the data section
  uint64_t data_offset_ = 0;
  std::vector<StTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A whole checkpoint: one .safetensors file, a model.safetensors.index.json (its weight_map names the shard of each
// tensor), or a directory holding either (the index is preferred, then model.safetensors).
class SafetensorsSet {
 public:
  explicit SafetensorsSet(const std::string& path);
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const StTensorInfo& info(const std::string& name) const;
  void read_float(const std::string& name, float* out, size_t n) const;
  std::vector<float> read_float(const std::string& name) const;
  void read_float_range(const std::string& name, size_t begin, size_t n, float* out) const;
  size_t num_files() const { return files_.size(); }

 private:
  const SafetensorsFile& file_of(const std::string& name) const;
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> file_of_tensor_;
};

struct StTensorSpec {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
};

// Streams one file: the header is written when constructed; then write() each tensor, in the order given, from
// float data (converted on the fly in small blocks); close() (or the destructor, which cannot report errors)
// finishes. Nothing is held in memory beyond one block.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::vector<StTensorSpec> tensors,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  // name must be the next tensor in order; n its element count.
  void write(const std::string& name, const float* data, size_t n);
  // Or: the data section's bytes as they go to disk (already in each tensor's dtype), taken from bytes
  // [offset, offset + bytes) of another file and copied inside the kernel (sendfile), in any pieces, across tensor
  // boundaries; all of them before close(). Not mixed with write().
  void copy_from_file(int in_fd, const std::string& in_path, uint64_t offset, uint64_t bytes);
  // Starts (does not wait for) the disk write of what has been written so far, so that a long stream reaches the
  // disk while it is being produced and close()'s fsync has little left to do.
  void start_writeback();
  void close();
  uint64_t data_bytes() const { return data_bytes_; }

 private:
  std::string path_;
  std::vector<StTensorSpec> tensors_;
  size_t next_ = 0;
  uint64_t data_bytes_ = 0;  // the data section's size
  uint64_t raw_written_ = 0;
  int fd_ = -1;
};

struct StTensorRef {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  const float* data = nullptr;  // numel floats
};

void write_safetensors(const std::string& path, const std::vector<StTensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Splits the tensors, in order, into files of at most max_shard_bytes of tensor data each (a tensor larger than
// the limit gets a file of its own), like Hugging Face's max_shard_size. One file: dir/model.safetensors. More:
// dir/model-00001-of-0000N.safetensors ... plus dir/model.safetensors.index.json with metadata.total_size and
// weight_map. Returns the paths written (the index last). dir must exist.
std::vector<std::string> write_safetensors_sharded(const std::string& dir, const std::vector<StTensorRef>& tensors,
                                                   uint64_t max_shard_bytes,
                                                   const std::map<std::string, std::string>& metadata = {});

}  // namespace zt
