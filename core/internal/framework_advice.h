// framework_advice.h: what PyTorch, Keras and ONNX make of a resolved layer.
// Internal to the validator (validator.cc); not part of the core's API.
#ifndef CONVSERVE_CORE_INTERNAL_FRAMEWORK_ADVICE_H_
#define CONVSERVE_CORE_INTERNAL_FRAMEWORK_ADVICE_H_

#include "core/conv_spec.h"
#include "core/validator.h"

namespace convserve {

// Whether `framework`'s own conv layer accepts the layer `spec` resolved to
// `geometry` (same pads, same numbers), why not, and the code that builds the
// same layer there (with the padding and layout steps it needs).
// REQUIRES: geometry == ResolveGeometry(spec, some input).
FrameworkVerdict AdviseFramework(Framework framework, const ConvSpec& spec,
                                 const ConvGeometry& geometry);

}  // namespace convserve

#endif  // CONVSERVE_CORE_INTERNAL_FRAMEWORK_ADVICE_H_
