#include "crossicl/core/score.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <map>
#include <unordered_set>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/utf8.h"
#include "detail/enum_names.h"

namespace crossicl {
namespace {

// ------------------------------------------------------------------ Unicode tables (CPython 3.11, Unicode 14.0)
// Generated from the running interpreter, not from the UCD files, so they encode exactly what str.lower() does:
//   kLowerRuns: every code point c with len(chr(c).lower()) == 1 and chr(c).lower() != chr(c) (all but U+0130,
//     handled apart), as runs {lo, hi, delta, stride}: c = lo, lo+stride, ..., hi maps to c + delta.
//   kCaseIgnorable / kCased: the two properties of the Final_Sigma rule, recovered per code point c from
//     r1 = ("A"+c+"Σ").lower() ends in "ς", r2 = ("AΣ"+c).lower()[1] == "ς", r3 = (c+"Σ").lower() ends in "ς":
//     case-ignorable = r1 and r2; cased = not case-ignorable and r3 (cased is only consulted for code points
//     that are not case-ignorable).
struct LowerRun {
  char32_t lo, hi;
  std::int32_t delta, stride;
};
struct CodeRange {
  char32_t lo, hi;
};

#include "detail/lower_case_tables.inc"

template <std::size_t N>
bool in_ranges(const CodeRange (&table)[N], char32_t cp) {
  auto it = std::upper_bound(std::begin(table), std::end(table), cp,
                             [](char32_t c, const CodeRange& r) { return c < r.lo; });
  return it != std::begin(table) && cp <= std::prev(it)->hi;
}

char32_t simple_lower(char32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  auto it = std::upper_bound(std::begin(kLowerRuns), std::end(kLowerRuns), cp,
                             [](char32_t c, const LowerRun& r) { return c < r.lo; });
  if (it == std::begin(kLowerRuns)) return cp;
  const LowerRun& r = *std::prev(it);
  if (cp > r.hi || (cp - r.lo) % static_cast<char32_t>(r.stride) != 0) return cp;
  return static_cast<char32_t>(static_cast<std::int64_t>(cp) + r.delta);
}

struct CodePoint {
  char32_t cp;          // detail::kUtf8Invalid for a byte of an invalid sequence
  std::size_t offset;   // byte offset in the source text
  std::size_t len;      // bytes
};

std::vector<CodePoint> decode(std::string_view s) {
  std::vector<CodePoint> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    // A byte that does not start a valid sequence is an entry of its own (lower() copies it through unchanged);
    // decoding resumes at the next byte.
    const detail::Utf8Char c = detail::utf8_decode(s, i);
    const std::size_t len = c.valid ? c.len : 1;
    out.push_back({c.cp, i, len});
    i += len;
  }
  return out;
}

bool case_ignorable(char32_t cp) { return cp != detail::kUtf8Invalid && in_ranges(kCaseIgnorable, cp); }
bool cased(char32_t cp) { return cp != detail::kUtf8Invalid && in_ranges(kCased, cp); }

// Unicode's Final_Sigma context, as CPython applies it: a cased letter before (skipping case-ignorables) and no
// cased letter after (skipping case-ignorables).
bool final_sigma(const std::vector<CodePoint>& cps, std::size_t i) {
  std::size_t j = i;
  while (j > 0 && case_ignorable(cps[j - 1].cp)) --j;
  if (j == 0 || !cased(cps[j - 1].cp)) return false;
  std::size_t k = i + 1;
  while (k < cps.size() && case_ignorable(cps[k].cp)) ++k;
  return k == cps.size() || !cased(cps[k].cp);
}

// ------------------------------------------------------------------ string helpers (Python str semantics)
constexpr std::string_view kPaperStrip = " .[]\":'";  // the authors' .strip(' .[]":\'') set
constexpr std::string_view kLabelMarker = "Label:";

// str.strip(chars) for an ASCII set: both ends, only those characters.
std::string_view strip_ascii(std::string_view s, std::string_view chars) {
  const std::size_t b = s.find_first_not_of(chars);
  if (b == std::string_view::npos) return {};
  const std::size_t e = s.find_last_not_of(chars);
  return s.substr(b, e - b + 1);
}

// str.replace(what, "") : one left-to-right pass over non-overlapping occurrences.
std::string remove_all(std::string_view s, std::string_view what) {
  std::string out;
  out.reserve(s.size());
  std::size_t pos = 0;
  while (true) {
    const std::size_t hit = s.find(what, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    pos = hit + what.size();
  }
  out.append(s.substr(pos));
  return out;
}

// s.split(c)[0]
void cut_at(std::string& s, char c) {
  const std::size_t p = s.find(c);
  if (p != std::string::npos) s.resize(p);
}

// Python str.isspace(), plus ZERO WIDTH SPACE and BOM (invisible junk a decoder may emit).
bool clean_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200B) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000 || cp == 0xFEFF;
}

