// CheckBearerToken and ReadTokenFile: optional bearer-token authentication.
#include "server/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "server/call_record.h"

namespace convserve {
namespace {

using ::testing::HasSubstr;

TEST(AuthTest, ChecksBearerToken) {
  std::multimap<grpc::string_ref, grpc::string_ref> metadata;
  EXPECT_EQ(CheckBearerToken(metadata, "abc").code(), absl::StatusCode::kUnauthenticated);
  metadata.emplace("authorization", "Bearer abc");
  EXPECT_TRUE(CheckBearerToken(metadata, "abc").ok());
  EXPECT_EQ(CheckBearerToken(metadata, "abd").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(CheckBearerToken(metadata, "abcd").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(CheckBearerToken(metadata, "ab").code(), absl::StatusCode::kUnauthenticated);
  metadata.clear();
  metadata.emplace("authorization", "Basic abc");
  EXPECT_THAT(std::string(CheckBearerToken(metadata, "abc").message()), HasSubstr("Bearer"));
  EXPECT_EQ(ReadTokenFile("/nonexistent/token").status().code(),
            absl::StatusCode::kInvalidArgument);
}

class RecordingObserver : public CallObserver {
 public:
  void OnCallStarted(const char* method) override { started.push_back(method); }
  void OnCallCompleted(const CallRecord& record) override { completed.push_back(record); }
  std::vector<std::string> started;
  std::vector<CallRecord> completed;
};

grpc::Status Process(grpc::AuthMetadataProcessor& processor,
                     const grpc::AuthMetadataProcessor::InputMetadata& metadata) {
  grpc::AuthMetadataProcessor::OutputMetadata consumed;
  grpc::AuthMetadataProcessor::OutputMetadata response;
  return processor.Process(metadata, nullptr, &consumed, &response);
}

TEST(AuthTest, ProcessorRefusesConvServiceCallsWithoutTheTokenFromTheirHeaders) {
  RecordingObserver observer;
  std::shared_ptr<grpc::AuthMetadataProcessor> processor =
      MakeBearerTokenProcessor("abc", &observer);
  EXPECT_FALSE(processor->IsBlocking());
  grpc::AuthMetadataProcessor::InputMetadata metadata;
  metadata.emplace(":path", "/convserve.v1.ConvService/RunModel");
  metadata.emplace("x-request-id", "caller-id-1");
  grpc::Status refused = Process(*processor, metadata);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused.error_message(), HasSubstr("authorization"));
  ASSERT_EQ(observer.completed.size(), 1u);
  EXPECT_EQ(observer.started, std::vector<std::string>{"RunModel"});
  EXPECT_STREQ(observer.completed[0].method, "RunModel");
  EXPECT_EQ(observer.completed[0].request_id, "caller-id-1");
  EXPECT_EQ(observer.completed[0].code, absl::StatusCode::kUnauthenticated);

  metadata.emplace("authorization", "Bearer abd");
  EXPECT_EQ(Process(*processor, metadata).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  metadata.erase("authorization");
  metadata.emplace("authorization", "Bearer abc");
  EXPECT_TRUE(Process(*processor, metadata).ok());
  EXPECT_EQ(observer.completed.size(), 2u);  // only the refusals
}

TEST(AuthTest, ProcessorLeavesOtherServicesOpen) {
  std::shared_ptr<grpc::AuthMetadataProcessor> processor = MakeBearerTokenProcessor("abc", nullptr);
  for (const char* path : {"/grpc.health.v1.Health/Check",
                           "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                           "/convserve.v1.ConvService/NoSuchMethod", "/convserve.v1.ConvService/",
                           "/convserve.v1.ConvServiceX/Conv"}) {
    grpc::AuthMetadataProcessor::InputMetadata metadata;
    metadata.emplace(":path", path);
    EXPECT_TRUE(Process(*processor, metadata).ok()) << path;
  }
  EXPECT_TRUE(Process(*processor, {}).ok());  // no path: the handler checks
}

}  // namespace
}  // namespace convserve
