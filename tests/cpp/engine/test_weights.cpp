// Loaders: corrupt or mismatching files throw LoadError naming the file (and tensor), never crash.
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "crossicl/core/error.h"
#include "crossicl/engine/model.h"
#include "crossicl/engine/weights.h"
#include "detail/engine_mmap.h"
#include "detail/engine_quant.h"
#include "engine_test_util.h"
#include "../test_data.h"

using namespace crossicl;
using Catch::Contains;

TEST_CASE("truncated or padded llama2.c checkpoints are rejected with both sizes", "[engine][model]") {
  const std::string p = test::shared_path("models/stories260K/stories260K.bin");
  if (p.empty()) return;
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() == 1056540);
  test::TempDir dir("eng_bin");
  test::write_file(dir.str("cut.bin"), bytes.substr(0, 100000));
  CHECK_THROWS_WITH(load_llama2c(dir.str("cut.bin"), at::kFloat),
                    Contains("cut.bin") && Contains("expected 1056540 bytes, got 100000"));
  test::write_file(dir.str("long.bin"), bytes + "xxxx");
  CHECK_THROWS_AS(load_llama2c(dir.str("long.bin"), at::kFloat), LoadError);
  test::write_file(dir.str("tiny.bin"), bytes.substr(0, 10));
  CHECK_THROWS_AS(load_llama2c(dir.str("tiny.bin"), at::kFloat), LoadError);
  std::string bad = bytes;
  bad[0] = bad[1] = bad[2] = bad[3] = '\xff';  // dim = -1
  test::write_file(dir.str("neg.bin"), bad);
  CHECK_THROWS_AS(load_llama2c(dir.str("neg.bin"), at::kFloat), LoadError);
  std::string huge = bytes;
  huge[3] = 0x7f;  // dim ~ 2^31: the size check catches it before any allocation
  test::write_file(dir.str("huge.bin"), huge);
  CHECK_THROWS_AS(load_llama2c(dir.str("huge.bin"), at::kFloat), LoadError);
  CHECK_THROWS_AS(Model::load(dir.str("missing.bin")), LoadError);
}

TEST_CASE("llama2.c weights are views of the mapped file where possible", "[engine][model]") {
  const std::string p = test::shared_path("models/stories260K/stories260K.bin");
  if (p.empty()) return;
  Weights w = load_llama2c(p, at::kFloat);
  std::ifstream in(p, std::ios::binary);
  in.seekg(28);
  float first = 0;
  in.read(reinterpret_cast<char*>(&first), 4);
  CHECK(w.tok_embeddings[0][0].item<float>() == first);
  // wv is used as stored; wq/wk are permuted copies.
  const float* wv = w.layers[0].wv.data_ptr<float>();
  const float* emb = w.tok_embeddings.data_ptr<float>();
  CHECK(wv > emb);
  CHECK(wv < emb + 1056540 / 4);

  // Model fuses wq/wk/wv and w1/w3 (the parts become views of the fused rows) and drops the mapped pages it
  // copied; a view kept from before still reads the file's values.
  at::Tensor kept = w.layers[0].wv;
  at::Tensor wv_copy = kept.clone();
  at::Tensor w3_copy = w.layers[1].w3.clone();
  Model m(std::move(w), c10::Device(c10::kCPU));
  const LayerWeights& l = m.weights().layers[0];
  CHECK(at::equal(kept, wv_copy));
  CHECK(at::equal(l.wv, wv_copy));
  CHECK(l.wv.data_ptr<float>() == l.wqkv.data_ptr<float>() + l.wq.numel() + l.wk.numel());
  CHECK(l.wqkv.size(0) == l.wq.size(0) + l.wk.size(0) + l.wv.size(0));
  CHECK(at::equal(m.weights().layers[1].w3, w3_copy));
  CHECK(m.weights().layers[1].w13.size(0) == 2 * w3_copy.size(0));
}

