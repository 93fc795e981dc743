// libFuzzer target for prompt templates: parse, then render. Input: template text, then NUL-separated
// name, value pairs. Filling every placeholder must succeed and reproduce the literal text around the values.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "crossicl/core/error.h"
#include "crossicl/core/template.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace crossicl;
  const auto parts = fuzz::split_nul(data, size, 9);
  try {
    const Template t{std::string(parts[0]), "fuzz"};
    std::map<std::string, std::string> values;
    for (std::size_t i = 1; i + 1 < parts.size(); i += 2) values[std::string(parts[i])] = std::string(parts[i + 1]);
    try {
      t.render(values, "fuzz input");
    } catch (const InvalidArgument&) {  // a placeholder without a value
    }
    std::map<std::string, std::string> empty;
    for (const std::string& p : t.placeholders()) empty[p] = "";
    const std::string literal = t.render(empty);
    if (literal.size() > t.text().size()) __builtin_trap();  // only placeholders and escapes shrink
    // Rendering a template whose placeholders are filled with their own "{name}" text must not fail either.
    std::map<std::string, std::string> self;
    for (const std::string& p : t.placeholders()) self[p] = "{" + p + "}";
    t.render(self);
  } catch (const InvalidArgument&) {
  } catch (const LoadError&) {
  }
  return 0;
}
