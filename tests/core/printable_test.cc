// Printable(): what a status or a log line may echo of caller-supplied text.
#include "core/printable.h"

#include <gtest/gtest.h>

#include <string>

namespace convserve {
namespace {

TEST(PrintableTest, KeepsPrintableTextAsIs) {
  EXPECT_EQ(Printable("resnet50-v2_block.3"), "resnet50-v2_block.3");
}

TEST(PrintableTest, EscapesWhatCouldForgeALogLineOrBreakQuotes) {
  const std::string forged = "m\n[2026-11-26 00:00:00.000] [critical] FORGED";
  const std::string shown = Printable(forged);
  EXPECT_EQ(shown.find('\n'), std::string::npos);
  EXPECT_EQ(shown, "m\\n[2026-11-26 00:00:00.000] [critical] FORGED");
  EXPECT_EQ(Printable("a'b\"c\\d\x1b[31m\r\t"), "a\\'b\\\"c\\\\d\\x1b[31m\\r\\t");
  EXPECT_EQ(Printable(std::string("\0\xff", 2)), "\\x00\\xff");
}

TEST(PrintableTest, TruncatesLongTextAndSaysHowLongItWas) {
  const std::string name(8 << 20, 'a');
  const std::string shown = Printable(name);
  EXPECT_EQ(shown, std::string(kMaxEchoedBytes, 'a') + "...(8388608 bytes)");
  EXPECT_EQ(Printable("abcdef", 3), "abc...(6 bytes)");
  EXPECT_EQ(Printable("abc", 3), "abc");
}

}  // namespace
}  // namespace convserve
