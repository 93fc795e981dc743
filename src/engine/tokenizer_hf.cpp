// HF tokenizer.json BPE: added-token splitting, normalizers, pre-tokenizers (hand-written regex matchers),
// rank-ordered BPE merging with byte fallback or the byte-level alphabet, post-processor templates, decoders.
#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "detail/tokenizer_impl.h"
#include "detail/tokenizer_pretok.h"
#include "detail/unicode_class.h"

namespace crossicl::detail {

namespace {

using json = nlohmann::json;

inline std::uint64_t hash_bytes(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ (s.size() * 0x9E3779B97F4A7C15ULL);
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  for (; i < s.size(); ++i) h = (h ^ static_cast<unsigned char>(s[i])) * 0x100000001b3ULL;
  h ^= h >> 32;
  return h * 0x9E3779B97F4A7C15ULL;
}

// string -> id over the strings of a piece table (open addressing, ids as slots).
class VocabIndex {
 public:
  void build(const std::vector<std::string>& pieces, const std::vector<std::int32_t>& ids) {
    pieces_ = &pieces;
    std::size_t cap = 16;
    int bits = 4;
    while (cap < ids.size() * 2) cap <<= 1, ++bits;
    slots_.assign(cap, -1);
    mask_ = cap - 1;
    shift_ = 64 - bits;
    for (std::int32_t id : ids) {
      std::size_t h = hash_bytes(pieces[id]) >> shift_;
      while (slots_[h] >= 0) h = (h + 1) & mask_;
      slots_[h] = id;
    }
  }
  std::int32_t find(std::string_view s) const {
    if (slots_.empty()) return -1;
    std::size_t h = hash_bytes(s) >> shift_;
    while (true) {
      const std::int32_t id = slots_[h];
      if (id < 0) return -1;
      if ((*pieces_)[id] == s) return id;
      h = (h + 1) & mask_;
    }
  }

 private:
  const std::vector<std::string>* pieces_ = nullptr;
  std::vector<std::int32_t> slots_;
  std::size_t mask_ = 0;
  int shift_ = 60;
};

struct Merge {
  std::int32_t rank;
  std::int32_t id;  // id of the merged token
};

// (left id, right id) -> Merge, open addressing; key and value share a slot (one cache line per probe).
class PairMap {
 public:
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    int bits = 4;
    while (cap < n * 2) cap <<= 1, ++bits;
    slots_.assign(cap, Slot{kEmpty, Merge{0, 0}});
    mask_ = cap - 1;
    shift_ = 64 - bits;
  }
  void insert(std::int32_t a, std::int32_t b, Merge m) {
    const std::uint64_t key = make_key(a, b);
    std::size_t h = slot(key);
    while (slots_[h].key != kEmpty && slots_[h].key != key) h = (h + 1) & mask_;
    slots_[h].key = key;
    slots_[h].value = m;  // a repeated pair takes its last rank, as HF's merge map does
  }
  const Merge* find(std::int32_t a, std::int32_t b) const {
    const std::uint64_t key = make_key(a, b);
    std::size_t h = slot(key);
    while (true) {
      const Slot& sl = slots_[h];
      if (sl.key == key) return &sl.value;
      if (sl.key == kEmpty) return nullptr;
      h = (h + 1) & mask_;
    }
  }

 private:
  struct Slot {
    std::uint64_t key;
    Merge value;
  };
  static constexpr std::uint64_t kEmpty = ~0ULL;
  static std::uint64_t make_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }
  // Multiplicative hashing: the product's high bits depend on all bits of the key.
  std::size_t slot(std::uint64_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> shift_);
  }
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  int shift_ = 60;
};

// GPT-2's reversible byte -> printable character map.
struct ByteAlphabet {
  std::array<std::string, 256> chars;
  std::array<std::int16_t, 324> byte_of;  // code point -> byte, -1 when not in the alphabet
  ByteAlphabet() {
    byte_of.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const std::uint32_t cp = printable ? static_cast<std::uint32_t>(b) : static_cast<std::uint32_t>(256 + extra++);
      utf8_append(chars[b], cp);
      byte_of[cp] = static_cast<std::int16_t>(b);
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct NormOp {
  enum Kind { kPrepend, kReplace } kind;
  std::string pattern;  // kReplace: the literal replaced
  std::string content;  // kPrepend: the prefix; kReplace: the replacement
};

struct PreOp {
  enum Kind { kSplitPattern, kSplitString, kDigits, kByteLevel, kMetaspace, kWhitespaceSplit } kind;
  SplitPattern pattern = SplitPattern::kGpt2;
  std::string literal;           // kSplitString: the delimiter; kMetaspace: the replacement character
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  bool individual_digits = false;
  bool add_prefix_space = false;  // kByteLevel
  bool use_regex = true;          // kByteLevel
  int prepend_scheme = 0;         // kMetaspace: 0 always, 1 first, 2 never
  bool split = true;              // kMetaspace
};

struct DecOp {
  enum Kind { kReplace, kByteFallback, kFuse, kStrip, kByteLevel, kMetaspace } kind;
  std::string pattern;  // kReplace pattern, kStrip content, kMetaspace replacement
  std::string content;  // kReplace content
  std::size_t start = 0, stop = 0;
  bool prepend = true;  // kMetaspace: the first token's replacement characters are dropped
};

struct AddedToken {
  std::string content;
  std::int32_t id;
  bool special;
  bool lstrip;
  bool rstrip;
};

using Span = std::pair<std::uint32_t, std::uint32_t>;

// Per-thread scratch space of one encode call.
struct Work {
  std::string buf, buf2;
  std::vector<std::uint32_t> ab, ae, ab2, ae2;  // original byte span of each byte of buf
  std::vector<Span> pieces, pieces2;
  struct Seg {
    std::uint32_t b, e;
    bool match;
  };
  std::vector<Seg> segs;
};

struct WordToken {
  std::int32_t id;
  std::uint32_t end;  // byte offset in the word where the token ends
};

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

Behavior parse_behavior(const std::string& s, const std::string& path) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  throw LoadError(fmt::format("tokenizer file '{}': unknown split behavior '{}'", path, s));
}

// Text of a pattern object {"String": s} or {"Regex": r}; `is_regex` tells which.
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
                              path, p.dump()));
}

