// config.json and tokenizer.json against hostile input: nesting that crashed by recursion, values of the wrong
// JSON type or out of range, ids that sized huge tables, and FIFOs that blocked the reader. Each case must end in
// a LoadError naming the file and the value, quickly and without a large allocation.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/core/limits.h"
#include "crossicl/engine/config.h"
#include "crossicl/engine/tokenizer.h"
#include "engine_test_util.h"

using crossicl::Config;
using crossicl::LoadError;
using crossicl::Tokenizer;
using crossicl::test::TempDir;
using crossicl::test::write_file;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {

// `depth` nested arrays as JSON text.
std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// A Sequence component nested `depth` times around one step, as JSON text: {"type": "Sequence", key: [ ... ]}.
std::string nested_sequence(const std::string& key, std::size_t depth, const std::string& step) {
  std::string open, close;
  for (std::size_t i = 0; i < depth; ++i) {
    open += R"({"type": "Sequence", ")" + key + R"(": [)";
    close += "]}";
  }
  return open + step + close;
}

// A working BPE tokenizer.json: vocabulary a b ab <s> </s>, one merge.
json small_tokenizer() {
  return {{"model",
           {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"<s>", 3}, {"</s>", 4}}}, {"merges", {"a b"}}}},
          {"added_tokens", json::array({{{"id", 3}, {"content", "<s>"}, {"special", true}},
                                        {{"id", 4}, {"content", "</s>"}, {"special", true}}})}};
}

// Loads `text` as <dir>/tokenizer.json; returns the path.
std::string write_tokenizer(const TempDir& dir, const std::string& text) {
  const std::string path = dir.str("tokenizer.json");
  write_file(path, text);
  return path;
}

// The message of the LoadError that loading `path` throws ("" and a failed check when it loads).
std::string tokenizer_error(const std::string& path) {
  try {
    Tokenizer::from_file(path);
  } catch (const LoadError& e) {
    return e.what();
  }
  FAIL_CHECK("no LoadError from " << path);
  return "";
}

std::string config_error(const TempDir& dir, const json& config) {
  const std::string path = dir.str("config.json");
  write_file(path, config.dump());
  try {
    Config::from_hf_json(path);
  } catch (const LoadError& e) {
    return e.what();
  }
  FAIL_CHECK("no LoadError for " << config.dump());
  return "";
}

json with(json config, const std::string& key, json value) {
  config[key] = std::move(value);
  return config;
}

}  // namespace

