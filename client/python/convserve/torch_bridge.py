"""convserve.from_torch: a PyTorch module served by ConvServe, called like the module.

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                              torch.nn.ReLU()).eval()
    remote = convserve.from_torch(net, torch.randn(1, 3, 32, 32))
    y = remote(x)            # a torch tensor, computed by the server

The module is exported to ONNX in memory (torch.onnx.export, in eval mode: BatchNorm folded,
dropout off) and loaded with LoadModel; the server accepts what its ONNX import accepts (Conv
stacks with BatchNorm, Pad and activations) and names every other node it refuses.
"""

import io
import uuid

from convserve.functional import _client

# torch.onnx.export's default in PyTorch 1.13; the server reads opsets 9-17.
DEFAULT_OPSET = 13


class RemoteModel:
    """A model loaded on a ConvServe server; calling it runs RunModel."""

    def __init__(self, client, name, info):
        self.client = client
        self.name = name
        self.info = info  # the ModelInfo LoadModel answered

    def __call__(self, x, timeout=None, element_type=None, output_type=None):
        """The model's output for `x` (a torch tensor in, a torch tensor out; numpy in, numpy
        out)."""
        y, _ = self.client.run_model(self.name, x, timeout=timeout, element_type=element_type,
                                     output_type=output_type)
        return y

    def unload(self):
        self.client.unload_model(self.name)

    def __repr__(self):
        return "RemoteModel(%r on %s, %d layers)" % (self.name, self.client.target,
                                                   len(self.info.layers))


def from_torch(module, example_input, name=None, *, client=None, target=None,
               opset=DEFAULT_OPSET, replace=True, timeout=None):
    """Exports `module` for inputs shaped like `example_input` and loads it on the server
    (`client`, or the shared client of `target` / $CONVSERVE_TARGET). Returns a RemoteModel.

    name: the model's name on the server (default: a new unique one). The module is put in
    eval mode for the export and restored after; its parameters may require grad.
    """
    import torch

    name = name or "torch-" + uuid.uuid4().hex[:12]
    was_training = module.training
    module.eval()
    try:
        buffer = io.BytesIO()
        with torch.no_grad():
            torch.onnx.export(module, example_input.detach().cpu(), buffer,
                              opset_version=opset, input_names=["x"], output_names=["y"])
    finally:
        module.train(was_training)
    connection = _client(client, target)
    info = connection.load_onnx(name, buffer.getvalue(), replace=replace, timeout=timeout)
    return RemoteModel(connection, name, info)
