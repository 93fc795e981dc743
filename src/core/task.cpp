#include "crossicl/core/task.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/io.h"
#include "detail/json.h"

namespace crossicl {

namespace {

constexpr char kSep = '\x1f';

std::string key(const std::string& family, const std::string& id) { return family + kSep + id; }

std::string want_string(const nlohmann::ordered_json& obj, const char* name, const std::string& where, bool required) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) {
    if (required) throw InvalidArgument(fmt::format("{}: missing \"{}\"", where, name));
    return "";
  }
  if (!it->is_string())
    throw InvalidArgument(fmt::format("{}: \"{}\" must be a string, got {}", where, name, it->type_name()));
  return it->get<std::string>();
}

std::vector<std::string> want_strings(const nlohmann::ordered_json& obj, const char* name, const std::string& where) {
  std::vector<std::string> out;
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array())
    throw InvalidArgument(fmt::format("{}: \"{}\" must be a list of strings, got {}", where, name, it->type_name()));
  for (std::size_t i = 0; i < it->size(); ++i) {
    const auto& v = (*it)[i];
    if (!v.is_string())
      throw InvalidArgument(fmt::format("{}: \"{}\"[{}] must be a string, got {}", where, name, i, v.type_name()));
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::map<std::string, std::string> want_fields(const nlohmann::ordered_json& obj, const std::string& where) {
  std::map<std::string, std::string> out;
  auto it = obj.find("fields");
  if (it == obj.end()) return out;
  if (!it->is_object())
    throw InvalidArgument(fmt::format("{}: \"fields\" must be an object, got {}", where, it->type_name()));
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string())
      throw InvalidArgument(fmt::format("{}: field \"{}\" must be a string, got {}", where, k, v.type_name()));
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

FixedDemo parse_demo(const nlohmann::ordered_json& obj, const std::string& where) {
  if (!obj.is_object()) throw InvalidArgument(fmt::format("{}: must be an object, got {}", where, obj.type_name()));
  FixedDemo d;
  d.instruction = want_string(obj, "instruction", where, false);
  d.fields = want_fields(obj, where);
  d.label = want_string(obj, "label", where, false);
  d.text = want_string(obj, "text", where, false);
  return d;
}

const std::set<std::string>& known_task_keys() {
  static const std::set<std::string> keys = {"role", "instruction", "prompt_template_id", "input_fields",
                                             "label_space", "in_task_demo", "random_ablation_demos",
                                             "template", "templates"};
  return keys;
}

}  // namespace

