#include "server/command_line.h"

#include "gtest/gtest.h"

namespace foxserve {
namespace server {
namespace {

TEST(CommandLineTest, ParsesValuesSwitchesAndTypes) {
  auto cl = CommandLine::Parse({"--model", "m", "--threads=4", "--print-ids", "--acp", "off",
                                "--temperature", "0.7"},
                               {"model", "threads", "print-ids", "acp", "temperature"},
                               {"print-ids"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(*cl->Get("model"), "m");
  EXPECT_EQ(*cl->Int("threads", 0, 0, 64), 4);
  EXPECT_TRUE(*cl->Bool("print-ids", false));
  EXPECT_FALSE(*cl->Bool("acp", true));
  EXPECT_DOUBLE_EQ(*cl->Double("temperature", 0, 0, 2), 0.7);
  EXPECT_EQ(*cl->Int("missing", 9, 0, 10), 9);
}

TEST(CommandLineTest, RejectsWhatItDoesNotKnow) {
  EXPECT_FALSE(CommandLine::Parse({"--nope", "1"}, {"model"}).ok());
  EXPECT_FALSE(CommandLine::Parse({"model"}, {"model"}).ok());
  EXPECT_FALSE(CommandLine::Parse({"--model"}, {"model"}).ok());
  auto cl = CommandLine::Parse({"--threads", "many", "--acp", "maybe"}, {"threads", "acp"});
  ASSERT_TRUE(cl.ok());
  EXPECT_NE(cl->Int("threads", 0, 0, 8).status().message().find("--threads"), std::string::npos);
  EXPECT_FALSE(cl->Bool("acp", true).ok());
  auto range = CommandLine::Parse({"--threads", "99"}, {"threads"});
  EXPECT_FALSE(range->Int("threads", 0, 0, 8).ok());
}

}  // namespace
}  // namespace server
}  // namespace foxserve
