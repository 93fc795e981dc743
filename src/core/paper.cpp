#include "crossicl/core/paper.h"

#include <filesystem>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/core/select.h"
#include "detail/json.h"

namespace crossicl::paper {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  for (;;) {
    std::size_t next = s.find(sep, pos);
    out.push_back(s.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return out;
}

const nlohmann::json& field(const Example& ex, const char* key, const std::string& where) {
  auto it = ex.extra.find(key);
  if (it == ex.extra.end()) throw LoadError(fmt::format("{}: item '{}' has no \"{}\"", where, ex.id, key));
  return *it;
}

// A string of an item's pack data (a demonstration, a pseudo-label); another JSON type is a LoadError naming the
// file, the item and the key rather than nlohmann's bare type_error.
const std::string& pack_string(const nlohmann::json& v, const std::string& where, const Example& ex,
                               const std::string& key) {
  if (!v.is_string())
    throw LoadError(fmt::format("{}: item '{}': {} must be a string, got {} {}", where, ex.id, key, v.type_name(),
                                detail::short_dump(v)));
  return v.get_ref<const std::string&>();
}

}  // namespace

const std::vector<std::string>& methods() {
  static const std::vector<std::string> m = {"zero-shot",
                                             "in-task",
                                             "totally-cross-sim",
                                             "in-n-cross-sim",
                                             "aba-mixed-cross-sim",
                                             "aba-mixed-cross-sim-random",
                                             "psudo:psudo-label",
                                             "psudo:true_label",
                                             "psudo:zero-shot"};
  return m;
}

Pack::Pack(std::string dir, PromptStyle style)
    : dir_(std::move(dir)),
      tasks_(std::make_shared<const TaskSet>(load_tasks(dir_ + "/tasks.json"))),
      builder_(tasks_, PromptOptions{style, kInputFamily}) {}

std::vector<std::string> Pack::targets() const {
  std::vector<std::string> out;
  for (const auto& n : tasks_->names())
    if (tasks_->task(n).role == "target") out.push_back(n);
  return out;
}

std::vector<std::string> Pack::sources() const {
  std::vector<std::string> out;
  for (const auto& n : tasks_->names())
    if (tasks_->task(n).role == "source") out.push_back(n);
  return out;
}

std::string Pack::data_file(const std::string& stem) const {
  for (const char* ext : {".jsonl", ".jsonl.gz"}) {
    std::string p = dir_ + "/" + stem + ext;
    if (std::filesystem::exists(p)) return p;
  }
  throw LoadError(fmt::format("{}: no {}.jsonl or {}.jsonl.gz", dir_, stem, stem));
}

const Pack::Items& Pack::items(const std::string& target) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = targets_.find(target);
  if (it != targets_.end()) return *it->second;
  if (tasks_->task(target).role != "target")
    throw InvalidArgument(fmt::format("'{}' is not a target task of the pack", target));
  auto loaded = std::make_shared<Items>();
  loaded->items = load_examples(data_file("targets/" + target));
  for (std::size_t i = 0; i < loaded->items.size(); ++i) loaded->by_id.emplace(loaded->items[i].id, i);
  return *(targets_[target] = std::move(loaded));
}

const std::vector<Example>& Pack::target_items(const std::string& target) const { return items(target).items; }

const Example& Pack::target_item(const std::string& target, const std::string& id) const {
  const Items& it = items(target);
  auto f = it.by_id.find(id);
  if (f == it.by_id.end()) throw InvalidArgument(fmt::format("no item '{}' in target '{}'", id, target));
  return it.items[f->second];
}

std::string Pack::demo(const std::string& target, const std::string& id, const std::string& source, int rank) const {
  tasks_->task(source);  // an unknown source is named as such, not as a missing demonstration
  const Example& item = target_item(target, id);
  const std::string where = dir_ + "/targets/" + target;
  const auto& top = field(item, "demos_top4", where);
  if (!top.is_object())
    throw LoadError(fmt::format("{}: item '{}': demos_top4 must be an object, got {}", where, id, top.type_name()));
  auto s = top.find(source);
  if (s == top.end())
    throw InvalidArgument(fmt::format("item '{}' of '{}' has no demonstrations of source '{}'", id, target, source));
  if (!s->is_array())
    throw LoadError(fmt::format("{}: item '{}': demos_top4.{} must be a list, got {}", where, id, source,
                                s->type_name()));
  if (rank < 0 || static_cast<std::size_t>(rank) >= s->size())
    throw InvalidArgument(fmt::format("demonstration rank must be in [0, {}) (rank={}, source '{}')", s->size(), rank,
                                      source));
  return pack_string((*s)[static_cast<std::size_t>(rank)], where, item, fmt::format("demos_top4.{}[{}]", source, rank));
}

const std::vector<Example>& Pack::pseudo_pool(const std::string& target) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pseudo_.find(target);
  if (it != pseudo_.end()) return *it->second;
  tasks_->task(target);
  auto pool = std::make_shared<const std::vector<Example>>(load_examples(data_file("pseudo/" + target)));
  return *(pseudo_[target] = std::move(pool));
}

