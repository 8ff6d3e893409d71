#include "engine/runtime/markdown_table.h"

#include <algorithm>

namespace zt {

std::string markdown_table(const std::vector<std::vector<std::string>>& cells) {
  std::vector<size_t> width;
  for (const auto& row : cells)
    for (size_t c = 0; c < row.size(); ++c) {
      if (width.size() <= c) width.push_back(0);
      width[c] = std::max(width[c], row[c].size());
    }
  std::string s;
  auto emit = [&](const std::vector<std::string>& row) {
    s += "|";
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string v = c < row.size() ? row[c] : "";
      s += " " + v + std::string(width[c] - v.size(), ' ') + " |";
    }
    s += "\n";
  };
  for (size_t i = 0; i < cells.size(); ++i) {
    emit(cells[i]);
    if (i == 0) {
      s += "|";
      for (size_t w : width) s += std::string(w + 2, '-') + "|";
      s += "\n";
    }
  }
  return s;
}

}  // namespace zt
