#include "tests/support/test_support.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace foxserve {
namespace testing {

std::string SourceDir() { return FOXSERVE_SOURCE_DIR; }
std::string BinaryDir() { return FOXSERVE_BINARY_DIR; }
std::string TestDataDir() { return SourceDir() + "/tests/data"; }
std::string GoldenDir(const std::string& name) { return TestDataDir() + "/golden/" + name; }

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    std::abort();
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFileOrDie(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  if (!out) {
    ADD_FAILURE() << "cannot write " << path;
    std::abort();
  }
}

ScratchDir::ScratchDir() {
  const std::string base = BinaryDir() + "/test_scratch";
  std::filesystem::create_directories(base);
  std::string templ = base + "/XXXXXX";
  char* made = mkdtemp(templ.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed under " << base;
    std::abort();
  }
  path_ = made;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace testing
}  // namespace foxserve
