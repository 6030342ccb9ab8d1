#include "client/cpp/convserve_client.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cpp/service_config_json.h"
// Header-only conversions, shared with the server; the client links no core code.
#include "core/half_scalar.h"

namespace convserve::client {
namespace {

absl::Status BadArgument(const std::string& name, const std::string& expected,
                         const std::string& got) {
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": expected ", expected, ", got '", got, "'"));
}

// Where RequestIdOf() finds the ID in a status.
constexpr char kRequestIdPayload[] = "type.convserve/request_id";

// 32 random lowercase hex digits, like the server's IDs and the Python
// client's uuid4().hex; one generator per thread, seeded from random_device.
std::string NewRequestId() {
  thread_local std::mt19937_64 engine = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t bits = engine();
    for (int digit = 0; digit < 16; ++digit, bits >>= 4) id[half * 16 + digit] = kHex[bits & 0xf];
  }
  return id;
}

absl::StatusOr<int64_t> ParseInt(const std::string& name, absl::string_view text) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value)) {
    return BadArgument(name, "an integer", std::string(text));
  }
  return value;
}

absl::Status SetPadding(const std::string& padding, v1::ConvLayer* layer) {
  const std::string lower = absl::AsciiStrToLower(padding);
  if (lower == "valid") {
    layer->set_padding(v1::PADDING_PRESET_VALID);
  } else if (lower == "same" || lower == "same_upper") {
    layer->set_padding(v1::PADDING_PRESET_SAME_UPPER);
  } else if (lower == "same_lower") {
    layer->set_padding(v1::PADDING_PRESET_SAME_LOWER);
  } else if (lower == "causal") {
    layer->set_padding(v1::PADDING_PRESET_CAUSAL);
  } else {
    layer->set_padding(v1::PADDING_PRESET_EXPLICIT);
    for (absl::string_view axis : absl::StrSplit(padding, ',', absl::SkipWhitespace())) {
      std::vector<absl::string_view> ends = absl::StrSplit(axis, ':');
      if (ends.size() > 2) {
        return BadArgument("padding", "valid, same, same_lower, causal, P, P1,P2 or B1:E1,B2:E2",
                           padding);
      }
      absl::StatusOr<int64_t> begin = ParseInt("padding", ends[0]);
      absl::StatusOr<int64_t> end = ParseInt("padding", ends.back());
      if (!begin.ok()) return begin.status();
      if (!end.ok()) return end.status();
      layer->add_pad_begin(*begin);
      layer->add_pad_end(*end);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ConvLayer> MakeLayer(const LayerArgs& args) {
  v1::ConvLayer layer;
  const int rank = static_cast<int>(args.weight_shape.size()) - 2;
  if (rank < 1 || rank > 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weight shape: expected 3 to 5 dims (rank + 2), got ", args.weight_shape.size()));
  }
  layer.set_spatial_rank(rank);
  layer.set_groups(args.groups);
  layer.set_bias(args.bias);

  const std::string data_format = absl::AsciiStrToLower(args.data_format);
  if (data_format == "channels_first") {
    layer.set_data_layout(v1::DATA_LAYOUT_CHANNELS_FIRST);
  } else if (data_format == "channels_last") {
    layer.set_data_layout(v1::DATA_LAYOUT_CHANNELS_LAST);
  } else {
    return BadArgument("data_format", "channels_first or channels_last", args.data_format);
  }
  const std::string weight_format = absl::AsciiStrToLower(args.weight_format);
  if (weight_format == "oihw") {
    layer.set_weight_layout(v1::WEIGHT_LAYOUT_OIHW);
    layer.set_out_channels(args.weight_shape[0]);
    layer.mutable_kernel()->Add(args.weight_shape.begin() + 2, args.weight_shape.end());
  } else if (weight_format == "hwio") {
    layer.set_weight_layout(v1::WEIGHT_LAYOUT_HWIO);
    layer.set_out_channels(args.weight_shape.back());
    layer.mutable_kernel()->Add(args.weight_shape.begin(), args.weight_shape.end() - 2);
  } else {
    return BadArgument("weight_format", "oihw or hwio", args.weight_format);
  }
  if (args.input_shape.size() >= 2) {
    layer.set_in_channels(layer.data_layout() == v1::DATA_LAYOUT_CHANNELS_FIRST
                              ? args.input_shape[1]
                              : args.input_shape.back());
  }
  layer.mutable_stride()->Add(args.stride.begin(), args.stride.end());
  layer.mutable_dilation()->Add(args.dilation.begin(), args.dilation.end());
  absl::Status padding = SetPadding(args.padding, &layer);
  if (!padding.ok()) return padding;

  v1::PaddingMode mode;
  if (!v1::PaddingMode_Parse("PADDING_MODE_" + absl::AsciiStrToUpper(args.padding_mode), &mode)) {
    return BadArgument("padding_mode", "zeros, reflect, replicate or circular", args.padding_mode);
  }
  layer.set_padding_mode(mode);
  v1::Activation activation;
  if (!v1::Activation_Parse("ACTIVATION_" + absl::AsciiStrToUpper(args.activation), &activation)) {
    return BadArgument("activation",
                       "none, relu, relu6, leaky_relu, elu, sigmoid, tanh, silu or gelu",
                       args.activation);
  }
  layer.set_activation(activation);
  if (args.activation_alpha.has_value()) layer.set_activation_alpha(*args.activation_alpha);
  return layer;
}

void ToProto(const FloatArray& array, v1::Tensor* tensor, v1::ElementType element_type) {
  tensor->mutable_shape()->Add(array.shape.begin(), array.shape.end());
  tensor->set_element_type(element_type);
  if (element_type != v1::ELEMENT_TYPE_FLOAT16 && element_type != v1::ELEMENT_TYPE_BFLOAT16) {
    // Little-endian host (as the server): the float bytes are the wire bytes.
    tensor->set_data(reinterpret_cast<const char*>(array.values.data()),
                     array.values.size() * sizeof(float));
    return;
  }
  std::vector<uint16_t> halves(array.values.size());
  for (size_t i = 0; i < halves.size(); ++i) {
    halves[i] = element_type == v1::ELEMENT_TYPE_FLOAT16 ? Float32ToFloat16(array.values[i])
                                                         : Float32ToBfloat16(array.values[i]);
  }
  tensor->set_data(reinterpret_cast<const char*>(halves.data()), halves.size() * sizeof(uint16_t));
}

absl::StatusOr<FloatArray> FromProto(const v1::Tensor& tensor) {
  FloatArray array;
  array.shape.assign(tensor.shape().begin(), tensor.shape().end());
  uint64_t count = 1;
  for (int64_t dim : array.shape) count *= static_cast<uint64_t>(dim);
  const bool half = tensor.element_type() == v1::ELEMENT_TYPE_FLOAT16 ||
                    tensor.element_type() == v1::ELEMENT_TYPE_BFLOAT16;
  const uint64_t element_bytes = half ? sizeof(uint16_t) : sizeof(float);
  if ((!half && tensor.element_type() != v1::ELEMENT_TYPE_FLOAT32) ||
      tensor.data().size() != count * element_bytes) {
    return absl::InternalError(
        absl::StrCat("response tensor: expected ", count * element_bytes, " bytes of ",
                     v1::ElementType_Name(tensor.element_type()), ", got ", tensor.data().size()));
  }
  array.values.resize(count);
  if (!half) {
    if (count > 0) std::memcpy(array.values.data(), tensor.data().data(), tensor.data().size());
    return array;
  }
  for (uint64_t i = 0; i < count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, tensor.data().data() + i * sizeof(bits), sizeof(bits));
    array.values[i] = tensor.element_type() == v1::ELEMENT_TYPE_FLOAT16 ? Float16ToFloat32(bits)
                                                                        : Bfloat16ToFloat32(bits);
  }
  return array;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status WithRequestId(const grpc::ClientContext& context, const std::string& sent_id,
                           const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  std::string id = sent_id;
  const auto& answered = context.GetServerInitialMetadata();
  const auto found = answered.find(kRequestIdKey);
  if (found != answered.end()) id.assign(found->second.data(), found->second.size());
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(status.error_message(), " [request_id=", id, "]"));
  result.SetPayload(kRequestIdPayload, absl::Cord(id));
  return result;
}

std::string RequestIdOf(const absl::Status& status) {
  const auto id = status.GetPayload(kRequestIdPayload);  // an absl::optional<absl::Cord>
  return id.has_value() ? std::string(*id) : std::string();
}

absl::StatusOr<std::string> ServiceConfigJson(const ClientOptions& options) {
  if (options.lb_policy != "round_robin" && options.lb_policy != "pick_first") {
    return BadArgument("lb_policy", "round_robin or pick_first", options.lb_policy);
  }
  google::protobuf::Struct config;
  const google::protobuf::util::Status parsed =
      google::protobuf::util::JsonStringToMessage(kServiceConfigJson, &config);
  if (!parsed.ok()) {
    return absl::InternalError(absl::StrCat("embedded service_config.json: ", parsed.ToString()));
  }
  google::protobuf::Value policy;
  (*policy.mutable_struct_value()->mutable_fields())[options.lb_policy].mutable_struct_value();
  google::protobuf::ListValue* balancing =
      (*config.mutable_fields())["loadBalancingConfig"].mutable_list_value();
  balancing->Clear();
  *balancing->add_values() = policy;
  if (!options.retries) config.mutable_fields()->erase("methodConfig");
  std::string json;
  google::protobuf::util::MessageToJsonString(config, &json);
  return json;
}

namespace {

// The whole of `path`, or INVALID_ARGUMENT naming `option` and the file.
absl::StatusOr<std::string> ReadPemFile(absl::string_view option, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream contents;
  if (file) contents << file.rdbuf();
  if (!file || file.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  if (contents.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        option, ": expected a PEM file ('-----BEGIN ...' line) in '", path, "', got none"));
  }
  return contents.str();
}

// Insecure credentials, or SSL ones if any TLS option is set (then the server
// name override goes into `arguments`).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const ClientOptions& options, grpc::ChannelArguments* arguments) {
  if (options.tls_ca_file.empty() && options.tls_cert_file.empty() &&
      options.tls_key_file.empty() && options.tls_server_name.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return options.tls_key_file.empty()
               ? absl::InvalidArgumentError(absl::StrCat(
                     "tls_key_file: expected the PEM private key of tls_cert_file '",
                     options.tls_cert_file, "' (a client certificate needs both), got none"))
               : absl::InvalidArgumentError(absl::StrCat(
                     "tls_cert_file: expected the PEM certificate of tls_key_file '",
                     options.tls_key_file, "' (a client certificate needs both), got none"));
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile("tls_ca_file", options.tls_ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!options.tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile("tls_cert_file", options.tls_cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile("tls_key_file", options.tls_key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  if (!options.tls_server_name.empty()) {
    arguments->SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& target,
                                                        const ClientOptions& options) {
  absl::StatusOr<std::string> service_config = ServiceConfigJson(options);
  if (!service_config.ok()) return service_config.status();
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(options.max_message_bytes);
  arguments.SetMaxSendMessageSize(options.max_message_bytes);
  arguments.SetServiceConfigJSON(*service_config);
  if (options.retries) {
    arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
    // A request is retried only while gRPC still holds all of it (256 KiB by
    // default): hold up to the largest message, so large Conv requests are
    // retried too.
    arguments.SetInt(GRPC_ARG_PER_RPC_RETRY_BUFFER_SIZE, options.max_message_bytes);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentials(options, &arguments);
  if (!credentials.ok()) return credentials.status();
  return std::make_unique<Client>(grpc::CreateCustomChannel(target, *credentials, arguments));
}

std::unique_ptr<Client> Client::Connect(const std::string& target, int max_message_bytes) {
  ClientOptions options;
  options.max_message_bytes = max_message_bytes;
  // The default options are valid, so this cannot fail.
  return *Connect(target, options);
}

Client::Client(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      stub_(v1::ConvService::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

std::string Client::Prepare(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() + timeout_);
  if (!auth_token_.empty()) context->AddMetadata("authorization", "Bearer " + auth_token_);
  std::string id = request_id_.empty() ? NewRequestId() : request_id_;
  context->AddMetadata(kRequestIdKey, id);
  return id;
}

absl::StatusOr<std::string> Client::Health(const std::string& service) {
  grpc::ClientContext context;
  const std::string request_id = Prepare(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  absl::Status status =
      WithRequestId(context, request_id, health_->Check(&context, request, &response));
  if (!status.ok()) return status;
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

absl::StatusOr<v1::ShapeReport> Client::ValidateShape(const v1::ConvLayer& layer,
                                                      const std::vector<int64_t>& input_shape,
                                                      v1::Framework enforce_framework) {
  grpc::ClientContext context;
  const std::string request_id = Prepare(&context);
  v1::ValidateShapeRequest request;
  *request.mutable_layer() = layer;
  request.mutable_input_shape()->Add(input_shape.begin(), input_shape.end());
  request.set_enforce_framework(enforce_framework);
  v1::ValidateShapeResponse response;
  absl::Status status =
      WithRequestId(context, request_id, stub_->ValidateShape(&context, request, &response));
  if (!status.ok()) return status;
  return std::move(*response.mutable_report());
}

absl::StatusOr<ConvResult> Client::Conv(const v1::ConvLayer& layer, const FloatArray& input,
                                        const FloatArray& weight, const FloatArray* bias) {
  grpc::ClientContext context;
  const std::string request_id = Prepare(&context);
  v1::ConvRequest request;
  *request.mutable_layer() = layer;
  ToProto(input, request.mutable_input());
  ToProto(weight, request.mutable_weight());
  if (bias != nullptr) ToProto(*bias, request.mutable_bias());
  v1::ConvResponse response;
  absl::Status status =
      WithRequestId(context, request_id, stub_->Conv(&context, request, &response));
  if (!status.ok()) return status;
  absl::StatusOr<FloatArray> output = FromProto(response.output());
  if (!output.ok()) return output.status();
  return ConvResult{*std::move(output), response.compute_time_ns(), response.kernel()};
}

absl::StatusOr<v1::ModelInfo> Client::LoadModel(const v1::LoadModelRequest& request) {
  grpc::ClientContext context;
  const std::string request_id = Prepare(&context);
  v1::LoadModelResponse response;
  absl::Status status =
      WithRequestId(context, request_id, stub_->LoadModel(&context, request, &response));
  if (!status.ok()) return status;
  return std::move(*response.mutable_model());
}

absl::StatusOr<ConvResult> Client::RunModel(const std::string& name, const FloatArray& input) {
  grpc::ClientContext context;
  const std::string request_id = Prepare(&context);
  v1::RunModelRequest request;
  request.set_name(name);
  ToProto(input, request.mutable_input());
  v1::RunModelResponse response;
  absl::Status status =
      WithRequestId(context, request_id, stub_->RunModel(&context, request, &response));
  if (!status.ok()) return status;
  absl::StatusOr<FloatArray> output = FromProto(response.output());
  if (!output.ok()) return output.status();
  return ConvResult{*std::move(output), response.compute_time_ns(), ""};
}

std::unique_ptr<ModelStream> Client::StreamModel(const std::string& name) {
  std::unique_ptr<ModelStream> stream(new ModelStream());
  stream->request_id_ = Prepare(&stream->context_);
  stream->name_ = name;
  stream->call_ = stub_->StreamModel(&stream->context_);
  return stream;
}

absl::StatusOr<FloatArray> ModelStream::Push(const FloatArray& chunk) {
  if (finished_) {
    return absl::FailedPreconditionError("the stream is over: Finish() says how it ended");
  }
  v1::StreamModelRequest request;
  request.set_name(name_);
  name_.clear();  // only the first message names the model
  ToProto(chunk, request.mutable_chunk());
  v1::StreamModelResponse response;
  if (!call_->Write(request) || !call_->Read(&response)) {
    absl::Status status = Finish();
    return status.ok() ? absl::InternalError("the server ended the stream without an answer")
                       : status;
  }
  return FromProto(response.output());
}

absl::Status ModelStream::Finish() {
  if (finished_) return absl::FailedPreconditionError("the stream was already finished");
  finished_ = true;
  call_->WritesDone();
  v1::StreamModelResponse extra;
  while (call_->Read(&extra)) {
  }
  return WithRequestId(context_, request_id_, call_->Finish());
}

ModelStream::~ModelStream() {
  if (!finished_) {
    context_.TryCancel();
    (void)Finish();
  }
}

absl::Status Client::UnloadModel(const std::string& name) {
  grpc::ClientContext context;
  const std::string request_id = Prepare(&context);
  v1::UnloadModelRequest request;
  request.set_name(name);
  v1::UnloadModelResponse response;
  return WithRequestId(context, request_id, stub_->UnloadModel(&context, request, &response));
}

absl::StatusOr<std::vector<v1::ModelInfo>> Client::ListModels() {
  grpc::ClientContext context;
  const std::string request_id = Prepare(&context);
  v1::ListModelsResponse response;
  absl::Status status = WithRequestId(
      context, request_id, stub_->ListModels(&context, v1::ListModelsRequest(), &response));
  if (!status.ok()) return status;
  return std::vector<v1::ModelInfo>(response.models().begin(), response.models().end());
}

absl::StatusOr<v1::GetServerInfoResponse> Client::ServerInfo() {
  grpc::ClientContext context;
  const std::string request_id = Prepare(&context);
  v1::GetServerInfoResponse response;
  absl::Status status = WithRequestId(
      context, request_id, stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &response));
  if (!status.ok()) return status;
  return response;
}

}  // namespace convserve::client
