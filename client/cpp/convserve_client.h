// convserve_client.h: C++ client of a ConvServe server.
//
//   auto client = convserve::client::Client::Connect("localhost:50051");
//   // or several replicas, retrying on the others when one fails:
//   ClientOptions options;  options.retries = true;
//   auto replicas = Client::Connect("ipv4:10.0.0.1:50051,10.0.0.2:50051", options);
//   LayerArgs args;  args.input_shape = {1, 1, 9};  args.weight_shape = {1, 1, 5};
//   args.padding = "same";
//   absl::StatusOr<v1::ConvLayer> layer = MakeLayer(args);
//   absl::StatusOr<ConvResult> y = client->Conv(*layer, x, w, nullptr);
//
// Every call returns absl::Status with the server's gRPC code and message.
// Every call sends an x-request-id (a new one per call unless set_request_id);
// a failed call's status names it, as the server's log lines do.
// Thread-safe: one Client may serve many threads.
#ifndef CONVSERVE_CLIENT_CPP_CONVSERVE_CLIENT_H_
#define CONVSERVE_CLIENT_CPP_CONVSERVE_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cpp/npy.h"
#include "convserve/v1/convserve.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace convserve::client {

namespace v1 = ::convserve::v1;

// A layer as a person writes it, with the conventions of the Python client:
// channel counts and kernel come from the shapes.
struct LayerArgs {
  std::vector<int64_t> input_shape;   // (N, C, *S) or (N, *S, C)
  std::vector<int64_t> weight_shape;  // (C_out, C_in/g, *K) or (*K, C_in/g, C_out); rank + 2 dims
  bool bias = false;
  std::vector<int64_t> stride = {1};
  std::vector<int64_t> dilation = {1};
  // "valid", "same" (= "same_upper"), "same_upper", "same_lower", "causal",
  // "P" (every axis), "P1,P2" (per axis) or "B1:E1,B2:E2" (begin:end per axis).
  std::string padding = "0";
  std::string padding_mode = "zeros";  // zeros, reflect, replicate, circular
  int64_t groups = 1;
  std::string data_format = "channels_first";  // or channels_last
  std::string weight_format = "oihw";          // or hwio
  std::string activation = "none";             // none, relu, relu6, leaky_relu, elu, ...
  std::optional<float> activation_alpha;
};

// INVALID_ARGUMENT naming the argument if a name or number is malformed.
absl::StatusOr<v1::ConvLayer> MakeLayer(const LayerArgs& args);

// FloatArray <-> wire tensor. ToProto sends the values as `element_type`:
// FLOAT32, or FLOAT16 / BFLOAT16 (half the bytes; values rounded to nearest
// even, as the server rounds half outputs). FromProto reads any of the three
// (half values convert to float exactly).
void ToProto(const FloatArray& array, v1::Tensor* tensor,
             v1::ElementType element_type = v1::ELEMENT_TYPE_FLOAT32);
absl::StatusOr<FloatArray> FromProto(const v1::Tensor& tensor);

struct ConvResult {
  FloatArray output;
  int64_t compute_time_ns = 0;
  std::string kernel;
};

// One StreamModel call (Client::StreamModel): Push() each chunk of the
// signal and get the output cells it completes, in turn; Finish() at the
// end. The Client's timeout bounds the whole stream. Not thread-safe.
class ModelStream {
 public:
  // Sends the next chunk (in the model's data layout; every axis but the
  // last spatial one as in the first chunk) and waits for its output, whose
  // time extent may be 0. After an error the stream is over: Finish() says
  // why the server ended it.
  absl::StatusOr<FloatArray> Push(const FloatArray& chunk);
  // Closes the sending side and returns how the call ended (OK, or the
  // server's error with the request ID, as every Client call does).
  absl::Status Finish();
  // Cancels the call (e.g. from another thread, or instead of Finish()).
  void Cancel() { context_.TryCancel(); }
  ~ModelStream();

 private:
  friend class Client;
  ModelStream() = default;
  grpc::ClientContext context_;
  std::string request_id_;
  std::string name_;  // sent with the first chunk
  std::unique_ptr<grpc::ClientReaderWriter<v1::StreamModelRequest, v1::StreamModelResponse>> call_;
  bool finished_ = false;
};

