// Python bindings of include/crossicl/core/select.h.
//
// Embedding matrices: a float32 C-contiguous 2-D numpy array is used in place (no copy) and the Python object
// keeps a reference to it (attribute `pool`), so it must not be modified while the selector lives; an ndarray
// subclass such as np.memmap is kept as a plain ndarray view of the same memory. Any other array (another
// dtype or byte order, non-contiguous, a nested list) is converted once to a float32 C-contiguous copy, which
// the selector then owns. Construction and selection release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fmt/format.h>

#include <memory>

#include "crossicl/core/error.h"
#include "crossicl/core/select.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

namespace {

using FloatMatrix = Matrix<float>;

// `obj` as a float32 [rows, dim] array (see bindings::as_matrix).
FloatMatrix as_matrix(const py::handle& obj, const char* what) {
  return bindings::as_matrix<float>(obj, what, "[rows, dim]");
}

// A [rows, cols] numpy array owning `v` (no copy).
template <class T>
py::array_t<T> to_matrix(std::vector<T>&& v, std::int64_t rows, std::int64_t cols) {
  return to_numpy(std::move(v), {static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
}

py::tuple result_tuple(SelectResult&& r) {
  return py::make_tuple(to_matrix(std::move(r.ids), r.n_queries, r.k),
                        to_matrix(std::move(r.scores), r.n_queries, r.k));
}

CosineOptions cosine_options(std::size_t query_block, std::size_t pool_block, int num_threads) {
  CosineOptions o;
  o.query_block = query_block;
  o.pool_block = pool_block;
  o.num_threads = num_threads;
  return o;
}

// A selector over one embedding pool, with the array it reads (kept alive: see the file comment).
template <class Impl>
struct PoolSelector {
  FloatMatrix pool;
  std::unique_ptr<Impl> impl;
};

using PyCosineTopK = PoolSelector<CosineTopK>;
using PyMMR = PoolSelector<MMR>;
using PyLabelBalancedTopK = PoolSelector<LabelBalancedTopK>;

// Takes `pool` (see as_matrix) and builds Impl(data, rows, dim, args...) over it without the GIL.
template <class Impl, class... Args>
std::unique_ptr<PoolSelector<Impl>> make_pool_selector(const py::handle& pool, Args&&... args) {
  auto self = std::make_unique<PoolSelector<Impl>>();
  self->pool = as_matrix(pool, "pool");
  const float* data = self->pool.data();
  const std::int64_t rows = self->pool.shape(0), dim = self->pool.shape(1);
  released([&] { self->impl = std::make_unique<Impl>(data, rows, dim, std::forward<Args>(args)...); });
  return self;
}

struct PyMixedCosineTopK {
  std::vector<FloatMatrix> pools;
  std::unique_ptr<MixedCosineTopK> impl;
};

// Runs a selector on a queries matrix with the GIL released.
template <class Selector>
auto run_select(const Selector& sel, const py::handle& queries_obj, std::int64_t k) {
  FloatMatrix q = as_matrix(queries_obj, "queries");
  const float* data = q.data();
  const std::int64_t n = q.shape(0), d = q.shape(1);
  return released([&] { return sel.select(data, n, d, k); });
}

// select(queries, k) -> (ids, scores) of a PoolSelector, and its pool array.
template <class Impl>
py::tuple pool_select(const PoolSelector<Impl>& self, const py::handle& queries, std::int64_t k) {
  return result_tuple(run_select(*self.impl, queries, k));
}

template <class Impl>
FloatMatrix pool_array(const PoolSelector<Impl>& self) {
  return self.pool;
}

constexpr const char* kCosineDoc = R"doc(Exact cosine top-k of many queries against one embedding pool.

``pool`` is a [rows, dim] array, used without a copy when it is float32 and C-contiguous (kept alive as
``self.pool``; do not modify it). Similarity = dot / (|q| |p|) in float32; order = descending similarity,
then the lower pool row. Memory is bounded by the blocks (``query_block`` x ``pool_block``), never queries x
pool; the scores do not depend on the block sizes. Example::

    sel = crossicl.CosineTopK(pool)              # pool: np.ndarray [n, d] float32
    ids, scores = sel.select(queries, 4)         # ids int64 [q, 4], scores float32 [q, 4]
)doc";

}  // namespace

void register_select(py::module_& m) {
  py::class_<PyCosineTopK>(m, "CosineTopK", kCosineDoc)
      .def(py::init([](const py::handle& pool, std::size_t query_block, std::size_t pool_block, int num_threads) {
             return make_pool_selector<CosineTopK>(pool, cosine_options(query_block, pool_block, num_threads));
           }),
           py::arg("pool"), py::kw_only(), py::arg("query_block") = CosineOptions{}.query_block,
           py::arg("pool_block") = CosineOptions{}.pool_block, py::arg("num_threads") = CosineOptions{}.num_threads)
      .def("select", &pool_select<CosineTopK>, py::arg("queries"), py::arg("k"),
          "Top-k pool rows of each query row: (ids int64 [n_queries, k], scores float32 [n_queries, k]).")
      .def_property_readonly("pool", &pool_array<CosineTopK>)
      .def_property_readonly("pool_size", [](const PyCosineTopK& self) { return self.impl->pool_size(); })
      .def_property_readonly("dim", [](const PyCosineTopK& self) { return self.impl->dim(); })
      .def_property_readonly("query_block", [](const PyCosineTopK& self) { return self.impl->options().query_block; })
      .def_property_readonly("pool_block", [](const PyCosineTopK& self) { return self.impl->options().pool_block; })
      .def_property_readonly("num_threads", [](const PyCosineTopK& self) { return self.impl->options().num_threads; })
      .def("__repr__", [](const PyCosineTopK& self) {
        return fmt::format("CosineTopK(pool_size={}, dim={})", self.impl->pool_size(), self.impl->dim());
      });

  py::class_<PyMixedCosineTopK>(m, "MixedCosineTopK",
                                R"doc(Cosine top-k over the union of several pools of the same width.

Order: descending similarity, then the lower pool index, then the lower row. Example::

    mix = crossicl.MixedCosineTopK([pool_a, pool_b])
    pool_ids, ids, scores = mix.select(queries, 4)   # three [n_queries, 4] arrays
)doc")
      .def(py::init([](const py::sequence& pools, std::size_t query_block, std::size_t pool_block, int num_threads) {
             auto self = std::make_unique<PyMixedCosineTopK>();
             std::vector<MixedCosineTopK::Pool> views;
             for (std::size_t i = 0; i < pools.size(); ++i) {
               const std::string what = fmt::format("pools[{}]", i);
               self->pools.push_back(as_matrix(pools[i], what.c_str()));
               const FloatMatrix& a = self->pools.back();
               views.push_back({a.data(), a.shape(0), a.shape(1)});
             }
             released([&] {
               self->impl =
                   std::make_unique<MixedCosineTopK>(views, cosine_options(query_block, pool_block, num_threads));
             });
             return self;
           }),
           py::arg("pools"), py::kw_only(), py::arg("query_block") = CosineOptions{}.query_block,
           py::arg("pool_block") = CosineOptions{}.pool_block, py::arg("num_threads") = CosineOptions{}.num_threads)
      .def(
          "select",
          [](const PyMixedCosineTopK& self, const py::handle& queries, std::int64_t k) {
            MixedSelectResult r = run_select(*self.impl, queries, k);
            auto pool_ids = to_matrix(std::move(r.pool_ids), r.n_queries, r.k);
            return py::make_tuple(pool_ids, to_matrix(std::move(r.ids), r.n_queries, r.k),
                                  to_matrix(std::move(r.scores), r.n_queries, r.k));
          },
          py::arg("queries"), py::arg("k"),
          "(pool_ids int64, ids int64, scores float32), each [n_queries, k].")
      .def_property_readonly("pools", [](const PyMixedCosineTopK& self) { return self.pools; })
      .def_property_readonly("n_pools", [](const PyMixedCosineTopK& self) { return self.impl->n_pools(); })
      .def_property_readonly("total_size", [](const PyMixedCosineTopK& self) { return self.impl->total_size(); })
      .def_property_readonly("dim", [](const PyMixedCosineTopK& self) { return self.impl->dim(); });

  py::class_<PyMMR>(m, "MMR", R"doc(Maximal marginal relevance over cosine similarity.

Candidates = the max(fetch_k, k) most similar rows; each step picks the candidate maximising
lambda_ * sim(q, c) - (1 - lambda_) * max sim(c, picked). Returns the picks in pick order with their cosine
similarity to the query. Example::

    ids, scores = crossicl.MMR(pool, lambda_=0.5, fetch_k=20).select(queries, 4)
)doc")
      .def(py::init([](const py::handle& pool, float lambda, std::int64_t fetch_k, std::size_t query_block,
                       std::size_t pool_block, int num_threads) {
             MMROptions o;
             o.lambda = lambda;
             o.fetch_k = fetch_k;
             o.cosine = cosine_options(query_block, pool_block, num_threads);
             return make_pool_selector<MMR>(pool, o);
           }),
           py::arg("pool"), py::kw_only(), py::arg("lambda_") = MMROptions{}.lambda,
           py::arg("fetch_k") = MMROptions{}.fetch_k, py::arg("query_block") = CosineOptions{}.query_block,
           py::arg("pool_block") = CosineOptions{}.pool_block, py::arg("num_threads") = CosineOptions{}.num_threads)
      .def("select", &pool_select<MMR>, py::arg("queries"), py::arg("k"))
      .def_property_readonly("pool", &pool_array<MMR>)
      .def_property_readonly("lambda_", [](const PyMMR& self) { return self.impl->options().lambda; })
      .def_property_readonly("fetch_k", [](const PyMMR& self) { return self.impl->options().fetch_k; })
      .def_property_readonly("pool_size", [](const PyMMR& self) { return self.impl->pool_size(); });

  py::class_<PyLabelBalancedTopK>(m, "LabelBalancedTopK", R"doc(Cosine top-k with per-label quotas.

Each of the L labels gets k // L picks; the k % L extra picks go to the labels whose best row is most similar
to the query (ties: the label seen first in the pool). A label short of rows leaves its slots to the most
similar remaining rows. Picks are returned by descending similarity. Example::

    ids, scores = crossicl.LabelBalancedTopK(pool, labels).select(queries, 4)   # labels: list[str]
)doc")
      .def(py::init([](const py::handle& pool, std::vector<std::string> labels, std::size_t query_block,
                       std::size_t pool_block, int num_threads) {
             return make_pool_selector<LabelBalancedTopK>(pool, std::move(labels),
                                                          cosine_options(query_block, pool_block, num_threads));
           }),
           py::arg("pool"), py::arg("labels"), py::kw_only(), py::arg("query_block") = CosineOptions{}.query_block,
           py::arg("pool_block") = CosineOptions{}.pool_block, py::arg("num_threads") = CosineOptions{}.num_threads)
      .def("select", &pool_select<LabelBalancedTopK>, py::arg("queries"), py::arg("k"))
      .def_property_readonly("pool", &pool_array<LabelBalancedTopK>)
      .def_property_readonly("labels", [](const PyLabelBalancedTopK& self) { return self.impl->label_names(); })
      .def_property_readonly("pool_size", [](const PyLabelBalancedTopK& self) { return self.impl->pool_size(); });

  py::class_<BM25TopK>(m, "BM25TopK", R"doc(Lexical Okapi BM25 top-k over strings.

Tokens: maximal runs of ASCII letters/digits (lower-cased) and non-ASCII bytes; everything else separates.
idf = ln(1 + (N - n + 0.5) / (n + 0.5)); repeated query tokens count repeatedly. Order: descending score,
then the lower row. Example::

    bm25 = crossicl.BM25TopK(["the cat sat", "a dog"], k1=1.5, b=0.75)
    ids, scores = bm25.select(["cat"], 1)
)doc")
      .def(py::init([](const std::vector<std::string>& docs, double k1, double b, int num_threads) {
             BM25Options o;
             o.k1 = k1;
             o.b = b;
             o.num_threads = num_threads;
             return released([&] { return std::make_unique<BM25TopK>(docs, o); });
           }),
           py::arg("docs"), py::kw_only(), py::arg("k1") = BM25Options{}.k1, py::arg("b") = BM25Options{}.b,
           py::arg("num_threads") = BM25Options{}.num_threads)
      .def(
          "select",
          [](const BM25TopK& self, const std::vector<std::string>& queries, std::int64_t k) {
            return result_tuple(released([&] { return self.select(queries, k); }));
          },
          py::arg("queries"), py::arg("k"))
      .def(
          "scores",
          [](const BM25TopK& self, const std::string& query) {
            std::vector<double> s = released([&] { return self.scores(query); });
            const auto n = static_cast<py::ssize_t>(s.size());
            return to_numpy(std::move(s), {n});
          },
          py::arg("query"), "BM25 score of every document for one query (float64 [pool_size]).")
      .def_static("tokenize", &BM25TopK::tokenize, py::arg("text"))
      .def_property_readonly("pool_size", &BM25TopK::pool_size)
      .def_property_readonly("k1", [](const BM25TopK& self) { return self.options().k1; })
      .def_property_readonly("b", [](const BM25TopK& self) { return self.options().b; });

  py::class_<RandomSelector>(m, "RandomSelector", R"doc(Seeded random selection, identical on every platform.

Query q draws with SplitMix64 seeded by the (q+1)-th output of SplitMix64(seed) (partial Fisher-Yates,
unbiased rejection); see include/crossicl/core/select.h. Scores are 0. Example::

    ids, scores = crossicl.RandomSelector(100, seed=1).select(5, 4, exclude=[0, 1])
)doc")
      .def(py::init([](std::int64_t pool_size, const py::int_& seed) {
             if (seed < py::int_(0) || seed > py::int_(py::reinterpret_steal<py::object>(
                                                  PyLong_FromUnsignedLongLong(~0ULL))))
               throw InvalidArgument(fmt::format("seed must be in [0, 2**64 - 1] (seed={})", std::string(py::str(seed))));
             RandomOptions o;
             o.seed = seed.cast<std::uint64_t>();
             return std::make_unique<RandomSelector>(pool_size, o);
           }),
           py::arg("pool_size"), py::kw_only(), py::arg("seed") = 0)
      .def(
          "select",
          [](const RandomSelector& self, std::int64_t n_queries, std::int64_t k,
             const std::optional<std::vector<std::int64_t>>& exclude,
             const std::optional<std::vector<std::vector<std::int64_t>>>& exclude_per_query) {
            return result_tuple(released([&] {
              return self.select(n_queries, k, exclude.value_or(std::vector<std::int64_t>{}),
                                 exclude_per_query.value_or(std::vector<std::vector<std::int64_t>>{}));
            }));
          },
          py::arg("n_queries"), py::arg("k"), py::kw_only(), py::arg("exclude") = py::none(),
          py::arg("exclude_per_query") = py::none(),
          "k distinct rows per query: (ids int64 [n_queries, k], scores float32 zeros).")
      .def_property_readonly("pool_size", &RandomSelector::pool_size)
      .def_property_readonly("seed", [](const RandomSelector& self) { return self.options().seed; });

  m.def(
      "numpy_legacy_permutation",
      [](std::int64_t seed, std::int64_t n) {
        if (seed < 0 || seed > 0xffffffffLL)
          throw InvalidArgument(fmt::format("seed must be in [0, 2**32 - 1] (seed={})", seed));
        std::vector<std::int64_t> p = numpy_legacy_permutation(static_cast<std::uint32_t>(seed), n);
        const auto len = static_cast<py::ssize_t>(p.size());
        return to_numpy(std::move(p), {len});
      },
      py::arg("seed"), py::arg("n"),
      "numpy's np.random.RandomState(seed).permutation(n), bit for bit (int64 [n]).");
}

}  // namespace crossicl::bindings
