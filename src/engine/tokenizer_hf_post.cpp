// The post-processor stage of HF tokenizer.json: the special tokens put around a single sequence
// (TemplateProcessing's "single" template, Roberta/Bert's cls/sep; ByteLevel adds none).
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/json.h"
#include "detail/tokenizer_hf.h"

namespace crossicl::detail {

namespace {

using json = nlohmann::json;

// An id the post-processor gives for token `name`: it must be a token of the vocabulary, else every encode would
// emit it (an id 999999 or -7 that no model can embed).
std::int32_t special_id(const json& id, const std::string& name, std::int32_t vocab_size, const std::string& path) {
  const bool in_range = id.is_number_unsigned() ? id.get<std::uint64_t>() < static_cast<std::uint64_t>(vocab_size)
                        : id.is_number_integer() ? id.get<std::int64_t>() >= 0 && id.get<std::int64_t>() < vocab_size
                                                 : false;
  if (!in_range)
    throw LoadError(fmt::format("tokenizer file '{}': post_processor token '{}' has id {}, not a token id in [0, {})",
                                path, name, short_dump(id), vocab_size));
  return static_cast<std::int32_t>(id.get<std::int64_t>());
}

// Appends the ids of template token `name`: from the template's special_tokens, else looked up by content.
void add_template_token(const json& special_tokens, const std::string& name, const std::string& path,
                        const TokenLookup& find_token, std::int32_t vocab_size, std::vector<std::int32_t>& out) {
  if (special_tokens.is_object() && special_tokens.contains(name)) {
    for (const json& id : special_tokens[name].at("ids")) out.push_back(special_id(id, name, vocab_size, path));
    return;
  }
  const std::int32_t id = find_token(name);
  if (id < 0) {
    throw LoadError(fmt::format("tokenizer file '{}': post_processor token '{}' is unknown", path, name));
  }
  out.push_back(id);
}

// The special tokens of the "single" template: those before the sequence go to the prefix, the rest to the suffix.
void load_template(const json& p, const std::string& path, const TokenLookup& find_token, std::int32_t vocab_size,
                   PostProcessor& out) {
  const json empty = json::object();
  const json& special = p.contains("special_tokens") ? p["special_tokens"] : empty;
  bool seen_sequence = false;
  for (const json& item : p.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
    } else if (item.contains("SpecialToken")) {
      add_template_token(special, item["SpecialToken"].at("id").get<std::string>(), path, find_token, vocab_size,
                         seen_sequence ? out.suffix : out.prefix);
    }
  }
  out.has_template = true;
}

}  // namespace

void load_post_processor(const json& p, const std::string& path, const TokenLookup& find_token,
                         std::int32_t vocab_size, PostProcessor& out) {
  for_each_step(p, "processors", [&](const json& step) {
    if (step.is_null()) return;
    const std::string type = type_of(step);
    if (type == "TemplateProcessing") {
      load_template(step, path, find_token, vocab_size, out);
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      // cls and sep are [content, id] pairs.
      const json& cls = step.at("cls");
      const json& sep = step.at("sep");
      auto name = [](const json& t) { return t.is_string() ? t.get<std::string>() : short_dump(t); };
      out.prefix.push_back(special_id(cls.at(1), name(cls.at(0)), vocab_size, path));
      out.suffix.push_back(special_id(sep.at(1), name(sep.at(0)), vocab_size, path));
      out.has_template = true;
    } else if (type != "ByteLevel") {
      throw LoadError(fmt::format("tokenizer file '{}': post_processor type '{}' is not supported", path, type));
    }
  });
}

void PostProcessor::add_prefix(std::vector<std::int32_t>& ids, std::vector<TokenOffset>* offs) const {
  for (std::int32_t id : prefix) {
    ids.push_back(id);
    if (offs) offs->emplace_back(0, 0);
  }
}

void PostProcessor::add_suffix(std::vector<std::int32_t>& ids, std::vector<TokenOffset>* offs,
                               std::size_t n) const {
  for (std::int32_t id : suffix) {
    ids.push_back(id);
    if (offs) offs->emplace_back(n, n);
  }
}

}  // namespace crossicl::detail
