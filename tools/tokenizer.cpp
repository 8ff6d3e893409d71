// tokenizer: text files -> llm.c token shards (PREFIX_train_000000.bin, PREFIX_val_000000.bin, ...).
//   tokenizer [--bpe ENCODER_JSON VOCAB_BPE] [--val-fraction 0.1] [--shard-tokens N] --out PREFIX INPUT_FILES...
//   tokenizer [--bpe ENCODER_JSON VOCAB_BPE] --decode SHARD        (prints the shard's text to stdout)
// Byte-level by default (vocab 256, token = byte). With --bpe, GPT-2's byte-level BPE: bytes mapped to printable
// unicode, GPT-2's pre-tokenization pattern by hand-written rules, merges applied by rank; each input file is one
// document and is preceded by the end-of-text token. The first val-fraction of the tokens is the val split.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/base/error.h"
#include "engine/data/data_loader.h"

namespace {

using zt::ConfigError;
using zt::RuntimeError;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RuntimeError("tokenizer: cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes one UTF-8 code point at s[i]; invalid bytes decode as themselves (one byte) so nothing is lost.
uint32_t decode_utf8(const std::string& s, size_t i, size_t* len) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return c;
  }
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < n; k++) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc >> 6) != 2) {
      *len = 1;
      return c;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  *len = static_cast<size_t>(n);
  return cp;
}

// GPT-2's pattern classes. Letters and digits beyond ASCII are approximated: every non-ASCII code point counts as a
// letter except the common Unicode spaces, which count as whitespace.
enum class CharClass { Letter, Digit, Space, Other };

CharClass classify(uint32_t cp) {
  if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::Letter;
  if (cp >= '0' && cp <= '9') return CharClass::Digit;
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
      (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
      cp == 0x3000) {
    return CharClass::Space;
  }
  if (cp < 0x80) return CharClass::Other;
  return CharClass::Letter;
}

// Splits text like GPT-2's regex 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ and
// hands each piece to emit(begin, end) (byte offsets). Code points are decoded on the fly, so memory stays flat.
template <typename Emit>
void pretokenize(const std::string& text, Emit&& emit) {
  size_t n = text.size();
  auto class_at = [&](size_t pos, size_t* len) { return classify(decode_utf8(text, pos, len)); };
  size_t i = 0;
  while (i < n) {
    // Contractions (case-sensitive, as GPT-2's pattern); all ASCII, so bytes can be compared directly.
    if (text[i] == '\'' && i + 1 < n) {
      char a = text[i + 1];
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        emit(i, i + 2);
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        char b = text[i + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
          emit(i, i + 3);
          i += 3;
          continue;
        }
      }
    }
    // An optional single space, then a run of letters, digits or other non-space characters.
    size_t len = 0;
    size_t j = i;
    if (text[i] == ' ' && i + 1 < n && class_at(i + 1, &len) != CharClass::Space) j = i + 1;
    CharClass cls = class_at(j, &len);
    if (cls != CharClass::Space) {
      size_t k = j + len;
      while (k < n && class_at(k, &len) == cls) k += len;
      emit(i, k);
      i = k;
      continue;
    }
    // Whitespace: the whole run at the end of the text; otherwise all but its last character (which then
    // prefixes the next word when it is a space), or a lone character.
    size_t k = i, last = i;
    while (k < n && class_at(k, &len) == CharClass::Space) {
      last = k;
      k += len;
    }
    if (k == n || last == i) {
      emit(i, k);
      i = k;
    } else {
      emit(i, last);
      i = last;
    }
  }
}

