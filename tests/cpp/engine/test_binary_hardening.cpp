// Binary parsers under hostile input (issue 17): vocabulary pieces checked at load, GGUF tensor sizes that would
// wrap, FIFOs named as model files, deep or huge safetensors headers, narrowed ids. Each case once crashed, hung or
// was accepted silently. (The bounds-safe UTF-8 decoding they rely on is tested in tests/cpp/test_utf8.cpp.)
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/engine/gguf.h"
#include "crossicl/engine/model.h"
#include "crossicl/engine/tokenizer.h"
#include "crossicl/engine/weights.h"
#include "detail/engine_mmap.h"
#include "detail/llama2c_header.h"
#include "detail/safetensors_header.h"
#include "engine_test_util.h"

using namespace crossicl;
using Catch::Contains;

namespace {

// A GGUF v3 image built field by field (little-endian).
struct GgufBuilder {
  std::string kv, infos;
  std::uint64_t n_kv = 0, n_tensors = 0;
  std::string data;

  static void u32(std::string& o, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) o += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  static void u64(std::string& o, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) o += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  static void str(std::string& o, const std::string& s) {
    u64(o, s.size());
    o += s;
  }
  GgufBuilder& string_kv(const std::string& key, const std::string& value) {
    str(kv, key);
    u32(kv, 8);
    str(kv, value);
    ++n_kv;
    return *this;
  }
  GgufBuilder& u64_kv(const std::string& key, std::uint64_t value) {
    str(kv, key);
    u32(kv, 10);
    u64(kv, value);
    ++n_kv;
    return *this;
  }
  GgufBuilder& strings_kv(const std::string& key, const std::vector<std::string>& values) {
    str(kv, key);
    u32(kv, 9);
    u32(kv, 8);
    u64(kv, values.size());
    for (const auto& v : values) str(kv, v);
    ++n_kv;
    return *this;
  }
  GgufBuilder& f32_array_kv(const std::string& key, std::size_t n) {
    str(kv, key);
    u32(kv, 9);
    u32(kv, 6);
    u64(kv, n);
    for (std::size_t i = 0; i < n; ++i) u32(kv, 0);
    ++n_kv;
    return *this;
  }
  // A tensor at data offset `offset` (the caller sizes `data`).
  GgufBuilder& tensor(const std::string& name, const std::vector<std::uint64_t>& dims, std::uint32_t type,
                      std::uint64_t offset) {
    str(infos, name);
    u32(infos, static_cast<std::uint32_t>(dims.size()));
    for (auto d : dims) u64(infos, d);
    u32(infos, type);
    u64(infos, offset);
    ++n_tensors;
    return *this;
  }
  std::string image() const {
    std::string out = "GGUF";
    u32(out, 3);
    u64(out, n_tensors);
    u64(out, n_kv);
    out += kv + infos;
    out.resize((out.size() + 31) / 32 * 32, '\0');
    return out + data;
  }
};

// Seconds `fn` takes, storing its LoadError's message. After 5 s, a FIFO that `fn` blocks on is opened for writing
// again and again, so that a hang ends (and shows up as a slow call) instead of blocking the test run.
template <typename Fn>
double seconds_to_load_error(const std::string& fifo, Fn fn, std::string& message) {
  std::atomic<bool> done{false};
  std::thread unblock([&] {
    for (int i = 0; !done; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (i < 100) continue;
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // succeeds only while a reader waits
      if (fd >= 0) ::close(fd);
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  try {
    fn();
    message = "(no error)";
  } catch (const LoadError& e) {
    message = e.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  done = true;
  unblock.join();
  return s;
}

}  // namespace

TEST_CASE("vocabulary pieces that are not UTF-8 are refused at load", "[engine][tokenizer]") {
  SECTION("Tokenizer::from_vocab: InvalidArgument naming the token index") {
    VocabArrays v;
    v.model = "gpt2";
    v.tokens = {"a", "b", "\x80\x80", "ab"};
    v.merges = {"a b"};
    CHECK_THROWS_AS(Tokenizer::from_vocab(v), InvalidArgument);
    CHECK_THROWS_WITH(Tokenizer::from_vocab(v), Contains("tokens[2]") && Contains("not valid UTF-8"));
    v.tokens[2] = "c";
    v.merges = {"a \xFF"};
    CHECK_THROWS_WITH(Tokenizer::from_vocab(v), Contains("merges[0]"));
    v.merges = {"a b"};
    CHECK(Tokenizer::from_vocab(v)->decode({3, 2}) == "abc");
  }
  SECTION("GGUF tokenizer.ggml.tokens: LoadError naming the file and the token index") {
    GgufBuilder b;
    b.string_kv("tokenizer.ggml.model", "llama")
        .strings_kv("tokenizer.ggml.tokens", {"<unk>", "a", "\xE2\x82", "b"})
        .f32_array_kv("tokenizer.ggml.scores", 4);
    const std::string img = b.image();
    GGUFReader g(reinterpret_cast<const std::uint8_t*>(img.data()), img.size(), "vocab.gguf");
    CHECK_THROWS_AS(vocab_from_gguf(g), LoadError);
    CHECK_THROWS_WITH(vocab_from_gguf(g), Contains("vocab.gguf") && Contains("tokenizer.ggml.tokens[2]") &&
                                              Contains("not valid UTF-8"));
  }
}

TEST_CASE("a GGUF tensor whose byte size overflows is refused, naming it", "[engine][gguf]") {
  GgufBuilder b;
  b.tensor("token_embd.weight", {64, std::uint64_t{1} << 56}, 0, 0);  // F32: 2^62 elements, 2^64 bytes -> 0
  b.data.assign(64, '\0');
  const std::string img = b.image();
  CHECK_THROWS_AS(GGUFReader(reinterpret_cast<const std::uint8_t*>(img.data()), img.size(), "big.gguf"), LoadError);
  CHECK_THROWS_WITH(GGUFReader(reinterpret_cast<const std::uint8_t*>(img.data()), img.size(), "big.gguf"),
                    Contains("big.gguf") && Contains("token_embd.weight") && Contains("overflows"));
}

TEST_CASE("GGUF bos/eos ids outside the vocabulary are refused, not narrowed to int32", "[engine][gguf]") {
  test::TempDir dir("eng_gguf_ids");
  auto write = [&](std::uint64_t bos) {
    GgufBuilder b;
    b.string_kv("general.architecture", "llama")
        .u64_kv("llama.embedding_length", 8)
        .u64_kv("llama.feed_forward_length", 12)
        .u64_kv("llama.block_count", 1)
        .u64_kv("llama.attention.head_count", 2)
        .u64_kv("llama.context_length", 32)
        .u64_kv("tokenizer.ggml.bos_token_id", bos);
    b.tensor("token_embd.weight", {8, 10}, 0, 0);
    b.data.assign(8 * 10 * 4, '\0');
    test::write_file(dir.str("m.gguf"), b.image());
    return dir.str("m.gguf");
  };
  // 2^32 + 1 once became bos 1.
  CHECK_THROWS_WITH(load_gguf(write((std::uint64_t{1} << 32) + 1), at::kFloat),
                    Contains("m.gguf") && Contains("'tokenizer.ggml.bos_token_id' = 4294967297") &&
                        Contains("outside the vocabulary (size 10)"));
  CHECK_THROWS_WITH(load_gguf(write(10), at::kFloat), Contains("outside the vocabulary"));
  // In range, loading goes on to the next missing tensor.
  CHECK_THROWS_WITH(load_gguf(write(1), at::kFloat), Contains("output_norm.weight"));
}

TEST_CASE("a FIFO named as a model file or shard is refused at once, not waited on", "[engine]") {
  test::TempDir dir("eng_fifo");
  const std::string fifo = dir.str("model.bin");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::string msg;

  SECTION("the mapping of any model file") {
    CHECK(seconds_to_load_error(fifo, [&] { crossicl::detail::MappedFile::open(fifo); }, msg) < 4.0);
    CHECK_THAT(msg, Contains("model.bin") && Contains("not a regular file"));
  }
  SECTION("a llama2.c or GGUF path given to Model::load") {
    CHECK(seconds_to_load_error(fifo, [&] { Model::load(fifo, {}); }, msg) < 4.0);
    CHECK_THAT(msg, Contains("not a regular file"));
  }
  SECTION("a shard of a sharded HF directory") {
    const std::string d = dir.str("hf");
    std::filesystem::create_directories(d);
    auto tensors = test::tiny_tensors();
    test::write_file(d + "/config.json", test::tiny_config().dump());
    nlohmann::json idx;
    for (const auto& t : tensors) idx["weight_map"][t.name] = "model-00001-of-00001.safetensors";
    test::write_file(d + "/model.safetensors.index.json", idx.dump());
    std::filesystem::rename(fifo, d + "/model-00001-of-00001.safetensors");
    CHECK(seconds_to_load_error(d + "/model-00001-of-00001.safetensors", [&] { load_hf_dir(d, at::kFloat); }, msg) <
          4.0);
    CHECK_THAT(msg, Contains("model-00001-of-00001.safetensors") && Contains("not a regular file"));
  }
}

TEST_CASE("safetensors headers nested too deeply or over 100 MB are refused without reading them", "[engine]") {
  test::TempDir dir("eng_st_hard");
  const std::string d = dir.str();
  test::write_tiny_hf(d, test::tiny_tensors());
  const std::string st = d + "/model.safetensors";
  auto write_header = [&](const std::string& h) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
    test::write_file(st, bytes + h);
  };

  SECTION("an entry nested 200,000 levels deep (its dump() in the error message once overflowed the stack)") {
    write_header("{\"w\":" + std::string(200000, '[') + std::string(200000, ']') + "}");
    CHECK_THROWS_AS(load_hf_dir(d, at::kFloat), LoadError);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("model.safetensors") && Contains("nested deeper"));
  }
  SECTION("a malformed entry is shown shortened in the message") {
    write_header("{\"w\":{\"dtype\":\"F32\",\"pad\":\"" + std::string(10000, 'x') + "\"}}");
    try {
      load_hf_dir(d, at::kFloat);
      FAIL("no error");
    } catch (const LoadError& e) {
      CHECK_THAT(e.what(), Contains("malformed header entry"));
      CHECK(std::string(e.what()).size() < 400);
    }
  }
  SECTION("a header length over the format's 100 MB limit (sparse file: nothing is read)") {
    const std::uint64_t n = crossicl::detail::kMaxSafetensorsHeaderBytes + 1;
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    test::write_file(st, bytes);
    std::filesystem::resize_file(st, 8 + n);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat),
                      Contains("model.safetensors") && Contains("100000001") && Contains("limit of 100000000 bytes"));
  }
}

