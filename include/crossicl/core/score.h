// Scorers: exact-match scoring of a model's prediction against a gold label, accuracy over a result set, and
// the majority vote that makes pseudo-labels. Two scorers reproduce the paper's authors byte for byte (the
// fixture README, section 9): `PaperEval` (their evaluation notebook Eval.ipynb, which made the published
// tables) and `PaperCompare` (utils/llm.py compare_output). `Clean` is a documented rule for new work.
//
// All strings are UTF-8. Lower-casing follows Python's str.lower() (full mapping, so U+0130 becomes
// "i\u0307"; Greek capital sigma becomes final sigma in the Final_Sigma context) for every code point, with the
// tables of CPython 3.11 (Unicode 14.0); code points assigned after Unicode 14.0 are left unchanged, and bytes
// that are not valid UTF-8 are copied through unchanged. Every other step works on the bytes of ASCII
// characters, which never occur inside a multi-byte UTF-8 sequence, so it agrees with Python's str methods.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace crossicl {

/// How a prediction is normalised before the exact comparison with the gold label.
///
/// PaperEval (name "paper_eval"): the Eval notebook's rule.
///   1. The prediction cell is read as pandas does: a cell that is exactly one of pandas' default missing-value
///      strings ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
///      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null") becomes "". pandas' typing of a whole
///      column as int/float/bool is not modelled (no published pred column is typed other than as text).
///   2. Delete every "Label:" (one left-to-right pass, as str.replace); strip from both ends every character of
///      {space . [ ] " : '} (only these: tabs and other whitespace stay); lower-case; keep the text before the
///      first "."; then before the first ","; then before the first ":"; then before the first "-".
///   Gold: lower-cased, nothing else. Hit iff equal. " B" and "B. mountains" hit B; " negative, positive" hits
///   negative; " NEGATIVE NEGATIVE" and " A A A A" miss; an empty prediction misses every non-empty gold.
///
/// PaperCompare (name "paper_compare"): compare_output on the raw cell (no missing-value conversion). Delete
///   every "Label:"; strip the same set from both ends; lower-case; delete every "."; keep the text before the
///   first space. Gold: lower-cased. " A A A A" hits A; " negative, positive" misses negative.
///
/// Clean (name "clean"), for new work:
///   1. Skip leading whitespace (Python str.isspace(), plus U+200B and U+FEFF), keep the first line (up to the
///      first of \n \r \v \f \x1c \x1d \x1e U+0085 U+2028 U+2029, Python's str.splitlines() boundaries).
///   2. Trim from both ends every whitespace character (as in 1) and every character of the paper's set
///      {. [ ] " : '}; lower-case (str.lower(), not casefold(): "ß" stays "ß").
///   3. Remove a leading "label:" or "answer:" (repeatedly), trimming again after each.
///   4. With a label space (optional): if the text equals a normalised label it is kept; otherwise it becomes the
///      first token that equals a normalised label, tokens being split at whitespace and . , ; : ! ? ( ) [ ] " '
///      (so a label with spaces or those characters only matches as the whole text); otherwise it is kept.
///   Gold (and each label): steps 1-2 and 3. Hit iff equal. "\n\n Answer: B." and "b" both hit "B".
enum class Scorer { PaperEval, PaperCompare, Clean };

/// Parses "paper_eval", "paper_compare" or "clean". Throws InvalidArgument naming the unknown name and the
/// valid ones.
///
///   auto s = crossicl::scorer_from_name("paper_eval");  // Scorer::PaperEval
Scorer scorer_from_name(std::string_view name);

/// The name of a scorer ("paper_eval", "paper_compare", "clean").
std::string_view scorer_name(Scorer scorer);

/// Python's str.lower() on UTF-8 text (see the header paragraph for the Unicode version and limits).
///
///   crossicl::python_lower("ΟΔΟΣ \u212A");  // "οδος k"
std::string python_lower(std::string_view text);

/// True if pandas' read_csv (default na_values) reads `cell` as missing: empty or exactly one of the strings
/// listed under Scorer::PaperEval (no trimming: " nan" is not missing).
bool is_pandas_na(std::string_view cell);

/// The normalised prediction the scorer compares with the normalised gold. `labels` (Clean only; empty = none)
/// is the label space of step 4; a non-empty `labels` with another scorer throws InvalidArgument.
///
///   crossicl::normalize(" B. mountains", crossicl::Scorer::PaperEval);  // "b"
std::string normalize(std::string_view pred, Scorer scorer, const std::vector<std::string>& labels = {});

/// The normalised gold label: lower-cased for the paper scorers, steps 1-3 of Clean for Clean.
std::string normalize_gold(std::string_view gold, Scorer scorer);

/// True iff the normalised prediction equals the normalised gold.
///
///   crossicl::exact_match(" A A A A", "A", crossicl::Scorer::PaperCompare);  // true
///   crossicl::exact_match(" A A A A", "A", crossicl::Scorer::PaperEval);     // false
bool exact_match(std::string_view pred, std::string_view gold, Scorer scorer,
                 const std::vector<std::string>& labels = {});

/// True iff the normalised prediction equals any of the normalised golds (compare_output's list gold; the same
/// extension for the other scorers). An empty list never matches.
bool exact_match_any(std::string_view pred, const std::vector<std::string>& golds, Scorer scorer,
                     const std::vector<std::string>& labels = {});

/// Number of hits of preds[i] against golds[i]. Throws InvalidArgument if the sizes differ.
std::size_t count_matches(const std::vector<std::string>& preds, const std::vector<std::string>& golds,
                          Scorer scorer, const std::vector<std::string>& labels = {});

/// Accuracy in percent, 100 * hits / n, as the paper reports it. Throws InvalidArgument if the sizes differ
/// (naming both) or the lists are empty.
///
///   crossicl::accuracy({" B", "C"}, {"B", "B"}, crossicl::Scorer::PaperEval);  // 50.0
double accuracy(const std::vector<std::string>& preds, const std::vector<std::string>& golds, Scorer scorer,
                const std::vector<std::string>& labels = {});

/// Accuracy with several accepted golds per item (hit iff any matches, see exact_match_any).
double accuracy(const std::vector<std::string>& preds, const std::vector<std::vector<std::string>>& golds,
                Scorer scorer, const std::vector<std::string>& labels = {});

/// The pseudo-label rule of the paper (README section 7): the most frequent non-empty vote; ties go to the
/// smallest value in byte order (= code-point order for UTF-8); "" if every vote is empty or there are none.
/// Votes are compared as raw strings (" A" and "A" differ).
///
///   crossicl::majority_vote({"B", "A", "", "B", "A"});  // "A"
std::string majority_vote(const std::vector<std::string>& votes);

}  // namespace crossicl
