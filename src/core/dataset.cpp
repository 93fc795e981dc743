#include "crossicl/core/dataset.h"

#include <unordered_set>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/io.h"
#include "detail/json.h"

namespace crossicl {

void for_each_json_line(const std::string& path,
                        const std::function<void(const nlohmann::json&, std::size_t)>& fn) {
  detail::for_each_line(path, [&](std::string_view line, std::size_t line_no) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
    const std::size_t bad = detail::find_invalid_utf8(line);
    if (bad != std::string_view::npos)
      throw LoadError(fmt::format("{}:{}: invalid UTF-8 at column {}", path, line_no, bad + 1));
    nlohmann::json obj;
    try {
      obj = detail::parse_json(line, fmt::format("{}:{}", path, line_no));
    } catch (const nlohmann::json::parse_error& e) {
      throw LoadError(fmt::format("{}:{}: malformed JSON (byte {}): {}", path, line_no, e.byte, e.what()));
    }
    if (!obj.is_object())
      throw LoadError(fmt::format("{}:{}: expected a JSON object, got {}", path, line_no, obj.type_name()));
    try {
      fn(obj, line_no);
    } catch (const InvalidArgument& e) {
      throw LoadError(e.what());
    }
  });
}

Example example_from_json(const nlohmann::json& obj, const std::string& where) {
  Example ex;
  auto id = obj.find("id");
  if (id == obj.end()) throw InvalidArgument(fmt::format("{}: missing \"id\"", where));
  if (id->is_string()) {
    ex.id = id->get<std::string>();
  } else if (id->is_number_integer()) {
    ex.id = id->dump();
  } else {
    throw InvalidArgument(fmt::format("{}: \"id\" must be a string or an integer, got {}", where, id->type_name()));
  }
  auto fields = obj.find("fields");
  if (fields == obj.end())
    throw InvalidArgument(fmt::format("{}: example '{}' has no \"fields\"", where, ex.id));
  if (!fields->is_object())
    throw InvalidArgument(fmt::format("{}: \"fields\" of example '{}' must be an object, got {}", where, ex.id,
                                      fields->type_name()));
  for (const auto& [name, value] : fields->items()) {
    if (!value.is_string())
      throw InvalidArgument(fmt::format("{}: field \"{}\" of example '{}' must be a string, got {}", where, name,
                                        ex.id, value.type_name()));
    ex.fields.emplace(name, value.get<std::string>());
  }
  auto label = obj.find("label");
  if (label != obj.end() && !label->is_null()) {
    if (!label->is_string())
      throw InvalidArgument(fmt::format("{}: \"label\" of example '{}' must be a string or null, got {}", where,
                                        ex.id, label->type_name()));
    ex.label = label->get<std::string>();
  }
  for (const auto& [key, value] : obj.items())
    if (key != "id" && key != "fields" && key != "label") ex.extra[key] = value;
  return ex;
}

std::vector<Example> load_examples(const std::string& path) {
  std::vector<Example> out;
  std::unordered_set<std::string> seen;
  for_each_json_line(path, [&](const nlohmann::json& obj, std::size_t line_no) {
    const std::string where = fmt::format("{}:{}", path, line_no);
    Example ex = example_from_json(obj, where);
    if (!seen.insert(ex.id).second) throw InvalidArgument(fmt::format("{}: duplicate id '{}'", where, ex.id));
    out.push_back(std::move(ex));
  });
  return out;
}

}  // namespace crossicl
