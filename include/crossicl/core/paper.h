// The paper preset: a directory laid out like the fixture pack of "Language Models can Exploit Cross-Task
// In-context Learning for Data-Scarce Novel Tasks" (ACL 2024): tasks.json, targets/, sources/, pseudo/,
// embeddings/. `Pack::prompt` rebuilds the prompt of any published (method, source, shots, seed, item, models)
// key from the pack's task cards, target items (with their selected demonstrations) and pseudo-label pools,
// assembled as the pack's `assembly` section says; with PromptStyle::Paper the result is byte-exact.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crossicl/core/dataset.h"
#include "crossicl/core/prompt.h"
#include "crossicl/core/task.h"

namespace crossicl::paper {

/// The published method names, in the pack's order.
const std::vector<std::string>& methods();

/// One key of a published prompt (a line of golden/<T>/prompts.jsonl.gz without the prompt).
struct Row {
  std::string target;               // target task
  std::string method;               // one of methods()
  std::string source;               // source task; "s1,s2,s3,s4" for aba-mixed-cross-sim; "" when none
  int shots = 0;                    // number of demonstrations (k)
  std::optional<int> seed;          // random-ablation demo index or pseudo-label sampling seed
  std::string id;                   // target item id
  std::vector<std::string> models;  // models of the row; pseudo-label rows use the first one's labels
};

/// A pack directory. Files are read lazily and cached; a Pack is safe to use from several threads.
///
///   crossicl::paper::Pack pack("../shared/paper");
///   std::string p = pack.prompt({"ARC-Challenge", "zero-shot", "", 0, {}, "Mercury_7175875", {}}).text;
class Pack {
 public:
  explicit Pack(std::string dir, PromptStyle style = PromptStyle::Paper);

  const std::string& dir() const { return dir_; }
  const TaskSet& tasks() const { return *tasks_; }
  const PromptBuilder& builder() const { return builder_; }
  /// Target and source task names, in tasks.json order.
  std::vector<std::string> targets() const;
  std::vector<std::string> sources() const;

  /// Test items of a target (targets/<T>.jsonl[.gz]), in published order.
  const std::vector<Example>& target_items(const std::string& target) const;
  /// One test item; throws InvalidArgument naming the id and the target.
  const Example& target_item(const std::string& target, const std::string& id) const;
  /// The r-th (0-based) most similar published demonstration of `source` for a test item (demos_top4).
  std::string demo(const std::string& target, const std::string& id, const std::string& source, int rank) const;
  /// The unlabelled pool of pseudo-label ICL (pseudo/<T>.jsonl), in pool order.
  const std::vector<Example>& pseudo_pool(const std::string& target) const;
  /// Pool positions of pseudo-label ICL: numpy RandomState(seed).permutation(n)[:k], as the authors'
  /// DataFrame.sample(n=k, random_state=seed) drew them.
  std::vector<std::int64_t> pseudo_positions(const std::string& target, int seed, int k) const;
  /// The label a pseudo-label ICL demonstration carries: the pool row's `pseudo_label` (psudo:psudo-label),
  /// its gold (psudo:true_label) or its `zero_shot` prediction (psudo:zero-shot) for `model`;
  /// an empty value is written "nan", as the published prompts have it.
  std::string pseudo_demo_label(const std::string& target, std::size_t row, const std::string& method,
                                const std::string& model) const;
  /// Source pool (sources/<S>.jsonl) in pool order; throws LoadError when the pack has none (boolq, race).
  std::vector<Example> source_pool(const std::string& source) const;

  /// The prompt of a published key. Throws InvalidArgument naming the field for an unknown method, a
  /// missing source, shots out of range for the available demonstrations, or a missing seed.
  Prompt prompt(const Row& row) const;

 private:
  template <typename T>
  using Cache = std::map<std::string, std::shared_ptr<const T>>;
  struct Items {
    std::vector<Example> items;
    std::map<std::string, std::size_t> by_id;
  };
  const Items& items(const std::string& target) const;
  std::string data_file(const std::string& stem) const;  // stem + ".jsonl" or ".jsonl.gz"

  std::string dir_;
  std::shared_ptr<const TaskSet> tasks_;
  PromptBuilder builder_;
  mutable std::mutex mutex_;
  mutable Cache<Items> targets_;
  mutable Cache<std::vector<Example>> pseudo_;
};

}  // namespace crossicl::paper
