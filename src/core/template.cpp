#include "crossicl/core/template.h"

#include <algorithm>

#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl {

namespace {

bool is_name_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

}  // namespace

Template::Template(std::string text, std::string name) : text_(std::move(text)), name_(std::move(name)) {
  std::string literal;
  const std::string& s = text_;
  std::size_t i = 0;
  auto flush = [&] {
    if (!literal.empty()) pieces_.push_back({false, std::move(literal)});
    literal.clear();
  };
  while (i < s.size()) {
    const char c = s[i];
    if ((c == '{' || c == '}') && i + 1 < s.size() && s[i + 1] == c) {  // "{{" / "}}" escapes
      literal += c;
      i += 2;
      continue;
    }
    if (c == '{' && i + 1 < s.size() && is_name_start(s[i + 1])) {
      std::size_t j = i + 1;
      while (j < s.size() && is_name_char(s[j])) ++j;
      if (j < s.size() && s[j] == '}') {
        flush();
        std::string field = s.substr(i + 1, j - i - 1);
        if (std::find(placeholders_.begin(), placeholders_.end(), field) == placeholders_.end())
          placeholders_.push_back(field);
        pieces_.push_back({true, std::move(field)});
        i = j + 1;
        continue;
      }
    }
    literal += c;
    ++i;
  }
  flush();
}

std::string Template::render(const std::map<std::string, std::string>& values, std::string_view what) const {
  std::size_t size = 0;
  for (const auto& p : pieces_) {
    if (!p.is_placeholder) {
      size += p.text.size();
      continue;
    }
    auto it = values.find(p.text);
    if (it == values.end()) {
      std::string have;
      for (const auto& [k, v] : values) have += (have.empty() ? "" : ", ") + k;
      throw InvalidArgument(fmt::format("template '{}' needs field '{}'{}{} (available: {})", name_, p.text,
                                        what.empty() ? "" : ", missing in ", what, have.empty() ? "none" : have));
    }
    size += it->second.size();
  }
  std::string out;
  out.reserve(size);
  for (const auto& p : pieces_) out += p.is_placeholder ? values.at(p.text) : p.text;
  return out;
}

}  // namespace crossicl
