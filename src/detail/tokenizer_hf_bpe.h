// The model stage of an HF tokenizer.json (`"model": {"type": "BPE"}`): the vocabulary index, the merge ranks and
// the rank-ordered merging of one pre-token, with byte fallback (LLaMA-2) or GPT-2's byte-level alphabet
// (LLaMA-3, GPT-2), and a cache of the tokens of short words. Implemented in src/engine/tokenizer_hf_bpe.cpp;
// the other stages are in detail/tokenizer_hf.h.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace crossicl::detail {

/// GPT-2's reversible byte -> printable character map.
struct ByteAlphabet {
  std::array<std::string, 256> chars;     // byte -> its character (UTF-8)
  std::array<std::int16_t, 324> byte_of;  // code point -> byte, -1 when not in the alphabet
};

/// The one byte alphabet (built on first use).
const ByteAlphabet& byte_alphabet();

/// One token of a pre-token ("word").
struct WordToken {
  std::int32_t id;
  std::uint32_t end;  // byte offset in the word where the token ends
};

/// 64-bit hash of a byte string (FNV-style over 8-byte words).
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

/// string -> id over the strings of a piece table (open addressing, ids as slots).
class VocabIndex {
 public:
  /// Indexes pieces[id] for each of `ids`; `pieces` must outlive the index.
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
  /// Id of `s`, -1 when it is not indexed.
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

/// A merge of two adjacent tokens.
struct Merge {
  std::int32_t rank;
  std::int32_t id;  // id of the merged token
};

/// (left id, right id) -> Merge, open addressing; key and value share a slot (one cache line per probe).
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

/// The BPE model. Loaded in steps by the tokenizer.json loader (tokenizer_hf.cpp), then immutable apart from its
/// internally locked word cache; encode_word is safe to call from several threads.
class BpeModel {
 public:
  /// Checks the type and options of tokenizer.json's "model" object and reads its flags. Throws LoadError (naming
  /// `path`) for another model type or an unsupported option (continuing_subword_prefix, end_of_word_suffix,
  /// dropout).
  void load_options(const nlohmann::json& model, const std::string& path);

  /// Indexes the model vocabulary: the entries `ids` of `pieces` (which must outlive the model).
  void index_vocab(const std::vector<std::string>& pieces, const std::vector<std::int32_t>& ids);

  /// Reads "unk_token" of the model object; throws LoadError when it is not in the vocabulary.
  void load_unk(const nlohmann::json& model, const std::string& path);

  /// Reads "merges" ("a b" strings or [a, b] pairs, by rank); throws LoadError for a malformed merge or one that
  /// names a token outside the vocabulary.
  void load_merges(const nlohmann::json& merges, const std::string& path);

  /// Fills the byte and ASCII tables once the pre-tokenizer is known (`byte_level`: a ByteLevel pre-tokenizer, so
  /// words are mapped through the byte alphabet).
  void finish(bool byte_level);

  /// Id of a vocabulary piece, -1 when absent.
  std::int32_t find(std::string_view piece) const { return index_.find(piece); }

  /// BPE of one pre-token (bytes of the normalized text); appends its tokens with their end offsets in `word`.
  void encode_word(std::string_view word, std::vector<WordToken>& out) const;

 private:
  struct Sym {
    std::int32_t id;
    std::uint32_t end;  // byte offset in the word after the symbol
    std::int32_t prev, next;
    std::int32_t rank = 0, merged = -1;  // small words: the merge of this symbol with the next one
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<WordToken>> map;
  };
  static constexpr std::size_t kMaxCachedWord = 64;
  static constexpr std::int32_t kSmallWord = 48;
  static constexpr std::int32_t kNoMerge = 0x7FFFFFFF;
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kShardCapacity = 16384;

  std::int32_t whole_word_id(std::string_view word) const;
  void bpe(std::string_view word, std::vector<WordToken>& out) const;
  void initial_symbols(std::string_view word, std::vector<Sym>& syms) const;
  void merge_small(std::vector<Sym>& syms) const;
  void merge_with_heap(std::vector<Sym>& syms) const;
  static void push_initial(std::vector<Sym>& syms, std::int32_t id, std::uint32_t end);
  static void merge_at(std::vector<Sym>& syms, std::int32_t k, std::int32_t id);
  static void emit(const std::vector<Sym>& syms, std::vector<WordToken>& out);
  bool cache_lookup(std::string_view word, std::vector<WordToken>& out) const;
  void cache_store(std::string_view word, const WordToken* toks, std::size_t count) const;

  VocabIndex index_;  // model vocabulary
  PairMap merges_;
  std::int32_t unk_id_ = -1;
  bool byte_level_ = false, byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::array<std::int32_t, 256> byte_ids_{};      // byte-level: byte -> id of its alphabet character
  std::array<std::int32_t, 256> fallback_ids_{};  // byte fallback: byte -> id of <0xNN>
  std::array<std::int32_t, 128> ascii_ids_{};     // ASCII character -> id (-1 when not in the vocabulary)
  mutable std::array<Shard, kShards> shards_;     // word cache, sharded by hash
};

}  // namespace crossicl::detail