// str.splitlines() boundaries.
bool line_break(char32_t cp) {
  return (cp >= 0x0A && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

bool clean_trim(char32_t cp) { return clean_space(cp) || (cp < 0x80 && kPaperStrip.find(char(cp)) != kPaperStrip.npos); }

bool token_separator(char32_t cp) {
  constexpr std::string_view kSep = ".,;:!?()[]\"'";
  return clean_space(cp) || (cp < 0x80 && kSep.find(char(cp)) != kSep.npos);
}

std::string_view trim_clean(std::string_view s) {
  const auto cps = decode(s);
  std::size_t b = 0, e = cps.size();
  while (b < e && clean_trim(cps[b].cp)) ++b;
  while (e > b && clean_trim(cps[e - 1].cp)) --e;
  if (b == e) return {};
  return s.substr(cps[b].offset, cps[e - 1].offset + cps[e - 1].len - cps[b].offset);
}

// Steps 1-3 of the Clean rule.
std::string clean_base(std::string_view s) {
  const auto cps = decode(s);
  std::size_t b = 0;
  while (b < cps.size() && clean_space(cps[b].cp)) ++b;
  std::size_t e = b;
  while (e < cps.size() && !line_break(cps[e].cp)) ++e;
  std::string_view line;
  if (b < e) line = s.substr(cps[b].offset, cps[e - 1].offset + cps[e - 1].len - cps[b].offset);
  std::string t = python_lower(trim_clean(line));
  for (bool changed = true; changed;) {
    changed = false;
    for (std::string_view prefix : {std::string_view("label:"), std::string_view("answer:")}) {
      if (t.compare(0, prefix.size(), prefix) == 0) {
        t = std::string(trim_clean(std::string_view(t).substr(prefix.size())));
        changed = true;
      }
    }
  }
  return t;
}

std::string clean_with_labels(std::string t, const std::vector<std::string>& labels) {
  std::unordered_set<std::string> space;
  for (const auto& l : labels) space.insert(clean_base(l));
  if (space.count(t)) return t;
  const auto cps = decode(t);
  std::size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && token_separator(cps[i].cp)) ++i;
    std::size_t j = i;
    while (j < cps.size() && !token_separator(cps[j].cp)) ++j;
    if (i < j) {
      std::string tok = t.substr(cps[i].offset, cps[j - 1].offset + cps[j - 1].len - cps[i].offset);
      if (space.count(tok)) return tok;
    }
    i = j;
  }
  return t;
}

void check_labels(Scorer scorer, const std::vector<std::string>& labels) {
  if (!labels.empty() && scorer != Scorer::Clean)
    throw InvalidArgument(fmt::format("a label space is only used by the \"clean\" scorer (scorer=\"{}\", {} labels)",
                                      scorer_name(scorer), labels.size()));
}

std::string normalize_unchecked(std::string_view pred, Scorer scorer, const std::vector<std::string>& labels) {
  switch (scorer) {
    case Scorer::PaperEval: {
      if (is_pandas_na(pred)) return {};
      std::string s = python_lower(strip_ascii(remove_all(pred, kLabelMarker), kPaperStrip));
      for (char c : {'.', ',', ':', '-'}) cut_at(s, c);
      return s;
    }
    case Scorer::PaperCompare: {
      std::string s = remove_all(python_lower(strip_ascii(remove_all(pred, kLabelMarker), kPaperStrip)), ".");
      cut_at(s, ' ');
      return s;
    }
    case Scorer::Clean: {
      std::string t = clean_base(pred);
      return labels.empty() ? t : clean_with_labels(std::move(t), labels);
    }
  }
  throw InvalidArgument(fmt::format("unknown scorer value {}", static_cast<int>(scorer)));
}

void check_sizes(std::size_t preds, std::size_t golds) {
  if (preds != golds)
    throw InvalidArgument(fmt::format("preds and golds must have the same length (preds={}, golds={})", preds, golds));
}

}  // namespace