// How a Client's channel reaches the server or its replicas.
struct ClientOptions {
  // Largest request and response, in bytes (the server's --max_message_bytes).
  int max_message_bytes = 256 << 20;
  // How calls spread over the addresses the target resolves to:
  // "round_robin" (each call to the next ready replica) or "pick_first"
  // (every call to the first address that connects, gRPC's own default).
  std::string lb_policy = "round_robin";
  // Retry Conv, ValidateShape and RunModel on UNAVAILABLE (a replica that
  // died or drains), up to 4 attempts, each on the next replica. The other
  // RPCs are never retried: LoadModel and UnloadModel change a replica's state.
  bool retries = false;
  // TLS: setting any of the four connects over TLS (servers run with
  // --tls_cert_file). tls_ca_file: PEM CA certificate(s) that signed the
  // server's certificate (empty = gRPC's default roots). tls_cert_file and
  // tls_key_file (both or neither): this client's PEM certificate and key, for
  // servers that require them (--tls_client_ca_file). tls_server_name: the
  // name the server's certificate must carry, if not the target's host.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;
};

// The gRPC service config JSON for `options`: client/python/convserve/
// service_config.json (embedded at build time, shared with the Python client)
// with its load-balancing policy set to options.lb_policy and, unless
// options.retries, without its retry policy. INVALID_ARGUMENT for an unknown
// policy.
absl::StatusOr<std::string> ServiceConfigJson(const ClientOptions& options);

class Client {
 public:
  // A channel to `target`: "host:port", or several replicas as
  // "ipv4:127.0.0.1:50051,127.0.0.1:50052" or "dns:///name:port" (any gRPC
  // target). INVALID_ARGUMENT if `options` are malformed or a TLS file
  // cannot be read (naming the option and the file).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& target,
                                                         const ClientOptions& options);
  // The same with default options (round_robin, no retries) and room for
  // messages of `max_message_bytes`.
  static std::unique_ptr<Client> Connect(const std::string& target,
                                         int max_message_bytes = 256 << 20);
  explicit Client(std::shared_ptr<grpc::Channel> channel);

  // Deadline applied to every call (default 60 s).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // Bearer token sent with every call, for servers run with --auth_token_file.
  void set_auth_token(const std::string& token) { auth_token_ = token; }

  // The x-request-id every call sends from now on (not while calls are in
  // flight); empty, the default: a new one per call, 32 random hex digits.
  // The server refuses an ID that is not 1 to 128 printable ASCII characters.
  void set_request_id(const std::string& id) { request_id_ = id; }

  // "SERVING", "NOT_SERVING", ... for `service` ("" = the whole server).
  absl::StatusOr<std::string> Health(const std::string& service = "");

  absl::StatusOr<v1::ShapeReport> ValidateShape(
      const v1::ConvLayer& layer, const std::vector<int64_t>& input_shape,
      v1::Framework enforce_framework = v1::FRAMEWORK_UNSPECIFIED);

  // `bias` may be null (then layer.bias must be false).
  absl::StatusOr<ConvResult> Conv(const v1::ConvLayer& layer, const FloatArray& input,
                                  const FloatArray& weight, const FloatArray* bias);

  absl::StatusOr<v1::ModelInfo> LoadModel(const v1::LoadModelRequest& request);
  absl::StatusOr<ConvResult> RunModel(const std::string& name, const FloatArray& input);
  // Starts a StreamModel call on the loaded causal model `name`.
  std::unique_ptr<ModelStream> StreamModel(const std::string& name);
  absl::Status UnloadModel(const std::string& name);
  absl::StatusOr<std::vector<v1::ModelInfo>> ListModels();
  // The server's version, build, kernel tiers, compute threads and limits.
  absl::StatusOr<v1::GetServerInfoResponse> ServerInfo();

  grpc::Channel* channel() { return channel_.get(); }

 private:
  // Sets the deadline and metadata of a call; returns the x-request-id sent.
  std::string Prepare(grpc::ClientContext* context) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ConvService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  std::chrono::milliseconds timeout_{60000};
  std::string auth_token_;
  std::string request_id_;
};

// The client-side mirror of the server's status mapping.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The metadata key naming a call, in requests and in responses.
inline constexpr char kRequestIdKey[] = "x-request-id";

// The status of a call made with `context`, as FromGrpcStatus() maps it,
// and if it failed with the call's request ID: " [request_id=ID]"
// appended to its message and the ID as its payload (RequestIdOf). The ID is
// the one the server answered with in its initial metadata (the one its logs
// carry), else `sent_id` (no server answered).
absl::Status WithRequestId(const grpc::ClientContext& context, const std::string& sent_id,
                           const grpc::Status& status);

// The request ID of a status made by a Client call; "" for other statuses.
std::string RequestIdOf(const absl::Status& status);

// The shape report as a person reads it: shapes, per-axis derivation,
// cost, warnings, and each framework's verdict with its equivalent code.
std::string FormatReport(const v1::ShapeReport& report);

}  // namespace convserve::client

#endif  // CONVSERVE_CLIENT_CPP_CONVSERVE_CLIENT_H_
