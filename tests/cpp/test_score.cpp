// Scorers of crossicl/core/score.h: the two paper normalisations (fixture README section 9), the clean rule,
// Python-compatible lower-casing, accuracy and the pseudo-label majority vote (README section 7).
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "crossicl/core/error.h"
#include "crossicl/core/score.h"
#include "tolerance.h"

using crossicl::Scorer;
namespace tol = crossicl::test::tol;

namespace {
bool eval(const std::string& pred, const std::string& gold) { return crossicl::exact_match(pred, gold, Scorer::PaperEval); }
bool cmp(const std::string& pred, const std::string& gold) { return crossicl::exact_match(pred, gold, Scorer::PaperCompare); }
}  // namespace

TEST_CASE("scorer names round-trip and unknown names are rejected", "[score]") {
  for (Scorer s : {Scorer::PaperEval, Scorer::PaperCompare, Scorer::Clean})
    CHECK(crossicl::scorer_from_name(crossicl::scorer_name(s)) == s);
  CHECK(crossicl::scorer_name(Scorer::PaperEval) == "paper_eval");
  try {
    crossicl::scorer_from_name("eval");
    FAIL("no exception");
  } catch (const crossicl::InvalidArgument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("\"eval\"") != std::string::npos);
    CHECK(msg.find("paper_eval") != std::string::npos);
    CHECK(msg.find("paper_compare") != std::string::npos);
    CHECK(msg.find("clean") != std::string::npos);
  }
}

TEST_CASE("README section 9 consequences, Eval scorer", "[score]") {
  CHECK(eval(" B", "B"));
  CHECK(eval("B. mountains", "B"));
  CHECK(eval(" negative, positive", "negative"));
  CHECK_FALSE(eval(" NEGATIVE NEGATIVE", "negative"));
  CHECK_FALSE(eval(" A A A A", "A"));
  CHECK_FALSE(eval("", "A"));
  CHECK_FALSE(eval("   ", "A"));
  CHECK(eval(" NEGATIVE", "negative"));
  CHECK(eval("Label: positive", "positive"));
  CHECK(eval("Label:Label: positive", "positive"));
  CHECK(eval("[\"C\"]", "C"));
  CHECK(eval("'D':", "D"));
  CHECK(eval("A: the answer", "A"));
  CHECK(eval("C-spreading disease", "C"));
  CHECK_FALSE(eval("C - spreading disease", "C"));  // the cut leaves "c " and nothing strips it again
  CHECK(eval("neutral-ish", "neutral"));
  // Only the listed characters are stripped: tabs and newlines stay and make a miss.
  CHECK_FALSE(eval("\tB", "B"));
  CHECK_FALSE(eval("B\n", "B"));
  // "label:" is not "Label:" (deletion is case-sensitive, before lower-casing).
  CHECK_FALSE(eval("label: B", "B"));
  CHECK(crossicl::normalize("label: B", Scorer::PaperEval) == "label");
  // Deleting "Label:" is one pass: the "Label:" it leaves behind is not deleted (then cut at ':').
  CHECK(crossicl::normalize("LabLabel:el: B", Scorer::PaperEval) == "label");
  CHECK(crossicl::normalize("LabLabel:el: B", Scorer::PaperCompare) == "label:");
}