std::string token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

class HfBpeTokenizer final : public Tokenizer {
 public:
  HfBpeTokenizer(const std::string& path, const std::string& text) : path_(path) {
    json root;
    try {
      root = json::parse(text);
    } catch (const json::exception& e) {
      throw LoadError(fmt::format("cannot parse tokenizer file '{}' as JSON: {}", path, e.what()));
    }
    try {
      load(root);
    } catch (const json::exception& e) {
      throw LoadError(fmt::format("malformed tokenizer file '{}': {}", path, e.what()));
    }
    load_config();
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
  // ------------------------------------------------------------------------------------------------ loading
  void load(const json& root) {
    if (!root.is_object()) throw LoadError(fmt::format("tokenizer file '{}' is not a JSON object", path_));
    if (!root.contains("model") || !root["model"].is_object()) {
      throw LoadError(fmt::format("tokenizer file '{}' has no \"model\" object", path_));
    }
    const json& model = root["model"];
    std::string type = type_of(model);
    if (type.empty() && model.contains("merges")) type = "BPE";
    if (type != "BPE") {
      throw LoadError(fmt::format("tokenizer file '{}' has model type '{}'; only BPE is supported", path_,
                                  type.empty() ? "(none)" : type));
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
        throw LoadError(fmt::format("tokenizer file '{}': BPE option '{}' is not supported", path_, key));
      }
    }
    if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0.0) {
      throw LoadError(fmt::format("tokenizer file '{}': BPE dropout is not supported", path_));
    }
    byte_fallback_ = model.value("byte_fallback", false);
    fuse_unk_ = model.value("fuse_unk", false);
    ignore_merges_ = model.value("ignore_merges", false);

