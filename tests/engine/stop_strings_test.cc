#include "engine/stop_strings.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace foxserve {
namespace engine {
namespace {

// Feeds pieces, returns everything sent and whether it stopped.
std::pair<std::string, bool> Feed(std::vector<std::string> stops, std::vector<std::string> pieces) {
  StopStringMatcher m(std::move(stops));
  std::string sent;
  for (const std::string& p : pieces) {
    bool stopped = false;
    sent += m.Add(p, &stopped);
    if (stopped) return {sent, true};
  }
  return {sent + m.Flush(), false};
}

TEST(StopStringsTest, NoStopsPassesEverythingThrough) {
  StopStringMatcher m({});
  bool stopped;
  EXPECT_EQ(m.Add("hello", &stopped), "hello");
  EXPECT_FALSE(stopped);
}

TEST(StopStringsTest, CutsBeforeTheStopAcrossPieces) {
  EXPECT_EQ(Feed({"\n\n"}, {"Hello", " world", "\n", "\nmore"}), std::make_pair(std::string("Hello world"), true));
  EXPECT_EQ(Feed({"END"}, {"abcE", "N", "Dxyz"}), std::make_pair(std::string("abc"), true));
  EXPECT_EQ(Feed({"END"}, {"abcEN", "x"}), std::make_pair(std::string("abcENx"), false));
  // The earliest match wins among several stops.
  EXPECT_EQ(Feed({"cd", "b"}, {"abcd"}), std::make_pair(std::string("a"), true));
}

TEST(StopStringsTest, NeverSendsPartOfAStopString) {
  StopStringMatcher m({"STOP"});
  bool stopped;
  EXPECT_EQ(m.Add("abc", &stopped), "");     // "abc" could begin... no: held as (len-1) = 3
  EXPECT_EQ(m.Add("dST", &stopped), "abc");  // "dST" may start "STOP"
  EXPECT_EQ(m.Add("O", &stopped), "d");
  EXPECT_EQ(m.Add("P!", &stopped), "");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(m.Add("more", &stopped), "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStringsTest, HoldsWholeUtf8Characters) {
  StopStringMatcher m({"xy"});
  bool stopped;
  // "é" is two bytes; holding one byte back must not split it.
  const std::string sent = m.Add("a\xC3\xA9", &stopped);
  EXPECT_EQ(sent, "a");
  EXPECT_EQ(m.Flush(), "\xC3\xA9");
}

}  // namespace
}  // namespace engine
}  // namespace foxserve