TEST_CASE("the torch-free header parsers give the loaders' layout", "[engine]") {
  SECTION("safetensors") {
    test::TempDir dir("eng_st_hdr");
    test::write_safetensors(dir.str("a.safetensors"), test::tiny_tensors());
    auto map = crossicl::detail::MappedFile::open(dir.str("a.safetensors"));
    const auto h = crossicl::detail::parse_safetensors_header(map->data(), map->size(), "a.safetensors");
    REQUIRE(h.entries.size() == 11);
    const auto& e = h.entries.at("model.layers.0.self_attn.k_proj.weight");
    CHECK(e.dtype == "F32");
    CHECK(e.shape == std::vector<std::int64_t>{4, 8});
    CHECK(e.end - e.begin == 4 * 8 * 4);
    CHECK(h.data_start % 8 == 0);
  }
  SECTION("llama2.c") {
    std::string bytes(crossicl::detail::kLlama2cHeaderBytes, '\0');
    const std::int32_t h[7] = {8, 12, 1, 2, 1, -10, 4};  // untied: wcls follows
    std::memcpy(bytes.data(), h, sizeof h);
    // floats: emb 80, rms 8, wq 64, wk 32, wv 32, wo 64, rms 8, w1 96, w2 96, w3 96, final 8, freqs 2*4*2, wcls 80
    const std::uint64_t floats = 80 + 8 + 64 + 32 + 32 + 64 + 8 + 96 * 3 + 8 + 16 + 80;
    bytes.resize(bytes.size() + floats * 4, '\0');
    const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
    const crossicl::detail::Llama2cLayout l = crossicl::detail::parse_llama2c_header(p, bytes.size(), "t.bin");
    CHECK(l.config.head_dim == 4);
    CHECK(l.q_dim == 8);
    CHECK(l.kv_dim == 4);
    CHECK(!l.config.tie_word_embeddings);
    CHECK(l.offsets[crossicl::detail::kLlama2cWq] == 28 + (80 + 8) * 4);
    CHECK(l.offsets[crossicl::detail::kLlama2cWcls] == bytes.size() - 80 * 4);
    CHECK_THROWS_WITH(crossicl::detail::parse_llama2c_header(p, bytes.size() - 4, "t.bin"),
                      Contains("t.bin") && Contains("expected " + std::to_string(bytes.size())));
  }
}
