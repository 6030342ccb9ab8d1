/* c_api.h: a C ABI over the core, for callers that cannot link C++ (the
 * Python parity tests load it with ctypes). Not used by the service. */
#ifndef CONVSERVE_CORE_C_API_H_
#define CONVSERVE_CORE_C_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A ConvSpec in flat form. Enum fields hold the C++ enums' values in
 * declaration order (conv_spec.h). Per-axis arrays use their first
 * spatial_rank entries, outermost axis first. */
typedef struct {
  int32_t spatial_rank;
  int32_t padding;       /* PaddingPreset */
  int32_t padding_mode;  /* PaddingMode */
  int32_t activation;    /* Activation */
  int32_t data_layout;   /* DataLayout */
  int32_t weight_layout; /* WeightLayout */
  int32_t bias;          /* 0 or 1 */
  int32_t kernel_path;   /* 0: fastest available, 1: reference */
  int64_t in_channels;
  int64_t out_channels;
  int64_t groups;
  int64_t kernel[3];
  int64_t stride[3];
  int64_t dilation[3];
  int64_t pad_begin[3];
  int64_t pad_end[3];
  float activation_alpha; /* NaN: framework default */
  int32_t algorithm;      /* ConvAlgorithm */
} convserve_layer;

/* Writes the output shape (rank + 2 values) for an input of `input_shape`.
 * Returns 0, or the absl status code with its message in `error`. */
int convserve_output_shape(const convserve_layer* layer, const int64_t* input_shape, int input_dims,
                           int64_t* output_shape, char* error, size_t error_size);

/* Runs the layer with `threads` threads. `output` must have room for the
 * output element count. Returns 0 or an absl status code (message in error). */
int convserve_conv(const convserve_layer* layer, const int64_t* input_shape, int input_dims,
                   const float* input, const float* weight, const float* bias, float* output,
                   int threads, char* error, size_t error_size);

/* Converts `count` values between float32 and float16 (type 0) or bfloat16
 * (type 1) as core/half.h does, with instruction set `isa`: 0 the one the
 * service uses, 1 scalar, 2 AVX2 + F16C, 3 AVX-512F. Returns 0, or 3
 * (INVALID_ARGUMENT) for an unknown type or an ISA this CPU does not run.
 * convserve_float_to_half may narrow in place (out == in). */
int convserve_half_to_float(int type, int isa, const uint16_t* in, size_t count, float* out);
int convserve_float_to_half(int type, int isa, const float* in, size_t count, uint16_t* out);

#ifdef __cplusplus
}
#endif

#endif /* CONVSERVE_CORE_C_API_H_ */
