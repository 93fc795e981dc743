// Example selectors: which pool rows become the demonstrations of each query. A selector is built once over a
// pool (an embedding matrix, a list of rendered input strings, or just a pool size) and then answers many
// queries at once; every selector returns, per query, k pool row ids in selection order and one float32 score
// per id, as row-major [n_queries, k] arrays (SelectResult).
//
// * CosineTopK       exact cosine top-k over a float32 embedding matrix, computed in blocks (memory bounded
//                    by the block sizes, never by queries x pool), order = descending similarity, ties broken
//                    by the lower pool row. This is the paper's rule (README section 6 of the fixture pack).
// * MixedCosineTopK  the same over the union of several pools; returns the pool index of each pick too.
// * MMR              maximal marginal relevance over the fetch_k most similar rows.
// * LabelBalancedTopK cosine top-k with per-label quotas.
// * BM25TopK         lexical Okapi BM25 over strings (no model needed).
// * RandomSelector   seeded random selection, identical on every platform (SplitMix64, specified below).
// * numpy_legacy_permutation  numpy's `RandomState(seed).permutation(n)`, bit for bit (pseudo-label sampling).
//
// Embedding matrices are NOT copied: the selectors keep a pointer to caller-owned row-major float32 memory
// [rows, dim], which must stay alive and unchanged while the selector is used (the Python bindings keep a
// reference to the numpy array). Bad input throws crossicl::InvalidArgument naming the value and the row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <Eigen/Core>

namespace crossicl {

/// A read-only view of a row-major float32 matrix [rows, cols] (e.g. a numpy array's buffer).
using ConstRowMatrixMap =
    Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

/// Selected pool rows of each query, most preferred first.
struct SelectResult {
  std::int64_t n_queries = 0;        ///< rows of `ids` / `scores`
  std::int64_t k = 0;                ///< columns of `ids` / `scores`
  std::vector<std::int64_t> ids;     ///< [n_queries, k] row-major: pool row ids
  std::vector<float> scores;         ///< [n_queries, k] row-major: the score of each id (selector-specific)

  std::int64_t id(std::int64_t query, std::int64_t rank) const { return ids[query * k + rank]; }
  float score(std::int64_t query, std::int64_t rank) const { return scores[query * k + rank]; }

  /// Sets n_queries and k, and ids and scores to [n_queries, k] zeros. Throws InvalidArgument naming both when
  /// n_queries * k overflows or is more than a vector can hold (never a wrapped, too small buffer), and
  /// std::bad_alloc (Python MemoryError) when the memory is not there.
  void resize(std::int64_t n_queries, std::int64_t k);
};

/// A SelectResult over several pools: `pool_ids[q, r]` says which pool `ids[q, r]` indexes.
struct MixedSelectResult : SelectResult {
  std::vector<std::int64_t> pool_ids;  ///< [n_queries, k] row-major: index of the pool (0-based, as given)
};

/// Blocking of the exact cosine search. Scores are bit-identical whatever the block sizes and thread count
/// (every similarity is computed by the same fixed-order dot product), so these only trade speed and memory.
struct CosineOptions {
  std::size_t query_block = 256;  ///< max queries per work item (one OpenMP task; smaller when there are few queries); 0 = 256
  std::size_t pool_block = 2048;  ///< pool rows packed per step; per-thread scratch = pool_block*dim*4 bytes; 0 = 2048
  int num_threads = 0;            ///< OpenMP threads; 0 = OpenMP's default (OMP_NUM_THREADS or all cores)
};

/// Exact cosine top-k of many queries against one pool of embeddings.
///
/// similarity(q, p) = dot(q, p) * (1/|q|) * (1/|p|) in float32, where dot is accumulated in float32 in
/// column order (one fused or unfused multiply-add per column, fixed per build) and the inverse norms are
/// computed in double and rounded to float. Order: descending similarity, then ascending pool row.
/// The pool's inverse norms (a [rows] vector) are computed once; the pool itself is not copied.
/// Pool and query rows must be finite with 0 < norm < 1.8e19 (so no dot product can overflow).
///
/// Example:
/// ```
/// std::vector<float> pool = {1, 0,  0, 1,  1, 1};  // [3, 2]
/// crossicl::CosineTopK sel(pool.data(), 3, 2);
/// std::vector<float> q = {1, 0.1f};                // [1, 2]
/// auto r = sel.select(q.data(), 1, 2, 2);          // r.ids = {0, 2}
/// ```
class CosineTopK {
 public:
  /// `pool` points at [rows, dim] row-major float32 memory that must outlive the selector.
  CosineTopK(const float* pool, std::int64_t rows, std::int64_t dim, CosineOptions options = {});
  explicit CosineTopK(const ConstRowMatrixMap& pool, CosineOptions options = {});

