// Tokenizers: llama.cpp's LLaMA test vectors through tokenizer.model (SentencePiece) and through a
// tokenizer.json built from the same vocabulary (BPE with byte fallback), offsets, the hand-written
// pre-tokenizer regexes, byte-level BPE and the error cases.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/engine/tokenizer.h"
#include "detail/tokenizer_pretok.h"
#include "detail/unicode_class.h"
#include "detail/utf8.h"
#include "../test_data.h"

namespace fs = std::filesystem;

// The exception type and its message (Catch2 v2 matches messages of std::exception only through what()).
#define CHECK_THROWS_TYPE_WITH(expr, type, matcher) \
  do {                                              \
    CHECK_THROWS_AS(expr, type);                    \
    CHECK_THROWS_WITH(expr, matcher);               \
  } while (false)
using crossicl::Tokenizer;
using json = nlohmann::json;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Vectors {
  std::vector<std::string> inputs;
  std::vector<std::vector<std::int32_t>> expected;
};

Vectors load_vectors(const std::string& base) {
  Vectors v;
  const std::string inp = read_file(base + ".inp"), out = read_file(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::size_t k = 0;
  while (true) {
    const std::size_t m = inp.find(sep, k);
    v.inputs.push_back(inp.substr(k, m == std::string::npos ? std::string::npos : m - k));
    if (m == std::string::npos) break;
    k = m + sep.size();
  }
  // A trailing separator leaves an empty last input that has no expected line.
  if (!v.inputs.empty() && v.inputs.back().empty()) v.inputs.pop_back();
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream ids(line);
    std::vector<std::int32_t> row;
    std::int32_t id;
    while (ids >> id) row.push_back(id);
    v.expected.push_back(row);
  }
  v.expected.resize(v.inputs.size());
  return v;
}

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("crossicl_tok_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// LLaMA's tokenizer.json rebuilt from llama2.c's tokenizer.bin (pieces + scores of tokenizer.model): BPE whose
// merge ranks follow the scores of the merged pieces, as SentencePiece's BPE merges. Merges as [a, b] pairs.
std::string llama_json_from_bin(const std::string& bin_path) {
  const std::string bytes = read_file(bin_path);
  std::size_t at = 4;  // max_token_length
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (at + 8 <= bytes.size()) {
    float score;
    std::int32_t len;
    std::memcpy(&score, bytes.data() + at, 4);
    std::memcpy(&len, bytes.data() + at + 4, 4);
    at += 8;
    std::string p = bytes.substr(at, static_cast<std::size_t>(len));
    at += static_cast<std::size_t>(len);
    std::string q;  // llama2.c's export wrote U+2581 as ' '
    for (char c : p) q += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    pieces.push_back(q);
    scores.push_back(score);
  }
  pieces[1] = "<s>";
  pieces[2] = "</s>";
  std::map<std::string, std::int32_t> vocab;
  for (std::size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = static_cast<std::int32_t>(i);
  struct M {
    float score;
    std::int32_t id, l, r;
  };
  std::vector<M> merges;
  for (std::size_t i = 259; i < pieces.size(); ++i) {  // normal pieces (after <unk> <s> </s> and 256 bytes)
    const std::string& p = pieces[i];
    for (std::size_t k = 1; k < p.size(); ++k) {
      if ((static_cast<unsigned char>(p[k]) & 0xC0) == 0x80) continue;  // split at character boundaries
      auto l = vocab.find(p.substr(0, k)), r = vocab.find(p.substr(k));
      if (l != vocab.end() && r != vocab.end() && l->second >= 259 && r->second >= 259) {
        merges.push_back({scores[i], static_cast<std::int32_t>(i), l->second, r->second});
      }
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const M& a, const M& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.id != b.id) return a.id < b.id;
    return a.l != b.l ? a.l < b.l : a.r < b.r;
  });
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array();
  for (int i = 0; i < 3; ++i) {
    j["added_tokens"].push_back({{"id", i}, {"content", pieces[i]}, {"special", true}, {"normalized", false}});
  }
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  json v = json::object();
  for (std::size_t i = 0; i < pieces.size(); ++i) v[pieces[i]] = i;
  json m = json::array();
  for (const M& x : merges) m.push_back({pieces[x.l], pieces[x.r]});
  j["model"] = {{"type", "BPE"},       {"unk_token", "<unk>"}, {"fuse_unk", true},
                {"byte_fallback", true}, {"vocab", v},           {"merges", m}};
  return j.dump();
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

// Every byte of `text` lies in some token's span; spans are ordered and inside the text.
void check_offsets_cover(const std::string& text, const std::vector<crossicl::TokenOffset>& offsets) {
  std::vector<bool> covered(text.size(), false);
  std::size_t last_begin = 0;
  for (const auto& [b, e] : offsets) {
    REQUIRE(b <= e);
    REQUIRE(e <= text.size());
    REQUIRE(b >= last_begin);
    last_begin = b;
    for (std::size_t k = b; k < e; ++k) covered[k] = true;
  }
  for (std::size_t k = 0; k < text.size(); ++k) {
    INFO("byte " << k << " of '" << text << "'");
    REQUIRE(covered[k]);
  }
}

}  // namespace

TEST_CASE("Tokenizer: llama test vectors through tokenizer.model and an equivalent tokenizer.json",
          "[tokenizer][model]") {
  const std::string dir = crossicl::test::shared_path("models/llama2");
  if (dir.empty()) return;
  const Vectors v = load_vectors(dir + "/ggml-vocab-llama-spm.gguf");
  REQUIRE(v.inputs.size() == 46);  // the .inp file ends with a separator

  const fs::path tmp = temp_dir("llama");
  const std::string json_path = (tmp / "tokenizer.json").string();
  write_file(json_path, llama_json_from_bin(dir + "/tokenizer.bin"));

  for (const std::string& path : {dir + "/tokenizer.model", json_path}) {
    auto tok = Tokenizer::from_file(path);
    INFO(path);
    CHECK(tok->vocab_size() == 32000);
    CHECK(tok->bos_id() == 1);
    CHECK(tok->eos_id() == 2);
    CHECK(tok->piece(15043) == "\xE2\x96\x81Hello");
    for (std::size_t i = 0; i < v.inputs.size(); ++i) {
      const std::string& text = v.inputs[i];
      INFO("input " << i << ": '" << text << "'");
      const auto ids = tok->encode(text, /*bos=*/false);
      CHECK(ids == v.expected[i]);
      CHECK(tok->decode(ids) == text);
      auto with_bos = tok->encode(text, /*bos=*/true, /*eos=*/true);
      REQUIRE(with_bos.size() == ids.size() + 2);
      CHECK(with_bos.front() == 1);
      CHECK(with_bos.back() == 2);
      CHECK(tok->decode(with_bos) == text);

      std::vector<crossicl::TokenOffset> offsets;
      const auto ids2 = tok->encode_with_offsets(text, offsets, /*bos=*/true);
      REQUIRE(ids2.size() == offsets.size());
      CHECK(ids2.front() == 1);
      CHECK(offsets.front().first == offsets.front().second);
      CHECK(std::vector<std::int32_t>(ids2.begin() + 1, ids2.end()) == ids);
      check_offsets_cover(text, offsets);
    }
    CHECK(tok->encode("", true) == std::vector<std::int32_t>{1});
    CHECK(tok->encode("", false).empty());
    std::vector<crossicl::TokenOffset> offsets;
    CHECK(tok->encode_with_offsets("", offsets, false).empty());
    CHECK(offsets.empty());
    CHECK(tok->decode({}).empty());
    CHECK(tok->decode({1, 15043, 2}, /*keep_special=*/true) == "<s> Hello</s>");
  }
  fs::remove_all(tmp);
}

TEST_CASE("Tokenizer: llama test vectors through a vocabulary given as arrays (GGUF style)", "[tokenizer][model]") {
  const std::string dir = crossicl::test::shared_path("models/llama2");
  if (dir.empty()) return;
  const Vectors v = load_vectors(dir + "/ggml-vocab-llama-spm.gguf");
  // tokenizer.bin holds the pieces and scores of tokenizer.model.
  const json j = json::parse(llama_json_from_bin(dir + "/tokenizer.bin"));
  crossicl::VocabArrays arrays;
  arrays.tokens.resize(j["model"]["vocab"].size());
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
    arrays.tokens[it.value().get<std::size_t>()] = it.key();
  }
  const std::string bin = read_file(dir + "/tokenizer.bin");
  std::size_t at = 4;
  while (at + 8 <= bin.size()) {
    float score;
    std::int32_t len;
    std::memcpy(&score, bin.data() + at, 4);
    std::memcpy(&len, bin.data() + at + 4, 4);
    arrays.scores.push_back(score);
    at += 8 + static_cast<std::size_t>(len);
  }
  REQUIRE(arrays.scores.size() == arrays.tokens.size());
  arrays.token_types.assign(arrays.tokens.size(), 1);
  arrays.token_types[0] = 2;
  arrays.token_types[1] = arrays.token_types[2] = 3;
  for (int b = 3; b < 259; ++b) arrays.token_types[b] = 6;
  arrays.bos_id = 1;
  arrays.eos_id = 2;
  arrays.unk_id = 0;
  auto tok = Tokenizer::from_vocab(arrays);
  CHECK(tok->vocab_size() == 32000);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  for (std::size_t i = 0; i < v.inputs.size(); ++i) {
    INFO("input " << i << ": '" << v.inputs[i] << "'");
    const auto ids = tok->encode(v.inputs[i], false);
    CHECK(ids == v.expected[i]);
    CHECK(tok->decode(ids) == v.inputs[i]);
  }
  CHECK(tok->encode("Hello", true, true) == std::vector<std::int32_t>{1, 15043, 2});

  arrays.scores.pop_back();
  CHECK_THROWS_TYPE_WITH(Tokenizer::from_vocab(arrays), crossicl::LoadError, Catch::Matchers::Contains("31999 scores"));
  arrays.scores.push_back(0.0f);
  arrays.bos_id = 32000;
  CHECK_THROWS_TYPE_WITH(Tokenizer::from_vocab(arrays), crossicl::LoadError, Catch::Matchers::Contains("bos_id 32000"));
  arrays.bos_id = 1;
  arrays.model = "bert";
  CHECK_THROWS_TYPE_WITH(Tokenizer::from_vocab(arrays), crossicl::LoadError, Catch::Matchers::Contains("bert"));
}

