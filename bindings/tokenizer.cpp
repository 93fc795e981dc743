// Python bindings of crossicl::Tokenizer (SentencePiece tokenizer.model, HF tokenizer.json BPE).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <thread>

#include "crossicl/engine/tokenizer.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

namespace {

std::shared_ptr<Tokenizer> load(const std::filesystem::path& path) {
  return released([&] { return std::shared_ptr<Tokenizer>(Tokenizer::from_file(path.string())); });
}

std::vector<std::vector<std::int32_t>> encode_batch(const Tokenizer& tok, const std::vector<std::string>& texts,
                                                    bool bos, bool eos) {
  std::vector<std::vector<std::int32_t>> out(texts.size());
  const std::size_t n_threads =
      std::min<std::size_t>({std::max(1u, std::thread::hardware_concurrency()), 8, (texts.size() + 31) / 32});
  if (n_threads <= 1) {
    for (std::size_t k = 0; k < texts.size(); ++k) out[k] = tok.encode(texts[k], bos, eos);
    return out;
  }
  std::vector<std::exception_ptr> errors(n_threads);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < n_threads; ++t) {
    threads.emplace_back([&, t]() {
      try {
        for (std::size_t k = t; k < texts.size(); k += n_threads) out[k] = tok.encode(texts[k], bos, eos);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return out;
}

}  // namespace

void register_tokenizer(py::module_& m) {
  py::class_<Tokenizer, std::shared_ptr<Tokenizer>>(m, "Tokenizer", R"doc(
Text <-> token ids of a LLaMA-family tokenizer: a SentencePiece ``tokenizer.model`` or an HF
``tokenizer.json`` (BPE with byte fallback, or byte-level BPE); the kind is decided by the file's content.
Thread-safe; encode/decode release the GIL.

    tok = crossicl.Tokenizer("tokenizer.model")
    ids = tok.encode("Hello world")          # [1, 15043, 3186]
    tok.decode(ids)                          # 'Hello world'
)doc")
      .def(py::init(&load), py::arg("path"), "Loads tokenizer.model or tokenizer.json; raises crossicl.LoadError.")
      .def_static("from_file", &load, py::arg("path"), "Same as Tokenizer(path).")
      .def_static(
          "from_vocab",
          [](std::vector<std::string> tokens, const std::string& model, std::vector<float> scores,
             std::vector<std::int32_t> token_types, std::vector<std::string> merges, std::int32_t bos_id,
             std::int32_t eos_id, std::int32_t unk_id, bool add_bos, bool add_eos, const std::string& pre) {
            VocabArrays v;
            v.model = model;
            v.pre = pre;
            v.tokens = std::move(tokens);
            v.scores = std::move(scores);
            v.token_types = std::move(token_types);
            v.merges = std::move(merges);
            v.bos_id = bos_id;
            v.eos_id = eos_id;
            v.unk_id = unk_id;
            v.add_bos = add_bos;
            v.add_eos = add_eos;
            return released([&] { return std::shared_ptr<Tokenizer>(Tokenizer::from_vocab(v)); });
          },
          py::arg("tokens"), py::kw_only(), py::arg("model") = "llama", py::arg("scores") = std::vector<float>{},
          py::arg("token_types") = std::vector<std::int32_t>{}, py::arg("merges") = std::vector<std::string>{},
          py::arg("bos_id") = -1, py::arg("eos_id") = -1, py::arg("unk_id") = -1, py::arg("add_bos") = true,
          py::arg("add_eos") = false, py::arg("pre") = "",
          "Tokenizer of a vocabulary given as arrays (GGUF tokenizer.ggml.*): model 'llama' (SentencePiece BPE by "
          "scores, byte fallback) or 'gpt2' (byte-level BPE with merges 'a b'; pre: 'llama-bpe', 'qwen2', "
          "'smollm' or GPT-2's regex). token_types: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, "
          "6 byte.")
      .def(
          "encode",
          [](const Tokenizer& tok, const std::string& text, bool bos, bool eos) {
            return released([&] { return tok.encode(text, bos, eos); });
          },
          py::arg("text"), py::kw_only(), py::arg("bos") = true, py::arg("eos") = false,
          "Token ids of text (str, or UTF-8 bytes). bos: the tokenizer's leading special tokens (BOS); eos: append "
          "EOS. Raises ValueError for invalid UTF-8.")
      .def(
          "encode_with_offsets",
          [](const Tokenizer& tok, const std::string& text, bool bos, bool eos) {
            std::vector<TokenOffset> offsets;
            std::vector<std::int32_t> ids = released([&] { return tok.encode_with_offsets(text, offsets, bos, eos); });
            return py::make_tuple(ids, offsets);
          },
          py::arg("text"), py::kw_only(), py::arg("bos") = true, py::arg("eos") = false,
          "(ids, offsets): offsets[i] = (begin, end) byte span of text.encode('utf-8') covered by token i "
          "(empty for BOS/EOS).")
      .def(
          "encode_batch",
          [](const Tokenizer& tok, const std::vector<std::string>& texts, bool bos, bool eos) {
            return released([&] { return encode_batch(tok, texts, bos, eos); });
          },
          py::arg("texts"), py::kw_only(), py::arg("bos") = true, py::arg("eos") = false,
          "encode() of each text, on several threads without the GIL.")
      .def(
          "decode",
          [](const Tokenizer& tok, const std::vector<std::int32_t>& ids, bool keep_special) {
            return to_str(released([&] { return tok.decode(ids, keep_special); }));
          },
          py::arg("ids"), py::kw_only(), py::arg("keep_special") = false,
          "Text of ids; special tokens are skipped unless keep_special. Raises ValueError for an id out of range.")
      .def(
          "piece", [](const Tokenizer& tok, std::int32_t id) { return to_str(tok.piece(id)); }, py::arg("id"),
          "Raw vocabulary piece of id (e.g. '▁the', '<0x0A>', 'Ġthe').")
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size, "Number of ids (including added tokens).")
      .def_property_readonly("bos_id", &Tokenizer::bos_id, "BOS id, -1 when there is none.")
      .def_property_readonly("eos_id", &Tokenizer::eos_id, "EOS id, -1 when there is none.")
      .def("__len__", &Tokenizer::vocab_size)
      .def("__repr__", [](const Tokenizer& tok) {
        return "<crossicl.Tokenizer vocab_size=" + std::to_string(tok.vocab_size()) +
               " bos_id=" + std::to_string(tok.bos_id()) + " eos_id=" + std::to_string(tok.eos_id()) + ">";
      });
}

}  // namespace crossicl::bindings
