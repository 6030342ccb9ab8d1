"""PyTorch users: convserve.from_torch on Conv/BatchNorm/ReLU networks in 1-D, 2-D and 3-D with
parity to PyTorch in float64; torch tensors accepted wherever arrays are (detached, moved to the
CPU, made contiguous; a torch input gives a torch output); inputs that are not real floating
point refused with a clear error instead of converted.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import convserve
from test_onnx import Residual, float64_with_bound

pytestmark = pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
SPATIAL = {1: (21,), 2: (9, 11), 3: (5, 6, 7)}


def trained_statistics(net):
    """Gives each BatchNorm of `net` statistics a trained net would have."""
    for module in net.modules():
        if isinstance(module, tuple(BN.values())):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def conv_bn_relu(rank, seed):
    torch.manual_seed(seed)
    return trained_statistics(nn.Sequential(
        CONV[rank](3, 8, 3, padding=1), BN[rank](8), nn.ReLU(),
        CONV[rank](8, 4, 3, stride=2, bias=False), BN[rank](4), nn.ReLU()))


def folded(net):
    """The same network with each BatchNorm folded into its Conv, in float64: the reference
    the bound is computed on (the server folds in double, then rounds each weight once)."""
    net = copy.deepcopy(net).double().eval()
    layers, modules = [], list(net)
    i = 0
    while i < len(modules):
        if i + 1 < len(modules) and isinstance(modules[i + 1], tuple(BN.values())):
            layers.append(fuse_conv_bn_eval(modules[i], modules[i + 1]))
            i += 2
        else:
            layers.append(modules[i])
            i += 1
    return nn.Sequential(*layers)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_from_torch_serves_a_conv_bn_relu_network_with_parity(client, rank):
    net = conv_bn_relu(rank, seed=rank)
    shape = (2, 3) + SPATIAL[rank]
    x = torch.rand(shape) * 2 - 1
    remote = convserve.from_torch(net, x, client=client)
    assert len(remote.info.layers) == 2  # BatchNorm folded, ReLU fused
    y = remote(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    with torch.no_grad():
        expected = net.double()(x.double())
    reference, bound = float64_with_bound(folded(net), x.numpy(), 1e-5 + 2.0 ** -24)
    np.testing.assert_allclose(reference, expected.numpy(), rtol=1e-12, atol=1e-12)
    assert y.shape == expected.shape
    assert np.max(np.abs(y.numpy() - reference) - bound) <= 0
    assert net.training is False  # restored as it was
    remote.unload()


def test_from_torch_serves_a_resnet_basic_block(client):
    """conv-BN-ReLU-conv-BN plus the block's input, then ReLU: the BatchNorms folded, the sum
    and its ReLU a step of the model's graph."""
    torch.manual_seed(7)
    body = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6))
    stem = nn.Conv2d(3, 6, 3, padding=1)
    net = trained_statistics(nn.Sequential(stem, Residual(body, activation=nn.ReLU())))
    x = torch.rand((2, 3, 10, 9)) * 2 - 1
    remote = convserve.from_torch(net, x, client=client)
    assert len(remote.info.layers) == 3
    assert any(step.startswith("%4 = add(") and "-> relu" in step for step in remote.info.graph)
    y = remote(x)
    with torch.no_grad():
        expected = copy.deepcopy(net).double()(x.double())
    reference_net = nn.Sequential(stem, Residual(folded(body), activation=nn.ReLU()))
    reference, bound = float64_with_bound(reference_net, x.numpy(), 1e-5 + 2.0 ** -24)
    np.testing.assert_allclose(reference, expected.numpy(), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(y.numpy() - reference) - bound) <= 0
    remote.unload()


def test_from_torch_leaves_a_training_module_training(client):
    net = conv_bn_relu(2, seed=7).train()
    convserve.from_torch(net, torch.zeros(1, 3, 9, 11), name="trained", client=client)
    assert net.training


def test_torch_tensors_in_give_torch_tensors_out(client):
    w = torch.randn(4, 3, 3, requires_grad=True)       # parameters that require grad
    x = torch.randn(2, 10, 3, dtype=torch.float64).transpose(1, 2)  # float64, not contiguous
    y = convserve.conv1d(x, w, padding=1, client=client)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    expected = torch.nn.functional.conv1d(x.detach(), w.detach().double(), padding=1)
    assert torch.allclose(y.double(), expected, rtol=1e-5, atol=1e-5)
    # bfloat16 in, bfloat16 out (the server answers in the input's type).
    y16 = convserve.conv1d(x.to(torch.bfloat16), w.detach().to(torch.bfloat16), padding=1,
                           client=client)
    assert y16.dtype == torch.bfloat16
    assert torch.allclose(y16.double(), expected, rtol=0.05, atol=0.1)


@pytest.mark.parametrize("bad, dtype", [
    (np.arange(9).reshape(1, 1, 9), "int64"),
    (np.ones((1, 1, 9), np.complex64), "complex64"),
    (np.ones((1, 1, 9), bool), "bool"),
    (torch.arange(9).reshape(1, 1, 9), "torch.int64"),
    (torch.ones(1, 1, 9, dtype=torch.bool), "torch.bool"),
    (torch.ones(1, 1, 9, dtype=torch.complex64), "torch.complex64"),
])
def test_inputs_that_are_not_real_floating_point_are_refused(client, bad, dtype):
    with pytest.raises(TypeError) as error:
        convserve.conv1d(bad, np.ones((1, 1, 3), np.float32), client=client)
    assert "x: expected a real floating-point" in str(error.value)
    assert dtype in str(error.value)
    with pytest.raises(TypeError):
        client.run_model("any", bad)