TEST_CASE("config.json: deep nesting, wrong types and out-of-range values are LoadErrors", "[config]") {
  TempDir dir("cfg_hardening");
  const json base = crossicl::test::tiny_config();
  const std::string path = dir.str("config.json");
  write_file(path, base.dump());
  REQUIRE(Config::from_hf_json(path).vocab_size == 10);

  SECTION("an architectures entry nested 200,000 levels (printed by dump(), a stack overflow)") {
    std::string text = base.dump();
    text.replace(text.find("\"LlamaForCausalLM\""), 18, "\"LlamaForCausalLM\", " + nested(200000));
    write_file(path, text);
    CHECK_THROWS_WITH(Config::from_hf_json(path), Contains(path) && Contains("Limits.max_json_depth"));
    // Within the limit, a non-string entry is named in the message, shortened.
    json odd = base;
    odd["architectures"] = json::array({json::parse(nested(100))});
    CHECK_THAT(config_error(dir, with(odd, "model_type", "gpt2")),
               Contains("unsupported architecture '" + std::string(80, '[') + "...'"));
  }
  SECTION("wrong JSON types name the key (not a bare nlohmann type_error)") {
    CHECK_THAT(config_error(dir, with(base, "tie_word_embeddings", "yes")),
               Contains(path) && Contains("'tie_word_embeddings' is not a boolean (\"yes\")"));
    CHECK_THAT(config_error(dir, with(base, "hidden_act", 5)), Contains("'hidden_act' is not a string (5)"));
    CHECK_THAT(config_error(dir, with(base, "model_type", json::array())), Contains("'model_type'"));
    CHECK_THAT(config_error(dir, with(base, "rope_scaling", {{"rope_type", 3}})), Contains("'rope_type'"));
    CHECK_THAT(config_error(dir, with(base, "attention_bias", 1)), Contains("'attention_bias' is not a boolean"));
  }
  SECTION("bos/eos ids are range-checked, not truncated through int32") {
    CHECK_THAT(config_error(dir, with(base, "bos_token_id", (std::int64_t{1} << 32) + 1)),
               Contains(path) && Contains("bos_token_id") && Contains("4294967297") && Contains("vocab_size=10"));
    CHECK_THAT(config_error(dir, with(base, "eos_token_id", json::array({2, -7}))),
               Contains("eos_token_id") && Contains("-7"));
    CHECK_THAT(config_error(dir, with(base, "eos_token_id", 10)), Contains("eos_token_id") && Contains("(got 10)"));
    CHECK_THAT(config_error(dir, with(base, "eos_token_id", "</s>")), Contains("eos_token_id"));
    write_file(path, with(with(base, "bos_token_id", 1), "eos_token_id", json::array({2, 9})).dump());
    const Config c = Config::from_hf_json(path);
    CHECK(c.bos_id == 1);
    CHECK(c.eos_ids == std::vector<std::int32_t>{2, 9});
    write_file(path, with(with(base, "bos_token_id", nullptr), "eos_token_id", nullptr).dump());
    CHECK(Config::from_hf_json(path).bos_id == -1);
  }
  SECTION("original_max_position_embeddings is range-checked before the cast to int64") {
    const json scaling = {{"rope_type", "llama3"}, {"factor", 8.0}, {"original_max_position_embeddings", 1e30}};
    CHECK_THAT(config_error(dir, with(base, "rope_scaling", scaling)),
               Contains("original_max_position_embeddings") && Contains("1e+30"));
  }
  SECTION("sizes are bounded so that their products fit in int64") {
    CHECK_THAT(config_error(dir, with(base, "head_dim", std::int64_t{1} << 62)),
               Contains("head_dim must be <= 16777216") && Contains("4611686018427387904"));
    CHECK_THAT(config_error(dir, with(with(base, "head_dim", std::int64_t{1} << 20), "num_attention_heads", 64)),
               Contains("n_heads*head_dim must be <= 16777216"));
    CHECK_THAT(config_error(dir, with(base, "max_position_embeddings", std::int64_t{1} << 40)),
               Contains("max_seq_len must be <= 2147483647") && Contains("1099511627776"));
    CHECK_THAT(config_error(dir, with(base, "vocab_size", std::int64_t{1} << 22)),
               Contains("vocab_size 4194304") && Contains("Limits.max_vocab_size (2097152)"));
    CHECK_THAT(config_error(dir, with(base, "hidden_size", UINT64_MAX)),
               Contains("'hidden_size' is out of range (18446744073709551615)"));
  }
  SECTION("a FIFO named config.json is refused, not waited on") {
    const std::string fifo = dir.str("fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH(Config::from_hf_json(fifo), Contains(fifo) && Contains("not a regular file"));
  }
}

TEST_CASE("tokenizer.json: nesting is checked before the recursive loaders run", "[tokenizer]") {
  TempDir dir("tok_nesting");
  const std::string tok = small_tokenizer().dump();
  const std::string body = tok.substr(1);  // after the opening brace
  struct Case {
    const char* component;
    const char* list_key;
    const char* step;
  };
  for (const Case& c : {Case{"normalizer", "normalizers", R"({"type": "Prepend", "prepend": "a"})"},
                        Case{"pre_tokenizer", "pretokenizers", R"({"type": "Metaspace", "replacement": "a"})"},
                        Case{"decoder", "decoders", R"({"type": "Fuse"})"},
                        Case{"post_processor", "processors", R"({"type": "ByteLevel"})"}}) {
    CAPTURE(c.component);
    const std::string deep = "{\"" + std::string(c.component) + "\": " + nested_sequence(c.list_key, 100000, c.step);
    const std::string path = write_tokenizer(dir, deep + ", " + body);
    CHECK_THAT(tokenizer_error(path), Contains(path) && Contains("Limits.max_json_depth"));
    // 100 nested Sequences (200 levels) are within the limit and load as the one step they hold.
    const std::string ok = "{\"" + std::string(c.component) + "\": " + nested_sequence(c.list_key, 100, c.step);
    CHECK(Tokenizer::from_file(write_tokenizer(dir, ok + ", " + body))->vocab_size() == 5);
  }
  // Nested Sequences flatten in order: Prepend "a" then "b" gives "ba" + text.
  const std::string inner = nested_sequence("normalizers", 2, R"({"type": "Prepend", "prepend": "b"})");
  const std::string two = nested_sequence("normalizers", 3, R"({"type": "Prepend", "prepend": "a"}, )" + inner);
  auto t = Tokenizer::from_file(write_tokenizer(dir, "{\"normalizer\": " + two + ", " + body));
  CHECK(t->encode("a", false) == std::vector<std::int32_t>{1, 0, 0});  // "baa"; the other order, "aba", is ab a

  json merges = small_tokenizer();
  merges["model"]["merges"] = json::array({"a b"});
  std::string text = merges.dump();
  text.replace(text.find("[\"a b\"]"), 7, "[\"a b\", " + nested(200000) + "]");
  const std::string path = write_tokenizer(dir, text);
  CHECK_THAT(tokenizer_error(path), Contains("Limits.max_json_depth"));
  merges["model"]["merges"] = json::array({"a b", json::parse(nested(100))});  // printed shortened
  CHECK_THAT(tokenizer_error(write_tokenizer(dir, merges.dump())),
             Contains("merge 1 is neither") && Contains(std::string(80, '[') + "..."));
}

TEST_CASE("tokenizer.json: ids are checked before tables are sized by them", "[tokenizer]") {
  TempDir dir("tok_ids");
  SECTION("a vocab or added-token id above Limits.max_vocab_size") {
    json j = small_tokenizer();
    j["model"]["vocab"]["ab"] = 100000000;
    const std::string path = write_tokenizer(dir, j.dump());
    CHECK_THAT(tokenizer_error(path), Contains(path) && Contains("vocab id 100000000 of 'ab'") &&
                                          Contains("[0, 2097152) (Limits.max_vocab_size)"));
    j = small_tokenizer();
    j["added_tokens"][0]["id"] = 100000000;
    CHECK_THAT(tokenizer_error(write_tokenizer(dir, j.dump())), Contains("added token id 100000000 of '<s>'"));
    j["added_tokens"][0]["id"] = std::int64_t{0x7FFFFFFF};
    CHECK_THAT(tokenizer_error(write_tokenizer(dir, j.dump())), Contains("added token id 2147483647"));
    crossicl::Limits l = crossicl::limits();
    const crossicl::Limits saved = l;
    l.max_vocab_size = 4;  // "</s>" has id 4
    crossicl::set_limits(l);
    const std::string err = tokenizer_error(write_tokenizer(dir, small_tokenizer().dump()));
    crossicl::set_limits(saved);
    CHECK_THAT(err, Contains("vocab id 4 of '</s>'") && Contains("[0, 4)"));
  }
  SECTION("an added-token id is not truncated through int32") {
    json j = small_tokenizer();
    j["added_tokens"][0]["id"] = (std::int64_t{1} << 32) + 3;
    CHECK_THAT(tokenizer_error(write_tokenizer(dir, j.dump())), Contains("4294967299"));
    j["added_tokens"][0]["id"] = -1;
    CHECK_THAT(tokenizer_error(write_tokenizer(dir, j.dump())), Contains("added token id -1"));
    j["added_tokens"][0]["id"] = "3";
    CHECK_THAT(tokenizer_error(write_tokenizer(dir, j.dump())), Contains("added token id of '<s>' is not an integer"));
  }
  SECTION("post-processor ids must be tokens of the vocabulary") {
    json j = small_tokenizer();
    j["post_processor"] = {{"type", "TemplateProcessing"},
                           {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                   {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                           {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {3}}, {"tokens", {"<s>"}}}}}}};
    CHECK(Tokenizer::from_file(write_tokenizer(dir, j.dump()))->encode("ab", true) ==
          std::vector<std::int32_t>{3, 2});
    for (const json& bad : {json(999999), json(-7), json(std::int64_t{0x7FFFFFFF}), json("3")}) {
      j["post_processor"]["special_tokens"]["<s>"]["ids"] = json::array({bad});
      const std::string path = write_tokenizer(dir, j.dump());
      CHECK_THAT(tokenizer_error(path),
                 Contains(path) && Contains("post_processor token '<s>' has id " + bad.dump()) && Contains("[0, 5)"));
    }
    for (const char* type : {"RobertaProcessing", "BertProcessing"}) {
      json r = small_tokenizer();
      r["post_processor"] = {{"type", type}, {"cls", {"<s>", 3}}, {"sep", {"</s>", 999999}}};
      CHECK_THAT(tokenizer_error(write_tokenizer(dir, r.dump())),
                 Contains("post_processor token '</s>' has id 999999"));
      r["post_processor"]["sep"] = {"</s>", 4};
      CHECK(Tokenizer::from_file(write_tokenizer(dir, r.dump()))->encode("ab", true) ==
            std::vector<std::int32_t>{3, 2, 4});
    }
  }
}

