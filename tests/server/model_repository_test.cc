// ModelRepository: the directory scan, the limited file read, and the swaps,
// with a builder that makes a model from a file's text ("fail" fails).
#include "server/model_repository.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace convserve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ModelRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("convserve_repo_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Writes DIR/<name>/<version>/model.onnx holding `text`.
  void Write(const std::string& name, const std::string& version, const std::string& text) {
    const fs::path dir = root_ / name / version;
    fs::create_directories(dir);
    std::ofstream(dir / kModelFileName, std::ios::trunc) << text;
  }

  ModelRepository::Builder builder() {
    return [this](const std::string& name, const std::string& bytes, const std::string& model_dir,
                  v1::Precision precision) -> absl::StatusOr<std::shared_ptr<Model>> {
      ++builds_;
      last_model_dir_ = model_dir;
      last_precision_ = precision;
      if (bytes.rfind("fail", 0) == 0) return absl::InvalidArgumentError("model.onnx: broken");
      auto model = std::make_shared<Model>();
      model->name = name;
      model->parameters = static_cast<int64_t>(bytes.size());
      model->charged_bytes = ModelBytes(static_cast<int64_t>(bytes.size()), 1);
      return model;
    };
  }

  fs::path root_;
  int builds_ = 0;
  std::string last_model_dir_;
  v1::Precision last_precision_ = v1::PRECISION_EXACT;
  ModelRegistry registry_{int64_t{1} << 30};
};

TEST_F(ModelRepositoryTest, ServesTheHighestVersionOfEachModel) {
  Write("resnet", "1", "a");
  Write("resnet", "10", "abc");
  Write("resnet", "9", "ab");
  Write("vgg", "3", "abcd");
  fs::create_directories(root_ / "vgg" / "7");       // no model file: not a version
  fs::create_directories(root_ / "vgg" / "latest");  // not a number
  fs::create_directories(root_ / "vgg" / "0");       // not above 0
  std::ofstream(root_ / "README") << "not a model";  // files beside the folders
  fs::create_directories(root_ / "..data");          // hidden (Kubernetes volumes)
  fs::create_directories(root_ / "bad name");
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  absl::StatusOr<RepositorySyncReport> report = repository.Sync();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->loaded, 2);
  EXPECT_TRUE(report->refused.empty());
  absl::StatusOr<std::shared_ptr<const Model>> resnet = registry_.Find("resnet");
  ASSERT_TRUE(resnet.ok());
  EXPECT_EQ((*resnet)->version, 10);
  EXPECT_EQ((*resnet)->parameters, 3);
  EXPECT_EQ((*resnet)->source, (root_ / "resnet" / "10" / kModelFileName).string());
  EXPECT_EQ((*registry_.Find("vgg"))->version, 3);
  EXPECT_EQ(last_model_dir_, (root_ / "vgg" / "3").string());
  EXPECT_EQ(registry_.size(), 2u);

  absl::StatusOr<RepositoryScan> scan = ScanModelRepository(root_.string());
  ASSERT_TRUE(scan.ok());
  ASSERT_EQ(scan->skipped.size(), 1u);
  EXPECT_THAT(scan->skipped[0], HasSubstr("bad name"));
}

TEST_F(ModelRepositoryTest, UnchangedFilesAreNotReloaded) {
  Write("m", "1", "abc");
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  ASSERT_TRUE(repository.Sync().ok());
  absl::StatusOr<RepositorySyncReport> again = repository.Sync();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->loaded, 0);
  EXPECT_EQ(again->unchanged, 1);
  EXPECT_EQ(builds_, 1);
}

TEST_F(ModelRepositoryTest, ANewVersionIsSwappedInAndCallsKeepTheOldOne) {
  Write("m", "1", "a");
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  ASSERT_TRUE(repository.Sync().ok());
  std::shared_ptr<const Model> in_flight = *registry_.Find("m");
  Write("m", "2", "ab");
  absl::StatusOr<RepositorySyncReport> report = repository.Sync();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->loaded, 1);
  EXPECT_EQ((*registry_.Find("m"))->version, 2);
  EXPECT_EQ(in_flight->version, 1);  // still whole for the call holding it
  EXPECT_EQ(in_flight->parameters, 1);
}

TEST_F(ModelRepositoryTest, AFileRewrittenInPlaceIsReloaded) {
  Write("m", "1", "a");
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  ASSERT_TRUE(repository.Sync().ok());
  // Another size: seen even where the clock's resolution hides the new mtime.
  Write("m", "1", "abcdef");
  ASSERT_TRUE(repository.Sync().ok());
  EXPECT_EQ((*registry_.Find("m"))->parameters, 6);
}