TaskSet TaskSet::from_json(const nlohmann::ordered_json& doc, const std::string& where) {
  TaskSet set;
  if (!doc.is_object()) throw InvalidArgument(fmt::format("{}: expected a JSON object at the top", where));
  detail::check_value_depth(doc, where);  // the extra keys and "assembly" are copied below, recursively
  auto templates = doc.find("templates");
  if (templates != doc.end()) {
    if (!templates->is_object())
      throw InvalidArgument(fmt::format("{}: \"templates\" must be an object", where));
    for (const auto& [family, value] : templates->items()) {
      if (family == "notes") continue;  // documentation of the families, not a family
      const std::string fw = fmt::format("{}: templates.{}", where, family);
      if (value.is_string()) {
        set.family_text_[family]["*"] = value.get<std::string>();
      } else if (value.is_object()) {
        for (const auto& [id, text] : value.items()) {
          if (!text.is_string())
            throw InvalidArgument(fmt::format("{}.{} must be a string, got {}", fw, id, text.type_name()));
          set.family_text_[family][id] = text.get<std::string>();
        }
      } else {
        throw InvalidArgument(fmt::format("{} must be a string or an object of strings", fw));
      }
    }
  }
  if (!set.family_text_.count("definition_line")) set.family_text_["definition_line"]["*"] = "Definition: {instruction}\n";
  for (const auto& [family, ids] : set.family_text_)
    for (const auto& [id, text] : ids) set.parsed_.emplace(key(family, id), Template(text, family + "/" + id));

  auto tasks = doc.find("tasks");
  if (tasks == doc.end() || !tasks->is_object())
    throw InvalidArgument(fmt::format("{}: missing \"tasks\" object", where));
  for (const auto& [name, card] : tasks->items()) {
    const std::string tw = fmt::format("{}: task '{}'", where, name);
    if (!card.is_object()) throw InvalidArgument(fmt::format("{} must be an object", tw));
    Task t;
    t.name = name;
    t.role = want_string(card, "role", tw, false);
    t.instruction = want_string(card, "instruction", tw, true);
    t.template_id = want_string(card, "prompt_template_id", tw, false);
    t.input_fields = want_strings(card, "input_fields", tw);
    t.label_space = want_strings(card, "label_space", tw);
    if (auto it = card.find("in_task_demo"); it != card.end() && !it->is_null())
      t.in_task_demo = parse_demo(*it, tw + " in_task_demo");
    if (auto it = card.find("random_ablation_demos"); it != card.end() && !it->is_null()) {
      if (!it->is_object()) throw InvalidArgument(fmt::format("{}: \"random_ablation_demos\" must be an object", tw));
      for (const auto& [seed, demo] : it->items())
        t.random_ablation_demos.emplace(seed, parse_demo(demo, fmt::format("{} random_ablation_demos.{}", tw, seed)));
    }
    if (auto it = card.find("template"); it != card.end() && !it->is_null()) {
      if (!it->is_string()) throw InvalidArgument(fmt::format("{}: \"template\" must be a string", tw));
      t.templates[kInputFamily] = it->get<std::string>();
    }
    if (auto it = card.find("templates"); it != card.end() && !it->is_null()) {
      if (!it->is_object()) throw InvalidArgument(fmt::format("{}: \"templates\" must be an object", tw));
      for (const auto& [family, text] : it->items()) {
        if (!text.is_string())
          throw InvalidArgument(fmt::format("{}: templates.{} must be a string", tw, family));
        t.templates[family] = text.get<std::string>();
      }
    }
    for (const auto& [family, text] : t.templates)
      set.parsed_.emplace(key(family, "@" + name), Template(text, fmt::format("{}/{}", family, name)));
    for (const auto& [k, v] : card.items())
      if (!known_task_keys().count(k)) t.extra[k] = nlohmann::json(v);
    set.order_.push_back(name);
    set.tasks_.emplace(name, std::move(t));
    // Every task must be renderable as input; its placeholders default the input fields.
    const Template& input = set.template_for(kInputFamily, name);
    Task& stored = set.tasks_.at(name);
    if (stored.input_fields.empty()) stored.input_fields = input.placeholders();
    for (const auto& p : input.placeholders())
      if (std::find(stored.input_fields.begin(), stored.input_fields.end(), p) == stored.input_fields.end())
        throw InvalidArgument(fmt::format("{}: template '{}' uses field '{}' not listed in input_fields", tw,
                                          input.name(), p));
  }
  if (auto it = doc.find("assembly"); it != doc.end()) set.assembly_ = nlohmann::json(*it);
  return set;
}

const Task& TaskSet::task(const std::string& name) const {
  auto it = tasks_.find(name);
  if (it == tasks_.end()) {
    std::string known;
    for (const auto& n : order_) known += (known.empty() ? "" : ", ") + n;
    throw InvalidArgument(fmt::format("unknown task '{}' (known: {})", name, known));
  }
  return it->second;
}

bool TaskSet::has_template(const std::string& family, const std::string& task_name) const {
  const Task& t = task(task_name);
  return parsed_.count(key(family, "@" + task_name)) ||
         (!t.template_id.empty() && parsed_.count(key(family, t.template_id))) || parsed_.count(key(family, "*"));
}

const Template& TaskSet::template_for(const std::string& family, const std::string& task_name) const {
  const Task& t = task(task_name);
  if (auto it = parsed_.find(key(family, "@" + task_name)); it != parsed_.end()) return it->second;
  if (!t.template_id.empty())
    if (auto it = parsed_.find(key(family, t.template_id)); it != parsed_.end()) return it->second;
  if (auto it = parsed_.find(key(family, "*")); it != parsed_.end()) return it->second;
  if (!family_text_.count(family) && !t.templates.count(family))
    throw InvalidArgument(fmt::format("unknown template family '{}' (task '{}')", family, task_name));
  throw InvalidArgument(fmt::format("no template of family '{}' for task '{}' (template id '{}')", family,
                                    task_name, t.template_id));
}

std::string TaskSet::render_input(const std::string& task_name, const std::map<std::string, std::string>& fields,
                                  const std::string& what, const std::string& family) const {
  return template_for(family, task_name).render(fields, what);
}

std::string TaskSet::definition(const std::string& task_name) const {
  return template_for("definition_line", task_name).render({{"instruction", task(task_name).instruction}});
}

TaskSet load_tasks(const std::string& path) {
  const std::string text = detail::read_file(path);
  nlohmann::ordered_json doc;  // ordered: task names keep file order
  try {
    doc = detail::parse_ordered_json(text, path);  // depth-checked: the card copies below recurse
  } catch (const nlohmann::json::parse_error& e) {
    throw LoadError(fmt::format("{}: malformed JSON at byte {}: {}", path, e.byte, e.what()));
  }
  try {
    return TaskSet::from_json(doc, path);
  } catch (const InvalidArgument& e) {
    throw LoadError(e.what());
  }
}

}  // namespace crossicl
