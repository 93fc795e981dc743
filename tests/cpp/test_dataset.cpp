// JSON Lines datasets: plain and gzip, extra keys kept, errors naming file and line.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "crossicl/core/dataset.h"
#include "crossicl/core/error.h"
#include "detail/io.h"

using namespace crossicl;

namespace {

std::string temp_file(const std::string& name, const std::string& content, bool gz = false) {
  auto path = (std::filesystem::temp_directory_path() / ("crossicl_test_" + name)).string();
  if (gz) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, content.data(), static_cast<unsigned>(content.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary) << content;
  }
  return path;
}

}  // namespace

TEST_CASE("examples load from plain and gzip JSON Lines", "[dataset]") {
  const std::string text = "{\"id\": \"a\", \"fields\": {\"s\": \" x \\n\"}, \"label\": \"L\", \"k\": 1}\r\n\n{\"id\": 5, \"fields\": {}}";
  for (bool gz : {false, true}) {
    auto ex = load_examples(temp_file(gz ? "a.jsonl.gz" : "a.jsonl", text, gz));
    REQUIRE(ex.size() == 2);
    CHECK(ex[0].fields.at("s") == " x \n");
    CHECK(ex[0].label == std::optional<std::string>("L"));
    CHECK(ex[0].extra.at("k") == 1);
    CHECK(ex[1].id == "5");
    CHECK_FALSE(ex[1].label.has_value());
  }
}

TEST_CASE("dataset errors name the file and the line", "[dataset]") {
  auto path = temp_file("bad.jsonl", "{\"id\": \"a\", \"fields\": {}}\n{\"id\": \"b\", \"fields\": {\"s\": 1}}\n");
  try {
    load_examples(path);
    FAIL("expected LoadError");
  } catch (const LoadError& e) {
    CHECK(std::string(e.what()) == path + ":2: field \"s\" of example 'b' must be a string, got number");
  }
  CHECK_THROWS_AS(load_examples(temp_file("trunc.jsonl", "{\"id\": \"a\", \"fie")), LoadError);
  CHECK_THROWS_AS(load_examples("/nonexistent/file.jsonl"), LoadError);
}

TEST_CASE("UTF-8 validation finds the first bad byte", "[dataset]") {
  CHECK(detail::find_invalid_utf8("plain ascii") == std::string_view::npos);
  CHECK(detail::find_invalid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80") == std::string_view::npos);
  CHECK(detail::find_invalid_utf8("ab\xff") == 2);
  CHECK(detail::find_invalid_utf8("a\xc0\xaf") == 1);        // overlong
  CHECK(detail::find_invalid_utf8("a\xed\xa0\x80") == 1);    // surrogate
  CHECK(detail::find_invalid_utf8("a\xe2\x82") == 1);        // truncated
}
