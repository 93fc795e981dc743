// Dequantisation of ggml block formats to float32. Layouts follow ggml's block structs (little-endian):
//   Q4_0 {f16 d; u8 qs[16]}              x = (nibble - 8) * d        (low nibbles: elements 0..15, high: 16..31)
//   Q4_1 {f16 d, m; u8 qs[16]}           x = nibble * d + m
//   Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}    x = (nibble | high bit << 4) - 16) * d
//   Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]} x = (nibble | high bit << 4) * d + m
//   Q8_0 {f16 d; i8 qs[32]}              x = q * d
//   Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}          256 elements, 8 sub-blocks with 6-bit scale/min
//   Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
//   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/engine/gguf.h"

namespace crossicl {

namespace {

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1F;
  std::uint32_t mant = h & 0x3FF;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FF;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float load_f16(const std::uint8_t* p) { return f16_to_f32(static_cast<std::uint16_t>(p[0] | (p[1] << 8))); }

float bf16_to_f32(const std::uint8_t* p) {
  const std::uint32_t bits = static_cast<std::uint32_t>(p[0] | (p[1] << 8)) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint32_t load_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

// Scale and min of sub-block j of a Q4_K/Q5_K super-block (6-bit codes packed in 12 bytes `q`), times the
// super-block's d and dmin.
struct ScaleMin {
  float d, m;
};
ScaleMin scale_min_k4(int j, const std::uint8_t* q, float d, float dmin) {
  std::uint8_t sc, m;
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
  return {d * sc, dmin * m};
}

void dq_q4_0(const std::uint8_t* b, float* y) {
  const float d = load_f16(b);
  const std::uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

void dq_q4_1(const std::uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  const std::uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

void dq_q5_0(const std::uint8_t* b, float* y) {
  const float d = load_f16(b);
  const std::uint32_t qh = load_u32(b + 2);
  const std::uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>(((qs[j] & 0x0F) | xh0) - 16) * d;
    y[j + 16] = static_cast<float>(((qs[j] >> 4) | xh1) - 16) * d;
  }
}

void dq_q5_1(const std::uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  const std::uint32_t qh = load_u32(b + 4);
  const std::uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>((qs[j] & 0x0F) | xh0) * d + m;
    y[j + 16] = static_cast<float>((qs[j] >> 4) | xh1) * d + m;
  }
}

void dq_q8_0(const std::uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d;
}

void dq_q4_k(const std::uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const std::uint8_t* scales = b + 4;
  const std::uint8_t* q = b + 16;
  for (int is = 0; is < 8; is += 2, q += 32) {
    const ScaleMin lo = scale_min_k4(is, scales, d, dmin), hi = scale_min_k4(is + 1, scales, d, dmin);
    for (int l = 0; l < 32; ++l) *y++ = lo.d * static_cast<float>(q[l] & 0xF) - lo.m;
    for (int l = 0; l < 32; ++l) *y++ = hi.d * static_cast<float>(q[l] >> 4) - hi.m;
  }
}

void dq_q5_k(const std::uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const std::uint8_t* scales = b + 4;
  const std::uint8_t* qh = b + 16;
  const std::uint8_t* ql = b + 48;
  std::uint8_t u1 = 1, u2 = 2;
  for (int is = 0; is < 8; is += 2, ql += 32) {
    const ScaleMin lo = scale_min_k4(is, scales, d, dmin), hi = scale_min_k4(is + 1, scales, d, dmin);
    for (int l = 0; l < 32; ++l) *y++ = lo.d * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - lo.m;
    for (int l = 0; l < 32; ++l) *y++ = hi.d * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - hi.m;
    u1 = static_cast<std::uint8_t>(u1 << 2);
    u2 = static_cast<std::uint8_t>(u2 << 2);
  }
}

void dq_q6_k(const std::uint8_t* b, float* y) {
  const std::uint8_t* ql = b;
  const std::uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * static_cast<float>(q1);
      y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
      y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
      y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

struct TypeTraits {
  GGMLType type;
  const char* name;
  std::int64_t block;  // elements per block
  std::int64_t bytes;  // bytes per block
  void (*dq)(const std::uint8_t*, float*);
};

constexpr TypeTraits kTraits[] = {
    {GGMLType::F32, "F32", 1, 4, nullptr},        {GGMLType::F16, "F16", 1, 2, nullptr},
    {GGMLType::BF16, "BF16", 1, 2, nullptr},      {GGMLType::Q4_0, "Q4_0", 32, 18, dq_q4_0},
    {GGMLType::Q4_1, "Q4_1", 32, 20, dq_q4_1},    {GGMLType::Q5_0, "Q5_0", 32, 22, dq_q5_0},
    {GGMLType::Q5_1, "Q5_1", 32, 24, dq_q5_1},    {GGMLType::Q8_0, "Q8_0", 32, 34, dq_q8_0},
    {GGMLType::Q4_K, "Q4_K", 256, 144, dq_q4_k},  {GGMLType::Q5_K, "Q5_K", 256, 176, dq_q5_k},
    {GGMLType::Q6_K, "Q6_K", 256, 210, dq_q6_k},
};

const TypeTraits* traits(std::uint32_t type) {
  for (const auto& t : kTraits)
    if (static_cast<std::uint32_t>(t.type) == type) return &t;
  return nullptr;
}

const TypeTraits& require(GGMLType type) {
  const TypeTraits* t = traits(static_cast<std::uint32_t>(type));
  if (!t) throw InvalidArgument(fmt::format("unsupported ggml type {}", ggml_type_name(static_cast<std::uint32_t>(type))));
  return *t;
}

}  // namespace

std::string ggml_type_name(std::uint32_t type) {
  static const std::map<std::uint32_t, const char*> names = {
      {0, "F32"},   {1, "F16"},   {2, "Q4_0"},  {3, "Q4_1"},  {6, "Q5_0"},  {7, "Q5_1"},  {8, "Q8_0"},
      {9, "Q8_1"},  {10, "Q2_K"}, {11, "Q3_K"}, {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}, {15, "Q8_K"},
      {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"},
      {22, "IQ2_S"}, {23, "IQ4_XS"}, {24, "I8"}, {25, "I16"}, {26, "I32"}, {27, "I64"}, {28, "F64"},
      {29, "IQ1_M"}, {30, "BF16"}};
  auto it = names.find(type);
  return it != names.end() ? it->second : fmt::format("type {}", type);
}

bool ggml_type_supported(std::uint32_t type) { return traits(type) != nullptr; }
std::int64_t ggml_block_size(GGMLType type) { return require(type).block; }
std::int64_t ggml_type_size(GGMLType type) { return require(type).bytes; }

void dequantize(GGMLType type, const std::uint8_t* src, float* dst, std::int64_t n) {
  const TypeTraits& t = require(type);
  if (n < 0 || n % t.block != 0)
    throw InvalidArgument(fmt::format("{} needs a multiple of {} elements (n={})", t.name, t.block, n));
  switch (type) {
    case GGMLType::F32: std::memcpy(dst, src, static_cast<std::size_t>(n) * 4); return;
    case GGMLType::F16:
      for (std::int64_t i = 0; i < n; ++i) dst[i] = load_f16(src + 2 * i);
      return;
    case GGMLType::BF16:
      for (std::int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src + 2 * i);
      return;
    default: break;
  }
  const std::int64_t blocks = n / t.block;
  for (std::int64_t i = 0; i < blocks; ++i) t.dq(src + i * t.bytes, dst + i * t.block);
}

}  // namespace crossicl
