// Datasets: examples read from JSON Lines files (plain or .gz), one object per line:
//   {"id": "Mercury_7175875", "fields": {"sentence": "..."}, "label": "C", ...any other keys...}
// `id` is a string (an integer id is kept as its decimal text); `fields` maps field names to strings;
// `label` is a string, or absent/null for an unlabelled example. Other keys are kept verbatim in `extra`.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace crossicl {

/// One example of a task: its input fields and (for labelled data) its gold label.
struct Example {
  std::string id;                             // unique within its dataset
  std::map<std::string, std::string> fields;  // raw field text, never altered
  std::optional<std::string> label;           // gold label text; empty optional = unlabelled
  nlohmann::json extra = nlohmann::json::object();  // every other key of the JSON object, as read
};

/// Reads examples from a JSON Lines file (gzip detected by content). Blank lines are skipped.
/// Throws LoadError naming the file and 1-based line for bad JSON, invalid UTF-8, a missing or mistyped
/// `id`/`fields`/`label`, and duplicate ids.
///
///   auto pool = crossicl::load_examples("sources/sst2.jsonl");
std::vector<Example> load_examples(const std::string& path);

/// Builds an Example from a parsed JSON object; `where` (e.g. "file.jsonl:12") prefixes error messages.
/// Throws InvalidArgument.
Example example_from_json(const nlohmann::json& obj, const std::string& where);

/// Parses each line of a JSON Lines file and calls `fn(object, line_number)`; errors name file and line.
void for_each_json_line(const std::string& path,
                        const std::function<void(const nlohmann::json&, std::size_t)>& fn);

}  // namespace crossicl
