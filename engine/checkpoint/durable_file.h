#pragma once
// Durable writes for checkpoints and merged models: a file is written under a temporary name, fsynced, renamed into
// place and its directory fsynced, so a crash leaves either the old file or the whole new one, never half of one.
#include <string>

namespace zt {

// fsync of a file or a directory; throws RuntimeError naming it.
void fsync_path(const std::string& path, bool directory);

// Writes text to path: path + ".tmp", fsync, rename, fsync of the directory.
void write_file_atomically(const std::string& path, const std::string& text);

// Renames from to to and fsyncs to's directory; throws RuntimeError naming both.
void rename_durably(const std::string& from, const std::string& to);

}  // namespace zt