  /// Top-k of each of the `n_queries` rows of `queries` ([n_queries, dim] row-major); scores = cosine.
  SelectResult select(const float* queries, std::int64_t n_queries, std::int64_t dim, std::int64_t k) const;
  SelectResult select(const ConstRowMatrixMap& queries, std::int64_t k) const;

  /// Top-k restricted to the pool rows `subset` (ascending or not; ids returned are pool rows).
  SelectResult select_subset(const float* queries, std::int64_t n_queries, std::int64_t dim, std::int64_t k,
                             const std::vector<std::int64_t>& subset) const;

  /// Cosine similarity of pool rows `a` and `b`, computed exactly like the query scores.
  float pool_similarity(std::int64_t a, std::int64_t b) const;

  std::int64_t pool_size() const { return rows_; }
  std::int64_t dim() const { return dim_; }
  const CosineOptions& options() const { return options_; }
  const float* data() const { return pool_; }
  const std::vector<float>& inverse_norms() const { return inv_norm_; }  ///< [rows]

 private:
  const float* pool_;
  std::int64_t rows_, dim_;
  CosineOptions options_;
  std::vector<float> inv_norm_;  // [rows]
};

/// Cosine top-k over the union of several pools of the same width. Order: descending similarity, then the
/// lower pool index, then the lower row. Each pool stays caller-owned and uncopied.
///
/// Example: `MixedCosineTopK mix({{a.data(), 10, 384}, {b.data(), 20, 384}}); auto r = mix.select(q, 5, 384, 4);`
class MixedCosineTopK {
 public:
  /// One entry per pool: its data pointer ([rows, dim] row-major), rows and dim.
  struct Pool {
    const float* data;
    std::int64_t rows;
    std::int64_t dim;
  };
  explicit MixedCosineTopK(const std::vector<Pool>& pools, CosineOptions options = {});

  /// k <= total rows of all pools.
  MixedSelectResult select(const float* queries, std::int64_t n_queries, std::int64_t dim, std::int64_t k) const;

  std::size_t n_pools() const { return pools_.size(); }
  std::int64_t total_size() const { return total_; }
  std::int64_t dim() const { return dim_; }

 private:
  std::vector<CosineTopK> pools_;
  std::int64_t total_ = 0, dim_ = 0;
};

/// Options of maximal marginal relevance.
struct MMROptions {
  float lambda = 0.5f;         ///< weight of relevance in [0, 1]: 1 = plain top-k, 0 = diversity only
  std::int64_t fetch_k = 20;   ///< candidates = the fetch_k most similar rows (raised to k, capped at the pool)
  CosineOptions cosine{};      ///< blocking of the candidate search
};

/// Maximal marginal relevance (Carbonell & Goldstein 1998) over cosine similarity.
///
/// Candidates: the max(fetch_k, k) most similar pool rows (CosineTopK order). Then k greedy steps, each picking
/// the candidate c maximising  lambda * sim(q, c) - (1 - lambda) * max_{s picked} sim(c, s)  (the second term
/// is 0 for the first pick); ties go to the candidate ranked higher by similarity to the query. All arithmetic
/// in float32. Returned order = pick order; scores = sim(q, c) (the cosine, not the MMR objective).
///
/// Example: `MMR mmr(pool, rows, dim); auto r = mmr.select(q, n, dim, 4);`
class MMR {
 public:
  MMR(const float* pool, std::int64_t rows, std::int64_t dim, MMROptions options = {});
  SelectResult select(const float* queries, std::int64_t n_queries, std::int64_t dim, std::int64_t k) const;
  const MMROptions& options() const { return options_; }
  std::int64_t pool_size() const { return cosine_.pool_size(); }

