// Locating ../shared for golden tests: CROSSICL_TEST_DATA, else the checkout's sibling ../shared.
// A test that needs it skips only when it is absent, and fails instead under CI=true.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

namespace crossicl::test {

inline std::string data_dir() {
  const char* env = std::getenv("CROSSICL_TEST_DATA");
  return env && *env ? std::string(env) : std::string(CROSSICL_TEST_DATA_DEFAULT);
}

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

/// Path of `rel` under the test data; returns "" (and the caller returns) when the data is absent outside CI.
inline std::string shared_path(const std::string& rel) {
  const std::string p = data_dir() + "/" + rel;
  if (!std::filesystem::exists(p)) {
    if (in_ci()) FAIL("test data missing under CI=true: " << p);
    WARN("skipping: test data not found: " << p);
    return "";
  }
  return p;
}

}  // namespace crossicl::test
