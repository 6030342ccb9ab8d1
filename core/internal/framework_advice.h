// framework_advice.h: what PyTorch, Keras and ONNX make of a resolved layer.
// Internal to the validator (validator.cc); not part of the core's API.
#ifndef CONVSERVE_CORE_INTERNAL_FRAMEWORK_ADVICE_H_
#define CONVSERVE_CORE_INTERNAL_FRAMEWORK_ADVICE_H_

#include "core/conv_spec.h"
#include "core/geometry.h"
#include "core/validator.h"

namespace convserve {

// Whether `framework`'s own conv layer accepts `layer` as resolved to
// `geometry` (same pads, same numbers), why not, and the code that builds the
// same layer there (with the padding and layout steps it needs). Strides and
// dilations are the layer's (as the user wrote them), pads the geometry's.
// REQUIRES: geometry == ResolveGeometry(layer, some input).
FrameworkVerdict AdviseFramework(Framework framework, const ResolvedLayer& layer,
                                 const ConvGeometry& geometry);

}  // namespace convserve

#endif  // CONVSERVE_CORE_INTERNAL_FRAMEWORK_ADVICE_H_
