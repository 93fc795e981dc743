// Templates, task cards and prompt builders: exact strings of both styles on a small hand-made task set,
// plus one golden row of each method from the paper pack.
#include <catch2/catch.hpp>

#include <fstream>

#include "crossicl/core/error.h"
#include "crossicl/core/paper.h"
#include "crossicl/core/prompt.h"
#include "crossicl/core/task.h"
#include "crossicl/core/template.h"
#include "test_data.h"

using namespace crossicl;

namespace {

TaskSet small_tasks() {
  auto doc = nlohmann::ordered_json::parse(R"({
    "templates": {"as_run": {"004": "Sentence: {sentence} \n Label:", "005": "Question:{sentence} \n Answer:"},
                  "definition_line": "Definition: {instruction}\n"},
    "tasks": {
      "tgt": {"role": "target", "instruction": "Answer it.", "prompt_template_id": "005",
              "input_fields": ["sentence"], "label_space": ["A", "B"],
              "in_task_demo": {"fields": {"sentence": "Pick?\nA. x\nB. y"}, "label": "B",
                               "text": "Question: Pick?\nA. x\nB. y \n Answer: B \n"}},
      "src": {"role": "source", "instruction": "Classify  it.", "prompt_template_id": "004",
              "input_fields": ["sentence"], "label_space": ["pos", "neg"],
              "random_ablation_demos": {"0": {"instruction": "Classify it.", "fields": {"sentence": "ok"},
                                              "label": "pos", "text": "Definition: Classify it. \n Sentence: ok \n Label: pos"}}}
    }})");
  return TaskSet::from_json(doc, "inline");
}

Example item() { return Example{"q1", {{"sentence", "Why?\nA. a\nB. b"}}, std::string("A"), {}}; }

}  // namespace

TEST_CASE("templates render placeholders verbatim and report missing fields", "[template]") {
  Template t("Q:{q} \n {x}{{q}}{ not}{9}", "fam/1");
  CHECK(t.placeholders() == std::vector<std::string>{"q", "x"});
  CHECK(t.render({{"q", " a\n"}, {"x", "{q}"}}) == "Q: a\n \n {q}{q}{ not}{9}");
  try {
    t.render({{"q", ""}}, "example 'e1'");
    FAIL("expected InvalidArgument");
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()) == "template 'fam/1' needs field 'x', missing in example 'e1' (available: q)");
  }
}

TEST_CASE("task sets resolve templates: card, then id, then family-wide", "[task]") {
  TaskSet ts = small_tasks();
  CHECK(ts.names() == std::vector<std::string>{"tgt", "src"});
  CHECK(ts.template_for("as_run", "src").text() == "Sentence: {sentence} \n Label:");
  CHECK(ts.definition("src") == "Definition: Classify  it.\n");
  CHECK_THROWS_AS(ts.task("nope"), InvalidArgument);
  CHECK_THROWS_WITH(ts.template_for("head", "tgt"), "unknown template family 'head' (task 'tgt')");
}

TEST_CASE("paper style reproduces the published assembly", "[prompt]") {
  PromptBuilder b(small_tasks(), {PromptStyle::Paper});
  const std::string Q = "Question:Why?\nA. a\nB. b \n Answer:";
  const std::string DT = "Definition: Answer it.\n", DS = "Definition: Classify  it.\n";
  CHECK(b.zero_shot("tgt", item()).text == DT + Q);
  CHECK(b.in_task("tgt", item()).text == DT + "Question: Pick?\nA. x\nB. y \n Answer: B \n" + Q);
  CHECK(b.cross_task("tgt", item(), "src", {"d1", "d2"}).text == DS + "d1\nd2\n" + DT + Q);
  CHECK(b.in_and_cross("tgt", item(), "src", "d1").text ==
        DS + "d1\n" + DT + "Question: Pick?\nA. x\nB. y \n Answer: B \n" + Q);
  CHECK(b.mixed_cross("tgt", item(), {{"src", {"d1"}}, {"tgt", {"d2"}}}).text == DS + "d1\n" + DT + "d2\n" + DT + Q);
  CHECK(b.random_ablation("tgt", item(), "src", "0").text ==
        "Definition: Classify it. \n Sentence: ok \n Label: pos" + DT + Q);
  Example p1{"p1", {{"sentence", "S1"}}, std::string("B"), {}};
  CHECK(b.pseudo_label("tgt", item(), {p1, p1}, {"A", "nan"}).text ==
        "Answer it.\nQuestion:S1 \n Answer:A\nQuestion:S1 \n Answer:nan\n" + Q);
}