TEST_F(ModelRepositoryTest, AFailingNewVersionLeavesTheOldOneServingAndIsTriedOnce) {
  Write("m", "1", "a");
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  ASSERT_TRUE(repository.Sync().ok());
  Write("m", "2", "fail: truncated");
  absl::StatusOr<RepositorySyncReport> report = repository.Sync();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->loaded, 0);
  ASSERT_EQ(report->refused.size(), 1u);
  EXPECT_THAT(report->refused[0], HasSubstr("broken"));
  EXPECT_THAT(report->refused[0], HasSubstr("version 1 stays"));
  EXPECT_EQ((*registry_.Find("m"))->version, 1);
  std::vector<RefusedModel> refused = repository.Refused();
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].version, 2);
  EXPECT_THAT(refused[0].reason, HasSubstr("broken"));
  const int builds = builds_;
  report = repository.Sync();  // the same broken file: not built again, not logged again
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->refused.empty());
  EXPECT_EQ(builds_, builds);
  Write("m", "2", "fixed");
  ASSERT_TRUE(repository.Sync().ok());
  EXPECT_EQ((*registry_.Find("m"))->version, 2);
  EXPECT_TRUE(repository.Refused().empty());
}

TEST_F(ModelRepositoryTest, AModelWhoseFolderIsGoneIsUnloaded) {
  Write("a", "1", "x");
  Write("b", "1", "y");
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  ASSERT_TRUE(repository.Sync().ok());
  fs::remove_all(root_ / "a");
  absl::StatusOr<RepositorySyncReport> report = repository.Sync();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->unloaded, 1);
  EXPECT_FALSE(registry_.Find("a").ok());
  EXPECT_TRUE(registry_.Find("b").ok());
}

TEST_F(ModelRepositoryTest, ModelsLoadedThroughLoadModelAreLeftAlone) {
  auto rpc_model = std::make_shared<Model>();
  rpc_model->name = "m";
  ASSERT_TRUE(registry_.Add(rpc_model, false).ok());
  Write("m", "1", "a");
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  absl::StatusOr<RepositorySyncReport> report = repository.Sync();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->refused.size(), 1u);
  EXPECT_THAT(report->refused[0], HasSubstr("LoadModel"));
  EXPECT_EQ(*registry_.Find("m"), rpc_model);
  // Tried again at every Sync(): once the name is free, the file is served.
  ASSERT_TRUE(registry_.Remove("m").ok());
  ASSERT_TRUE(repository.Sync().ok());
  EXPECT_EQ((*registry_.Find("m"))->version, 1);
  ASSERT_TRUE(registry_.Remove("m").ok());
  ASSERT_TRUE(registry_.Add(rpc_model, false).ok());
  // Nor unloaded when the repository's folder goes.
  fs::remove_all(root_ / "m");
  ASSERT_TRUE(repository.Sync().ok());
  EXPECT_EQ(*registry_.Find("m"), rpc_model);
}

TEST_F(ModelRepositoryTest, FilesAboveTheLimitAreRefusedBeforeTheyAreRead) {
  Write("big", "1", std::string(2000, 'x'));
  ModelRepository repository(root_.string(), 1000, &registry_, builder());
  absl::StatusOr<RepositorySyncReport> report = repository.Sync();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->refused.size(), 1u);
  EXPECT_THAT(report->refused[0], HasSubstr("2000 bytes, more than the limit of 1000"));
  EXPECT_EQ(builds_, 0);
}

TEST_F(ModelRepositoryTest, ReadModelFileRefusesWhatIsNotARegularFile) {
  EXPECT_THAT(std::string(ReadModelFile((root_ / "none").string(), 100).status().message()),
              HasSubstr("cannot open"));
  EXPECT_THAT(std::string(ReadModelFile(root_.string(), 100).status().message()),
              HasSubstr("expected a regular file"));
  const fs::path fifo = root_ / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THAT(std::string(ReadModelFile(fifo.string(), 100).status().message()),
              HasSubstr("expected a regular file"));
  std::ofstream(root_ / "ok") << "hello";
  absl::StatusOr<std::string> bytes = ReadModelFile((root_ / "ok").string(), 5);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, "hello");
}

