// The BPE model stage of HF tokenizer.json: rank-ordered merging of one pre-token, starting from its characters
// (with byte fallback or <unk> for unknown ones) or from its bytes mapped through GPT-2's byte-level alphabet.
#include "detail/tokenizer_hf_bpe.h"

#include <algorithm>
#include <queue>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/json.h"
#include "detail/tokenizer_hf.h"
#include "detail/utf8.h"

namespace crossicl::detail {

namespace {

using json = nlohmann::json;

ByteAlphabet make_byte_alphabet() {
  ByteAlphabet a;
  a.byte_of.fill(-1);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const std::uint32_t cp = printable ? static_cast<std::uint32_t>(b) : static_cast<std::uint32_t>(256 + extra++);
    utf8_append(a.chars[b], cp);
    a.byte_of[cp] = static_cast<std::int16_t>(b);
  }
  return a;
}

// The two tokens of merge number `rank` ("a b" or [a, b]) into `a` and `b`.
void merge_pair(const json& m, std::size_t rank, const std::string& path, std::string& a, std::string& b) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const std::size_t sp = s.find(' ');
    if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
      throw LoadError(fmt::format("tokenizer file '{}': merge {} ('{}') is not two tokens separated by a space",
                                  path, rank, s));
    }
    a = s.substr(0, sp);
    b = s.substr(sp + 1);
  } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    a = m[0].get<std::string>();
    b = m[1].get<std::string>();
  } else {
    throw LoadError(
        fmt::format("tokenizer file '{}': merge {} is neither \"a b\" nor [a, b]: {}", path, rank, short_dump(m)));
  }
}

}  // namespace

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet = make_byte_alphabet();
  return alphabet;
}

// ------------------------------------------------------------------------------------------------ loading

void BpeModel::load_options(const json& model, const std::string& path) {
  std::string type = type_of(model);
  if (type.empty() && model.contains("merges")) type = "BPE";
  if (type != "BPE") {
    throw LoadError(fmt::format("tokenizer file '{}' has model type '{}'; only BPE is supported", path,
                                type.empty() ? "(none)" : type));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      throw LoadError(fmt::format("tokenizer file '{}': BPE option '{}' is not supported", path, key));
    }
  }
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0.0) {
    throw LoadError(fmt::format("tokenizer file '{}': BPE dropout is not supported", path));
  }
  byte_fallback_ = model.value("byte_fallback", false);
  fuse_unk_ = model.value("fuse_unk", false);
  ignore_merges_ = model.value("ignore_merges", false);
}

void BpeModel::index_vocab(const std::vector<std::string>& pieces, const std::vector<std::int32_t>& ids) {
  index_.build(pieces, ids);
}

void BpeModel::load_unk(const json& model, const std::string& path) {
  if (!model.contains("unk_token") || !model["unk_token"].is_string()) return;
  const std::string unk = model["unk_token"].get<std::string>();
  unk_id_ = index_.find(unk);
  if (unk_id_ < 0) {
    throw LoadError(fmt::format("tokenizer file '{}': unk_token '{}' is not in the vocabulary", path, unk));
  }
}

void BpeModel::load_merges(const json& merges, const std::string& path) {
  if (!merges.is_array()) throw LoadError(fmt::format("tokenizer file '{}': model.merges must be an array", path));
  merges_.reserve(merges.size());
  std::string a, b;
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    merge_pair(merges[rank], rank, path, a, b);
    const std::int32_t ia = index_.find(a), ib = index_.find(b), ic = index_.find(a + b);
    if (ia < 0 || ib < 0 || ic < 0) {
      throw LoadError(fmt::format("tokenizer file '{}': merge {} ('{}' + '{}') uses a token not in the vocabulary",
                                  path, rank, a, b));
    }
    merges_.insert(ia, ib, Merge{static_cast<std::int32_t>(rank), ic});
  }
}

void BpeModel::finish(bool byte_level) {
  byte_level_ = byte_level;
  if (byte_level_) {
    const ByteAlphabet& alphabet = byte_alphabet();
    for (int b = 0; b < 256; ++b) byte_ids_[b] = index_.find(alphabet.chars[b]);
  }
  if (byte_fallback_) {
    for (int b = 0; b < 256; ++b) fallback_ids_[b] = index_.find(fmt::format("<0x{:02X}>", b));
  }
  for (int b = 0; b < 128; ++b) ascii_ids_[b] = index_.find(std::string(1, static_cast<char>(b)));
}

// ------------------------------------------------------------------------------------------------ encoding