class Gpt2Bpe {
 public:
  Gpt2Bpe(const std::string& encoder_path, const std::string& merges_path) {
    // Bytes that are printable stay themselves; the others map to 256, 257, ... in byte order.
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      byte_symbol_[b].clear();
      append_utf8(byte_symbol_[b], cp);
      symbol_byte_[byte_symbol_[b]] = static_cast<unsigned char>(b);
    }
    nlohmann::json enc;
    try {
      enc = nlohmann::json::parse(read_file(encoder_path));
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError("tokenizer: " + encoder_path + ": not valid JSON: " + e.what());
    }
    if (!enc.is_object()) throw ConfigError("tokenizer: " + encoder_path + ": expected a JSON object");
    for (auto it = enc.begin(); it != enc.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > 65535) {
        throw ConfigError("tokenizer: " + encoder_path + ": id of '" + it.key() + "' is not in [0, 65535]");
      }
      int id = it.value().get<int>();
      encoder_[it.key()] = id;
      decoder_[id] = it.key();
    }
    auto eot = encoder_.find("<|endoftext|>");
    eot_ = eot != encoder_.end() ? eot->second : 50256;
    std::istringstream merges(read_file(merges_path));
    std::string line;
    int rank = 0;
    while (std::getline(merges, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line.rfind("#version", 0) == 0) continue;
      size_t sp = line.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == line.size()) {
        throw ConfigError("tokenizer: " + merges_path + ": bad merge line '" + line + "'");
      }
      merge_rank_.emplace(line.substr(0, sp) + '\n' + line.substr(sp + 1), rank++);
    }
  }

  int eot() const { return eot_; }

  void encode(const std::string& text, std::vector<uint16_t>& out) {
    pretokenize(text, [&](size_t begin, size_t end) {
      std::string word = text.substr(begin, end - begin);
      auto cached = cache_.find(word);
      if (cached == cache_.end()) cached = cache_.emplace(word, encode_word(word)).first;
      out.insert(out.end(), cached->second.begin(), cached->second.end());
    });
  }

  std::string decode(uint16_t id) const {
    auto it = decoder_.find(id);
    if (it == decoder_.end()) throw RuntimeError("tokenizer: token id " + std::to_string(id) + " is not in the encoder");
    // Map each unicode symbol back to its byte.
    std::string bytes;
    const std::string& s = it->second;
    for (size_t i = 0; i < s.size();) {
      size_t len = 0;
      decode_utf8(s, i, &len);
      auto b = symbol_byte_.find(s.substr(i, len));
      if (b == symbol_byte_.end()) {
        bytes += s.substr(i, len);  // special tokens such as <|endoftext|> decode as written
      } else {
        bytes += static_cast<char>(b->second);
      }
      i += len;
    }
    return bytes;
  }

 private:
  std::vector<uint16_t> encode_word(const std::string& word) {
    std::vector<std::string> parts;
    for (unsigned char c : word) parts.push_back(byte_symbol_[c]);
    // Repeatedly merge every occurrence of the adjacent pair with the lowest rank.
    while (parts.size() > 1) {
      int best = INT_MAX;
      size_t best_at = 0;
      for (size_t i = 0; i + 1 < parts.size(); i++) {
        auto r = merge_rank_.find(parts[i] + '\n' + parts[i + 1]);
        if (r != merge_rank_.end() && r->second < best) {
          best = r->second;
          best_at = i;
        }
      }
      if (best == INT_MAX) break;
      std::string left = parts[best_at], right = parts[best_at + 1];
      std::vector<std::string> merged;
      for (size_t i = 0; i < parts.size();) {
        if (i + 1 < parts.size() && parts[i] == left && parts[i + 1] == right) {
          merged.push_back(left + right);
          i += 2;
        } else {
          merged.push_back(parts[i]);
          i++;
        }
      }
      parts.swap(merged);
    }
    std::vector<uint16_t> ids;
    for (const std::string& p : parts) {
      auto it = encoder_.find(p);
      if (it == encoder_.end()) throw RuntimeError("tokenizer: BPE symbol '" + p + "' is not in the encoder");
      ids.push_back(static_cast<uint16_t>(it->second));
    }
    return ids;
  }

  std::string byte_symbol_[256];
  std::unordered_map<std::string, unsigned char> symbol_byte_;
  std::unordered_map<std::string, int> encoder_;
  std::unordered_map<int, std::string> decoder_;
  std::unordered_map<std::string, int> merge_rank_;
  std::unordered_map<std::string, std::vector<uint16_t>> cache_;
  int eot_ = 50256;
};

void write_shard(const std::string& path, const uint16_t* tokens, size_t n) {
  if (n > static_cast<size_t>(INT32_MAX)) throw RuntimeError("tokenizer: shard " + path + " too large");
  int32_t header[256] = {};
  header[0] = 20240520;
  header[1] = 1;
  header[2] = static_cast<int32_t>(n);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header), sizeof(header));
  out.write(reinterpret_cast<const char*>(tokens), static_cast<std::streamsize>(n * sizeof(uint16_t)));
  if (!out) throw RuntimeError("tokenizer: cannot write " + path);
  std::printf("wrote %s (%zu tokens)\n", path.c_str(), n);
}

