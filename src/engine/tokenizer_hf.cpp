// HF tokenizer.json BPE as a crossicl::Tokenizer: the loader that reads tokenizer.json (and tokenizer_config.json
// beside it) and assembles the stages of detail/tokenizer_hf.h, the added-token split that runs before them, and
// encode/decode driving the stages.
#include <algorithm>
#include <array>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/core/limits.h"
#include "detail/io.h"
#include "detail/json.h"
#include "detail/tokenizer_hf.h"
#include "detail/tokenizer_hf_bpe.h"
#include "detail/tokenizer_impl.h"
#include "detail/unicode_class.h"
#include "detail/utf8.h"

namespace crossicl::detail {

using json = nlohmann::json;

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

std::string pattern_text(const json& p, bool& is_regex, const std::string& path) {
  if (p.is_object() && p.contains("String")) {
    is_regex = false;
    return p["String"].get<std::string>();
  }
  if (p.is_object() && p.contains("Regex")) {
    is_regex = true;
    return p["Regex"].get<std::string>();
  }
  throw LoadError(fmt::format("tokenizer file '{}': pattern must be {{\"String\": ..}} or {{\"Regex\": ..}}, got {}",
                              path, short_dump(p)));
}

namespace {

// A token of tokenizer.json's "added_tokens", matched in the text before the pipeline runs.
struct AddedToken {
  std::string content;
  std::int32_t id;
  bool special;
  bool lstrip;
  bool rstrip;
};

std::string token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

// Start of the run of whitespace characters ending at `b` (not before `floor`).
std::size_t skip_space_back(std::string_view text, std::size_t b, std::size_t floor) {
  while (b > floor) {
    std::size_t p = b - 1;
    while (p > floor && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
    std::size_t len = 0;
    if (unicode_class(utf8_decode_valid(text, p, len)) != UClass::kSpace) break;
    b = p;
  }
  return b;
}

// End of the run of whitespace characters starting at `e`.
std::size_t skip_space_forward(std::string_view text, std::size_t e) {
  std::size_t len = 0;
  while (e < text.size() && unicode_class(utf8_decode_valid(text, e, len)) == UClass::kSpace) e += len;
  return e;
}

class HfBpeTokenizer final : public Tokenizer {
 public:
  HfBpeTokenizer(const std::string& path, const std::string& text) : path_(path) {
    json root;
    try {
      root = parse_json(text, fmt::format("tokenizer file '{}'", path));
    } catch (const json::exception& e) {
      throw LoadError(fmt::format("cannot parse tokenizer file '{}' as JSON: {}", path, e.what()));
    }
    try {
      load(root);
    } catch (const json::exception& e) {
      throw LoadError(fmt::format("malformed tokenizer file '{}': {}", path, e.what()));
    }
    try {
      load_config();
    } catch (const json::exception& e) {  // e.g. "add_bos_token": "yes"
      throw LoadError(fmt::format("malformed tokenizer config beside '{}': {}", path, e.what()));
    }
  }

  // From an already built tokenizer.json document (vocabulary arrays); BOS/EOS are given, no config is read.
  HfBpeTokenizer(const std::string& what, const json& root, std::int32_t bos_id, std::int32_t eos_id) : path_(what) {
    try {
      load(root);
    } catch (const json::exception& e) {
      throw LoadError(fmt::format("malformed tokenizer vocabulary ({}): {}", what, e.what()));
    }
    bos_id_ = bos_id;
    eos_id_ = eos_id;
  }

  std::vector<std::int32_t> encode(std::string_view text, bool bos, bool eos) const override {
    std::vector<std::int32_t> ids;
    encode_into(text, bos, eos, ids, nullptr);
    return ids;
  }

  std::vector<std::int32_t> encode_with_offsets(std::string_view text, std::vector<TokenOffset>& offsets, bool bos,
                                                bool eos) const override {
    std::vector<std::int32_t> ids;
    offsets.clear();
    encode_into(text, bos, eos, ids, &offsets);
    return ids;
  }

  std::string decode(const std::vector<std::int32_t>& ids, bool keep_special) const override {
    std::vector<std::string> toks;
    toks.reserve(ids.size());
    for (std::int32_t id : ids) {
      check_id(id);
      if (!keep_special && special_[id]) continue;
      if (!present_[id]) continue;
      toks.push_back(pieces_[id]);
    }
    if (!has_decoder_) {
      std::string out;
      for (std::size_t k = 0; k < toks.size(); ++k) out += (k ? " " : "") + toks[k];
      return out;
    }
    for (const DecOp& op : decoders_) apply_decoder(op, toks);
    std::string out;
    for (const auto& t : toks) out += t;
    return out;
  }

  std::string piece(std::int32_t id) const override {
    check_id(id);
    return pieces_[id];
  }

  std::int32_t vocab_size() const override { return static_cast<std::int32_t>(pieces_.size()); }
  std::int32_t bos_id() const override { return bos_id_; }
  std::int32_t eos_id() const override { return eos_id_; }

 private:
  using VocabEntries = std::vector<std::pair<std::string, std::int32_t>>;

  // ------------------------------------------------------------------------------------------------ loading
  // The checks run in this order (the first failure is the one reported): model type and options, vocabulary and
  // added tokens, unk_token, merges, then normalizer, pre-tokenizer, post-processor and decoder.
  void load(const json& root) {
    if (!root.is_object()) throw LoadError(fmt::format("tokenizer file '{}' is not a JSON object", path_));
    if (!root.contains("model") || !root["model"].is_object()) {
      throw LoadError(fmt::format("tokenizer file '{}' has no \"model\" object", path_));
    }
    const json& model = root["model"];
    model_.load_options(model, path_);
    std::int64_t max_id = -1;
    VocabEntries entries = read_model_vocab(model.at("vocab"), max_id);
    read_added_tokens(root, max_id);
    if (max_id < 0) throw LoadError(fmt::format("tokenizer file '{}' has an empty vocabulary", path_));
    build_pieces(std::move(entries), max_id);
    model_.load_unk(model, path_);
    model_.load_merges(model.at("merges"), path_);
    load_stages(root);
    const bool byte_level = std::any_of(pre_tokenizers_.begin(), pre_tokenizers_.end(),
                                        [](const PreOp& op) { return op.kind == PreOp::kByteLevel; });
    model_.finish(byte_level);
  }

  // model.vocab: piece -> id; `max_id` grows to the largest id.
  VocabEntries read_model_vocab(const json& vocab, std::int64_t& max_id) const {
    if (!vocab.is_object()) throw LoadError(fmt::format("tokenizer file '{}': model.vocab must be an object", path_));
    VocabEntries entries;
    entries.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const std::int32_t id = token_id(it.value(), "vocab", it.key());
      entries.emplace_back(it.key(), id);
      max_id = std::max<std::int64_t>(max_id, id);
    }
    return entries;
  }

  // An id of the vocabulary or of an added token: an integer in [0, Limits.max_vocab_size), checked before any
  // table is sized by it (a 100-byte file naming id 10^8 would otherwise build 10^8 strings).
  std::int32_t token_id(const json& v, const char* what, const std::string& token) const {
    if (!v.is_number_integer())
      throw LoadError(fmt::format("tokenizer file '{}': {} id of '{}' is not an integer ({})", path_, what, token,
                                  short_dump(v)));
    const std::int64_t max_vocab = limits().max_vocab_size;
    const bool in_range = v.is_number_unsigned() ? v.get<std::uint64_t>() < static_cast<std::uint64_t>(max_vocab)
                                                 : v.get<std::int64_t>() >= 0 && v.get<std::int64_t>() < max_vocab;
    if (!in_range)
      throw LoadError(fmt::format("tokenizer file '{}': {} id {} of '{}' is out of range [0, {}) "
                                  "(Limits.max_vocab_size)",
                                  path_, what, short_dump(v), token, max_vocab));
    return static_cast<std::int32_t>(v.get<std::int64_t>());
  }

  // "added_tokens" (which may lie beyond the model vocabulary); `max_id` grows to the largest id.
  void read_added_tokens(const json& root, std::int64_t& max_id) {
    if (!root.contains("added_tokens") || !root["added_tokens"].is_array()) return;
    for (const json& a : root["added_tokens"]) {
      std::string content = a.at("content").get<std::string>();
      const std::int32_t id = token_id(a.at("id"), "added token", content);
      AddedToken t{std::move(content), id, a.value("special", false), a.value("lstrip", false),
                   a.value("rstrip", false)};
      if (t.content.empty()) continue;
      max_id = std::max<std::int64_t>(max_id, t.id);
      added_.push_back(std::move(t));
    }
  }

  // The id -> piece table of model and added tokens; indexes the model's part.
  void build_pieces(VocabEntries entries, std::int64_t max_id) {
    pieces_.assign(static_cast<std::size_t>(max_id + 1), std::string());
    present_.assign(pieces_.size(), 0);
    special_.assign(pieces_.size(), 0);
    std::vector<std::int32_t> model_ids;
    model_ids.reserve(entries.size());
    for (auto& [s, id] : entries) {
      if (present_[id]) {
        throw LoadError(fmt::format("tokenizer file '{}': vocab id {} is used twice ('{}', '{}')", path_, id,
                                    pieces_[id], s));
      }
      pieces_[id] = std::move(s);
      present_[id] = 1;
      model_ids.push_back(id);
    }
    model_.index_vocab(pieces_, model_ids);
    for (const AddedToken& t : added_) {
      if (!present_[t.id]) pieces_[t.id] = t.content, present_[t.id] = 1;
      if (t.special) special_[t.id] = 1;
    }
    // Longest first, so the first hit at a position is the leftmost-longest match.
    std::stable_sort(added_.begin(), added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    for (std::size_t k = 0; k < added_.size(); ++k) {
      added_first_[static_cast<unsigned char>(added_[k].content[0])] = 1;
    }
  }

  void load_stages(const json& root) {
    if (root.contains("normalizer")) load_normalizer(root["normalizer"], path_, normalizers_);
    if (root.contains("pre_tokenizer")) load_pre_tokenizer(root["pre_tokenizer"], path_, pre_tokenizers_);
    if (root.contains("post_processor")) {
      load_post_processor(root["post_processor"], path_, [this](const std::string& s) { return find_token(s); },
                          vocab_size(), post_);
    }
    if (root.contains("decoder") && !root["decoder"].is_null()) {
      has_decoder_ = true;
      load_decoder(root["decoder"], path_, decoders_);
    }
  }

  std::int32_t find_token(const std::string& s) const {
    for (const AddedToken& t : added_) {
      if (t.content == s) return t.id;
    }
    return model_.find(s);
  }

  // tokenizer_config.json beside the file: BOS/EOS names and add_bos_token when there is no template.
  void load_config() {
    const json cfg = read_config();
    auto id_of = [&](const char* key) -> std::int32_t {
      if (!cfg.is_object() || !cfg.contains(key)) return -1;
      const std::string name = token_content(cfg[key]);
      return name.empty() ? -1 : find_token(name);
    };
    bos_id_ = !post_.prefix.empty() ? post_.prefix.front() : id_of("bos_token");
    eos_id_ = id_of("eos_token");
    if (eos_id_ < 0 && !post_.suffix.empty()) eos_id_ = post_.suffix.back();
    if (!cfg.is_object()) {
      // No config: the conventional names of special added tokens.
      for (const char* name : {"<s>", "<|begin_of_text|>"}) {
        if (bos_id_ < 0) bos_id_ = special_added(name);
      }
      for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>"}) {
        if (eos_id_ < 0) eos_id_ = special_added(name);
      }
    }
    if (!post_.has_template && cfg.is_object()) {
      if (cfg.value("add_bos_token", false) && bos_id_ >= 0) post_.prefix.push_back(bos_id_);
      if (cfg.value("add_eos_token", false) && eos_id_ >= 0) post_.suffix.push_back(eos_id_);
    }
  }

  // The parsed tokenizer_config.json beside the file; null when there is none.
  json read_config() const {
    namespace fs = std::filesystem;
    const std::string cfg_path = (fs::path(path_).parent_path() / "tokenizer_config.json").string();
    std::error_code ec;
    if (!fs::exists(cfg_path, ec)) return json();
    const std::string text = read_file(cfg_path);  // a regular file only: a FIFO is refused, not waited on
    try {
      return parse_json(text, fmt::format("tokenizer config '{}'", cfg_path));
    } catch (const json::exception& e) {
      throw LoadError(fmt::format("cannot parse tokenizer config '{}': {}", cfg_path, e.what()));
    }
  }

  std::int32_t special_added(const std::string& name) const {
    for (const AddedToken& t : added_) {
      if (t.special && t.content == name) return t.id;
    }
    return -1;
  }

  void check_id(std::int32_t id) const {
    if (id < 0 || id >= vocab_size()) {
      throw InvalidArgument(fmt::format("token id {} out of range (vocab size {})", id, vocab_size()));
    }
  }

  // ------------------------------------------------------------------------------------------------ encoding
  // Added tokens split the text into segments; each segment runs through normalizer, pre-tokenizer and model;
  // the post-processor's tokens go around the whole.
  void encode_into(std::string_view text, bool bos, bool eos, std::vector<std::int32_t>& ids,
                   std::vector<TokenOffset>* offs) const {
    check_utf8(text);
    thread_local Work work;
    ids.reserve(text.size() / 3 + 4);
    if (bos) post_.add_prefix(ids, offs);
    std::size_t seg = 0, i = 0;
    const std::size_t n = text.size();
    while (i < n) {
      const AddedToken* hit = added_first_[static_cast<unsigned char>(text[i])] ? added_at(text, i) : nullptr;
      if (!hit) {
        ++i;
        continue;
      }
      std::size_t b = i, e = i + hit->content.size();
      if (hit->lstrip) b = skip_space_back(text, b, seg);
      if (hit->rstrip) e = skip_space_forward(text, e);
      encode_segment(text, seg, b, work, ids, offs);
      ids.push_back(hit->id);
      if (offs) offs->emplace_back(b, e);
      i = seg = e;
    }
    encode_segment(text, seg, n, work, ids, offs);
    if (bos) post_.add_suffix(ids, offs, n);
    if (eos && eos_id_ >= 0 && !(bos && !post_.suffix.empty() && post_.suffix.back() == eos_id_)) {
      ids.push_back(eos_id_);
      if (offs) offs->emplace_back(n, n);
    }
    // Do not keep the scratch space of a huge text alive in this thread.
    if (work.buf.capacity() > kMaxKeptScratch) work = Work();
  }

  // The longest added token starting at text[i], or null.
  const AddedToken* added_at(std::string_view text, std::size_t i) const {
    for (const AddedToken& t : added_) {
      if (t.content.size() <= text.size() - i && text.compare(i, t.content.size(), t.content) == 0) return &t;
    }
    return nullptr;
  }

  // Tokens of text[s, e) (no added tokens inside): normalizer, pre-tokenizer, then the model for each piece.
  void encode_segment(std::string_view text, std::size_t s, std::size_t e, Work& w, std::vector<std::int32_t>& ids,
                      std::vector<TokenOffset>* offs) const {
    if (s >= e) return;
    const bool aligned = offs != nullptr;
    w.buf.assign(text.data() + s, e - s);
    if (aligned) init_spans(w, s);
    for (const NormOp& op : normalizers_) normalize(op, w, aligned);
    w.pieces.clear();
    if (!w.buf.empty()) w.pieces.emplace_back(0, static_cast<std::uint32_t>(w.buf.size()));
    for (const PreOp& op : pre_tokenizers_) pre_tokenize(op, w, aligned, s == 0);
    std::vector<WordToken> toks;
    for (const Span& p : w.pieces) {
      const std::string_view word(w.buf.data() + p.first, p.second - p.first);
      toks.clear();
      model_.encode_word(word, toks);
      std::uint32_t start = 0;
      for (const WordToken& t : toks) {
        ids.push_back(t.id);
        if (aligned) offs->emplace_back(w.ab[p.first + start], w.ae[p.first + t.end - 1]);
        start = t.end;
      }
    }
  }

  // Each byte of w.buf (the segment starting at text offset `s`) spans its whole character in the text.
  static void init_spans(Work& w, std::size_t s) {
    w.ab.resize(w.buf.size());
    w.ae.resize(w.buf.size());
    for (std::size_t k = 0; k < w.buf.size();) {
      const std::size_t len = utf8_len(static_cast<unsigned char>(w.buf[k]));
      for (std::size_t q = 0; q < len; ++q) {
        w.ab[k + q] = static_cast<std::uint32_t>(s + k);
        w.ae[k + q] = static_cast<std::uint32_t>(s + k + len);
      }
      k += len;
    }
  }

  // ------------------------------------------------------------------------------------------------ state
  std::string path_;
  std::vector<std::string> pieces_;     // id -> piece ("" for ids that are neither vocab nor added)
  std::vector<std::uint8_t> present_;   // id -> has a piece
  std::vector<std::uint8_t> special_;   // id -> added token marked special (skipped by decode)
  std::vector<AddedToken> added_;       // longest first
  std::array<std::uint8_t, 256> added_first_{};  // first bytes of added tokens
  std::vector<NormOp> normalizers_;
  std::vector<PreOp> pre_tokenizers_;
  BpeModel model_;
  PostProcessor post_;
  std::vector<DecOp> decoders_;
  bool has_decoder_ = false;
  std::int32_t bos_id_ = -1, eos_id_ = -1;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path, const std::string& json_text) {
  return std::make_unique<HfBpeTokenizer>(path, json_text);
}

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& what, const nlohmann::json& root,
                                                  std::int32_t bos_id, std::int32_t eos_id) {
  return std::make_unique<HfBpeTokenizer>(what, root, bos_id, eos_id);
}

}  // namespace crossicl::detail
