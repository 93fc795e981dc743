// Python bindings of crossicl/core/score.h and crossicl/core/stats.h: scorers (exact_match, accuracy, normalize,
// majority_vote), statistics (paired_ttest, headline_gain, accuracy_interval, incomplete_beta, student_t_sf) and
// contextual calibration (crossicl/core/calibrate.h).
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "crossicl/core/calibrate.h"
#include "crossicl/core/error.h"
#include "crossicl/core/score.h"
#include "crossicl/core/stats.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {
namespace {

using Gold = std::variant<std::string, std::vector<std::string>>;

// A 2-D float array (or nested lists) as a LabelMatrix; `what` names the argument in errors.
LabelMatrix label_matrix(const py::handle& obj, const char* what) {
  const Matrix<double> arr = as_matrix<double>(obj, what, "[rows, labels]");
  return {arr.shape(0), arr.shape(1), std::vector<double>(arr.data(), arr.data() + arr.size())};
}

std::vector<std::string> labels_or_empty(const std::optional<std::vector<std::string>>& labels) {
  return labels ? *labels : std::vector<std::string>{};
}

// A 1-D float64 copy of a list, tuple or numpy array of numbers or booleans.
std::vector<double> as_vector(const py::handle& obj, const char* name) {
  auto arr = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!arr) throw InvalidArgument(fmt::format("{} must be a 1-D sequence of numbers", name));
  if (arr.ndim() != 1) throw InvalidArgument(fmt::format("{} must be 1-D (ndim={})", name, arr.ndim()));
  return std::vector<double>(arr.data(), arr.data() + arr.size());
}

}  // namespace

