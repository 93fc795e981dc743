// The decoder stage of HF tokenizer.json: from token strings back to text (Replace, ByteFallback, Fuse, Strip,
// ByteLevel, Metaspace), step by step as HF's decoders do.
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/tokenizer_hf.h"
#include "detail/tokenizer_hf_bpe.h"
#include "detail/utf8.h"

namespace crossicl::detail {

namespace {

using json = nlohmann::json;

int parse_hex_byte(char hi, char lo) {
  auto v = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int h = v(hi), l = v(lo);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  std::size_t k = 0;
  while (true) {
    const std::size_t m = s.find(from, k);
    if (m == std::string::npos) break;
    out.append(s, k, m - k);
    out += to;
    k = m + from.size();
  }
  out.append(s, k, std::string::npos);
  return out;
}

std::string strip(const std::string& s, const std::string& content, std::size_t start, std::size_t stop) {
  std::size_t b = 0, e = s.size();
  for (std::size_t k = 0; k < start && !content.empty() && s.compare(b, content.size(), content) == 0; ++k) {
    b += content.size();
  }
  for (std::size_t k = 0; k < stop && !content.empty() && e >= b + content.size() &&
                          s.compare(e - content.size(), content.size(), content) == 0;
       ++k) {
    e -= content.size();
  }
  return s.substr(b, e - b);
}

// Runs of <0xNN> tokens become their bytes when those are valid UTF-8, else one U+FFFD per byte.
void byte_fallback(std::vector<std::string>& toks) {
  std::vector<std::string> out;
  std::string bytes;
  auto flush = [&]() {
    if (bytes.empty()) return;
    if (find_invalid_utf8(bytes) == std::string_view::npos) {
      out.push_back(bytes);
    } else {
      for (std::size_t k = 0; k < bytes.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
    }
    bytes.clear();
  };
  for (auto& t : toks) {
    int b = -1;
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') b = parse_hex_byte(t[3], t[4]);
    if (b >= 0) {
      bytes += static_cast<char>(b);
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  toks = std::move(out);
}

// Every token mapped back through the byte alphabet (kept as is when it has a character outside it), all fused
// into one text with invalid UTF-8 replaced.
void byte_level(std::vector<std::string>& toks) {
  const ByteAlphabet& alphabet = byte_alphabet();
  std::string bytes;
  for (const auto& t : toks) {
    std::string mapped;
    bool ok = true;
    for (std::size_t k = 0; k < t.size() && ok;) {
      std::size_t len = 0;
      const char32_t cp = utf8_decode_valid(t, k, len);
      if (cp < alphabet.byte_of.size() && alphabet.byte_of[cp] >= 0) {
        mapped += static_cast<char>(alphabet.byte_of[cp]);
      } else {
        ok = false;
      }
      k += len;
    }
    bytes += ok ? mapped : t;
  }
  toks.assign(1, utf8_lossy(bytes));
}

DecOp load_metaspace(const json& d) {
  DecOp op{};
  op.kind = DecOp::kMetaspace;
  op.pattern = d.value("replacement", std::string("\xE2\x96\x81"));
  if (d.contains("prepend_scheme") && d["prepend_scheme"].is_string()) {
    op.prepend = d["prepend_scheme"].get<std::string>() != "never";
  } else {
    op.prepend = d.value("add_prefix_space", true);
  }
  return op;
}

DecOp load_step(const json& d, const std::string& path) {
  const std::string type = type_of(d);
  if (type == "Metaspace") return load_metaspace(d);
  DecOp op{};
  if (type == "Replace") {
    bool is_regex = false;
    op.kind = DecOp::kReplace;
    op.pattern = pattern_text(d.at("pattern"), is_regex, path);
    if (is_regex) {
      throw LoadError(fmt::format("tokenizer file '{}': Replace decoder with a regex is not supported", path));
    }
    op.content = d.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    op.kind = DecOp::kByteFallback;
  } else if (type == "Fuse") {
    op.kind = DecOp::kFuse;
  } else if (type == "Strip") {
    op.kind = DecOp::kStrip;
    op.pattern = d.at("content").get<std::string>();
    op.start = d.value("start", std::size_t{0});
    op.stop = d.value("stop", std::size_t{0});
  } else if (type == "ByteLevel") {
    op.kind = DecOp::kByteLevel;
  } else {
    throw LoadError(fmt::format("tokenizer file '{}': decoder type '{}' is not supported", path, type));
  }
  return op;
}

}  // namespace

void load_decoder(const json& d, const std::string& path, std::vector<DecOp>& out) {
  for_each_step(d, "decoders", [&](const json& step) { out.push_back(load_step(step, path)); });
}

void apply_decoder(const DecOp& op, std::vector<std::string>& toks) {
  switch (op.kind) {
    case DecOp::kReplace:
      for (auto& t : toks) t = replace_all(t, op.pattern, op.content);
      break;
    case DecOp::kFuse: {
      std::string all;
      for (const auto& t : toks) all += t;
      toks.assign(1, std::move(all));
      break;
    }
    case DecOp::kStrip:
      for (auto& t : toks) t = strip(t, op.pattern, op.start, op.stop);
      break;
    case DecOp::kByteFallback:
      byte_fallback(toks);
      break;
    case DecOp::kByteLevel:
      byte_level(toks);
      break;
    case DecOp::kMetaspace:
      for (std::size_t i = 0; i < toks.size(); ++i) {
        toks[i] = replace_all(toks[i], op.pattern, (i == 0 && op.prepend) ? "" : " ");
      }
      break;
  }
}

}  // namespace crossicl::detail
