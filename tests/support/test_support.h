// Paths and scratch folders for tests. Test data lives in the repository (tests/data), so the
// tests pass from a fresh clone.
#ifndef FOXSERVE_TESTS_SUPPORT_TEST_SUPPORT_H_
#define FOXSERVE_TESTS_SUPPORT_TEST_SUPPORT_H_

#include <string>

namespace foxserve {
namespace testing {

std::string SourceDir();                         // repository root
std::string BinaryDir();                         // CMake build folder
std::string TestDataDir();                       // tests/data
std::string GoldenDir(const std::string& name);  // tests/data/golden/<name>

std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& contents);

// A fresh folder under the build tree's scratch space, removed with its contents on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_SUPPORT_TEST_SUPPORT_H_