// Names of Scorer's values, in their order.
constexpr std::array<std::string_view, 3> kScorerNames = {"paper_eval", "paper_compare", "clean"};

Scorer scorer_from_name(std::string_view name) {
  return detail::parse_enum<Scorer>(kScorerNames, name, "scorer", detail::NameError::Unknown);
}

std::string_view scorer_name(Scorer scorer) { return detail::enum_name(kScorerNames, scorer); }

std::string python_lower(std::string_view text) {
  const bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  std::string out;
  out.reserve(text.size());
  if (ascii) {
    for (char c : text) out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    return out;
  }
  const auto cps = decode(text);
  for (std::size_t i = 0; i < cps.size(); ++i) {
    const char32_t cp = cps[i].cp;
    if (cp == detail::kUtf8Invalid) {
      out += text[cps[i].offset];
    } else if (cp == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE -> "i" + COMBINING DOT ABOVE
      out += "i\xCC\x87";
    } else if (cp == 0x3A3) {  // GREEK CAPITAL LETTER SIGMA
      detail::utf8_append(out, final_sigma(cps, i) ? 0x3C2 : 0x3C3);
    } else {
      detail::utf8_append(out, simple_lower(cp));
    }
  }
  return out;
}

bool is_pandas_na(std::string_view cell) {
  static constexpr std::array<std::string_view, 19> kNa = {
      "",    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
      "<NA>", "N/A", "NA",       "NULL", "NaN",   "None",     "n/a",  "nan",  "null"};
  return std::find(kNa.begin(), kNa.end(), cell) != kNa.end();
}

std::string normalize(std::string_view pred, Scorer scorer, const std::vector<std::string>& labels) {
  check_labels(scorer, labels);
  return normalize_unchecked(pred, scorer, labels);
}

std::string normalize_gold(std::string_view gold, Scorer scorer) {
  return scorer == Scorer::Clean ? clean_base(gold) : python_lower(gold);
}

bool exact_match(std::string_view pred, std::string_view gold, Scorer scorer, const std::vector<std::string>& labels) {
  return normalize(pred, scorer, labels) == normalize_gold(gold, scorer);
}

bool exact_match_any(std::string_view pred, const std::vector<std::string>& golds, Scorer scorer,
                     const std::vector<std::string>& labels) {
  const std::string p = normalize(pred, scorer, labels);
  return std::any_of(golds.begin(), golds.end(), [&](const std::string& g) { return p == normalize_gold(g, scorer); });
}

std::size_t count_matches(const std::vector<std::string>& preds, const std::vector<std::string>& golds, Scorer scorer,
                          const std::vector<std::string>& labels) {
  check_sizes(preds.size(), golds.size());
  check_labels(scorer, labels);
  std::size_t hits = 0;
  for (std::size_t i = 0; i < preds.size(); ++i)
    hits += normalize_unchecked(preds[i], scorer, labels) == normalize_gold(golds[i], scorer);
  return hits;
}

double accuracy(const std::vector<std::string>& preds, const std::vector<std::string>& golds, Scorer scorer,
                const std::vector<std::string>& labels) {
  check_sizes(preds.size(), golds.size());
  if (preds.empty()) throw InvalidArgument("accuracy of an empty result set (preds=0, golds=0)");
  return 100.0 * static_cast<double>(count_matches(preds, golds, scorer, labels)) / static_cast<double>(preds.size());
}

double accuracy(const std::vector<std::string>& preds, const std::vector<std::vector<std::string>>& golds,
                Scorer scorer, const std::vector<std::string>& labels) {
  check_sizes(preds.size(), golds.size());
  if (preds.empty()) throw InvalidArgument("accuracy of an empty result set (preds=0, golds=0)");
  std::size_t hits = 0;
  for (std::size_t i = 0; i < preds.size(); ++i) hits += exact_match_any(preds[i], golds[i], scorer, labels);
  return 100.0 * static_cast<double>(hits) / static_cast<double>(preds.size());
}

std::string majority_vote(const std::vector<std::string>& votes) {
  std::map<std::string, std::size_t> counts;  // std::string orders bytes as unsigned: code-point order
  for (const auto& v : votes)
    if (!v.empty()) ++counts[v];
  const std::string* best = nullptr;
  std::size_t best_n = 0;
  for (const auto& [value, n] : counts) {
    if (n > best_n) best = &value, best_n = n;
  }
  return best ? *best : std::string();
}

}  // namespace crossicl