TEST_CASE("clean style separates every piece by a blank line", "[prompt]") {
  PromptBuilder b(small_tasks());
  const std::string Q = "Question:Why?\nA. a\nB. b \n Answer:";
  const std::string DT = "Definition: Answer it.\n", DS = "Definition: Classify  it.\n";
  CHECK(b.cross_task("tgt", item(), "src", {"d1", "d2"}).text == DS + "d1\n\nd2\n\n" + DT + Q);
  CHECK(b.in_task("tgt", item()).text == DT + "Question:Pick?\nA. x\nB. y \n Answer: B\n\n" + Q);
  CHECK(b.random_ablation("tgt", item(), "src", "0").text == DS + "Sentence: ok \n Label: pos\n\n" + DT + Q);
  Example p1{"p1", {{"sentence", "S1"}}, std::string("B"), {}};
  CHECK(b.pseudo_label("tgt", item(), {p1}, {"A"}).text == DT + "Question:S1 \n Answer: A\n\n" + Q);
  CHECK(b.render_demo("src", Example{"e", {{"sentence", "fine"}}, std::string("pos"), {}}) ==
        "Sentence: fine \n Label: pos");
}

TEST_CASE("spans locate every piece", "[prompt]") {
  PromptBuilder b(small_tasks());
  Prompt p = b.cross_task("tgt", item(), "src", {"d1", "d2"});
  REQUIRE(p.spans.size() == 5);
  CHECK(p.spans[1].kind == "source_demo");
  CHECK(p.text.substr(p.spans[2].begin, p.spans[2].end - p.spans[2].begin) == "d2");
  CHECK(p.spans[2].index == 1);
  CHECK(p.spans.back().kind == "target_input");
  CHECK(p.spans.back().end == p.text.size());
}

TEST_CASE("prompt builders reject bad input with the values named", "[prompt]") {
  PromptBuilder b(small_tasks());
  CHECK_THROWS_WITH(b.cross_task("tgt", item(), "src", {}),
                    "cross_task needs at least one demonstration of 'src' (got 0)");
  CHECK_THROWS_WITH(b.pseudo_label("tgt", item(), {item()}, {}),
                    "pseudo_label needs one label per demonstration (demos=1, labels=0)");
  CHECK_THROWS_WITH(b.random_ablation("tgt", item(), "src", "3"),
                    "task 'src' has no random_ablation_demos['3'] (has: 0)");
  CHECK_THROWS_WITH(b.render_demo("src", Example{"u", {{"sentence", "x"}}, std::nullopt, {}}),
                    "demonstration example 'u' of src has no label");
  CHECK_THROWS_AS(prompt_style_from_name("fancy"), InvalidArgument);
}

TEST_CASE("paper pack: one golden prompt per method", "[prompt][paper]") {
  const std::string dir = test::shared_path("paper");
  if (dir.empty()) return;
  paper::Pack pack(dir);
  const std::string t = "ARC-Challenge", id = "Mercury_7175875";
  const std::string Q = pack.target_item(t, id).extra.at("input").get<std::string>();
  const std::string DT = "Definition: " + pack.tasks().task(t).instruction + "\n";
  CHECK(pack.prompt({t, "zero-shot", "", 0, {}, id, {}}).text == DT + Q);
  const std::string d1 = pack.demo(t, id, "sst2", 0), d2 = pack.demo(t, id, "sst2", 1);
  CHECK(pack.prompt({t, "totally-cross-sim", "sst2", 2, {}, id, {}}).text ==
        pack.tasks().definition("sst2") + d1 + "\n" + d2 + "\n" + DT + Q);
  CHECK(pack.pseudo_positions(t, 32, 4) == std::vector<std::int64_t>{6, 1, 0, 2});
  CHECK_THROWS_AS(pack.prompt({t, "cross", "", 0, {}, id, {}}), InvalidArgument);
}