TEST_CASE("Eval scorer reads missing-value cells as pandas does", "[score]") {
  for (const char* na : {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                         "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}) {
    CAPTURE(na);
    CHECK(crossicl::is_pandas_na(na));
    CHECK(crossicl::normalize(na, Scorer::PaperEval).empty());
  }
  // The same text under compare_output is scored raw.
  CHECK(crossicl::normalize("nan", Scorer::PaperCompare) == "nan");
  CHECK(cmp("nan", "NaN"));
  CHECK_FALSE(eval("nan", "NaN"));
  CHECK(crossicl::normalize("None", Scorer::PaperCompare) == "none");
  // Not missing: padded or differently cased strings.
  for (const char* s : {" nan", "nan ", "NAN", "none", "Null", "na"}) {
    CAPTURE(s);
    CHECK_FALSE(crossicl::is_pandas_na(s));
  }
  CHECK(crossicl::normalize(" nan", Scorer::PaperEval) == "nan");
  CHECK(crossicl::normalize("NA.", Scorer::PaperEval) == "na");
}

TEST_CASE("README section 9 consequences, compare_output scorer", "[score]") {
  CHECK(cmp(" B", "B"));
  // "B. mountains" -> delete "." -> "b mountains" -> before first space -> "b": a hit.
  CHECK(crossicl::normalize("B. mountains", Scorer::PaperCompare) == "b");
  CHECK(cmp(" A A A A", "A"));
  CHECK_FALSE(cmp(" negative, positive", "negative"));
  CHECK(crossicl::normalize(" negative, positive", Scorer::PaperCompare) == "negative,");
  CHECK_FALSE(cmp(" NEGATIVE NEGATIVE", "positive"));
  CHECK(cmp(" NEGATIVE NEGATIVE", "negative"));
  CHECK(cmp("Label: A.", "A"));
  CHECK(crossicl::normalize("A.B.C", Scorer::PaperCompare) == "abc");
  CHECK_FALSE(cmp("\tA", "A"));
  CHECK_FALSE(cmp("", "A"));
  CHECK(crossicl::normalize("C:", Scorer::PaperCompare) == "c");
  CHECK(crossicl::normalize("C-D", Scorer::PaperCompare) == "c-d");
  // A list gold hits if any element matches.
  CHECK(crossicl::exact_match_any(" b", {"A", "B"}, Scorer::PaperCompare));
  CHECK_FALSE(crossicl::exact_match_any(" c", {"A", "B"}, Scorer::PaperCompare));
  CHECK_FALSE(crossicl::exact_match_any(" c", {}, Scorer::PaperCompare));
}

TEST_CASE("the two scorers disagree where the README says they do", "[score]") {
  CHECK(eval(" negative, positive", "negative") != cmp(" negative, positive", "negative"));
  CHECK(eval(" A A A A", "A") != cmp(" A A A A", "A"));
  CHECK(eval("nan", "nan") != cmp("nan", "nan"));
  CHECK(eval("A-B", "A") != cmp("A-B", "A"));
}

TEST_CASE("python_lower matches str.lower() on the named blocks", "[score]") {
  // Expected strings computed with CPython 3.11: s.lower().
  CHECK(crossicl::python_lower("ABC xyz 09") == "abc xyz 09");
  CHECK(crossicl::python_lower("\u00C0\u00C9\u00D6\u00D8\u00DE\u00DF\u00FF") == "\u00E0\u00E9\u00F6\u00F8\u00FE\u00DF\u00FF");
  CHECK(crossicl::python_lower("\u0100\u0132\u0139\u0141\u0152\u0178\u017D") ==
        "\u0101\u0133\u013A\u0142\u0153\u00FF\u017E");
  CHECK(crossicl::python_lower("\u0130") == "i\u0307");  // full mapping: two code points
  CHECK(crossicl::python_lower("\u212A") == "k");        // KELVIN SIGN
  CHECK(crossicl::python_lower("\u2126") == "\u03C9");   // OHM SIGN
  CHECK(crossicl::python_lower("\u0410\u0401\u042F\u0490") == "\u0430\u0451\u044F\u0491");  // Cyrillic
  CHECK(crossicl::python_lower("\u0386\u0391\u03A9\u03AB") == "\u03AC\u03B1\u03C9\u03CB");  // Greek
  // Final sigma: at the end of a word, not alone and not inside a word.
  CHECK(crossicl::python_lower("\u039F\u0394\u039F\u03A3") == "\u03BF\u03B4\u03BF\u03C2");
  CHECK(crossicl::python_lower("\u03A3") == "\u03C3");
  CHECK(crossicl::python_lower("\u03A3\u0391") == "\u03C3\u03B1");
  CHECK(crossicl::python_lower("\u0391\u03A3 \u0391") == "\u03B1\u03C2 \u03B1");
  CHECK(crossicl::python_lower("\u0391\u03A3'\u0391") == "\u03B1\u03C3'\u03B1");  // ' is case-ignorable
  CHECK(crossicl::python_lower("\u0391'\u03A3") == "\u03B1'\u03C2");
  // Outside the named blocks too (Unicode 14.0 tables): Latin Extended Additional, fullwidth, Deseret.
  CHECK(crossicl::python_lower("\u1EA0\uFF21\U00010400") == "\u1EA1\uFF41\U00010428");
  // Invalid UTF-8 bytes pass through unchanged.
  CHECK(crossicl::python_lower(std::string("A\xFF\xC0Z")) == std::string("a\xFF\xC0z"));
  CHECK(eval("\u00C9T\u00C9", "\u00E9t\u00E9"));
  CHECK(eval(" \u212A", "k"));
}

TEST_CASE("clean scorer", "[score]") {
  auto norm = [](const std::string& s) { return crossicl::normalize(s, Scorer::Clean); };
  CHECK(norm("\n\n Answer: B.") == "b");
  CHECK(norm("\t B \t") == "b");
  CHECK(norm("\u00A0\u3000Positive\u2003") == "positive");
  CHECK(norm("B\nDefinition: Given a question") == "b");
  CHECK(norm("Label: Negative") == "negative");
  CHECK(norm("label: answer: C") == "c");
  CHECK(norm(" A A A A") == "a a a a");
  CHECK(norm("") == "");
  CHECK(norm("\n\n") == "");
  CHECK(norm("\u0395\u039B\u039B\u0391\u03A3") == "\u03B5\u03BB\u03BB\u03B1\u03C2");
  CHECK(crossicl::exact_match("\n\n Answer: B.", "B", Scorer::Clean));
  CHECK(crossicl::exact_match(" NEGATIVE", " negative ", Scorer::Clean));
  CHECK_FALSE(crossicl::exact_match(" negative, positive", "negative", Scorer::Clean));
  CHECK(crossicl::normalize_gold(" Answer: B ", Scorer::Clean) == "b");
  CHECK(crossicl::normalize_gold(" B ", Scorer::PaperEval) == " b ");
}

TEST_CASE("clean scorer restricted to a label space", "[score]") {
  const std::vector<std::string> labels = {"positive", "negative", "neutral"};
  auto norm = [&](const std::string& s) { return crossicl::normalize(s, Scorer::Clean, labels); };
  CHECK(norm(" negative, positive") == "negative");
  CHECK(norm(" The sentiment is Neutral.") == "neutral");
  CHECK(norm(" unsure") == "unsure");
  CHECK(norm("Positive") == "positive");
  const std::vector<std::string> letters = {"A", "B", "C", "D"};
  CHECK(crossicl::normalize(" A A A A", Scorer::Clean, letters) == "a");
  CHECK(crossicl::normalize("(C) because", Scorer::Clean, letters) == "c");
  CHECK(crossicl::exact_match("The answer is D", "D", Scorer::Clean, letters));
  CHECK_FALSE(crossicl::exact_match("The answer is D", "D", Scorer::Clean));
  // A multi-word label matches only as the whole text.
  const std::vector<std::string> tags = {"B-PER O", "O O"};
  CHECK(crossicl::normalize("B-PER O", Scorer::Clean, tags) == "b-per o");
  CHECK(crossicl::normalize("x O O", Scorer::Clean, tags) == "x o o");
  CHECK_THROWS_AS(crossicl::normalize("A", Scorer::PaperEval, letters), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::exact_match("A", "A", Scorer::PaperCompare, letters), crossicl::InvalidArgument);
}

TEST_CASE("accuracy and count_matches", "[score]") {
  const std::vector<std::string> preds = {" B", "B. mountains", " A A A A", "", "nan", " C"};
  const std::vector<std::string> golds = {"B", "B", "A", "A", "nan", "D"};
  CHECK(crossicl::count_matches(preds, golds, Scorer::PaperEval) == 2);
  CHECK(crossicl::count_matches(preds, golds, Scorer::PaperCompare) == 4);
  // 100 * hits / n in float64: two roundings on each side
  CHECK(crossicl::accuracy(preds, golds, Scorer::PaperEval) == tol::approx(100.0 * 2 / 6, tol::f64_rel(4)));
  CHECK(crossicl::accuracy(preds, golds, Scorer::PaperCompare) == tol::approx(100.0 * 4 / 6, tol::f64_rel(4)));
  const std::vector<std::vector<std::string>> multi = {{"A", "B"}, {"C"}, {"a"}, {}, {"x", "NaN"}, {"c", "d"}};
  CHECK(crossicl::accuracy(preds, multi, Scorer::PaperCompare) == tol::approx(100.0 * 4 / 6, tol::f64_rel(4)));
  try {
    crossicl::accuracy(preds, std::vector<std::string>{"A"}, Scorer::PaperEval);
    FAIL("no exception");
  } catch (const crossicl::InvalidArgument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("preds=6") != std::string::npos);
    CHECK(msg.find("golds=1") != std::string::npos);
  }
  CHECK_THROWS_AS(crossicl::accuracy({}, std::vector<std::string>{}, Scorer::PaperEval), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::count_matches({"a"}, {}, Scorer::Clean), crossicl::InvalidArgument);
}

TEST_CASE("majority vote: mode of non-empty votes, ties to the smallest code point", "[score]") {
  CHECK(crossicl::majority_vote({"B", "A", "", "B", "A"}) == "A");
  CHECK(crossicl::majority_vote({"B", "A", "", "B"}) == "B");
  CHECK(crossicl::majority_vote({"", "", "C", "", ""}) == "C");
  CHECK(crossicl::majority_vote({"", ""}).empty());
  CHECK(crossicl::majority_vote({}).empty());
  CHECK(crossicl::majority_vote({" C", "C", " A. let the stranger", " C"}) == " C");
  // Raw strings: " A" sorts before "A" (space < 'A'); upper case before lower case.
  CHECK(crossicl::majority_vote({"A", " A"}) == " A");
  CHECK(crossicl::majority_vote({"a", "B"}) == "B");
  // Code-point order, not signed-char order: U+00E9 (bytes C3 A9) sorts after 'z'.
  CHECK(crossicl::majority_vote({"\u00E9", "z"}) == "z");
  CHECK(crossicl::majority_vote({"positive", "neutral", "negative", "neutral", "positive"}) == "neutral");
}
