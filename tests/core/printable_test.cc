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

TEST(CapMessageTest, KeepsShortMessagesWhole) {
  EXPECT_EQ(CapMessage("name: no model named 'x' is loaded", 1024),
            "name: no model named 'x' is loaded");
  const std::string exact(1024, 'a');
  EXPECT_EQ(CapMessage(exact, 1024), exact);
}

TEST(CapMessageTest, CutsLongMessagesToTheLimitAndMarksTheCut) {
  const std::string capped = CapMessage(std::string(3 << 20, 'a'), 1024);
  EXPECT_EQ(capped, std::string(1024 - 23, 'a') + "...(cut: 3145728 bytes)");
}

// `head` filled up to 40 bytes with dots: then the mark "...(cut: 40 bytes)"
// is 18 bytes and a cap of 24 leaves 6 bytes of room.
std::string Forty(const std::string& head) { return head + std::string(40 - head.size(), '.'); }

TEST(CapMessageTest, NeverSplitsAnEscapeOrAUtf8Character) {
  EXPECT_EQ(CapMessage(Forty("abcd\\n"), 24), "abcd\\n...(cut: 40 bytes)");
  EXPECT_EQ(CapMessage(Forty("abcde\\n"), 24), "abcde...(cut: 40 bytes)");
  EXPECT_EQ(CapMessage(Forty("abcd\\x1b[31m"), 24), "abcd...(cut: 40 bytes)");
  EXPECT_EQ(CapMessage(Forty("abcde\\101"), 24), "abcde...(cut: 40 bytes)");
  // Raw UTF-8: "\xc3\xa9" is one character, "\xe2\x82\xac" another.
  EXPECT_EQ(CapMessage(Forty("abcd\xc3\xa9"
                             "rest"),
                       24),
            "abcd\xc3\xa9...(cut: 40 bytes)");
  EXPECT_EQ(CapMessage(Forty("abcde\xc3\xa9"
                             "rest"),
                       24),
            "abcde...(cut: 40 bytes)");
  EXPECT_EQ(CapMessage(Forty("abcd\xe2\x82\xac"
                             "rest"),
                       24),
            "abcd...(cut: 40 bytes)");
}

TEST(CapMessageTest, ALimitBelowTheMarkGivesTheMarkAlone) {
  EXPECT_EQ(CapMessage(Forty("abc"), 4), "...(cut: 40 bytes)");
}

}  // namespace
}  // namespace convserve
