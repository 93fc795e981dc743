// Input limits of the core (core/limits.h): JSON nesting depth checked before anything walks a value (detail/json.h),
// the byte cap and the regular-file check of detail::read_file, and the short JSON rendering for error messages.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "crossicl/core/dataset.h"
#include "crossicl/core/error.h"
#include "crossicl/core/limits.h"
#include "crossicl/core/task.h"
#include "detail/io.h"
#include "detail/json.h"

using namespace crossicl;
using Catch::Matchers::Contains;

namespace {

// Sets `l` for one test and puts the previous limits back, also when the test fails.
struct ScopedLimits {
  Limits saved = limits();
  explicit ScopedLimits(const Limits& l) { set_limits(l); }
  ~ScopedLimits() { set_limits(saved); }
};

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("crossicl_limits_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::string write_temp(const std::string& name, const std::string& content) {
  const std::string path = temp_path(name);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

// A gzip file of `n` spaces, written in blocks: a few KB on disk.
std::string write_gzip_spaces(const std::string& name, std::size_t n) {
  const std::string path = temp_path(name);
  gzFile f = gzopen(path.c_str(), "wb9");
  const std::string block(1 << 16, ' ');
  for (std::size_t done = 0; done < n; done += block.size())
    gzwrite(f, block.data(), static_cast<unsigned>(std::min(block.size(), n - done)));
  gzclose(f);
  return path;
}

// `depth` nested arrays: "[[[...]]]".
std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

}  // namespace

TEST_CASE("Limits: defaults and set_limits checks every field", "[limits]") {
  const Limits d;
  CHECK(d.max_json_depth == 256);
  CHECK(d.max_file_bytes == std::int64_t{4} << 30);
  CHECK(d.max_vocab_size == std::int64_t{1} << 21);
  const Limits before = limits();
  Limits bad = before;
  bad.max_json_depth = kMaxJsonDepthLimit + 1;
  CHECK_THROWS_AS(set_limits(bad), InvalidArgument);
  CHECK_THROWS_WITH(set_limits(bad), Contains("Limits.max_json_depth") && Contains("10001"));
  bad = before;
  bad.max_file_bytes = 0;
  CHECK_THROWS_WITH(set_limits(bad), Contains("Limits.max_file_bytes") && Contains("got 0"));
  bad = before;
  bad.max_vocab_size = std::int64_t{1} << 31;  // ids are int32
  CHECK_THROWS_WITH(set_limits(bad), Contains("Limits.max_vocab_size"));
  CHECK(limits().max_json_depth == before.max_json_depth);  // a rejected set changes nothing
  CHECK(limits().max_file_bytes == before.max_file_bytes);
  Limits l = before;
  l.max_json_depth = 7;
  ScopedLimits scoped(l);
  CHECK(limits().max_json_depth == 7);
}

TEST_CASE("check_json_depth counts structure, not brackets inside strings", "[limits]") {
  Limits l = limits();
  l.max_json_depth = 3;
  ScopedLimits scoped(l);
  CHECK_NOTHROW(detail::check_json_depth(nested(3), "x.json"));
  CHECK_NOTHROW(detail::check_json_depth(R"({"a": [{"b": "[[[[[[\"{{{{"}]})", "x.json"));  // escaped quote
  // After an escaped quote the string goes on; after an escaped backslash it ends: both see the depth of 4.
  CHECK_THROWS_AS(detail::check_json_depth(R"(["\"", [[[]]]])", "x.json"), LoadError);
  CHECK_THROWS_AS(detail::check_json_depth(R"(["\\", [[[]]]])", "x.json"), LoadError);
  CHECK_NOTHROW(detail::check_json_depth("[[]] [[]] [[[]]]", "x.json"));  // siblings do not add up
  CHECK_THROWS_AS(detail::check_json_depth(nested(4), "x.json"), LoadError);
  CHECK_THROWS_WITH(detail::check_json_depth(R"({"a": {"b": [{}]}})", "dir/x.json"),
                    Contains("dir/x.json: JSON nested deeper than 3 levels at byte 13 (Limits.max_json_depth)"));
}

TEST_CASE("parse_json refuses deep text before building it", "[limits]") {
  CHECK_THROWS_WITH(detail::parse_json(nested(200000), "deep.json"),
                    Contains("deep.json") && Contains("Limits.max_json_depth"));
  CHECK_THROWS_AS(detail::parse_ordered_json(nested(200000), "deep.json"), LoadError);
  CHECK(detail::parse_json(nested(256), "ok.json").is_array());
  CHECK_THROWS_AS(detail::parse_json("[1,", "bad.json"), nlohmann::json::parse_error);  // left to the caller
  // A number beyond double's range is nlohmann's out_of_range, not parse_error: it must not escape without the file
  // (found by fuzz_jsonl).
  CHECK_THROWS_WITH(detail::parse_json("[21e308]", "big.json"), Contains("big.json: malformed JSON"));
  CHECK_THROWS_AS(detail::parse_ordered_json("{\"a\": -1e400}", "big.json"), LoadError);
  const auto doc = detail::parse_ordered_json(R"({"z": 1, "a": 2})", "o.json");
  CHECK(doc.begin().key() == "z");
}

TEST_CASE("check_value_depth walks a built value without recursion", "[limits]") {
  nlohmann::ordered_json deep = nlohmann::ordered_json::array();
  for (int i = 0; i < 200000; ++i) deep = nlohmann::ordered_json::array({std::move(deep)});
  CHECK_THROWS_AS(detail::check_value_depth(deep, "doc"), InvalidArgument);
  nlohmann::ordered_json doc = nlohmann::ordered_json::object();
  doc["tasks"] = nlohmann::ordered_json::object();
  doc["assembly"] = std::move(deep);  // moved: a copy would recurse 200,000 levels
  CHECK_THROWS_WITH(TaskSet::from_json(doc, "cards"), Contains("cards") && Contains("Limits.max_json_depth"));
  CHECK_NOTHROW(detail::check_value_depth(nlohmann::json::parse(nested(256)), "ok"));
}

TEST_CASE("short_dump is bounded whatever the value", "[limits]") {
  nlohmann::json deep = nlohmann::json::array();
  for (int i = 0; i < 200000; ++i) deep = nlohmann::json::array({std::move(deep)});
  const std::string d = detail::short_dump(deep);
  CHECK(d == std::string(80, '[') + "...");
  CHECK(detail::short_dump(nlohmann::json{{"a", {1, true, nullptr}}}) == R"({"a":[1,true,null]})");
  const std::string long_text(1000, 'x');
  CHECK(detail::short_dump(nlohmann::json(long_text)).size() == 83);
  // Cut on a character boundary; invalid UTF-8 is replaced, never thrown on.
  CHECK(detail::short_dump(nlohmann::json(std::string(77, 'a') + "\xC3\xA9\xC3\xA9")) ==
        "\"" + std::string(77, 'a') + "\xC3\xA9...");
  CHECK(detail::short_dump(nlohmann::json(std::string(78, 'a') + "\xC3\xA9\xC3\xA9")) ==
        "\"" + std::string(78, 'a') + "...");
  CHECK(detail::short_dump(nlohmann::json("a\xFF")) == "\"a\xEF\xBF\xBD\"");
  CHECK(detail::short_dump(nlohmann::json("ab"), 1) == "\"...");
}

TEST_CASE("deeply nested JSON Lines and task cards fail to load, naming the file", "[limits]") {
  const std::string deep_value = nested(200000);
  const std::string jsonl =
      write_temp("deep.jsonl", "{\"id\": \"a\", \"fields\": {}}\n{\"id\": \"b\", \"fields\": {}, \"x\": " +
                                   deep_value + "}\n");
  CHECK_THROWS_AS(load_examples(jsonl), LoadError);
  CHECK_THROWS_WITH(load_examples(jsonl), Contains(jsonl + ":2: JSON nested deeper than 256 levels"));
  const std::string card = R"({"tasks": {"t": {"instruction": "i", "template": "{x}", "extra": )" + deep_value + "}}}";
  const std::string tasks = write_temp("deep_tasks.json", card);
  CHECK_THROWS_WITH(load_tasks(tasks), Contains(tasks) && Contains("Limits.max_json_depth"));
  const std::string assembly = write_temp("deep_assembly.json", R"({"tasks": {}, "assembly": )" + deep_value + "}");
  CHECK_THROWS_AS(load_tasks(assembly), LoadError);
  const std::string big = write_temp("big.jsonl", "{\"id\": \"a\", \"fields\": {}, \"x\": 92268591e3085}\n");
  CHECK_THROWS_WITH(load_examples(big), Contains(big + ":1: malformed JSON"));
  std::filesystem::remove(big);
  // Within the limit the values are kept.
  const std::string ok = write_temp("ok.jsonl", "{\"id\": \"a\", \"fields\": {}, \"x\": " + nested(255) + "}\n");
  CHECK(load_examples(ok).at(0).extra.at("x").is_array());
  for (const auto& p : {jsonl, tasks, assembly, ok}) std::filesystem::remove(p);
}

TEST_CASE("read_file stops at Limits.max_file_bytes, plain or gzip", "[limits]") {
  const std::string plain = write_temp("big.jsonl", std::string(5000, ' '));
  const std::string bomb = write_gzip_spaces("bomb.jsonl.gz", std::size_t{1} << 22);
  REQUIRE(std::filesystem::file_size(bomb) < 10000);
  CHECK(detail::read_file(bomb).size() == std::size_t{1} << 22);
  Limits l = limits();
  l.max_file_bytes = 4096;
  ScopedLimits scoped(l);
  CHECK_THROWS_AS(detail::read_file(plain), LoadError);
  CHECK_THROWS_WITH(detail::read_file(plain),
                    Contains(plain) && Contains("5000 bytes") && Contains("Limits.max_file_bytes (4096)"));
  CHECK_THROWS_WITH(load_examples(bomb), Contains(bomb) && Contains("decompresses to more than") &&
                                             Contains("Limits.max_file_bytes (4096)"));
  const std::string small = write_temp("small.jsonl", std::string(4096, ' '));
  CHECK(detail::read_file(small).size() == 4096);  // the limit itself is allowed
  for (const auto& p : {plain, bomb, small}) std::filesystem::remove(p);
}

TEST_CASE("read_file refuses a FIFO or a directory instead of blocking", "[limits]") {
  const std::string fifo = temp_path("fifo.jsonl");
  std::filesystem::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Before the check, opening a FIFO with no writer blocked forever.
  CHECK_THROWS_AS(load_examples(fifo), LoadError);
  CHECK_THROWS_WITH(load_tasks(fifo), Contains(fifo) && Contains("not a regular file"));
  std::filesystem::remove(fifo);
  const std::string dir = std::filesystem::temp_directory_path().string();
  CHECK_THROWS_WITH(detail::read_file(dir), Contains("not a regular file"));
  CHECK_THROWS_WITH(detail::read_file(temp_path("missing.jsonl")), Contains("cannot open") && Contains("missing"));
}