 private:
  CosineTopK cosine_;
  MMROptions options_;
};

/// Cosine top-k with a quota per label.
///
/// Rule: with L distinct labels (numbered in order of first appearance in the pool), each label gets
/// floor(k / L) picks; the k % L remaining picks go one each to the labels whose most similar row is most
/// similar to the query (ties: lower label number). Within a label the rows are taken in CosineTopK order.
/// A label with fewer rows than its quota gives all its rows, and the slots left over go to the most similar
/// rows not yet taken, whatever their label. The picks are returned in CosineTopK order (descending
/// similarity, then ascending row); scores = cosine.
///
/// Example: `LabelBalancedTopK sel(pool, rows, dim, {"A", "B", "A"}); auto r = sel.select(q, 1, dim, 2);`
class LabelBalancedTopK {
 public:
  /// `labels` has one entry per pool row.
  LabelBalancedTopK(const float* pool, std::int64_t rows, std::int64_t dim, std::vector<std::string> labels,
                    CosineOptions options = {});
  SelectResult select(const float* queries, std::int64_t n_queries, std::int64_t dim, std::int64_t k) const;

  /// Distinct labels in order of first appearance.
  const std::vector<std::string>& label_names() const { return names_; }
  std::int64_t pool_size() const { return cosine_.pool_size(); }

 private:
  CosineTopK cosine_;
  std::vector<std::string> names_;
  std::vector<std::vector<std::int64_t>> rows_of_label_;  // [L][rows with that label, ascending]
};

/// Options of Okapi BM25.
struct BM25Options {
  double k1 = 1.5;  ///< term-frequency saturation, >= 0
  double b = 0.75;  ///< document-length normalisation in [0, 1] (0 = none)
  int num_threads = 0;  ///< OpenMP threads over queries; 0 = OpenMP's default
};

/// Lexical Okapi BM25 top-k over strings.
///
/// Tokenisation: the UTF-8 bytes are split into maximal runs of word bytes, where a word byte is an ASCII
/// letter or digit (letters lower-cased) or any byte >= 0x80 (so non-ASCII text is kept verbatim inside
/// words); every other byte (spaces, punctuation, control characters) separates tokens.
/// Score of document d for query q = sum over the query's tokens t (repeats counted) of
///   idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl)),
///   idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5)),
/// N = pool size, n(t) = documents containing t, |d| = tokens of d, avgdl = mean |d| (the length factor is
/// 1 when avgdl = 0). Computed in double, ranked by descending score then ascending row, returned as float.
/// Tokens absent from the pool contribute nothing; a query without known tokens gets rows 0..k-1, score 0.
/// The inverted index is built once in the constructor.
///
/// Example:
/// ```
/// crossicl::BM25TopK bm25({"the cat sat", "a dog", "cat and dog"});
/// auto r = bm25.select({"Cat!"}, 1);  // r.ids = {0}
/// ```
class BM25TopK {
 public:
  explicit BM25TopK(const std::vector<std::string>& docs, BM25Options options = {});

  SelectResult select(const std::vector<std::string>& queries, std::int64_t k) const;

  /// BM25 score of every document for one query, [pool_size] (double).
  std::vector<double> scores(const std::string& query) const;

  /// The tokenisation described above.
  static std::vector<std::string> tokenize(const std::string& text);

