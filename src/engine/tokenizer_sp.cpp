// SentencePiece tokenizer (tokenizer.model) through the sentencepiece library.
#include <sentencepiece_processor.h>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/tokenizer_impl.h"
#include "detail/utf8.h"

namespace crossicl::detail {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, const std::string& bytes) : path_(path) {
    const auto status = sp_.LoadFromSerializedProto(bytes);
    if (!status.ok()) {
      throw LoadError(
          fmt::format("cannot load SentencePiece model '{}': {} (neither tokenizer.json nor a SentencePiece "
                      "model proto)",
                      path, status.ToString()));
    }
    vocab_size_ = sp_.GetPieceSize();
    if (vocab_size_ <= 0) throw LoadError(fmt::format("SentencePiece model '{}' has no pieces", path));
  }

  std::vector<std::int32_t> encode(std::string_view text, bool bos, bool eos) const override {
    check_utf8(text);
    std::vector<int> raw;
    const auto status = sp_.Encode(absl::string_view(text.data(), text.size()), &raw);
    if (!status.ok()) throw InvalidArgument(fmt::format("SentencePiece encode failed: {}", status.ToString()));
    std::vector<std::int32_t> ids;
    ids.reserve(raw.size() + 2);
    if (bos && sp_.bos_id() >= 0) ids.push_back(sp_.bos_id());
    ids.insert(ids.end(), raw.begin(), raw.end());
    if (eos && sp_.eos_id() >= 0) ids.push_back(sp_.eos_id());
    return ids;
  }

  std::vector<std::int32_t> encode_with_offsets(std::string_view text, std::vector<TokenOffset>& offsets, bool bos,
                                                bool eos) const override {
    check_utf8(text);
    const sentencepiece::ImmutableSentencePieceText spt =
        sp_.EncodeAsImmutableProto(absl::string_view(text.data(), text.size()));
    std::vector<std::int32_t> ids;
    offsets.clear();
    const std::size_t n = spt.pieces_size();
    ids.reserve(n + 2);
    offsets.reserve(n + 2);
    if (bos && sp_.bos_id() >= 0) {
      ids.push_back(sp_.bos_id());
      offsets.emplace_back(0, 0);
    }
    for (std::size_t k = 0; k < n; ++k) {
      const auto piece = spt.pieces(static_cast<int>(k));
      ids.push_back(static_cast<std::int32_t>(piece.id()));
      offsets.emplace_back(piece.begin(), piece.end());
    }
    if (eos && sp_.eos_id() >= 0) {
      ids.push_back(sp_.eos_id());
      offsets.emplace_back(text.size(), text.size());
    }
    return ids;
  }

  std::string decode(const std::vector<std::int32_t>& ids, bool keep_special) const override {
    for (std::int32_t id : ids) check_id(id);
    if (!keep_special) return sp_.DecodeIds(std::vector<int>(ids.begin(), ids.end()));
    // Control pieces (<s>, </s>) are dropped by DecodeIds; keep them by decoding the runs between them. DecodeIds
    // drops the space of a leading "\u2581" as the dummy prefix; only the text's first run has one (as HF does).
    std::string out;
    std::vector<int> run;
    auto flush = [&]() {
      if (run.empty()) return;
      if (!out.empty() && sp_.IdToPiece(run.front()).rfind("\xE2\x96\x81", 0) == 0) out += ' ';
      out += sp_.DecodeIds(run);
      run.clear();
    };
    for (std::int32_t id : ids) {
      if (sp_.IsControl(id)) {
        flush();
        out += sp_.IdToPiece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  std::string piece(std::int32_t id) const override {
    check_id(id);
    return sp_.IdToPiece(id);
  }

  std::int32_t vocab_size() const override { return vocab_size_; }
  std::int32_t bos_id() const override { return sp_.bos_id(); }
  std::int32_t eos_id() const override { return sp_.eos_id(); }

 private:
  void check_id(std::int32_t id) const {
    if (id < 0 || id >= vocab_size_) {
      throw InvalidArgument(fmt::format("token id {} out of range (vocab size {})", id, vocab_size_));
    }
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
  std::int32_t vocab_size_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path, const std::string& bytes) {
  return std::make_unique<SentencePieceTokenizer>(path, bytes);
}

}  // namespace crossicl::detail