TEST_CASE("tokenizer files: FIFOs are refused and tokenizer_config.json type errors name the file", "[tokenizer]") {
  TempDir dir("tok_files");
  const std::string fifo = dir.str("fifo.json");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THAT(tokenizer_error(fifo), Contains(fifo) && Contains("not a regular file"));
  const std::string path = write_tokenizer(dir, small_tokenizer().dump());
  const std::string cfg = dir.str("tokenizer_config.json");
  REQUIRE(::mkfifo(cfg.c_str(), 0600) == 0);  // beside tokenizer.json: read by the loader
  CHECK_THAT(tokenizer_error(path), Contains(cfg) && Contains("not a regular file"));
  std::filesystem::remove(cfg);
  write_file(cfg, R"({"add_bos_token": "yes", "bos_token": "<s>"})");
  CHECK_THAT(tokenizer_error(path), Contains(path) && Contains("type must be boolean"));
  write_file(cfg, "{\"bos_token\": " + nested(100000) + "}");
  CHECK_THAT(tokenizer_error(path), Contains(cfg) && Contains("Limits.max_json_depth"));
  write_file(cfg, R"({"add_bos_token": true, "bos_token": "<s>"})");
  CHECK(Tokenizer::from_file(path)->encode("ab", true) == std::vector<std::int32_t>{3, 2});
}