    // Vocabulary: model vocab plus added tokens (which may lie beyond it).
    const json& vocab = model.at("vocab");
    if (!vocab.is_object()) throw LoadError(fmt::format("tokenizer file '{}': model.vocab must be an object", path_));
    std::vector<std::pair<std::string, std::int32_t>> entries;
    entries.reserve(vocab.size());
    std::int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const std::int64_t id = it.value().get<std::int64_t>();
      if (id < 0 || id > 0x7FFFFFFF) {
        throw LoadError(fmt::format("tokenizer file '{}': vocab id {} of '{}' is out of range", path_, id, it.key()));
      }
      entries.emplace_back(it.key(), static_cast<std::int32_t>(id));
      max_id = std::max(max_id, id);
    }
    if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
      for (const json& a : root["added_tokens"]) {
        AddedToken t{a.at("content").get<std::string>(), a.at("id").get<std::int32_t>(), a.value("special", false),
                     a.value("lstrip", false), a.value("rstrip", false)};
        if (t.id < 0) throw LoadError(fmt::format("tokenizer file '{}': added token id {} < 0", path_, t.id));
        if (t.content.empty()) continue;
        max_id = std::max<std::int64_t>(max_id, t.id);
        added_.push_back(std::move(t));
      }
    }
    if (max_id < 0) throw LoadError(fmt::format("tokenizer file '{}' has an empty vocabulary", path_));
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
    index_.build(pieces_, model_ids);
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

    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      const std::string unk = model["unk_token"].get<std::string>();
      unk_id_ = index_.find(unk);
      if (unk_id_ < 0) {
        throw LoadError(fmt::format("tokenizer file '{}': unk_token '{}' is not in the vocabulary", path_, unk));
      }
    }
    load_merges(model.at("merges"));

    if (root.contains("normalizer")) load_normalizer(root["normalizer"]);
    if (root.contains("pre_tokenizer")) load_pre_tokenizer(root["pre_tokenizer"]);
    if (root.contains("post_processor")) load_post_processor(root["post_processor"]);
    if (root.contains("decoder") && !root["decoder"].is_null()) {
      has_decoder_ = true;
      load_decoder(root["decoder"]);
    }

    if (byte_level_) {
      const ByteAlphabet& alphabet = byte_alphabet();
      for (int b = 0; b < 256; ++b) byte_ids_[b] = index_.find(alphabet.chars[b]);
    }
    if (byte_fallback_) {
      for (int b = 0; b < 256; ++b) fallback_ids_[b] = index_.find(fmt::format("<0x{:02X}>", b));
    }
    for (int b = 0; b < 128; ++b) ascii_ids_[b] = index_.find(std::string(1, static_cast<char>(b)));
  }

  void load_merges(const json& merges) {
    if (!merges.is_array()) throw LoadError(fmt::format("tokenizer file '{}': model.merges must be an array", path_));
    merges_.reserve(merges.size());
    std::string a, b;
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
      const json& m = merges[rank];
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const std::size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          throw LoadError(fmt::format("tokenizer file '{}': merge {} ('{}') is not two tokens separated by a space",
                                      path_, rank, s));
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        throw LoadError(fmt::format("tokenizer file '{}': merge {} is neither \"a b\" nor [a, b]: {}", path_, rank,
                                    m.dump()));
      }
      const std::int32_t ia = index_.find(a), ib = index_.find(b), ic = index_.find(a + b);
      if (ia < 0 || ib < 0 || ic < 0) {
        throw LoadError(fmt::format("tokenizer file '{}': merge {} ('{}' + '{}') uses a token not in the vocabulary",
                                    path_, rank, a, b));
      }
      merges_.insert(ia, ib, Merge{static_cast<std::int32_t>(rank), ic});
    }
  }

  void load_normalizer(const json& n) {
    if (n.is_null()) return;
    const std::string type = type_of(n);
    if (type == "Sequence") {
      for (const json& c : n.at("normalizers")) load_normalizer(c);
    } else if (type == "Prepend") {
      normalizers_.push_back(NormOp{NormOp::kPrepend, "", n.at("prepend").get<std::string>()});
    } else if (type == "Replace") {
      bool is_regex = false;
      std::string pat = pattern_text(n.at("pattern"), is_regex, path_);
      if (is_regex) {
        throw LoadError(fmt::format("tokenizer file '{}': Replace normalizer with a regex is not supported", path_));
      }
      normalizers_.push_back(NormOp{NormOp::kReplace, std::move(pat), n.at("content").get<std::string>()});
    } else {
      throw LoadError(fmt::format("tokenizer file '{}': normalizer type '{}' is not supported", path_, type));
    }
  }

  void load_pre_tokenizer(const json& p) {
    if (p.is_null()) return;
    const std::string type = type_of(p);
    PreOp op{};
    if (type == "Sequence") {
      for (const json& c : p.at("pretokenizers")) load_pre_tokenizer(c);
      return;
    } else if (type == "Split") {
      bool is_regex = false;
      std::string pat = pattern_text(p.at("pattern"), is_regex, path_);
      op.behavior = parse_behavior(p.value("behavior", std::string("Isolated")), path_);
      op.invert = p.value("invert", false);
      if (is_regex) {
        if (!recognize_split_pattern(pat, op.pattern)) {
          throw LoadError(fmt::format("tokenizer file '{}': Split regex '{}' is not one of the supported patterns "
                                      "(GPT-2, LLaMA-3, Qwen2)",
                                      path_, pat));
        }
        op.kind = PreOp::kSplitPattern;
      } else {
        if (pat.empty()) throw LoadError(fmt::format("tokenizer file '{}': empty Split pattern", path_));
        op.kind = PreOp::kSplitString;
        op.literal = std::move(pat);
      }
    } else if (type == "Digits") {
      op.kind = PreOp::kDigits;
      op.individual_digits = p.value("individual_digits", false);
    } else if (type == "ByteLevel") {
      op.kind = PreOp::kByteLevel;
      op.add_prefix_space = p.value("add_prefix_space", false);
      op.use_regex = p.value("use_regex", true);
      byte_level_ = true;
    } else if (type == "Metaspace") {
      op.kind = PreOp::kMetaspace;
      op.literal = p.value("replacement", std::string("\xE2\x96\x81"));
      op.split = p.value("split", true);
      if (p.contains("prepend_scheme") && p["prepend_scheme"].is_string()) {
        const std::string s = p["prepend_scheme"].get<std::string>();
        op.prepend_scheme = s == "always" ? 0 : s == "first" ? 1 : 2;
      } else {
        op.prepend_scheme = p.value("add_prefix_space", true) ? 0 : 2;
      }
    } else if (type == "WhitespaceSplit") {
      op.kind = PreOp::kWhitespaceSplit;
    } else {
      throw LoadError(fmt::format("tokenizer file '{}': pre_tokenizer type '{}' is not supported", path_, type));
    }
    pre_tokenizers_.push_back(std::move(op));
  }

  void add_template_token(const json& special_tokens, const std::string& name, std::vector<std::int32_t>& out) {
    if (special_tokens.is_object() && special_tokens.contains(name)) {
      for (const json& id : special_tokens[name].at("ids")) out.push_back(id.get<std::int32_t>());
      return;
    }
    const std::int32_t id = find_token(name);
    if (id < 0) {
      throw LoadError(fmt::format("tokenizer file '{}': post_processor token '{}' is unknown", path_, name));
    }
    out.push_back(id);
  }

  void load_post_processor(const json& p) {
    if (p.is_null()) return;
    const std::string type = type_of(p);
    if (type == "Sequence") {
      for (const json& c : p.at("processors")) load_post_processor(c);
    } else if (type == "TemplateProcessing") {
      const json empty = json::object();
      const json& special = p.contains("special_tokens") ? p["special_tokens"] : empty;
      bool seen_sequence = false;
      for (const json& item : p.at("single")) {
        if (item.contains("Sequence")) {
          seen_sequence = true;
        } else if (item.contains("SpecialToken")) {
          add_template_token(special, item["SpecialToken"].at("id").get<std::string>(),
                             seen_sequence ? suffix_ : prefix_);
        }
      }
      has_template_ = true;
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      prefix_.push_back(p.at("cls").at(1).get<std::int32_t>());
      suffix_.push_back(p.at("sep").at(1).get<std::int32_t>());
      has_template_ = true;
    } else if (type != "ByteLevel") {
      throw LoadError(fmt::format("tokenizer file '{}': post_processor type '{}' is not supported", path_, type));
    }
  }

  void load_decoder(const json& d) {
    const std::string type = type_of(d);
    DecOp op{};
    if (type == "Sequence") {
      for (const json& c : d.at("decoders")) load_decoder(c);
      return;
    } else if (type == "Replace") {
      bool is_regex = false;
      op.kind = DecOp::kReplace;
      op.pattern = pattern_text(d.at("pattern"), is_regex, path_);
      if (is_regex) {
        throw LoadError(fmt::format("tokenizer file '{}': Replace decoder with a regex is not supported", path_));
      }
      op.content = d.at("content").get<std::string>();
    } else if (type == "ByteFallback") {
      op.kind = DecOp::kByteFallback;
    } else if (type == "Fuse") {
      op.kind = DecOp::kFuse;
    } else if (type == "Strip") {
      op.kind = DecOp::kStrip;
      op.pattern = d.at("content").get<std::string>();
      op.start = d.value("start", std::size_t{0});
      op.stop = d.value("stop", std::size_t{0});
    } else if (type == "ByteLevel") {
      op.kind = DecOp::kByteLevel;
    } else if (type == "Metaspace") {
      op.kind = DecOp::kMetaspace;
      op.pattern = d.value("replacement", std::string("\xE2\x96\x81"));
      if (d.contains("prepend_scheme") && d["prepend_scheme"].is_string()) {
        op.prepend = d["prepend_scheme"].get<std::string>() != "never";
      } else {
        op.prepend = d.value("add_prefix_space", true);
      }
    } else {
      throw LoadError(fmt::format("tokenizer file '{}': decoder type '{}' is not supported", path_, type));
    }
    decoders_.push_back(std::move(op));
  }

  std::int32_t find_token(const std::string& s) const {
    for (const AddedToken& t : added_) {
      if (t.content == s) return t.id;
    }
    return index_.find(s);
  }

  // tokenizer_config.json beside the file: BOS/EOS names and add_bos_token when there is no template.
  void load_config() {
    namespace fs = std::filesystem;
    const fs::path cfg_path = fs::path(path_).parent_path() / "tokenizer_config.json";
    json cfg;
    std::error_code ec;
    if (fs::exists(cfg_path, ec)) {
      std::ifstream in(cfg_path);
      std::stringstream ss;
      ss << in.rdbuf();
      try {
        cfg = json::parse(ss.str());
      } catch (const json::exception& e) {
        throw LoadError(fmt::format("cannot parse tokenizer config '{}': {}", cfg_path.string(), e.what()));
      }
    }
    auto id_of = [&](const char* key) -> std::int32_t {
      if (!cfg.is_object() || !cfg.contains(key)) return -1;
      const std::string name = token_content(cfg[key]);
      return name.empty() ? -1 : find_token(name);
    };
    bos_id_ = !prefix_.empty() ? prefix_.front() : id_of("bos_token");
    eos_id_ = id_of("eos_token");
    if (eos_id_ < 0 && !suffix_.empty()) eos_id_ = suffix_.back();
    if (!cfg.is_object()) {
      // No config: the conventional names of special added tokens.
      for (const char* name : {"<s>", "<|begin_of_text|>"}) {
        if (bos_id_ < 0) bos_id_ = special_added(name);
      }
      for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>"}) {
        if (eos_id_ < 0) eos_id_ = special_added(name);
      }
    }
    if (!has_template_ && cfg.is_object()) {
      if (cfg.value("add_bos_token", false) && bos_id_ >= 0) prefix_.push_back(bos_id_);
      if (cfg.value("add_eos_token", false) && eos_id_ >= 0) suffix_.push_back(eos_id_);
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
  void encode_into(std::string_view text, bool bos, bool eos, std::vector<std::int32_t>& ids,
                   std::vector<TokenOffset>* offs) const {
    check_utf8(text);
    thread_local Work work;
    ids.reserve(text.size() / 3 + 4);
    if (bos) {
      for (std::int32_t id : prefix_) {
        ids.push_back(id);
        if (offs) offs->emplace_back(0, 0);
      }
    }
    std::size_t seg = 0, i = 0;
    const std::size_t n = text.size();
    while (i < n) {
      if (added_first_[static_cast<unsigned char>(text[i])]) {
        const AddedToken* hit = nullptr;
        for (const AddedToken& t : added_) {
          if (t.content.size() <= n - i && text.compare(i, t.content.size(), t.content) == 0) {
            hit = &t;
            break;
          }
        }
        if (hit) {
          std::size_t b = i, e = i + hit->content.size();
          if (hit->lstrip) b = skip_space_back(text, b, seg);
          if (hit->rstrip) e = skip_space_forward(text, e);
          encode_segment(text, seg, b, work, ids, offs);
          ids.push_back(hit->id);
          if (offs) offs->emplace_back(b, e);
          i = seg = e;
          continue;
        }
      }
      ++i;
    }
    encode_segment(text, seg, n, work, ids, offs);
    if (bos) {
      for (std::int32_t id : suffix_) {
        ids.push_back(id);
        if (offs) offs->emplace_back(n, n);
      }
    }
    if (eos && eos_id_ >= 0 && !(bos && !suffix_.empty() && suffix_.back() == eos_id_)) {
      ids.push_back(eos_id_);
      if (offs) offs->emplace_back(n, n);
    }
    // Do not keep the scratch space of a huge text alive in this thread.
    if (work.buf.capacity() > kMaxKeptScratch) work = Work();
  }

  static std::size_t skip_space_back(std::string_view text, std::size_t b, std::size_t floor) {
    while (b > floor) {
      std::size_t p = b - 1;
      while (p > floor && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
      std::size_t len = 0;
      if (unicode_class(utf8_decode(text, p, len)) != UClass::kSpace) break;
      b = p;
    }
    return b;
  }

  static std::size_t skip_space_forward(std::string_view text, std::size_t e) {
    std::size_t len = 0;
    while (e < text.size() && unicode_class(utf8_decode(text, e, len)) == UClass::kSpace) e += len;
    return e;
  }

  void encode_segment(std::string_view text, std::size_t s, std::size_t e, Work& w, std::vector<std::int32_t>& ids,
                      std::vector<TokenOffset>* offs) const {
    if (s >= e) return;
    const bool aligned = offs != nullptr;
    w.buf.assign(text.data() + s, e - s);
    if (aligned) {
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
    for (const NormOp& op : normalizers_) normalize(op, w, aligned);
    w.pieces.clear();
    if (!w.buf.empty()) w.pieces.emplace_back(0, static_cast<std::uint32_t>(w.buf.size()));
    for (const PreOp& op : pre_tokenizers_) pre_tokenize(op, w, aligned, s == 0);
    std::vector<WordToken> toks;
    for (const Span& p : w.pieces) {
      const std::string_view word(w.buf.data() + p.first, p.second - p.first);
      toks.clear();
      encode_word(word, toks);
      std::uint32_t start = 0;
      for (const WordToken& t : toks) {
        ids.push_back(t.id);
        if (aligned) offs->emplace_back(w.ab[p.first + start], w.ae[p.first + t.end - 1]);
        start = t.end;
      }
    }
  }

  static void normalize(const NormOp& op, Work& w, bool aligned) {
    if (op.kind == NormOp::kPrepend) {
      if (w.buf.empty() || op.content.empty()) return;
      w.buf.insert(0, op.content);
      if (aligned) {
        w.ab.insert(w.ab.begin(), op.content.size(), w.ab.front());
        w.ae.insert(w.ae.begin(), op.content.size(), w.ae.front());
      }
      return;
    }
    if (op.pattern.empty() || w.buf.find(op.pattern) == std::string::npos) return;
    w.buf2.clear();
    w.ab2.clear();
    w.ae2.clear();
    std::size_t k = 0;
    while (k < w.buf.size()) {
      const std::size_t m = w.buf.find(op.pattern, k);
      const std::size_t stop = m == std::string::npos ? w.buf.size() : m;
      w.buf2.append(w.buf, k, stop - k);
      if (aligned) {
        w.ab2.insert(w.ab2.end(), w.ab.begin() + k, w.ab.begin() + stop);
        w.ae2.insert(w.ae2.end(), w.ae.begin() + k, w.ae.begin() + stop);
      }
      if (m == std::string::npos) break;
      w.buf2 += op.content;
      if (aligned) {
        w.ab2.insert(w.ab2.end(), op.content.size(), w.ab[m]);
        w.ae2.insert(w.ae2.end(), op.content.size(), w.ae[m + op.pattern.size() - 1]);
      }
      k = m + op.pattern.size();
    }
    std::swap(w.buf, w.buf2);
    if (aligned) std::swap(w.ab, w.ab2), std::swap(w.ae, w.ae2);
  }

  // Appends the pieces of one split of [b, e) whose segments are in w.segs (tiling [b, e)).
  static void apply_behavior(const std::vector<Work::Seg>& segs, Behavior behavior, bool invert,
                             std::vector<Span>& out) {
    bool previous_match = false;
    const std::size_t first = out.size();
    switch (behavior) {
      case Behavior::kRemoved:
        for (const auto& sg : segs) {
          if (sg.match == invert) out.emplace_back(sg.b, sg.e);
        }
        break;
      case Behavior::kIsolated:
        for (const auto& sg : segs) out.emplace_back(sg.b, sg.e);
        break;
      case Behavior::kContiguous:
        for (const auto& sg : segs) {
          const bool m = sg.match != invert;
          if (m && previous_match && out.size() > first) {
            out.back().second = sg.e;
          } else {
            out.emplace_back(sg.b, sg.e);
          }
          previous_match = m;
        }
        break;
      case Behavior::kMergedWithPrevious:
        for (const auto& sg : segs) {
          const bool m = sg.match != invert;
          if (m && !previous_match && out.size() > first) {
            out.back().second = sg.e;
          } else {
            out.emplace_back(sg.b, sg.e);
          }
          previous_match = m;
        }
        break;
      case Behavior::kMergedWithNext: {
        // Right to left: a match joins the piece after it unless that piece is a match too.
        std::vector<Span> rev;
        for (std::size_t k = segs.size(); k-- > 0;) {
          const bool m = segs[k].match != invert;
          if (m && !previous_match && !rev.empty()) {
            rev.back().first = segs[k].b;
          } else {
            rev.emplace_back(segs[k].b, segs[k].e);
          }
          previous_match = m;
        }
        out.insert(out.end(), rev.rbegin(), rev.rend());
        break;
      }
    }
  }

  // Rebuilds w.buf with `prefix` inserted before each piece for which `want(piece)` holds, and with every
  // occurrence of `from` inside pieces replaced by `to` (when `from` is non-empty).
  template <typename Want>
  static void rebuild(Work& w, bool aligned, const std::string& prefix, Want want, const std::string& from,
                      const std::string& to) {
    w.buf2.clear();
    w.ab2.clear();
    w.ae2.clear();
    w.pieces2.clear();
    for (const Span& p : w.pieces) {
      const auto start = static_cast<std::uint32_t>(w.buf2.size());
      std::size_t k = p.first;
      if (!prefix.empty() && want(p)) {
        w.buf2 += prefix;
        if (aligned) {
          w.ab2.insert(w.ab2.end(), prefix.size(), w.ab[k]);
          w.ae2.insert(w.ae2.end(), prefix.size(), w.ae[k]);
        }
      }
      while (k < p.second) {
        if (!from.empty() && w.buf.compare(k, from.size(), from) == 0 && k + from.size() <= p.second) {
          w.buf2 += to;
          if (aligned) {
            w.ab2.insert(w.ab2.end(), to.size(), w.ab[k]);
            w.ae2.insert(w.ae2.end(), to.size(), w.ae[k + from.size() - 1]);
          }
          k += from.size();
        } else {
          w.buf2 += w.buf[k];
          if (aligned) w.ab2.push_back(w.ab[k]), w.ae2.push_back(w.ae[k]);
          ++k;
        }
      }
      w.pieces2.emplace_back(start, static_cast<std::uint32_t>(w.buf2.size()));
    }
    std::swap(w.buf, w.buf2);
    std::swap(w.pieces, w.pieces2);
    if (aligned) std::swap(w.ab, w.ab2), std::swap(w.ae, w.ae2);
  }

  using Segs = std::vector<Work::Seg>;
  using SegFinder = std::function<void(std::string_view, std::uint32_t, Segs&)>;

  // Splits every piece: `find` tiles a piece's text (absolute offsets from `base`) with match/gap segments.
  static void split_pieces(Work& w, Behavior behavior, bool invert, const SegFinder& find) {
    w.pieces2.clear();
    for (const Span& p : w.pieces) {
      w.segs.clear();
      find(std::string_view(w.buf).substr(p.first, p.second - p.first), p.first, w.segs);
      apply_behavior(w.segs, behavior, invert, w.pieces2);
    }
    std::swap(w.pieces, w.pieces2);
  }

  static void push_seg(Segs& segs, std::uint32_t base, std::size_t b, std::size_t e, bool match) {
    segs.push_back({static_cast<std::uint32_t>(base + b), static_cast<std::uint32_t>(base + e), match});
  }

  // Occurrences of the literal `lit` as matches, the text between them as gaps.
  static void literal_segments(std::string_view v, std::uint32_t base, const std::string& lit, Segs& segs) {
    std::size_t k = 0;
    while (k < v.size()) {
      const std::size_t m = v.find(lit, k);
      const std::size_t stop = m == std::string_view::npos ? v.size() : m;
      if (stop > k) push_seg(segs, base, k, stop, false);
      if (m == std::string_view::npos) break;
      push_seg(segs, base, m, m + lit.size(), true);
      k = m + lit.size();
    }
  }

  // Successive matches of a hand-written regex (they tile the text).
  static void pattern_segments(SplitPattern pattern, std::string_view v, std::uint32_t base, Segs& segs) {
    for (std::size_t k = 0; k < v.size();) {
      const std::size_t e = match_split_pattern(pattern, v, k);
      push_seg(segs, base, k, e, true);
      k = e;
    }
  }

  // Runs where `is_match(cp)` holds are matches (one per character when `each`), the rest gaps.
  template <typename Pred>
  static void class_segments(std::string_view v, std::uint32_t base, Segs& segs, Pred is_match, bool each) {
    std::size_t k = 0, len = 0;
    while (k < v.size()) {
      const bool m = is_match(utf8_decode(v, k, len));
      const auto b = static_cast<std::uint32_t>(base + k);
      const auto e = static_cast<std::uint32_t>(base + k + len);
      if (!segs.empty() && segs.back().match == m && segs.back().e == b && !(m && each)) {
        segs.back().e = e;
      } else {
        segs.push_back({b, e, m});
      }
      k += len;
    }
  }

  void pre_tokenize(const PreOp& op, Work& w, bool aligned, bool segment_at_start) const {
    if (w.pieces.empty()) return;
    static const std::string kSpace = " ";
    switch (op.kind) {
      case PreOp::kSplitPattern:
        split_pieces(w, op.behavior, op.invert, [&](std::string_view v, std::uint32_t base, Segs& segs) {
          pattern_segments(op.pattern, v, base, segs);
        });
        break;
      case PreOp::kSplitString:
        split_pieces(w, op.behavior, op.invert, [&](std::string_view v, std::uint32_t base, Segs& segs) {
          literal_segments(v, base, op.literal, segs);
        });
        break;
      case PreOp::kDigits: {
        const Behavior behavior = op.individual_digits ? Behavior::kIsolated : Behavior::kContiguous;
        split_pieces(w, behavior, false, [&](std::string_view v, std::uint32_t base, Segs& segs) {
          class_segments(
              v, base, segs, [](std::uint32_t cp) { return unicode_class(cp) == UClass::kNumber; }, true);
        });
        break;
      }
      case PreOp::kWhitespaceSplit:
        split_pieces(w, Behavior::kRemoved, false, [&](std::string_view v, std::uint32_t base, Segs& segs) {
          class_segments(
              v, base, segs, [](std::uint32_t cp) { return unicode_class(cp) == UClass::kSpace; }, false);
        });
        break;
      case PreOp::kByteLevel:
        if (op.add_prefix_space) {
          rebuild(
              w, aligned, kSpace, [&](const Span& p) { return w.buf[p.first] != ' '; }, "", "");
        }
        if (op.use_regex) {
          split_pieces(w, Behavior::kIsolated, false, [&](std::string_view v, std::uint32_t base, Segs& segs) {
            pattern_segments(SplitPattern::kGpt2, v, base, segs);
          });
        }
        break;
      case PreOp::kMetaspace: {
        const Span first = w.pieces.front();
        const std::string& rep = op.literal;
        auto want = [&](const Span& p) {
          if (op.prepend_scheme == 2) return false;
          // The check for a leading replacement looks at the text after spaces are replaced.
          const bool starts = w.buf.compare(p.first, rep.size(), rep) == 0 || w.buf[p.first] == ' ';
          if (starts) return false;
          return op.prepend_scheme == 0 || (segment_at_start && p == first);
        };
        rebuild(w, aligned, rep, want, kSpace, rep);
        if (op.split) {
          split_pieces(w, Behavior::kMergedWithNext, false, [&](std::string_view v, std::uint32_t base, Segs& segs) {
            literal_segments(v, base, rep, segs);
          });
        }
        break;
      }
    }
  }

  // BPE of one pre-token (bytes of the normalized text); appends tokens with their end offsets in `word`.
  void encode_word(std::string_view word, std::vector<WordToken>& out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
      std::int32_t id = -1;
      if (byte_level_) {
        std::string mapped;
        const ByteAlphabet& alphabet = byte_alphabet();
        for (char c : word) mapped += alphabet.chars[static_cast<unsigned char>(c)];
        id = index_.find(mapped);
      } else {
        id = index_.find(word);
      }
      if (id >= 0) {
        out.push_back({id, static_cast<std::uint32_t>(word.size())});
        return;
      }
    }
    const bool cacheable = word.size() <= kMaxCachedWord;
    if (cacheable && cache_lookup(word, out)) return;
    const std::size_t first = out.size();
    bpe(word, out);
    if (cacheable) cache_store(word, out.data() + first, out.size() - first);
  }

  struct Sym {
    std::int32_t id;
    std::uint32_t end;  // byte offset in the word after the symbol
    std::int32_t prev, next;
    std::int32_t rank = 0, merged = -1;  // small words: the merge of this symbol with the next one
  };

  void push_initial(std::vector<Sym>& syms, std::int32_t id, std::uint32_t end) const {
    const auto k = static_cast<std::int32_t>(syms.size());
    syms.push_back({id, end, k - 1, k + 1, 0, -1});
  }

  void bpe(std::string_view word, std::vector<WordToken>& out) const {
    thread_local std::vector<Sym> syms;
    syms.clear();
    // Initial symbols: characters (or bytes for byte-level BPE), unknown ones as byte-fallback tokens or <unk>.
    std::int32_t pending_unk_end = -1;  // end offset of a pending (possibly fused) <unk>
    auto flush_unk = [&]() {
      if (pending_unk_end >= 0) push_initial(syms, unk_id_, static_cast<std::uint32_t>(pending_unk_end));
      pending_unk_end = -1;
    };
    auto unknown = [&](std::size_t k, std::size_t len) {
      if (byte_fallback_) {
        bool all = true;
        for (std::size_t q = 0; q < len; ++q) all = all && fallback_ids_[static_cast<unsigned char>(word[k + q])] >= 0;
        if (all) {
          flush_unk();
          for (std::size_t q = 0; q < len; ++q) {
            push_initial(syms, fallback_ids_[static_cast<unsigned char>(word[k + q])],
                         static_cast<std::uint32_t>(k + q + 1));
          }
          return;
        }
      }
      if (unk_id_ < 0) return;  // HF drops characters it cannot represent when there is no unk token
      if (pending_unk_end >= 0 && !fuse_unk_) flush_unk();
      pending_unk_end = static_cast<std::int32_t>(k + len);
    };
    if (byte_level_) {
      for (std::size_t k = 0; k < word.size(); ++k) {
        const auto b = static_cast<unsigned char>(word[k]);
        if (byte_ids_[b] >= 0) {
          flush_unk();
          push_initial(syms, byte_ids_[b], static_cast<std::uint32_t>(k + 1));
        } else {
          unknown(k, 1);
        }
      }
    } else {
      for (std::size_t k = 0; k < word.size();) {
        const auto b0 = static_cast<unsigned char>(word[k]);
        const std::size_t len = utf8_len(b0);
        const std::int32_t id = b0 < 0x80 ? ascii_ids_[b0] : index_.find(word.substr(k, len));
        if (id >= 0) {
          flush_unk();
          push_initial(syms, id, static_cast<std::uint32_t>(k + len));
        } else {
          unknown(k, len);
        }
        k += len;
      }
    }
    flush_unk();
    const auto n = static_cast<std::int32_t>(syms.size());
    if (n == 0) return;
    syms.back().next = -1;

    if (n <= kSmallWord) {
      // Few symbols: scanning the cached rank of each adjacent pair beats a heap.
      auto set_rank = [&](std::int32_t k) {
        const Merge* m = syms[k].next >= 0 ? merges_.find(syms[k].id, syms[syms[k].next].id) : nullptr;
        syms[k].rank = m ? m->rank : kNoMerge;
        syms[k].merged = m ? m->id : -1;
      };
      for (std::int32_t k = 0; k < n; ++k) set_rank(k);
      while (true) {
        std::int32_t best = -1, best_rank = kNoMerge;
        for (std::int32_t k = 0; k >= 0; k = syms[k].next) {
          if (syms[k].rank < best_rank) best = k, best_rank = syms[k].rank;
        }
        if (best < 0) break;
        merge_at(syms, best, syms[best].merged);
        set_rank(best);
        if (syms[best].prev >= 0) set_rank(syms[best].prev);
      }
      for (std::int32_t k = 0; k >= 0; k = syms[k].next) out.push_back({syms[k].id, syms[k].end});
      return;
    }

    struct Cand {
      std::int32_t rank, pos, right, id, left_id, right_id;
      bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand> heap;
    auto consider = [&](std::int32_t k) {
      if (k < 0 || syms[k].next < 0) return;
      const Merge* m = merges_.find(syms[k].id, syms[syms[k].next].id);
      if (m) heap.push({m->rank, k, syms[k].next, m->id, syms[k].id, syms[syms[k].next].id});
    };
    for (std::int32_t k = 0; k + 1 < n; ++k) consider(k);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      // Stale when either side was merged away or changed since the candidate was pushed (a symbol only grows,
      // so an unchanged id means unchanged content).
      if (syms[c.pos].id != c.left_id || syms[c.pos].next != c.right || syms[c.right].id != c.right_id) continue;
      merge_at(syms, c.pos, c.id);
      consider(syms[c.pos].prev);
      consider(c.pos);
    }
    for (std::int32_t k = 0; k >= 0; k = syms[k].next) out.push_back({syms[k].id, syms[k].end});
    if (syms.capacity() > kMaxKeptScratch / sizeof(Sym)) std::vector<Sym>().swap(syms);
  }

  static void merge_at(std::vector<Sym>& syms, std::int32_t k, std::int32_t id) {
    const std::int32_t r = syms[k].next;
    syms[k].id = id;
    syms[k].end = syms[r].end;
    syms[k].next = syms[r].next;
    if (syms[r].next >= 0) syms[syms[r].next].prev = k;
    syms[r].id = -1;  // dead
  }

  // ------------------------------------------------------------------------------------------------ cache
  static constexpr std::size_t kMaxCachedWord = 64;
  static constexpr std::size_t kMaxKeptScratch = std::size_t{1} << 22;  // bytes
  static constexpr std::int32_t kSmallWord = 48;
  static constexpr std::int32_t kNoMerge = 0x7FFFFFFF;
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kShardCapacity = 16384;

  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<WordToken>> map;
  };

  bool cache_lookup(std::string_view word, std::vector<WordToken>& out) const {
    Shard& sh = shards_[hash_bytes(word) % kShards];
    std::lock_guard<std::mutex> lock(sh.mu);
    auto it = sh.map.find(std::string(word));
    if (it == sh.map.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }

  void cache_store(std::string_view word, const WordToken* toks, std::size_t count) const {
    Shard& sh = shards_[hash_bytes(word) % kShards];
    std::lock_guard<std::mutex> lock(sh.mu);
    if (sh.map.size() >= kShardCapacity) sh.map.clear();
    sh.map.emplace(std::string(word), std::vector<WordToken>(toks, toks + count));
  }

  // ------------------------------------------------------------------------------------------------ decoding
  static void apply_decoder(const DecOp& op, std::vector<std::string>& toks) {
    switch (op.kind) {
      case DecOp::kReplace:
        for (auto& t : toks) t = replace_all(t, op.pattern, op.content);
        break;
      case DecOp::kFuse: {
        std::string all;
        for (const auto& t : toks) all += t;
        toks.assign(1, std::move(all));
        break;
      }
      case DecOp::kStrip:
        for (auto& t : toks) t = strip(t, op.pattern, op.start, op.stop);
        break;
      case DecOp::kByteFallback: {
        std::vector<std::string> out;
        std::string bytes;
        auto flush = [&]() {
          if (bytes.empty()) return;
          if (utf8_first_invalid(bytes) == std::string_view::npos) {
            out.push_back(bytes);
          } else {
            for (std::size_t k = 0; k < bytes.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
          }
          bytes.clear();
        };
        for (auto& t : toks) {
          int b = -1;
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') b = parse_hex_byte(t[3], t[4]);
          if (b >= 0) {
            bytes += static_cast<char>(b);
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        toks = std::move(out);
        break;
      }
      case DecOp::kByteLevel: {
        const ByteAlphabet& alphabet = byte_alphabet();
        std::string bytes;
        for (const auto& t : toks) {
          std::string mapped;
          bool ok = true;
          for (std::size_t k = 0; k < t.size() && ok;) {
            std::size_t len = 0;
            const std::uint32_t cp = utf8_decode(t, k, len);
            if (cp < alphabet.byte_of.size() && alphabet.byte_of[cp] >= 0) {
              mapped += static_cast<char>(alphabet.byte_of[cp]);
            } else {
              ok = false;
            }
            k += len;
          }
          bytes += ok ? mapped : t;
        }
        toks.assign(1, utf8_lossy(bytes));
        break;
      }
      case DecOp::kMetaspace:
        for (std::size_t i = 0; i < toks.size(); ++i) {
          toks[i] = replace_all(toks[i], op.pattern, (i == 0 && op.prepend) ? "" : " ");
        }
        break;
    }
  }

  static int parse_hex_byte(char hi, char lo) {
    auto v = [](char c) {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    const int h = v(hi), l = v(lo);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }

  static std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
    if (from.empty()) return s;
    std::string out;
    std::size_t k = 0;
    while (true) {
      const std::size_t m = s.find(from, k);
      if (m == std::string::npos) break;
      out.append(s, k, m - k);
      out += to;
      k = m + from.size();
    }
    out.append(s, k, std::string::npos);
    return out;
  }

  static std::string strip(const std::string& s, const std::string& content, std::size_t start, std::size_t stop) {
    std::size_t b = 0, e = s.size();
    for (std::size_t k = 0; k < start && !content.empty() && s.compare(b, content.size(), content) == 0; ++k) {
      b += content.size();
    }
    for (std::size_t k = 0; k < stop && !content.empty() && e >= b + content.size() &&
                            s.compare(e - content.size(), content.size(), content) == 0;
         ++k) {
      e -= content.size();
    }
    return s.substr(b, e - b);
  }

  // ------------------------------------------------------------------------------------------------ state
  std::string path_;
  std::vector<std::string> pieces_;     // id -> piece ("" for ids that are neither vocab nor added)
  std::vector<std::uint8_t> present_;   // id -> has a piece
  std::vector<std::uint8_t> special_;   // id -> added token marked special (skipped by decode)
  VocabIndex index_;                    // model vocabulary
  PairMap merges_;
  std::vector<AddedToken> added_;       // longest first
  std::array<std::uint8_t, 256> added_first_{};  // first bytes of added tokens
  std::vector<NormOp> normalizers_;
  std::vector<PreOp> pre_tokenizers_;
  std::vector<DecOp> decoders_;
  bool has_decoder_ = false;
  std::vector<std::int32_t> prefix_, suffix_;  // post-processor tokens around the sequence
  bool has_template_ = false;
  std::int32_t bos_id_ = -1, eos_id_ = -1, unk_id_ = -1;
  bool byte_level_ = false, byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::array<std::int32_t, 256> byte_ids_{};      // byte-level: byte -> id of its alphabet character
  std::array<std::int32_t, 256> fallback_ids_{};  // byte fallback: byte -> id of <0xNN>
  std::array<std::int32_t, 128> ascii_ids_{};     // ASCII character -> id (-1 when not in the vocabulary)
  mutable std::array<Shard, kShards> shards_;
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
