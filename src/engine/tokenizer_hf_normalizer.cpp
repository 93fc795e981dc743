// The normalizer stage of HF tokenizer.json: Prepend and literal Replace (LLaMA-2's "▁" handling), keeping the
// input span of every byte of the working text.
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/tokenizer_hf.h"

namespace crossicl::detail {

namespace {

void prepend(const NormOp& op, Work& w, bool aligned) {
  if (w.buf.empty() || op.content.empty()) return;
  w.buf.insert(0, op.content);
  if (aligned) {
    w.ab.insert(w.ab.begin(), op.content.size(), w.ab.front());
    w.ae.insert(w.ae.begin(), op.content.size(), w.ae.front());
  }
}

// Every occurrence of op.pattern becomes op.content, which takes the span of the replaced bytes.
void replace(const NormOp& op, Work& w, bool aligned) {
  if (op.pattern.empty() || w.buf.find(op.pattern) == std::string::npos) return;
  w.buf2.clear();
  w.ab2.clear();
  w.ae2.clear();
  std::size_t k = 0;
  while (k < w.buf.size()) {
    const std::size_t m = w.buf.find(op.pattern, k);
    const std::size_t stop = m == std::string::npos ? w.buf.size() : m;
    w.buf2.append(w.buf, k, stop - k);
    if (aligned) {
      w.ab2.insert(w.ab2.end(), w.ab.begin() + k, w.ab.begin() + stop);
      w.ae2.insert(w.ae2.end(), w.ae.begin() + k, w.ae.begin() + stop);
    }
    if (m == std::string::npos) break;
    w.buf2 += op.content;
    if (aligned) {
      w.ab2.insert(w.ab2.end(), op.content.size(), w.ab[m]);
      w.ae2.insert(w.ae2.end(), op.content.size(), w.ae[m + op.pattern.size() - 1]);
    }
    k = m + op.pattern.size();
  }
  std::swap(w.buf, w.buf2);
  if (aligned) std::swap(w.ab, w.ab2), std::swap(w.ae, w.ae2);
}

}  // namespace

void load_normalizer(const nlohmann::json& n, const std::string& path, std::vector<NormOp>& out) {
  for_each_step(n, "normalizers", [&](const nlohmann::json& step) {
    if (step.is_null()) return;
    const std::string type = type_of(step);
    if (type == "Prepend") {
      out.push_back(NormOp{NormOp::kPrepend, "", step.at("prepend").get<std::string>()});
    } else if (type == "Replace") {
      bool is_regex = false;
      std::string pat = pattern_text(step.at("pattern"), is_regex, path);
      if (is_regex) {
        throw LoadError(fmt::format("tokenizer file '{}': Replace normalizer with a regex is not supported", path));
      }
      out.push_back(NormOp{NormOp::kReplace, std::move(pat), step.at("content").get<std::string>()});
    } else {
      throw LoadError(fmt::format("tokenizer file '{}': normalizer type '{}' is not supported", path, type));
    }
  });
}

void normalize(const NormOp& op, Work& w, bool aligned) {
  if (op.kind == NormOp::kPrepend) {
    prepend(op, w, aligned);
  } else {
    replace(op, w, aligned);
  }
}

}  // namespace crossicl::detail