void BpeModel::encode_word(std::string_view word, std::vector<WordToken>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const std::int32_t id = whole_word_id(word);
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

// ignore_merges: the id of the whole word when the vocabulary has it (through the byte alphabet if byte-level).
std::int32_t BpeModel::whole_word_id(std::string_view word) const {
  if (!byte_level_) return index_.find(word);
  std::string mapped;
  const ByteAlphabet& alphabet = byte_alphabet();
  for (char c : word) mapped += alphabet.chars[static_cast<unsigned char>(c)];
  return index_.find(mapped);
}

void BpeModel::bpe(std::string_view word, std::vector<WordToken>& out) const {
  thread_local std::vector<Sym> syms;
  syms.clear();
  initial_symbols(word, syms);
  const auto n = static_cast<std::int32_t>(syms.size());
  if (n == 0) return;
  syms.back().next = -1;
  if (n <= kSmallWord) {
    merge_small(syms);
    emit(syms, out);
    return;
  }
  merge_with_heap(syms);
  emit(syms, out);
  if (syms.capacity() > kMaxKeptScratch / sizeof(Sym)) std::vector<Sym>().swap(syms);
}

// Initial symbols: characters (or bytes for byte-level BPE); unknown ones become byte-fallback tokens or <unk>
// (consecutive ones fused into one when fuse_unk).
void BpeModel::initial_symbols(std::string_view word, std::vector<Sym>& syms) const {
  std::int32_t pending_unk_end = -1;  // end offset of a pending (possibly fused) <unk>
  auto flush_unk = [&]() {
    if (pending_unk_end >= 0) push_initial(syms, unk_id_, static_cast<std::uint32_t>(pending_unk_end));
    pending_unk_end = -1;
  };
  auto known = [&](std::int32_t id, std::size_t end) {
    flush_unk();
    push_initial(syms, id, static_cast<std::uint32_t>(end));
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
        known(byte_ids_[b], k + 1);
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
        known(id, k + len);
      } else {
        unknown(k, len);
      }
      k += len;
    }
  }
  flush_unk();
}

// Few symbols: scanning the cached rank of each adjacent pair beats a heap.
void BpeModel::merge_small(std::vector<Sym>& syms) const {
  auto set_rank = [&](std::int32_t k) {
    const Merge* m = syms[k].next >= 0 ? merges_.find(syms[k].id, syms[syms[k].next].id) : nullptr;
    syms[k].rank = m ? m->rank : kNoMerge;
    syms[k].merged = m ? m->id : -1;
  };
  const auto n = static_cast<std::int32_t>(syms.size());
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
}

// Many symbols: a heap of candidate merges, lowest rank (then leftmost) first; stale candidates are skipped.
void BpeModel::merge_with_heap(std::vector<Sym>& syms) const {
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
  const auto n = static_cast<std::int32_t>(syms.size());
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
}

void BpeModel::push_initial(std::vector<Sym>& syms, std::int32_t id, std::uint32_t end) {
  const auto k = static_cast<std::int32_t>(syms.size());
  syms.push_back({id, end, k - 1, k + 1, 0, -1});
}

void BpeModel::merge_at(std::vector<Sym>& syms, std::int32_t k, std::int32_t id) {
  const std::int32_t r = syms[k].next;
  syms[k].id = id;
  syms[k].end = syms[r].end;
  syms[k].next = syms[r].next;
  if (syms[r].next >= 0) syms[syms[r].next].prev = k;
  syms[r].id = -1;  // dead
}

// The live symbols, first to last.
void BpeModel::emit(const std::vector<Sym>& syms, std::vector<WordToken>& out) {
  for (std::int32_t k = 0; k >= 0; k = syms[k].next) out.push_back({syms[k].id, syms[k].end});
}

// ------------------------------------------------------------------------------------------------ cache

bool BpeModel::cache_lookup(std::string_view word, std::vector<WordToken>& out) const {
  Shard& sh = shards_[hash_bytes(word) % kShards];
  std::lock_guard<std::mutex> lock(sh.mu);
  auto it = sh.map.find(std::string(word));
  if (it == sh.map.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void BpeModel::cache_store(std::string_view word, const WordToken* toks, std::size_t count) const {
  Shard& sh = shards_[hash_bytes(word) % kShards];
  std::lock_guard<std::mutex> lock(sh.mu);
  if (sh.map.size() >= kShardCapacity) sh.map.clear();
  sh.map.emplace(std::string(word), std::vector<WordToken>(toks, toks + count));
}

}  // namespace crossicl::detail