  std::int64_t pool_size() const { return n_docs_; }
  const BM25Options& options() const { return options_; }

 private:
  struct Posting {
    std::int32_t doc;
    std::int32_t tf;
  };
  void accumulate(const std::string& query, std::vector<double>& acc) const;
  BM25Options options_;
  std::int64_t n_docs_ = 0;
  double avgdl_ = 0.0;
  std::vector<double> norm_;                       // [docs]: k1 * (1 - b + b * |d| / avgdl)
  std::unordered_map<std::string, std::int32_t> term_index_;  // token -> term number
  std::vector<std::vector<Posting>> postings_;     // [terms][docs containing the term, ascending]
  std::vector<double> idf_;                        // [terms]
};

/// The generator of RandomSelector, specified so that every platform draws the same numbers.
///
/// SplitMix64 (Steele, Lea, Flood 2014): state += 0x9E3779B97F4A7C15; z = state;
/// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)
/// (all arithmetic modulo 2^64). bounded(n) draws an unbiased integer in [0, n) by rejection: with
/// t = (2^64 - n) mod n, draw x until x >= t and return x mod n.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  std::uint64_t bounded(std::uint64_t n);  ///< n >= 1
  /// The output function alone: mix(s) is the first next() of SplitMix64(s - 0x9E3779B97F4A7C15).
  static std::uint64_t mix(std::uint64_t z);

 private:
  std::uint64_t state_;
};

/// Options of RandomSelector.
struct RandomOptions {
  std::uint64_t seed = 0;  ///< seed of the per-query generators
};

/// Seeded random selection of k distinct pool rows per query, identical on every platform.
///
/// Query q uses its own generator SplitMix64(s_q) with s_q = the (q+1)-th output of SplitMix64(seed), so a
/// query's picks do not depend on how many queries are asked. Picks are a partial Fisher-Yates shuffle of
/// 0..pool_size-1: for i = 0, 1, ...: j = i + bounded(pool_size - i), swap positions i and j, and position i
/// becomes the next pick unless it is excluded (excluded rows are skipped, not counted), until k picks.
/// The result lists the picks in draw order; scores are 0.
///
/// Example: `RandomSelector r(100, {42}); auto res = r.select(3, 4);  // 3 queries x 4 distinct rows`
class RandomSelector {
 public:
  explicit RandomSelector(std::int64_t pool_size, RandomOptions options = {});

  /// `exclude`: rows never picked for any query; `exclude_per_query`: empty or one list per query of rows not
  /// picked for that query (e.g. the query's own row when the pool is the query set).
  SelectResult select(std::int64_t n_queries, std::int64_t k, const std::vector<std::int64_t>& exclude = {},
                      const std::vector<std::vector<std::int64_t>>& exclude_per_query = {}) const;

  std::int64_t pool_size() const { return pool_size_; }
  const RandomOptions& options() const { return options_; }

 private:
  std::int64_t pool_size_;
  RandomOptions options_;
};

/// numpy's `np.random.RandomState(seed).permutation(n)`, bit for bit: MT19937 seeded by init_genrand(seed)
/// (std::mt19937 with that seed is the same generator), then the legacy shuffle of 0..n-1: for i = n-1 down to
/// 1, j = random_interval(i) and swap elements i and j, where random_interval(m) sets mask = the smallest
/// 2^b - 1 >= m and draws 32-bit outputs until (draw & mask) <= m (for m > 2^32 - 1 it draws 64-bit values
/// formed as first_draw << 32 | second_draw). The authors' `DataFrame.sample(n=k, random_state=seed)` picks
/// the first k entries of this permutation. n >= 0.
///
/// Example: `numpy_legacy_permutation(0, 8)` starts {6, 2, 1, 7}.
std::vector<std::int64_t> numpy_legacy_permutation(std::uint32_t seed, std::int64_t n);

}  // namespace crossicl
