// Cross-task prompts from C++ with crossicl::core alone: load task cards and pools, pick the lexically
// closest source demonstrations (BM25) for a target item, and print the prompt.
//
//   select_demo python/crossicl/data/samples
#include <iostream>
#include <string>

#include "crossicl/core/dataset.h"
#include "crossicl/core/error.h"
#include "crossicl/core/prompt.h"
#include "crossicl/core/select.h"
#include "crossicl/core/task.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: select_demo SAMPLES_DIR (a folder with tasks.json and <task>.jsonl files)\n";
    return 2;
  }
  const std::string dir = argv[1];
  try {
    crossicl::PromptBuilder builder(crossicl::load_tasks(dir + "/tasks.json"));
    const auto& tasks = builder.tasks();
    const std::string target = "product_reviews", source = "movie_reviews";
    const auto items = crossicl::load_examples(dir + "/" + target + ".jsonl");
    const auto pool = crossicl::load_examples(dir + "/" + source + ".jsonl");

    std::vector<std::string> docs;
    for (const auto& ex : pool) docs.push_back(builder.render_input(source, ex));
    crossicl::BM25TopK bm25(docs);
    const auto& item = items.front();
    const auto picked = bm25.select({builder.render_input(target, item)}, 2);

    std::vector<std::string> demos;
    for (std::int64_t r = 0; r < picked.k; ++r) {
      const auto& ex = pool[static_cast<std::size_t>(picked.id(0, r))];
      std::cout << "demo " << r + 1 << ": " << ex.id << " (bm25 " << picked.score(0, r) << ")\n";
      demos.push_back(builder.render_demo(source, ex));
    }
    std::cout << "cross-task prompt (" << tasks.task(source).name << " -> " << target << "):\n"
              << builder.cross_task(target, item, source, demos).text << "\n";
  } catch (const std::exception& e) {  // InvalidArgument / LoadError carry the file, line and values
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