TEST_CASE("a huge-page arena copies dense tensors with their strides and refuses the rest", "[engine]") {
  using crossicl::detail::HugePageArena;
  const at::Tensor a = at::randn({300, 70});                          // contiguous
  const at::Tensor t = at::randn({90, 50}).t();                       // [50, 90] view of [90, 50] rows
  const at::Tensor gaps = at::randn({40, 64}).narrow(1, 0, 33);       // rows with gaps: not dense
  const at::Tensor i8 = at::randint(-127, 128, {33, 17}).to(at::kChar);
  at::Tensor ca, ct, cg, ci, over;
  {
    HugePageArena arena(HugePageArena::bytes_for(a) + HugePageArena::bytes_for(t) + HugePageArena::bytes_for(i8));
    ca = arena.copy(a);
    ct = arena.copy(t);
    cg = arena.copy(gaps);
    ci = arena.copy(i8);
    over = arena.copy(at::randn({4}));  // the arena is full
  }  // the copies keep the mapping
  CHECK(HugePageArena::holds(ca));
  CHECK(HugePageArena::holds(ct));
  CHECK(HugePageArena::holds(ci));
  CHECK_FALSE(HugePageArena::holds(a));
  CHECK(at::equal(ca, a));
  CHECK(at::equal(ct, t));
  CHECK(ct.strides() == t.strides());
  CHECK(at::equal(ci, i8));
  CHECK(cg.is_same(gaps));
  CHECK_FALSE(HugePageArena::holds(over));
  CHECK(HugePageArena::holds(ca.narrow(0, 5, 7)));
  HugePageArena none(0);
  CHECK(none.copy(a).is_same(a));
  CHECK(HugePageArena::bytes_for(a) % 4096 == 0);
  CHECK(HugePageArena::bytes_for(a) >= 300 * 70 * 4);
}

TEST_CASE("a CPU model streams its decode weights from one huge-page arena, views, ties and values kept",
          "[engine][model]") {
  const std::string p = test::shared_path("models/stories260K/stories260K.bin");
  if (p.empty()) return;
  using crossicl::detail::HugePageArena;
  for (const auto& [dtype, quantize] : {std::pair{at::kFloat, Quantize::None}, std::pair{at::kBFloat16, Quantize::None},
                                        std::pair{at::kFloat, Quantize::Int8}}) {
    INFO("dtype " << c10::toString(dtype) << (quantize == Quantize::Int8 ? ", int8" : ""));
    const Weights loaded = load_llama2c(p, dtype);
    const at::Tensor wo = loaded.layers[2].wo.clone(), out = loaded.output.clone();
    Weights w = load_llama2c(p, dtype);
    const bool tied = w.output.is_same(w.tok_embeddings);
    Int8Options plain;
    plain.smooth_alpha = 0;  // quantised as loaded, to compare with quantize_linear
    const Model m(std::move(w), c10::Device(c10::kCPU), quantize, plain);
    const Weights& mw = m.weights();
    if (quantize == Quantize::Int8) {
      for (const QuantLayer& q : m.quant_layers())
        for (const QuantWeight* x : {&q.wqkv, &q.wo, &q.w13, &q.w2}) {
          CHECK(HugePageArena::holds(x->q));
          CHECK(HugePageArena::holds(x->scale));
        }
      CHECK(HugePageArena::holds(m.quant_output().q));
      CHECK(m.quant_embeddings().q.is_same(m.quant_output().q) == tied);
      const QuantWeight direct = crossicl::detail::quantize_linear(wo);
      CHECK(at::equal(m.quant_layers()[2].wo.q, direct.q));
    } else {
      for (const LayerWeights& l : mw.layers) {
        for (const at::Tensor* t : {&l.wqkv, &l.wo, &l.w13, &l.w2}) CHECK(HugePageArena::holds(*t));
        CHECK(l.wk.data_ptr() == static_cast<const char*>(l.wqkv.data_ptr()) + l.wq.numel() * l.wq.element_size());
        CHECK(l.w3.data_ptr() == static_cast<const char*>(l.w13.data_ptr()) + l.w1.numel() * l.w1.element_size());
      }
      CHECK(HugePageArena::holds(mw.output));
      CHECK(mw.output.is_same(mw.tok_embeddings) == tied);
      CHECK(at::equal(mw.layers[2].wo, wo));
      CHECK(at::equal(mw.output, out));
    }
  }
}