TEST_F(ModelRepositoryTest, RequestSyncRunsOneSyncInTheBackground) {
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  repository.StartBackground(0);  // no polling: only on request
  Write("m", "1", "a");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(registry_.Find("m").ok());
  repository.RequestSync();
  for (int i = 0; i < 100 && !registry_.Find("m").ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(registry_.Find("m").ok());
}

TEST(ParseRepositoryConfigTest, ReadsTritonsBatchingFieldsAndIgnoresTheRest) {
  absl::StatusOr<RepositoryConfig> options = ParseRepositoryConfig("c", R"(
      name: "resnet"
      platform: "onnxruntime_onnx"
      max_batch_size: 16
      input [ { name: "x" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
      dynamic_batching { max_queue_delay_microseconds: 500 preferred_batch_size: [ 4, 8 ] }
      instance_group [ { count: 2 kind: KIND_CPU } ])");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->batching.max_batch_size, 16);
  EXPECT_EQ(options->batching.max_queue_delay_us, 500);
  EXPECT_EQ(options->precision, v1::PRECISION_EXACT);
  // No dynamic_batching block: off, as in Triton.
  options = ParseRepositoryConfig("c", "max_batch_size: 16");
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(options->batching.enabled());
  options = ParseRepositoryConfig("c", "dynamic_batching { }");
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(options->batching.enabled());
  EXPECT_THAT(
      std::string(ParseRepositoryConfig("m/config.pbtxt", "max_batch_size: {").status().message()),
      HasSubstr("m/config.pbtxt: expected a model configuration"));
  EXPECT_THAT(std::string(ParseRepositoryConfig("m/config.pbtxt",
                                                "max_batch_size: 5000 dynamic_batching { }")
                              .status()
                              .message()),
              HasSubstr("5000"));
}

TEST(ParseRepositoryConfigTest, ReadsThePrecisionParameter) {
  absl::StatusOr<RepositoryConfig> config = ParseRepositoryConfig("c", R"(
      parameters { key: "precision" value { string_value: "fast" } }
      parameters { key: "other" value { string_value: "ignored" } })");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->precision, v1::PRECISION_FAST);
  // Triton's list syntax for the same map.
  config = ParseRepositoryConfig(
      "c", R"(parameters [ { key: "precision" value: { string_value: "exact" } } ])");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->precision, v1::PRECISION_EXACT);
  config = ParseRepositoryConfig(
      "m/config.pbtxt", R"(parameters { key: "precision" value { string_value: "fastest" } })");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("m/config.pbtxt: parameters \"precision\": expected \"exact\" or "
                        "\"fast\", got \"fastest\""));
}

TEST_F(ModelRepositoryTest, AConfigSetsBatchingAndItsChangeReloads) {
  Write("m", "1", "a");
  std::ofstream(root_ / "m" / "config.pbtxt")
      << "max_batch_size: 8 dynamic_batching { max_queue_delay_microseconds: 100 }";
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  ASSERT_TRUE(repository.Sync().ok());
  EXPECT_EQ((*registry_.Find("m"))->batching.max_batch_size, 8);
  EXPECT_EQ((*registry_.Find("m"))->batching.max_queue_delay_us, 100);
  EXPECT_EQ(last_precision_, v1::PRECISION_EXACT);
  std::ofstream(root_ / "m" / "config.pbtxt", std::ios::trunc)
      << "max_batch_size: 0 parameters { key: \"precision\" value { string_value: \"fast\" } }";
  absl::StatusOr<RepositorySyncReport> report = repository.Sync();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->loaded, 1);
  EXPECT_FALSE((*registry_.Find("m"))->batching.enabled());
  EXPECT_EQ(last_precision_, v1::PRECISION_FAST);  // the builder was asked for it
  std::ofstream(root_ / "m" / "config.pbtxt", std::ios::trunc) << "not { a config";
  report = repository.Sync();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->refused.size(), 1u);
  EXPECT_THAT(report->refused[0], HasSubstr("config.pbtxt"));
  EXPECT_TRUE(registry_.Find("m").ok());  // the version loaded before stays
}

TEST_F(ModelRepositoryTest, AMissingRootIsAnError) {
  ModelRepository repository((root_ / "missing").string(), 1000, &registry_, builder());
  absl::StatusOr<RepositorySyncReport> report = repository.Sync();
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("--model_repository"));
}

TEST_F(ModelRepositoryTest, PollingPicksUpANewModel) {
  ModelRepository repository(root_.string(), 1 << 20, &registry_, builder());
  ASSERT_TRUE(repository.Sync().ok());
  repository.StartBackground(1);
  Write("m", "1", "a");
  for (int i = 0; i < 100 && !registry_.Find("m").ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(registry_.Find("m").ok());
}

}  // namespace
}  // namespace convserve