std::vector<std::int64_t> Pack::pseudo_positions(const std::string& target, int seed, int k) const {
  const auto n = static_cast<std::int64_t>(pseudo_pool(target).size());
  if (k < 0 || k > n) throw InvalidArgument(fmt::format("k must be <= pool size (k={}, pool={})", k, n));
  if (seed < 0) throw InvalidArgument(fmt::format("seed must be >= 0 (seed={})", seed));
  auto perm = numpy_legacy_permutation(static_cast<std::uint32_t>(seed), n);
  perm.resize(static_cast<std::size_t>(k));
  return perm;
}

std::string Pack::pseudo_demo_label(const std::string& target, std::size_t row, const std::string& method,
                                    const std::string& model) const {
  const auto& pool = pseudo_pool(target);
  if (row >= pool.size()) throw InvalidArgument(fmt::format("pseudo pool row {} out of range (pool={})", row, pool.size()));
  const Example& ex = pool[row];
  std::string value;
  if (method == "psudo:true_label") {
    value = ex.label.value_or("");
  } else {
    const char* key = method == "psudo:psudo-label" ? "pseudo_label" : method == "psudo:zero-shot" ? "zero_shot" : nullptr;
    if (!key) throw InvalidArgument(fmt::format("'{}' is not a pseudo-label method", method));
    const std::string where = dir_ + "/pseudo/" + target;
    const auto& models = field(ex, "models", where);
    if (!models.is_object())
      throw LoadError(fmt::format("{}: item '{}': models must be an object, got {}", where, ex.id, models.type_name()));
    auto m = models.find(model);
    if (m == models.end())
      throw InvalidArgument(fmt::format("pseudo pool of '{}' has no predictions of model '{}'", target, model));
    const std::string name = fmt::format("models.{}.{}", model, key);
    if (!m->is_object() || !m->contains(key))
      throw LoadError(fmt::format("{}: item '{}' has no {}", where, ex.id, name));
    value = pack_string(m->at(key), where, ex, name);
  }
  return value.empty() ? "nan" : value;  // pandas wrote an empty cell as "nan" into the published prompts
}

std::vector<Example> Pack::source_pool(const std::string& source) const {
  tasks_->task(source);
  return load_examples(data_file("sources/" + source));
}

Prompt Pack::prompt(const Row& row) const {
  const std::string& t = row.target;
  const Example& item = target_item(t, row.id);
  const std::string& m = row.method;
  auto need_source = [&] {
    if (row.source.empty()) throw InvalidArgument(fmt::format("method '{}' needs a source (row id '{}')", m, row.id));
  };
  auto need_seed = [&] {
    if (!row.seed) throw InvalidArgument(fmt::format("method '{}' needs a seed (row id '{}')", m, row.id));
  };
  if (m == "zero-shot") return builder_.zero_shot(t, item);
  if (m == "in-task") return builder_.in_task(t, item);
  if (m == "totally-cross-sim") {
    need_source();
    if (row.shots < 1) throw InvalidArgument(fmt::format("totally-cross-sim needs shots >= 1 (shots={})", row.shots));
    std::vector<std::string> demos;
    for (int r = 0; r < row.shots; ++r) demos.push_back(demo(t, row.id, row.source, r));
    return builder_.cross_task(t, item, row.source, demos);
  }
  if (m == "in-n-cross-sim") {
    need_source();
    return builder_.in_and_cross(t, item, row.source, demo(t, row.id, row.source, 0));
  }
  if (m == "aba-mixed-cross-sim") {
    need_source();
    std::vector<SourceBlock> blocks;
    for (const auto& s : split(row.source, ',')) blocks.push_back({s, {demo(t, row.id, s, 0)}});
    return builder_.mixed_cross(t, item, blocks);
  }
  if (m == "aba-mixed-cross-sim-random") {
    need_source();
    need_seed();
    return builder_.random_ablation(t, item, row.source, std::to_string(*row.seed));
  }
  if (m == "psudo:psudo-label" || m == "psudo:true_label" || m == "psudo:zero-shot") {
    need_seed();
    if (row.models.empty() && m != "psudo:true_label")
      throw InvalidArgument(fmt::format("method '{}' needs the model whose labels to use (row id '{}')", m, row.id));
    const std::string model = row.models.empty() ? "" : row.models.front();
    const auto& pool = pseudo_pool(t);
    std::vector<Example> demos;
    std::vector<std::string> labels;
    for (std::int64_t pos : pseudo_positions(t, *row.seed, row.shots)) {
      demos.push_back(pool[static_cast<std::size_t>(pos)]);
      labels.push_back(pseudo_demo_label(t, static_cast<std::size_t>(pos), m, model));
    }
    return builder_.pseudo_label(t, item, demos, labels);
  }
  std::string known;
  for (const auto& n : methods()) known += (known.empty() ? "" : ", ") + n;
  throw InvalidArgument(fmt::format("unknown method '{}' (known: {})", m, known));
}

}  // namespace crossicl::paper
