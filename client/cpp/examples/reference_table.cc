// Reproduces the reference-value table of docs/SEMANTICS.md against a running
// server: input 1..9, one channel, kernel of ones, no bias, Conv1D, for
// k in {5, 6}, s in {1, 2}, VALID and SAME_UPPER. Exits 1 on any mismatch.
//
//   reference_table_example --target=localhost:50051
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_join.h"
#include "client/cpp/convserve_client.h"

ABSL_FLAG(std::string, target, "localhost:50051", "Server address, host:port.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using convserve::client::FloatArray;
  struct Row {
    int k, s;
    std::vector<float> valid, same_upper;
  };
  const std::vector<Row> table = {
      {5, 1, {15, 20, 25, 30, 35}, {6, 10, 15, 20, 25, 30, 35, 30, 24}},
      {5, 2, {15, 25, 35}, {6, 15, 25, 35, 24}},
      {6, 1, {21, 27, 33, 39}, {10, 15, 21, 27, 33, 39, 35, 30, 24}},
      {6, 2, {21, 33}, {10, 21, 33, 35, 24}},
  };
  auto client = convserve::client::Client::Connect(absl::GetFlag(FLAGS_target));
  const FloatArray input{{1, 1, 9}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  bool all_match = true;
  std::cout << "| k | s | VALID | SAME_UPPER |\n|---|---|---|---|\n";
  for (const Row& row : table) {
    const FloatArray weight{{1, 1, row.k}, std::vector<float>(row.k, 1.0f)};
    std::string cells[2];
    for (int preset = 0; preset < 2; ++preset) {
      convserve::client::LayerArgs args;
      args.input_shape = input.shape;
      args.weight_shape = weight.shape;
      args.stride = {row.s};
      args.padding = preset == 0 ? "valid" : "same_upper";
      absl::StatusOr<convserve::v1::ConvLayer> layer = convserve::client::MakeLayer(args);
      absl::StatusOr<convserve::client::ConvResult> result =
          layer.ok() ? client->Conv(*layer, input, weight, nullptr)
                     : absl::StatusOr<convserve::client::ConvResult>(layer.status());
      if (!result.ok()) {
        std::cerr << "k=" << row.k << " s=" << row.s << ": " << result.status() << "\n";
        return 1;
      }
      const std::vector<float>& expected = preset == 0 ? row.valid : row.same_upper;
      if (result->output.values != expected) all_match = false;
      cells[preset] = absl::StrJoin(result->output.values, " ");
    }
    std::cout << "| " << row.k << " | " << row.s << " | " << cells[0] << " | " << cells[1]
              << " |\n";
  }
  std::cout << (all_match ? "all values match docs/SEMANTICS.md\n"
                          : "MISMATCH with docs/SEMANTICS.md\n");
  return all_match ? 0 : 1;
}