TEST_CASE("Tokenizer: stories260K tok512.model", "[tokenizer][model]") {
  const std::string path = crossicl::test::shared_path("models/stories260K/tok512.model");
  if (path.empty()) return;
  auto tok = Tokenizer::from_file(path);
  CHECK(tok->vocab_size() == 512);
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  const auto ids = tok->encode(text);
  REQUIRE(ids.size() > 5);
  CHECK(ids.front() == tok->bos_id());
  CHECK(tok->decode(ids) == text);
  // Characters outside the 512 pieces go through byte fallback and come back intact.
  CHECK(tok->decode(tok->encode("caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD")) == "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD");
}

TEST_CASE("Tokenizer: errors name the input and the file", "[tokenizer][model]") {
  const std::string path = crossicl::test::shared_path("models/llama2/tokenizer.model");
  if (path.empty()) return;
  auto tok = Tokenizer::from_file(path);
  SECTION("invalid UTF-8") {
    for (const std::string& bad : {std::string("abc\xFFxyz"), std::string("abc\xC3"), std::string("abc\xED\xA0\x80"),
                                  std::string("abc\xC0\xAF")}) {
      CHECK_THROWS_TYPE_WITH(tok->encode(bad), crossicl::InvalidArgument,
                           Catch::Matchers::Contains("UTF-8") && Catch::Matchers::Contains("offset 3"));
    }
  }
  SECTION("ids out of range") {
    CHECK_THROWS_TYPE_WITH(tok->decode({1, 32000}), crossicl::InvalidArgument,
                         Catch::Matchers::Contains("32000") && Catch::Matchers::Contains("vocab size 32000"));
    CHECK_THROWS_AS(tok->decode({-1}), crossicl::InvalidArgument);
    CHECK_THROWS_AS(tok->piece(32000), crossicl::InvalidArgument);
  }
  SECTION("bad files") {
    const fs::path tmp = temp_dir("bad");
    const std::string missing = (tmp / "nope.model").string();
    CHECK_THROWS_TYPE_WITH(Tokenizer::from_file(missing), crossicl::LoadError, Catch::Matchers::Contains(missing));
    const std::string garbage = (tmp / "garbage.model").string();
    write_file(garbage, "\x01\x02 not a model");
    CHECK_THROWS_TYPE_WITH(Tokenizer::from_file(garbage), crossicl::LoadError, Catch::Matchers::Contains(garbage));
    const std::string bad_json = (tmp / "bad.json").string();
    write_file(bad_json, "{\"model\": {\"type\": \"BPE\", ");
    CHECK_THROWS_TYPE_WITH(Tokenizer::from_file(bad_json), crossicl::LoadError, Catch::Matchers::Contains(bad_json));
    for (const char* type : {"WordPiece", "Unigram"}) {
      const std::string p = (tmp / (std::string(type) + ".json")).string();
      write_file(p, json{{"model", {{"type", type}, {"vocab", json::object()}}}}.dump());
      CHECK_THROWS_TYPE_WITH(Tokenizer::from_file(p), crossicl::LoadError,
                           Catch::Matchers::Contains(p) && Catch::Matchers::Contains(type));
    }
    const std::string bad_merge = (tmp / "merge.json").string();
    const json merge_doc{{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", {"a b"}}}}};
    write_file(bad_merge, merge_doc.dump());
    CHECK_THROWS_TYPE_WITH(Tokenizer::from_file(bad_merge), crossicl::LoadError,
                         Catch::Matchers::Contains(bad_merge) && Catch::Matchers::Contains("merge 0"));
    fs::remove_all(tmp);
  }
}

TEST_CASE("Tokenizer: pre-tokenizer regexes split as Oniguruma does", "[tokenizer]") {
  using crossicl::detail::SplitPattern;
  auto split = [](SplitPattern p, const std::string& s) {
    std::vector<std::string> out;
    for (const auto& [b, e] : crossicl::detail::split_by_pattern(p, s)) out.push_back(s.substr(b, e - b));
    return out;
  };
  const std::string a = "Hello world's  test 12345!!\n\n  x";
  const std::string b = "I'VE a\xC2\xA0" "b \t\r\n\n (x) \xE4\xBD\xA0\xE5\xA5\xBD\xC3\xA9 \xF0\x9F\x98\x80ok  ";
  // Expected splits from HF tokenizers' Split(Regex(pattern), "isolated").
  CHECK(split(SplitPattern::kGpt2, a) ==
        std::vector<std::string>{"Hello", " world", "'s", " ", " test", " 12345", "!!", "\n\n ", " x"});
  CHECK(split(SplitPattern::kGpt2, b) ==
        std::vector<std::string>{"I", "'", "VE", " a", "\xC2\xA0", "b", " \t\r\n\n", " (", "x", ")",
                                 " \xE4\xBD\xA0\xE5\xA5\xBD\xC3\xA9", " \xF0\x9F\x98\x80", "ok", "  "});
  CHECK(split(SplitPattern::kLlama3, a) ==
        std::vector<std::string>{"Hello", " world", "'s", " ", " test", " ", "123", "45", "!!\n\n", " ", " x"});
  CHECK(split(SplitPattern::kLlama3, b) ==
        std::vector<std::string>{"I", "'VE", " a", "\xC2\xA0" "b", " \t\r\n\n", " (", "x", ")",
                                 " \xE4\xBD\xA0\xE5\xA5\xBD\xC3\xA9", " \xF0\x9F\x98\x80", "ok", "  "});
  CHECK(split(SplitPattern::kQwen2, "x 2024") == std::vector<std::string>{"x", " ", "2", "0", "2", "4"});
  CHECK(split(SplitPattern::kGpt2, "").empty());

  using crossicl::detail::UClass;
  using crossicl::detail::unicode_class;
  CHECK(unicode_class(0x4F60) == UClass::kLetter);  // CJK ideograph
  CHECK(unicode_class(0x0663) == UClass::kNumber);  // ARABIC-INDIC DIGIT THREE
  CHECK(unicode_class(0x00BD) == UClass::kNumber);  // VULGAR FRACTION ONE HALF (No)
  CHECK(unicode_class(0x3000) == UClass::kSpace);   // IDEOGRAPHIC SPACE
  CHECK(unicode_class(0x1F600) == UClass::kOther);  // emoji
  CHECK(unicode_class(0x0301) == UClass::kOther);   // combining acute (Mn)
  CHECK(crossicl::detail::utf8_lossy("a\xF0\x9F\x98" "b\xFF") == "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
}

TEST_CASE("Tokenizer: byte-level BPE with added tokens", "[tokenizer]") {
  // A tiny GPT-2 style vocabulary: the 256-character byte alphabet plus a few merges.
  std::vector<std::string> alphabet;
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const std::uint32_t cp = printable ? static_cast<std::uint32_t>(b) : static_cast<std::uint32_t>(256 + extra++);
    std::string s;
    crossicl::detail::utf8_append(s, cp);
    alphabet.push_back(s);
  }
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[alphabet[b]] = b;
  const std::string G = "\xC4\xA0";  // the alphabet's character for ' '
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {G, "w"}, {G + "w", "o"}, {"r", "l"}, {G + "wo", "rl"}};
  int next = 256;
  json m = json::array();
  for (const auto& [a, b] : merges) {
    vocab[a + b] = next++;
    m.push_back(a + " " + b);
  }
  const int eot = next++;
  json j{{"added_tokens", {{{"id", eot}, {"content", "<|endoftext|>"}, {"special", true}}}},
         {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
         {"decoder", {{"type", "ByteLevel"}}},
         {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}}};
  const fs::path tmp = temp_dir("bytelevel");
  const std::string path = (tmp / "tokenizer.json").string();
  write_file(path, j.dump());
  auto tok = Tokenizer::from_file(path);
  CHECK(tok->vocab_size() == eot + 1);
  CHECK(tok->bos_id() == -1);
  CHECK(tok->eos_id() == eot);
  const int hello = vocab["hello"].get<int>(), world = vocab[G + "worl"].get<int>();
  CHECK(tok->encode("hello world", true) == std::vector<std::int32_t>{hello, world, vocab["d"].get<int>()});
  const std::string text = "hello<|endoftext|>\xC3\xA9!";
  const auto ids = tok->encode(text, false, /*eos=*/true);
  CHECK(ids == std::vector<std::int32_t>{hello, eot, vocab[alphabet[0xC3]].get<int>(),
                                         vocab[alphabet[0xA9]].get<int>(), vocab["!"].get<int>(), eot});
  CHECK(tok->decode(ids) == "hello\xC3\xA9!");
  CHECK(tok->decode(ids, /*keep_special=*/true) == text + "<|endoftext|>");
  // A lone continuation byte decodes to U+FFFD.
  CHECK(tok->decode({vocab[alphabet[0xA9]].get<int>()}) == "\xEF\xBF\xBD");
  std::vector<crossicl::TokenOffset> offsets;
  tok->encode_with_offsets(text, offsets, false);
  CHECK(offsets == std::vector<crossicl::TokenOffset>{{0, 5}, {5, 18}, {18, 20}, {18, 20}, {20, 21}});
  fs::remove_all(tmp);
}
