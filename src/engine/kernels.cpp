#include "detail/engine_kernels.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl::detail {
namespace {

// Rounds a float32 value to T's precision (as storing an op's result in a T tensor does).
template <class T>
inline float rnd(float x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    return static_cast<float>(static_cast<T>(x));
  }
}

// Sum of a[i] * b[i] in float32 with 8 partial sums (so the compiler vectorises it).
template <class A, class B>
inline float dot(const A* a, const B* b, std::int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += static_cast<float>(a[i + j]) * static_cast<float>(b[i + j]);
  float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; ++i) t += static_cast<float>(a[i]) * static_cast<float>(b[i]);
  return t;
}

// Rows per parallel task: enough elements that a task outweighs the cost of waking a thread.
std::int64_t grain_rows(std::int64_t row_elems) { return std::max<std::int64_t>(1, 32768 / std::max<std::int64_t>(1, row_elems)); }

template <class F>
void dispatch(const at::Tensor& x, const char* what, F&& f) {
  if (x.scalar_type() == at::kFloat)
    f(float{});
  else if (x.scalar_type() == at::kBFloat16)
    f(c10::BFloat16{});
  else
    throw InvalidArgument(fmt::format("{}: unsupported dtype {}", what, c10::toString(x.scalar_type())));
}

}  // namespace

bool cpu_kernels(const at::Tensor& x) {
  return x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16);
}

at::Tensor rms_norm_cpu(const at::Tensor& x_in, const at::Tensor& weight, double eps) {
  const at::Tensor x = x_in.contiguous();
  const std::int64_t n = x.size(0), dim = x.size(1);
  at::Tensor out = at::empty_like(x);  // [n, dim]
  dispatch(x, "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data_ptr<T>();
    const T* wp = weight.data_ptr<T>();
    T* op = out.data_ptr<T>();
    at::parallel_for(0, n, grain_rows(dim), [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* row = xp + r * dim;
        const float mean = dot(row, row, dim) / static_cast<float>(dim);
        const float inv = 1.0f / std::sqrt(mean + static_cast<float>(eps));
        T* o = op + r * dim;
        for (std::int64_t i = 0; i < dim; ++i)
          o[i] = static_cast<T>(static_cast<float>(wp[i]) * rnd<T>(static_cast<float>(row[i]) * inv));
      }
    });
  });
  return out;
}

at::Tensor silu_mul_cpu(const at::Tensor& gu_in) {
  const at::Tensor gu = gu_in.contiguous();
  const std::int64_t n = gu.size(0), h = gu.size(1) / 2;
  at::Tensor out = at::empty({n, h}, gu.options());  // [n, hidden]
  dispatch(gu, "silu_mul", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = gu.data_ptr<T>();
    T* op = out.data_ptr<T>();
    at::parallel_for(0, n, grain_rows(h), [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* g = gp + r * 2 * h;
        const T* u = g + h;
        T* o = op + r * h;
        for (std::int64_t i = 0; i < h; ++i) {
          const float a = static_cast<float>(g[i]);
          o[i] = static_cast<T>(rnd<T>(a / (1.0f + std::exp(-a))) * static_cast<float>(u[i]));
        }
      }
    });
  });
  return out;
}

void rope_qk_cpu(at::Tensor& qkv, std::int64_t heads, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  const at::Tensor cos = cos_in.contiguous(), sin = sin_in.contiguous();
  const std::int64_t n = qkv.size(0), all = qkv.size(1), hd = qkv.size(2), half = hd / 2;
  dispatch(qkv, "rope", [&](auto tag) {
    using T = decltype(tag);
    T* base = qkv.data_ptr<T>();
    const T* cp = cos.data_ptr<T>();
    const T* sp = sin.data_ptr<T>();
    at::parallel_for(0, n, grain_rows(heads * hd), [&](std::int64_t r0, std::int64_t r1) {
      std::vector<float> x(hd);
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* c = cp + r * hd;
        const T* s = sp + r * hd;
        for (std::int64_t h = 0; h < heads; ++h) {
          T* p = base + (r * all + h) * hd;
          for (std::int64_t i = 0; i < hd; ++i) x[i] = static_cast<float>(p[i]);
          for (std::int64_t i = 0; i < hd; ++i) {
            const float swapped = x[i < half ? i + half : i - half];  // rotate_half up to the sign (in sin)
            p[i] = static_cast<T>(rnd<T>(x[i] * static_cast<float>(c[i])) +
                                  rnd<T>(swapped * static_cast<float>(s[i])));
          }
        }
      }
    });
  });
}

void attend_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, std::int64_t p0, double scale,
                at::Tensor& out) {
  const std::int64_t len = q.size(0), nh = q.size(1), hd = q.size(2);
  const std::int64_t kvh = k.size(0), cap = k.size(1), group = nh / kvh;
  const std::int64_t q_row = q.stride(0), q_head = q.stride(1), o_row = out.stride(0);
  const float sc = static_cast<float>(scale);
  dispatch(q, "attention", [&](auto tag) {
    using T = decltype(tag);
    const T* qp = q.data_ptr<T>();
    const T* kp = k.data_ptr<T>();
    const T* vp = v.data_ptr<T>();
    T* op = out.data_ptr<T>();
    // One task per (query, head); tasks are split over threads only when there are many keys to read.
    const std::int64_t keys = p0 + len;
    const std::int64_t grain = std::max<std::int64_t>(1, 65536 / std::max<std::int64_t>(1, keys * hd));
    at::parallel_for(0, len * nh, grain, [&](std::int64_t t0, std::int64_t t1) {
      std::vector<float> w(keys), acc(hd);
      for (std::int64_t t = t0; t < t1; ++t) {
        const std::int64_t i = t / nh, h = t % nh, g = h / group;
        const std::int64_t visible = p0 + i + 1;  // causal: keys 0 .. p0 + i
        const T* qv = qp + i * q_row + h * q_head;
        const T* kg = kp + g * cap * hd;
        const T* vg = vp + g * cap * hd;
        float mx = -INFINITY;
        for (std::int64_t j = 0; j < visible; ++j) {
          w[j] = dot(qv, kg + j * hd, hd) * sc;
          mx = std::max(mx, w[j]);
        }
        float sum = 0;
        for (std::int64_t j = 0; j < visible; ++j) {
          w[j] = std::exp(w[j] - mx);
          sum += w[j];
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (std::int64_t j = 0; j < visible; ++j) {
          const T* vr = vg + j * hd;
          const float p = w[j];
          for (std::int64_t d = 0; d < hd; ++d) acc[d] += p * static_cast<float>(vr[d]);
        }
        T* o = op + i * o_row + h * hd;
        const float inv = 1.0f / sum;
        for (std::int64_t d = 0; d < hd; ++d) o[d] = static_cast<T>(acc[d] * inv);
      }
    });
  });
}

}  // namespace crossicl::detail
