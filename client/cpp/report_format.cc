#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cpp/convserve_client.h"

namespace convserve::client {
namespace {

template <typename Repeated>
std::string Shape(const Repeated& values) {
  return absl::StrCat("[", absl::StrJoin(values, ", "), "]");
}

std::string FrameworkLabel(v1::Framework framework) {
  switch (framework) {
    case v1::FRAMEWORK_PYTORCH:
      return "PyTorch";
    case v1::FRAMEWORK_KERAS:
      return "Keras";
    case v1::FRAMEWORK_ONNX:
      return "ONNX";
    default:
      return "?";
  }
}

}  // namespace

std::string FormatReport(const v1::ShapeReport& report) {
  std::string text = absl::StrCat(
      "input   ", Shape(report.input_shape()), "\noutput  ", Shape(report.output_shape()),
      "\nweight  ", Shape(report.weight_shape()), "\nbias    ",
      report.bias_shape().empty() ? std::string("none") : Shape(report.bias_shape()),
      "\n\nper spatial axis:\n");
  for (int i = 0; i < report.axes_size(); ++i) {
    absl::StrAppend(&text, "  axis ", i, ": ", report.axes(i).derivation(), "\n");
  }
  absl::StrAppend(&text, "\nparameters ", report.parameters(), "   MACs ", report.macs(),
                  "   FLOPs ", report.flops(), "\nbytes: input ", report.input_bytes(), ", output ",
                  report.output_bytes(), ", weight ", report.weight_bytes(), "\n");
  if (report.warnings_size() > 0) {
    absl::StrAppend(&text, "\n");
    for (const std::string& warning : report.warnings()) {
      absl::StrAppend(&text, "warning: ", warning, "\n");
    }
  }
  absl::StrAppend(&text, "\nframeworks:\n");
  for (const v1::FrameworkVerdict& verdict : report.frameworks()) {
    std::string label = FrameworkLabel(verdict.framework());
    label.resize(8, ' ');
    absl::StrAppend(
        &text, "  ", label, " ",
        verdict.accepted() ? std::string("accepts") : absl::StrCat("refuses: ", verdict.reason()),
        "\n");
    for (absl::string_view line : absl::StrSplit(verdict.equivalent(), '\n', absl::SkipEmpty())) {
      absl::StrAppend(&text, "           ", line, "\n");
    }
  }
  return text;
}

}  // namespace convserve::client
