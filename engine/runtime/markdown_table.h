#pragma once
// Aligned Markdown tables for the terminal (plan, sweep and report print them).
#include <string>
#include <vector>

namespace zt {

// cells[0] is the header row; every column is padded to its widest cell.
std::string markdown_table(const std::vector<std::vector<std::string>>& cells);

}  // namespace zt