void write_split(const std::string& prefix, const char* split, const uint16_t* tokens, size_t n, size_t shard_tokens) {
  size_t index = 0;
  for (size_t at = 0; at < n; at += shard_tokens, index++) {
    char suffix[64];
    std::snprintf(suffix, sizeof(suffix), "_%s_%06zu.bin", split, index);
    write_shard(prefix + suffix, tokens + at, std::min(shard_tokens, n - at));
  }
}

[[noreturn]] void usage(const std::string& why) {
  throw ConfigError(why +
                    "\nusage: tokenizer [--bpe ENCODER_JSON VOCAB_BPE] [--val-fraction F] [--shard-tokens N] "
                    "--out PREFIX INPUT_FILES...\n       tokenizer [--bpe ENCODER_JSON VOCAB_BPE] --decode SHARD");
}

int run(int argc, char** argv) {
  std::string encoder_path, merges_path, prefix, decode_path;
  double val_fraction = 0.1;
  size_t shard_tokens = 100000000;
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto need = [&](int k) {
      if (i + k >= argc) usage(a + " needs " + std::to_string(k) + " argument(s)");
    };
    if (a == "--bpe") {
      need(2);
      encoder_path = argv[++i];
      merges_path = argv[++i];
    } else if (a == "--val-fraction") {
      need(1);
      char* end = nullptr;
      val_fraction = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(val_fraction >= 0.0 && val_fraction < 1.0)) usage("--val-fraction must be in [0, 1)");
    } else if (a == "--shard-tokens") {
      need(1);
      char* end = nullptr;
      long long v = std::strtoll(argv[++i], &end, 10);
      if (*end != '\0' || v <= 0 || v > INT32_MAX) usage("--shard-tokens must be a positive 32-bit count");
      shard_tokens = static_cast<size_t>(v);
    } else if (a == "--out") {
      need(1);
      prefix = argv[++i];
    } else if (a == "--decode") {
      need(1);
      decode_path = argv[++i];
    } else if (a == "-h" || a == "--help") {
      usage("tokenizer: text to llm.c token shards");
    } else if (!a.empty() && a[0] == '-') {
      usage("unknown option " + a);
    } else {
      inputs.push_back(a);
    }
  }
  std::unique_ptr<Gpt2Bpe> bpe;
  if (!encoder_path.empty()) bpe = std::make_unique<Gpt2Bpe>(encoder_path, merges_path);

  if (!decode_path.empty()) {
    zt::TokenShard shard(decode_path);
    std::string text;
    for (size_t i = 0; i < shard.size(); i++) {
      uint16_t t = shard.tokens()[i];
      if (bpe) {
        text += bpe->decode(t);
      } else {
        if (t > 255) {
          throw RuntimeError("tokenizer: token " + std::to_string(t) + " at offset " + std::to_string(i) + " of " +
                             decode_path + " is not a byte (pass --bpe to decode BPE shards)");
        }
        text += static_cast<char>(t);
      }
    }
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  if (prefix.empty()) usage("--out PREFIX is required");
  if (inputs.empty()) usage("no input files");

  std::vector<uint16_t> tokens;
  for (const std::string& path : inputs) {
    std::string text = read_file(path);
    if (bpe) {
      tokens.push_back(static_cast<uint16_t>(bpe->eot()));
      bpe->encode(text, tokens);
    } else {
      for (unsigned char c : text) tokens.push_back(c);
    }
  }
  if (tokens.empty()) throw RuntimeError("tokenizer: the inputs hold no text");
  size_t n_val = static_cast<size_t>(static_cast<double>(tokens.size()) * val_fraction + 0.5);
  if (val_fraction > 0.0 && n_val == 0) n_val = 1;
  if (n_val >= tokens.size()) throw RuntimeError("tokenizer: the val split would take every token");
  if (n_val > 0) write_split(prefix, "val", tokens.data(), n_val, shard_tokens);
  write_split(prefix, "train", tokens.data() + n_val, tokens.size() - n_val, shard_tokens);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return zt::run_main("tokenizer", [&] { return run(argc, argv); }); }
