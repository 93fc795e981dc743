// The pre-tokenizer stage of HF tokenizer.json: splits of the working text into pieces (by a hand-written regex,
// a literal, digits or whitespace, with HF's split behaviours), and the ByteLevel / Metaspace rewrites.
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/tokenizer_hf.h"
#include "detail/unicode_class.h"
#include "detail/utf8.h"

namespace crossicl::detail {

namespace {

using json = nlohmann::json;
using Segs = std::vector<Work::Seg>;
using SegFinder = std::function<void(std::string_view, std::uint32_t, Segs&)>;

// ------------------------------------------------------------------------------------------------ loading

Behavior parse_behavior(const std::string& s, const std::string& path) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  throw LoadError(fmt::format("tokenizer file '{}': unknown split behavior '{}'", path, s));
}

PreOp load_split(const json& p, const std::string& path) {
  PreOp op{};
  bool is_regex = false;
  std::string pat = pattern_text(p.at("pattern"), is_regex, path);
  op.behavior = parse_behavior(p.value("behavior", std::string("Isolated")), path);
  op.invert = p.value("invert", false);
  if (is_regex) {
    if (!recognize_split_pattern(pat, op.pattern)) {
      throw LoadError(fmt::format("tokenizer file '{}': Split regex '{}' is not one of the supported patterns "
                                  "(GPT-2, LLaMA-3, Qwen2)",
                                  path, pat));
    }
    op.kind = PreOp::kSplitPattern;
  } else {
    if (pat.empty()) throw LoadError(fmt::format("tokenizer file '{}': empty Split pattern", path));
    op.kind = PreOp::kSplitString;
    op.literal = std::move(pat);
  }
  return op;
}

PreOp load_metaspace(const json& p) {
  PreOp op{};
  op.kind = PreOp::kMetaspace;
  op.literal = p.value("replacement", std::string("\xE2\x96\x81"));
  op.split = p.value("split", true);
  if (p.contains("prepend_scheme") && p["prepend_scheme"].is_string()) {
    const std::string s = p["prepend_scheme"].get<std::string>();
    op.prepend_scheme = s == "always" ? 0 : s == "first" ? 1 : 2;
  } else {
    op.prepend_scheme = p.value("add_prefix_space", true) ? 0 : 2;
  }
  return op;
}

PreOp load_step(const json& p, const std::string& path) {
  const std::string type = type_of(p);
  if (type == "Split") return load_split(p, path);
  if (type == "Metaspace") return load_metaspace(p);
  PreOp op{};
  if (type == "Digits") {
    op.kind = PreOp::kDigits;
    op.individual_digits = p.value("individual_digits", false);
  } else if (type == "ByteLevel") {
    op.kind = PreOp::kByteLevel;
    op.add_prefix_space = p.value("add_prefix_space", false);
    op.use_regex = p.value("use_regex", true);
  } else if (type == "WhitespaceSplit") {
    op.kind = PreOp::kWhitespaceSplit;
  } else {
    throw LoadError(fmt::format("tokenizer file '{}': pre_tokenizer type '{}' is not supported", path, type));
  }
  return op;
}

// ------------------------------------------------------------------------------------------------ splitting

// Appends the pieces of one split whose segments `segs` tile a piece.
void apply_behavior(const Segs& segs, Behavior behavior, bool invert, std::vector<Span>& out) {
  bool previous_match = false;
  const std::size_t first = out.size();
  switch (behavior) {
    case Behavior::kRemoved:
      for (const auto& sg : segs) {
        if (sg.match == invert) out.emplace_back(sg.b, sg.e);
      }
      break;
    case Behavior::kIsolated:
      for (const auto& sg : segs) out.emplace_back(sg.b, sg.e);
      break;
    case Behavior::kContiguous:
      for (const auto& sg : segs) {
        const bool m = sg.match != invert;
        if (m && previous_match && out.size() > first) {
          out.back().second = sg.e;
        } else {
          out.emplace_back(sg.b, sg.e);
        }
        previous_match = m;
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const auto& sg : segs) {
        const bool m = sg.match != invert;
        if (m && !previous_match && out.size() > first) {
          out.back().second = sg.e;
        } else {
          out.emplace_back(sg.b, sg.e);
        }
        previous_match = m;
      }
      break;
    case Behavior::kMergedWithNext: {
      // Right to left: a match joins the piece after it unless that piece is a match too.
      std::vector<Span> rev;
      for (std::size_t k = segs.size(); k-- > 0;) {
        const bool m = segs[k].match != invert;
        if (m && !previous_match && !rev.empty()) {
          rev.back().first = segs[k].b;
        } else {
          rev.emplace_back(segs[k].b, segs[k].e);
        }
        previous_match = m;
      }
      out.insert(out.end(), rev.rbegin(), rev.rend());
      break;
    }
  }
}

// Splits every piece: `find` tiles a piece's text (absolute offsets from `base`) with match/gap segments.
void split_pieces(Work& w, Behavior behavior, bool invert, const SegFinder& find) {
  w.pieces2.clear();
  for (const Span& p : w.pieces) {
    w.segs.clear();
    find(std::string_view(w.buf).substr(p.first, p.second - p.first), p.first, w.segs);
    apply_behavior(w.segs, behavior, invert, w.pieces2);
  }
  std::swap(w.pieces, w.pieces2);
}

void push_seg(Segs& segs, std::uint32_t base, std::size_t b, std::size_t e, bool match) {
  segs.push_back({static_cast<std::uint32_t>(base + b), static_cast<std::uint32_t>(base + e), match});
}

// Occurrences of the literal `lit` as matches, the text between them as gaps.
void literal_segments(std::string_view v, std::uint32_t base, const std::string& lit, Segs& segs) {
  std::size_t k = 0;
  while (k < v.size()) {
    const std::size_t m = v.find(lit, k);
    const std::size_t stop = m == std::string_view::npos ? v.size() : m;
    if (stop > k) push_seg(segs, base, k, stop, false);
    if (m == std::string_view::npos) break;
    push_seg(segs, base, m, m + lit.size(), true);
    k = m + lit.size();
  }
}

// Successive matches of a hand-written regex (they tile the text).
void pattern_segments(SplitPattern pattern, std::string_view v, std::uint32_t base, Segs& segs) {
  for (std::size_t k = 0; k < v.size();) {
    const std::size_t e = match_split_pattern(pattern, v, k);
    push_seg(segs, base, k, e, true);
    k = e;
  }
}

// Runs of characters of class `cls` are matches (one per character when `each`), the rest gaps.
void class_segments(std::string_view v, std::uint32_t base, Segs& segs, UClass cls, bool each) {
  std::size_t k = 0, len = 0;
  while (k < v.size()) {
    const bool m = unicode_class(utf8_decode_valid(v, k, len)) == cls;
    const auto b = static_cast<std::uint32_t>(base + k);
    const auto e = static_cast<std::uint32_t>(base + k + len);
    if (!segs.empty() && segs.back().match == m && segs.back().e == b && !(m && each)) {
      segs.back().e = e;
    } else {
      segs.push_back({b, e, m});
    }
    k += len;
  }
}

// ------------------------------------------------------------------------------------------------ rewriting

// Rebuilds w.buf with `prefix` inserted before each piece for which `want(piece)` holds, and with every
// occurrence of `from` inside pieces replaced by `to` (when `from` is non-empty).
template <typename Want>
void rebuild(Work& w, bool aligned, const std::string& prefix, Want want, const std::string& from,
             const std::string& to) {
  w.buf2.clear();
  w.ab2.clear();
  w.ae2.clear();
  w.pieces2.clear();
  for (const Span& p : w.pieces) {
    const auto start = static_cast<std::uint32_t>(w.buf2.size());
    std::size_t k = p.first;
    if (!prefix.empty() && want(p)) {
      w.buf2 += prefix;
      if (aligned) {
        w.ab2.insert(w.ab2.end(), prefix.size(), w.ab[k]);
        w.ae2.insert(w.ae2.end(), prefix.size(), w.ae[k]);
      }
    }
    while (k < p.second) {
      if (!from.empty() && w.buf.compare(k, from.size(), from) == 0 && k + from.size() <= p.second) {
        w.buf2 += to;
        if (aligned) {
          w.ab2.insert(w.ab2.end(), to.size(), w.ab[k]);
          w.ae2.insert(w.ae2.end(), to.size(), w.ae[k + from.size() - 1]);
        }
        k += from.size();
      } else {
        w.buf2 += w.buf[k];
        if (aligned) w.ab2.push_back(w.ab[k]), w.ae2.push_back(w.ae[k]);
        ++k;
      }
    }
    w.pieces2.emplace_back(start, static_cast<std::uint32_t>(w.buf2.size()));
  }
  std::swap(w.buf, w.buf2);
  std::swap(w.pieces, w.pieces2);
  if (aligned) std::swap(w.ab, w.ab2), std::swap(w.ae, w.ae2);
}

const std::string kSpace = " ";

void byte_level(const PreOp& op, Work& w, bool aligned) {
  if (op.add_prefix_space) {
    rebuild(
        w, aligned, kSpace, [&](const Span& p) { return w.buf[p.first] != ' '; }, "", "");
  }
  if (op.use_regex) {
    split_pieces(w, Behavior::kIsolated, false, [&](std::string_view v, std::uint32_t base, Segs& segs) {
      pattern_segments(SplitPattern::kGpt2, v, base, segs);
    });
  }
}

void metaspace(const PreOp& op, Work& w, bool aligned, bool segment_at_start) {
  const Span first = w.pieces.front();
  const std::string& rep = op.literal;
  auto want = [&](const Span& p) {
    if (op.prepend_scheme == 2) return false;
    // The check for a leading replacement looks at the text after spaces are replaced.
    const bool starts = w.buf.compare(p.first, rep.size(), rep) == 0 || w.buf[p.first] == ' ';
    if (starts) return false;
    return op.prepend_scheme == 0 || (segment_at_start && p == first);
  };
  rebuild(w, aligned, rep, want, kSpace, rep);
  if (op.split) {
    split_pieces(w, Behavior::kMergedWithNext, false, [&](std::string_view v, std::uint32_t base, Segs& segs) {
      literal_segments(v, base, rep, segs);
    });
  }
}

}  // namespace

