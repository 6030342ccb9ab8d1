// request_id_test.cc: making, checking and taking the x-request-id of a call.
#include "server/request_id.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace convserve {
namespace {

using ::testing::HasSubstr;

using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

TEST(NewRequestIdTest, Is32LowercaseHexDigitsAndAValidId) {
  const std::string id = NewRequestId();
  EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{32}"))) << id;
  EXPECT_TRUE(CheckRequestId(id).ok());
}

TEST(NewRequestIdTest, NeverRepeatsWithinAThread) {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(NewRequestId());
  EXPECT_EQ(ids.size(), 10000u);
}

TEST(NewRequestIdTest, ThreadsDoNotShareASequence) {
  constexpr int kThreads = 4;
  constexpr int kEach = 1000;
  std::vector<std::vector<std::string>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&made, t] {
      for (int i = 0; i < kEach; ++i) made[t].push_back(NewRequestId());
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<std::string> ids;
  for (const std::vector<std::string>& some : made) ids.insert(some.begin(), some.end());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kEach));
}

TEST(CheckRequestIdTest, AcceptsOneTo128PrintableAsciiCharacters) {
  EXPECT_TRUE(CheckRequestId("a").ok());
  EXPECT_TRUE(CheckRequestId(std::string(128, 'x')).ok());
  EXPECT_TRUE(CheckRequestId("req 42: \"retry\" ~{}\\").ok());
}

TEST(CheckRequestIdTest, RefusesAnEmptyValue) {
  const absl::Status status = CheckRequestId("");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "metadata x-request-id: expected 1 to 128 printable ASCII characters, got an empty "
            "value");
}

TEST(CheckRequestIdTest, RefusesMoreThan128CharactersShowingABoundedPart) {
  const absl::Status status = CheckRequestId(std::string(129, 'x'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "metadata x-request-id: expected 1 to 128 printable ASCII characters, got 129 "
            "characters: '" +
                std::string(128, 'x') + "...(129 bytes)'");
}

TEST(CheckRequestIdTest, RefusesControlAndNonAsciiBytesEscapingThem) {
  const absl::Status newline = CheckRequestId("id\n[critical] FORGED");
  EXPECT_EQ(newline.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(newline.message(),
            "metadata x-request-id: expected 1 to 128 printable ASCII characters, got "
            "'id\\n[critical] FORGED' (byte 0x0a at offset 2)");
  EXPECT_THAT(std::string(CheckRequestId("\x7f").message()), HasSubstr("(byte 0x7f at offset 0)"));
  EXPECT_THAT(std::string(CheckRequestId("caf\xc3\xa9").message()),
              HasSubstr("'caf\\xc3\\xa9' (byte 0xc3 at offset 3)"));
}

TEST(TakeRequestIdTest, MakesOneWhenNoneIsSent) {
  const std::string key = "authorization", value = "Bearer t";
  const Metadata metadata{{key, value}};
  const CallRequestId id = TakeRequestId(metadata);
  EXPECT_TRUE(id.status.ok());
  EXPECT_TRUE(std::regex_match(id.id, std::regex("[0-9a-f]{32}"))) << id.id;
}

TEST(TakeRequestIdTest, KeepsTheCallersValidId) {
  const std::string key = "x-request-id", value = "client-7/attempt 2";
  const Metadata metadata{{key, value}};
  const CallRequestId id = TakeRequestId(metadata);
  EXPECT_TRUE(id.status.ok());
  EXPECT_EQ(id.id, value);
}

TEST(TakeRequestIdTest, RefusesAnInvalidIdAndMakesOneForTheRefusal) {
  const std::string key = "x-request-id", value(200, 'z');
  const Metadata metadata{{key, value}};
  const CallRequestId id = TakeRequestId(metadata);
  EXPECT_EQ(id.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(id.status.message()), HasSubstr("got 200 characters"));
  EXPECT_TRUE(std::regex_match(id.id, std::regex("[0-9a-f]{32}"))) << id.id;
}

TEST(TakeRequestIdTest, RefusesTwoIds) {
  const std::string key = "x-request-id", first = "a", second = "b";
  const Metadata metadata{{key, first}, {key, second}};
  const CallRequestId id = TakeRequestId(metadata);
  EXPECT_EQ(id.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(id.status.message(), "metadata x-request-id: expected one value, got 2");
  EXPECT_TRUE(std::regex_match(id.id, std::regex("[0-9a-f]{32}"))) << id.id;
}

}  // namespace
}  // namespace convserve