TEST_CASE("corrupt safetensors files throw LoadError naming file and tensor", "[engine]") {
  test::TempDir dir("eng_st");
  auto tensors = test::tiny_tensors();
  const std::string d = dir.str();
  test::write_tiny_hf(d, tensors);
  REQUIRE_NOTHROW(load_hf_dir(d, at::kFloat));
  const std::string st = d + "/model.safetensors";

  SECTION("float32 tensors are views of one mapping of the file (no copy)") {
    Weights w = load_hf_dir(d, at::kFloat);
    const char* emb = static_cast<const char*>(w.tok_embeddings.data_ptr());
    const char* ln = static_cast<const char*>(w.layers[0].attention_norm.data_ptr());
    CHECK(ln - emb == 10 * 8 * 4);  // stored right after the [10, 8] embedding
    CHECK(w.layers[0].attention_norm[3].item<float>() == tensors[1].data[3]);
  }

  SECTION("overlapping offsets") {
    auto t = tensors;
    t[2].begin = 0;  // q_proj overlaps the embedding
    t[2].end = 8 * 8 * 4;
    test::write_safetensors(st, t);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("model.safetensors") && Contains("overlap"));
  }
  SECTION("offsets past the end of the data") {
    test::write_safetensors(st, tensors, -1, 100);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("outside the data section"));
  }
  SECTION("header length past the end of the file") {
    test::write_safetensors(st, tensors, 1ull << 40);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("header length"));
  }
  SECTION("header that is not JSON") {
    test::write_file(st, std::string("\x04\0\0\0\0\0\0\0{{{{", 12));
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("invalid safetensors JSON"));
  }
  SECTION("byte length that does not match dtype * shape") {
    auto t = tensors;
    t[3].end = t[3].begin = -1;
    t[3].shape = {4, 9};  // 36 floats declared, 32 stored
    test::write_safetensors(st, t);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("self_attn.k_proj.weight") && Contains("needs 144 bytes"));
  }
  SECTION("shape that does not match config.json") {
    auto t = tensors;
    t[4].shape = {8, 4};  // v_proj transposed
    test::write_safetensors(st, t);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("self_attn.v_proj.weight") && Contains("[4, 8]"));
  }
  SECTION("missing tensor") {
    auto t = tensors;
    t.pop_back();
    test::write_safetensors(st, t);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("model.norm.weight") && Contains("not found"));
  }
  SECTION("untied model without lm_head") {
    auto cfg = test::tiny_config();
    cfg["tie_word_embeddings"] = false;
    test::write_file(d + "/config.json", cfg.dump());
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("lm_head.weight"));
  }
  SECTION("another architecture") {
    auto cfg = test::tiny_config();
    cfg["architectures"] = {"GPT2LMHeadModel"};
    cfg["model_type"] = "gpt2";
    test::write_file(d + "/config.json", cfg.dump());
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("GPT2LMHeadModel"));
  }
  SECTION("unsupported options and bad sizes in config.json") {
    auto cfg = test::tiny_config();
    cfg["attention_bias"] = true;
    test::write_file(d + "/config.json", cfg.dump());
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("attention_bias"));
    cfg = test::tiny_config();
    cfg["num_key_value_heads"] = 3;
    test::write_file(d + "/config.json", cfg.dump());
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("n_kv_heads=3"));
    cfg = test::tiny_config();
    cfg["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}};
    test::write_file(d + "/config.json", cfg.dump());
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("yarn"));
  }
  SECTION("missing files") {
    std::filesystem::remove(st);
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("model.safetensors"));
    std::filesystem::remove(d + "/config.json");
    CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("config.json"));
  }
}

TEST_CASE("sharded safetensors with an index load, a wrong index is reported", "[engine]") {
  test::TempDir dir("eng_shard");
  const std::string d = dir.str();
  auto tensors = test::tiny_tensors();
  test::write_file(d + "/config.json", test::tiny_config().dump());
  std::vector<test::StTensor> a(tensors.begin(), tensors.begin() + 5), b(tensors.begin() + 5, tensors.end());
  test::write_safetensors(d + "/model-00001-of-00002.safetensors", a);
  test::write_safetensors(d + "/model-00002-of-00002.safetensors", b);
  nlohmann::json idx;
  idx["metadata"] = {{"total_size", 0}};
  for (const auto& t : a) idx["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : b) idx["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  test::write_file(d + "/model.safetensors.index.json", idx.dump());
  Weights w = load_hf_dir(d, at::kBFloat16);
  CHECK(w.dtype == at::kBFloat16);
  CHECK(w.layers[0].w2.scalar_type() == at::kBFloat16);
  CHECK(w.norm.size(0) == 8);

  idx["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  test::write_file(d + "/model.safetensors.index.json", idx.dump());
  CHECK_THROWS_WITH(load_hf_dir(d, at::kFloat), Contains("model-00001-of-00002") && Contains("model.norm.weight"));
}