void load_pre_tokenizer(const json& p, const std::string& path, std::vector<PreOp>& out) {
  for_each_step(p, "pretokenizers", [&](const json& step) {
    if (!step.is_null()) out.push_back(load_step(step, path));
  });
}

void pre_tokenize(const PreOp& op, Work& w, bool aligned, bool segment_at_start) {
  if (w.pieces.empty()) return;
  switch (op.kind) {
    case PreOp::kSplitPattern:
      split_pieces(w, op.behavior, op.invert, [&](std::string_view v, std::uint32_t base, Segs& segs) {
        pattern_segments(op.pattern, v, base, segs);
      });
      break;
    case PreOp::kSplitString:
      split_pieces(w, op.behavior, op.invert, [&](std::string_view v, std::uint32_t base, Segs& segs) {
        literal_segments(v, base, op.literal, segs);
      });
      break;
    case PreOp::kDigits: {
      const Behavior behavior = op.individual_digits ? Behavior::kIsolated : Behavior::kContiguous;
      split_pieces(w, behavior, false, [&](std::string_view v, std::uint32_t base, Segs& segs) {
        class_segments(v, base, segs, UClass::kNumber, true);
      });
      break;
    }
    case PreOp::kWhitespaceSplit:
      split_pieces(w, Behavior::kRemoved, false, [&](std::string_view v, std::uint32_t base, Segs& segs) {
        class_segments(v, base, segs, UClass::kSpace, false);
      });
      break;
    case PreOp::kByteLevel:
      byte_level(op, w, aligned);
      break;
    case PreOp::kMetaspace:
      metaspace(op, w, aligned, segment_at_start);
      break;
  }
}

}  // namespace crossicl::detail