void register_score(py::module_& m) {
  // ------------------------------------------------------------------ score.h
  m.def(
      "normalize",
      [](const std::string& pred, const std::string& scorer, std::optional<std::vector<std::string>> labels) {
        return normalize(pred, scorer_from_name(scorer), labels_or_empty(labels));
      },
      py::arg("pred"), py::arg("scorer") = "paper_eval", py::kw_only(), py::arg("labels") = py::none(),
      R"doc(The normalised prediction that `scorer` compares with the normalised gold.

scorer: "paper_eval" (the authors' Eval notebook), "paper_compare" (their compare_output) or "clean".
labels: label space for the "clean" scorer (keep the first token that is a label); ValueError with another scorer.

>>> crossicl.normalize(" B. mountains")
'b')doc");

  m.def(
      "normalize_gold",
      [](const std::string& gold, const std::string& scorer) { return normalize_gold(gold, scorer_from_name(scorer)); },
      py::arg("gold"), py::arg("scorer") = "paper_eval",
      "The normalised gold label (lower-cased for the paper scorers).");

  m.def("python_lower", &python_lower, py::arg("text"),
        "Python's str.lower() as implemented in C++ (CPython 3.11 tables, Unicode 14.0).");

  m.def("is_pandas_na", [](const std::string& cell) { return is_pandas_na(cell); }, py::arg("cell"),
        "True if pandas.read_csv (default na_values) reads the cell as missing.");

  m.def(
      "exact_match",
      [](const std::string& pred, const Gold& gold, const std::string& scorer,
         std::optional<std::vector<std::string>> labels) {
        const Scorer s = scorer_from_name(scorer);
        if (const auto* one = std::get_if<std::string>(&gold)) return exact_match(pred, *one, s, labels_or_empty(labels));
        return exact_match_any(pred, std::get<std::vector<std::string>>(gold), s, labels_or_empty(labels));
      },
      py::arg("pred"), py::arg("gold"), py::arg("scorer") = "paper_eval", py::kw_only(),
      py::arg("labels") = py::none(),
      R"doc(True iff the normalised prediction equals the normalised gold.

gold: a string, or a list of accepted strings (hit if any matches; compare_output's rule).

>>> crossicl.exact_match(" A A A A", "A", "paper_compare"), crossicl.exact_match(" A A A A", "A")
(True, False))doc");

  m.def(
      "accuracy",
      [](const std::vector<std::string>& preds, const std::vector<Gold>& golds, const std::string& scorer,
         std::optional<std::vector<std::string>> labels) {
        const Scorer s = scorer_from_name(scorer);
        const std::vector<std::string> lab = labels_or_empty(labels);
        bool any_list = false;
        for (const auto& g : golds) any_list |= std::holds_alternative<std::vector<std::string>>(g);
        return released([&] {
          if (!any_list) {
            std::vector<std::string> flat;
            flat.reserve(golds.size());
            for (const auto& g : golds) flat.push_back(std::get<std::string>(g));
            return accuracy(preds, flat, s, lab);
          }
          std::vector<std::vector<std::string>> lists;
          lists.reserve(golds.size());
          for (const auto& g : golds) {
            if (const auto* one = std::get_if<std::string>(&g)) lists.push_back({*one});
            else lists.push_back(std::get<std::vector<std::string>>(g));
          }
          return accuracy(preds, lists, s, lab);
        });
      },
      py::arg("preds"), py::arg("golds"), py::arg("scorer") = "paper_eval", py::kw_only(),
      py::arg("labels") = py::none(),
      R"doc(Accuracy in percent, 100 * hits / n.

golds: strings, or lists of accepted strings. ValueError if the lengths differ or are 0.

>>> crossicl.accuracy([" B", "C"], ["B", "B"])
50.0)doc");

  m.def("majority_vote", &majority_vote, py::arg("votes"),
        R"doc(Most frequent non-empty vote; ties go to the smallest string in code-point order; "" if none.

>>> crossicl.majority_vote(["B", "A", "", "B", "A"])
'A')doc");

  // ------------------------------------------------------------------ stats.h
  py::class_<TTestResult>(m, "TTestResult", "Result of paired_ttest.")
      .def_readonly("t", &TTestResult::t, "t statistic (+-inf or nan when the differences have zero variance)")
      .def_readonly("df", &TTestResult::df, "degrees of freedom, n - 1")
      .def_readonly("pvalue", &TTestResult::pvalue, "one-tailed for greater/less, two-tailed for two-sided")
      .def_readonly("p_one_tailed", &TTestResult::p_one_tailed,
                    "one-tailed p in the direction of the alternative (two-sided: p_two_tailed / 2)")
      .def_readonly("p_two_tailed", &TTestResult::p_two_tailed, "two-tailed p (scipy's default)")
      .def_readonly("mean_diff", &TTestResult::mean_diff, "mean of a - b")
      .def_readonly("n", &TTestResult::n, "number of pairs")
      .def_property_readonly("alternative",
                             [](const TTestResult& r) { return std::string(alternative_name(r.alternative)); })
      .def("__repr__", [](const TTestResult& r) {
        return fmt::format("TTestResult(t={}, df={}, pvalue={}, alternative='{}', mean_diff={}, n={})", r.t, r.df,
                           r.pvalue, alternative_name(r.alternative), r.mean_diff, r.n);
      });

  m.def(
      "paired_ttest",
      [](const py::object& a, const py::object& b, const std::string& alternative) {
        const Alternative alt = alternative_from_name(alternative);
        const std::vector<double> va = as_vector(a, "a");
        const std::vector<double> vb = as_vector(b, "b");
        return released([&] { return paired_ttest(va, vb, alt); });
      },
      py::arg("a"), py::arg("b"), py::kw_only(), py::arg("alternative") = "greater",
      R"doc(Paired t-test of a against b, as scipy.stats.ttest_rel(a, b, alternative=alternative).

a, b: equal-length lists or numpy arrays (0/1 correctness, bools or floats), n >= 2.
alternative: "greater" (mean of a > mean of b; the authors' one-tailed p/2 when t > 0), "less", "two-sided".

>>> crossicl.paired_ttest([1, 1, 0, 1], [0, 1, 0, 0]).pvalue
0.0908...)doc");

  m.def(
      "headline_gain",
      [](const std::map<std::string, double>& zero_shot,
         const std::map<std::pair<std::string, std::string>, double>& cross) { return headline_gain(zero_shot, cross); },
      py::arg("zero_shot"), py::arg("cross"),
      R"doc(The abstract's headline gain as a fraction (1.0631 = +106.31%).

zero_shot: {target: zero-shot accuracy}; cross: {(target, source): 1-shot cross-task accuracy}.
gain = (A_cross - A_zero) / A_zero with A_zero = mean over targets of zero-shot, A_cross = mean over targets of the
mean over that target's sources.)doc");

  m.def("accuracy_interval",
        [](std::size_t hits, std::size_t n, double confidence) {
          const Interval ci = accuracy_interval(hits, n, confidence);
          return std::make_pair(ci.lo, ci.hi);
        },
        py::arg("hits"), py::arg("n"), py::kw_only(), py::arg("confidence") = 0.95,
        "Wilson score interval (lo, hi) of an accuracy hits/n, in percent.");

  m.def("incomplete_beta", &incomplete_beta, py::arg("a"), py::arg("b"), py::arg("x"),
        "Regularized incomplete beta I_x(a, b) (scipy.special.betainc).");
  m.def("student_t_sf", &student_t_sf, py::arg("t"), py::arg("df"), "Student-t survival function P(T >= t).");

  // ------------------------------------------------------------------ calibrate.h
  m.def(
      "calibrate",
      [](const py::object& label_logprobs, const py::object& content_free_logprobs) {
        const LabelMatrix x = label_matrix(label_logprobs, "label_logprobs");
        const LabelMatrix cf = label_matrix(content_free_logprobs, "content_free_logprobs");
        LabelMatrix q = released([&] { return calibrate(x, cf); });
        return to_numpy(std::move(q.data), {static_cast<py::ssize_t>(q.rows), static_cast<py::ssize_t>(q.cols)});
      },
      py::arg("label_logprobs"), py::arg("content_free_logprobs"),
      R"doc(Contextual calibration (Zhao et al., 2021): calibrated log-probabilities over the labels, [n, m] float64.

label_logprobs [n, m]: each item's log-scores of the m labels (only each row's softmax matters).
content_free_logprobs [c, m]: the same scores for c content-free inputs ("N/A", "", "[MASK]") in the same context.
With p = softmax(row) and p_cf = the mean over the c rows of softmax(content-free row), each result row is
log(q / sum(q)), q = p / p_cf: its arg-max is that of diag(p_cf)^-1 p. ValueError for mismatched widths, m = 0,
c = 0 or a non-finite value.

>>> import numpy as np
>>> np.exp(crossicl.calibrate(np.log([[0.6, 0.4]]), np.log([[0.8, 0.2]])))
array([[0.27272727, 0.72727273]]))doc");
}

}  // namespace crossicl::bindings
