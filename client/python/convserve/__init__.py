"""ConvServe Python client: convolution layers computed by a ConvServe server.

    import numpy as np, convserve
    y = convserve.conv2d(x, w, b, stride=2, padding="same", activation="relu")

The functions mirror torch.nn.functional.conv1d/2d/3d (NCHW input, OIHW
weight) and accept the Keras options too (data_format="channels_last",
weight_format="hwio", padding="same"/"valid"/"causal", activation=...).
They talk to the server at $CONVSERVE_TARGET (default localhost:50051) unless
given target= or client=.
"""

import os as _os

from convserve import _stubs

# Make the generated package convserve.v1 (in _gen/convserve/v1) importable
# under the name its generated gRPC module expects.
__path__.append(_os.path.join(_stubs.GEN_DIR, "convserve"))  # noqa: F821

from convserve.client import Client, ConvServeError, ModelLayer  # noqa: E402
from convserve.functional import (  # noqa: E402
    conv1d, conv2d, conv3d, make_layer, validate)
from convserve.report import format_report  # noqa: E402
from convserve.torch_bridge import RemoteModel, from_torch  # noqa: E402

__all__ = [
    "Client", "ConvServeError", "ModelLayer", "conv1d", "conv2d", "conv3d", "make_layer",
    "validate", "format_report", "from_torch", "RemoteModel",
]
