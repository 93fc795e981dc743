// Prompt templates with named placeholders: "Sentence: {sentence} \n Label:". A placeholder is `{name}` with
// name = [A-Za-z_][A-Za-z0-9_]*; it is replaced by the raw value, verbatim (nothing trimmed or escaped).
// Every other character is literal, including braces that do not enclose a name ("{"a": 1}" stays as is);
// "{{" and "}}" write a single literal brace, for the rare template that needs "{name}" as text.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace crossicl {

/// A parsed template. Rendering never alters the text around or inside the values: spaces, typos and
/// newlines are data.
///
///   crossicl::Template t("Question:{sentence} \n Answer:");
///   t.render({{"sentence", "Why?"}}, "example 'q1'");  // "Question:Why? \n Answer:"
class Template {
 public:
  Template() = default;
  /// Parses `text`; `name` (e.g. "as_run/005") is used in error messages.
  explicit Template(std::string text, std::string name = "");

  const std::string& text() const { return text_; }
  const std::string& name() const { return name_; }
  /// Placeholder names in order of first appearance.
  const std::vector<std::string>& placeholders() const { return placeholders_; }

  /// Fills every placeholder from `values`. A missing value throws InvalidArgument naming the placeholder,
  /// the template and `what` (e.g. "example 'Mercury_7175875' of ARC-Challenge").
  std::string render(const std::map<std::string, std::string>& values, std::string_view what = "") const;

 private:
  struct Piece {
    bool is_placeholder;
    std::string text;  // literal text or placeholder name
  };
  std::string text_;
  std::string name_;
  std::vector<Piece> pieces_;
  std::vector<std::string> placeholders_;
};

}  // namespace crossicl
