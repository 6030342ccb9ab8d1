"""ONNX models through LoadModelRequest.onnx, against PyTorch in float64.

Models are randomly initialized PyTorch modules exported with
torch.onnx.export (opset 13, and 9 and 17), and graphs built with
onnx.helper for what PyTorch's exporter never emits (a BatchNormalization
node, which it folds itself; Pad nodes; auto_pad). The served output is
compared with the module run in float64.

Bound. One layer's parity bound is the project's |y - ref| <= 1e-5 * S + 1e-6
(S: the same conv on |x|, |w|, |b|; tests/python/convserve_oracle.py). Through
a stack it is carried forward: the error E of a layer's input reaches its
output through the conv as conv(E, |w|), and through the activation at most
multiplied by its largest slope (1 for ReLU, ReLU6, LeakyReLU with alpha <= 1,
ELU with alpha <= 1, Tanh, Sigmoid; 1.0998 for SiLU, 1.1289 for GELU: 1.13 is
used for all). So E_l = 1.13 * (conv(E_{l-1}, |w_l|) + 1e-5 * S_l + 1e-6),
E_0 = 0 (the float32 input is exact). Folding a BatchNormalization into the
Conv rounds each folded weight and bias once from double to float (relative
error <= 2^-24), which moves the output by at most 2^-24 * S' (S' the conv on
|x| with the folded |w'|, |b'|, the weights the server runs): the BN tests add
2^-24 to the relative term and compute S from the folded weights.
"""

import copy

import grpc
import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

import convserve

# PyTorch's exporter warns about the Slice steps of every reflect/replicate Conv.
pytestmark = pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")

SEED = 20261126
SLOPE = 1.13
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
PADS = (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d,
        nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d,
        nn.ReplicationPad3d)


def propagate(module, a, error, relative):
    """(module(a), the bound on its error) in float64, given the input's bound
    `error`: the rule of the module docstring, step by step. Blocks that
    branch (the Residual and Concat modules below) say how their branches
    combine in their own propagate()."""
    if isinstance(module, nn.Sequential):
        for part in module:
            a, error = propagate(part, a, error, relative)
        return a, error
    if hasattr(module, "propagate"):
        return module.propagate(a, error, lambda part, a, e: propagate(part, a, e, relative))
    if isinstance(module, CONVS):
        magnitude = copy.deepcopy(module)
        magnitude.weight.abs_()
        if magnitude.bias is not None:
            magnitude.bias.abs_()
        carry = copy.deepcopy(magnitude)
        carry.bias = None
        return module(a), carry(error) + relative * magnitude(a.abs()) + 1e-6
    if isinstance(module, PADS):
        return module(a), module(error)
    return module(a), SLOPE * error


def float64_with_bound(net, x, relative=1e-5):
    """(PyTorch's float64 output of `net` on x, the parity bound per element)."""
    net = copy.deepcopy(net).double().eval()
    a = torch.from_numpy(x).double()
    with torch.no_grad():
        a, error = propagate(net, a, torch.zeros_like(a), relative)
    return a.numpy(), error.numpy()


# Rounding one float32 sum (or reading a float32 copy) adds at most 2^-24 of
# the result; 2^-23 covers the inputs' own errors passing through it.
ADD_ROUNDING = 2.0 ** -23


class Residual(nn.Module):
    """activation(body(x) + shortcut(x)): ResNet's basic block (ReLU after the
    sum, a strided 1x1 Conv on the shortcut when the shape changes) and
    MobileNetV2's inverted residual (no activation after the sum)."""

    def __init__(self, body, shortcut=None, activation=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.activation = activation if activation is not None else nn.Identity()

    def forward(self, x):
        return self.activation(self.body(x) + self.shortcut(x))

    def propagate(self, a, error, step):
        body, body_error = step(self.body, a, error)
        short, short_error = step(self.shortcut, a, error)
        total = body + short
        total_error = (body_error + short_error) * (1 + ADD_ROUNDING) + ADD_ROUNDING * total.abs()
        return step(self.activation, total, total_error)


class Concat(nn.Module):
    """activation(cat([branch(x) for branch], channels)): Inception's parallel
    branches; a branch may be nn.Identity() (DenseNet's pass-through)."""

    def __init__(self, *branches, activation=None):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.activation = activation if activation is not None else nn.Identity()

    def forward(self, x):
        return self.activation(torch.cat([branch(x) for branch in self.branches], 1))

    def propagate(self, a, error, step):
        outputs = [step(branch, a, error) for branch in self.branches]
        return step(self.activation, torch.cat([y for y, _ in outputs], 1),
                    torch.cat([e for _, e in outputs], 1))


def export(net, shape, opset=13):
    """The ONNX bytes torch.onnx.export makes of `net` for input `shape`."""
    import io
    buffer = io.BytesIO()
    torch.onnx.export(net.eval(), torch.zeros(shape), buffer, opset_version=opset,
                      input_names=["x"], output_names=["y"])
    return buffer.getvalue()


def check_parity(client, name, onnx_bytes, net, shape, rng, relative=1e-5, bound_net=None):
    """Loads `onnx_bytes`, runs it on a random input of `shape` and compares with
    `net` in float64 (the bound from `bound_net`, default `net`)."""
    client.load_onnx(name, onnx_bytes, replace=True)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    y, _ = client.run_model(name, x)
    ref, _ = float64_with_bound(net, x)
    _, bound = float64_with_bound(bound_net or net, x, relative)
    assert y.shape == ref.shape
    excess = np.abs(y - ref) - bound
    assert np.max(excess) <= 0, "%s: max |y - ref| - bound = %g" % (name, np.max(excess))
    return y, ref


TORCH_MODELS = {
    "conv1d_relu": (lambda: nn.Sequential(
        nn.Conv1d(3, 5, 3, padding=1), nn.ReLU(),
        nn.Conv1d(5, 4, 5, stride=2, dilation=2, padding=4), nn.ReLU()), (2, 3, 29), 13),
    "conv2d_groups_relu6_silu_gelu": (lambda: nn.Sequential(
        nn.Conv2d(4, 6, 3, padding=(1, 2), groups=2), nn.ReLU6(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6, padding_mode="reflect"), nn.SiLU(),
        nn.Conv2d(6, 4, 1), nn.GELU()), (2, 4, 11, 9), 13),
    "conv2d_depthwise_multiplier_dilation": (lambda: nn.Sequential(
        nn.Conv2d(3, 6, 3, groups=3, dilation=2, stride=2), nn.Sigmoid(),
        nn.Conv2d(6, 2, 2, bias=False), nn.Tanh()), (1, 3, 13, 12), 13),
    "conv3d_replicate_leaky_elu": (lambda: nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1, padding_mode="replicate"), nn.LeakyReLU(0.2),
        nn.Conv3d(4, 3, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
        nn.ELU(0.7)), (2, 2, 5, 6, 7), 13),
    "opset9_reflect_relu6": (lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=(2, 1), padding_mode="reflect"), nn.ReLU6(),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()), (1, 3, 8, 9), 9),
    "opset17_replicate_1d": (lambda: nn.Sequential(
        nn.Conv1d(2, 3, 4, padding=3, padding_mode="replicate"), nn.Tanh(),
        nn.Conv1d(3, 3, 3, padding=1, padding_mode="reflect"), nn.SiLU()), (2, 2, 16), 17),
    # Graphs: residual sums and channel concatenations, each possibly followed by an activation.
    "resnet_basic_blocks_2d": (lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                               nn.Conv2d(8, 8, 3, padding=1)), activation=nn.ReLU()),
        Residual(nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU(),
                               nn.Conv2d(12, 12, 3, padding=1)),
                 shortcut=nn.Conv2d(8, 12, 1, stride=2), activation=nn.ReLU())), (2, 3, 12, 11),
        13),
    "mobilenet_inverted_residual_2d": (lambda: nn.Sequential(
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU6(),
        Residual(nn.Sequential(nn.Conv2d(6, 24, 1), nn.ReLU6(),
                               nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.ReLU6(),
                               nn.Conv2d(24, 6, 1)))), (1, 4, 10, 9), 13),
    "tcn_residual_1d_silu": (lambda: nn.Sequential(
        nn.Conv1d(2, 6, 3, padding=1),
        Residual(nn.Sequential(nn.Conv1d(6, 6, 3, padding=2, dilation=2), nn.Tanh(),
                               nn.Conv1d(6, 6, 3, padding=4, dilation=4)),
                 activation=nn.SiLU())), (2, 2, 31), 17),
    "inception_concat_2d": (lambda: nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        Concat(nn.Conv2d(6, 4, 1),
               nn.Sequential(nn.Conv2d(6, 3, 1), nn.ReLU(), nn.Conv2d(3, 5, 3, padding=1)),
               nn.Conv2d(6, 2, 5, padding=4, dilation=2, padding_mode="reflect"),
               activation=nn.ReLU()),
        nn.Conv2d(11, 4, 3, stride=2)), (2, 3, 11, 12), 13),
    "densenet_concat_3d_with_identity": (lambda: nn.Sequential(
        Concat(nn.Identity(), nn.Sequential(nn.ReLU(), nn.Conv3d(2, 3, 3, padding=1))),
        Residual(nn.Sequential(nn.Conv3d(5, 5, (1, 3, 3), padding=(0, 1, 1)), nn.LeakyReLU(0.1)),
                 activation=nn.ELU())), (1, 2, 4, 6, 5), 13),
}


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_exported_pytorch_models_match_pytorch(client, name):
    torch.manual_seed(hash(name) % 1000)
    build, shape, opset = TORCH_MODELS[name]
    net = build()
    check_parity(client, name, export(net, shape, opset), net, shape,
                 np.random.default_rng(SEED))


def test_a_wrong_model_fails_the_comparison(client):
    """The comparison can fail: the served model of one net against another."""
    torch.manual_seed(1)
    build, shape, opset = TORCH_MODELS["conv1d_relu"]
    served, other = build(), build()
    with pytest.raises(AssertionError):
        check_parity(client, "wrong", export(served, shape, opset), other, shape,
                     np.random.default_rng(SEED))


def test_circular_padding_is_refused_naming_the_nodes(client):
    """PyTorch 1.13 exports padding_mode="circular" as Slice and Concat of the
    data tensor (no Pad node), and off by one: its Slice ends at -1, so the
    graph wraps x[n - p - 1 : n - 1] instead of x[n - p : n] and means
    something else than the module. Refused, listing the nodes."""
    net = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular"))
    with pytest.raises(convserve.ConvServeError) as error:
        client.load_onnx("circular", export(net, (1, 2, 8)))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details.startswith(
        "onnx: unsupported nodes: Slice (/0/Slice), Slice (/0/Slice_1)")


def test_unsupported_nodes_are_listed(client):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 3 * 3, 2))
    with pytest.raises(convserve.ConvServeError) as error:
        client.load_onnx("classifier", export(net, (1, 3, 8, 8)))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unsupported nodes: MaxPool (/2/MaxPool), Flatten (/3/Flatten), Gemm (/4/Gemm)" \
        in error.value.details


def test_a_graph_model_batches_and_equals_its_unbatched_runs(client):
    """Dynamic batching merges concurrent calls of a graph model along N: each
    reply is bitwise the call's run alone."""
    import concurrent.futures
    import threading
    torch.manual_seed(3)
    build, shape, opset = TORCH_MODELS["resnet_basic_blocks_2d"]
    data = export(build(), shape, opset)
    client.load_onnx("graph_alone", data, replace=True)
    client.load_onnx("graph_batched", data, replace=True, max_batch_size=16,
                     max_queue_delay_us=20000)
    rng = np.random.default_rng(SEED)
    inputs = [rng.uniform(-1, 1, (n,) + shape[1:]).astype(np.float32) for n in [1] * 12 + [2] * 4]
    start = threading.Barrier(len(inputs))

    def run(x):
        start.wait()
        return client.run_model("graph_batched", x)

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        replies = list(pool.map(run, inputs))
    times = [compute_ns for _, compute_ns in replies]
    assert len(set(times)) < len(times), "no two calls shared a run: batching did not happen"
    for x, (y, _) in zip(inputs, replies):
        alone, _ = client.run_model("graph_alone", x)
        assert np.array_equal(y.view(np.uint32), alone.view(np.uint32))


def test_a_graph_model_lists_how_its_layers_connect(client):
    torch.manual_seed(5)
    build, shape, opset = TORCH_MODELS["resnet_basic_blocks_2d"]
    info = client.load_onnx("graph_listed", export(build(), shape, opset), replace=True)
    assert len(info.layers) == 6  # the stem, two per block, the strided shortcut
    steps = list(info.graph)
    assert steps[0] == "%1 = layers[0](%0)  [/0/Conv]", steps
    # The first block: two layers, then the sum with the block's input, then its ReLU.
    assert steps[3].startswith("%4 = add(%3, %1) -> relu  [") or \
        steps[3].startswith("%4 = add(%1, %3) -> relu  ["), steps
    assert sum(step.startswith("%%%d = add(" % (i + 1)) for i, step in enumerate(steps)) == 2
    assert steps[-1].startswith("%%%d = add(" % len(steps))
    listed = {model.name: model for model in client.list_models()}
    assert list(listed["graph_listed"].graph) == steps
    build, shape, _ = TORCH_MODELS["conv1d_relu"]
    chain = client.load_onnx("chain_listed", export(build(), shape), replace=True)
    assert list(chain.graph) == []


def test_precision_fast_runs_an_onnx_graphs_3x3_layers_with_winograd(client):
    """load_onnx(precision="fast"): the 3x3 stride-1 layers of a residual graph run
    Winograd (other layers stay direct); within Winograd's looser bound of the exact run."""
    torch.manual_seed(6)
    build, shape, opset = TORCH_MODELS["resnet_basic_blocks_2d"]
    data = export(build(), shape, opset)
    exact = client.load_onnx("graph_exact", data, replace=True)
    fast = client.load_onnx("graph_fast", data, replace=True, precision="fast")
    pb = convserve.client.pb
    assert [layer.algorithm for layer in exact.layers] == [pb.CONV_ALGORITHM_AUTO] * 6
    # The stem and the identity block's two 3x3 layers, and the strided block's second.
    winograd = [layer.algorithm == pb.CONV_ALGORITHM_WINOGRAD for layer in fast.layers]
    assert winograd == [True, True, True, False, True, False], winograd
    x = np.random.default_rng(SEED).uniform(-1, 1, shape).astype(np.float32)
    y_fast, _ = client.run_model("graph_fast", x)
    y_exact, _ = client.run_model("graph_exact", x)
    assert not np.array_equal(y_fast, y_exact)
    np.testing.assert_allclose(y_fast, y_exact, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="precision: expected one of 'exact', 'fast'"):
        client.load_onnx("graph_bad", data, precision="fastest")


def test_a_graph_model_is_refused_by_streaming_saying_why(client):
    torch.manual_seed(4)
    build, shape, opset = TORCH_MODELS["tcn_residual_1d_silu"]
    client.load_onnx("graph_stream", export(build(), shape, opset), replace=True)
    with pytest.raises(convserve.ConvServeError) as error:
        list(client.stream("graph_stream", [np.zeros((1, 2, 4), np.float32)]))
    assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "StreamModel runs chains of layers only" in error.value.details


def test_a_residual_sum_of_mismatched_shapes_names_the_node(client):
    """Add refuses broadcasting: a file whose branches disagree for this input
    is refused at the call, naming the Add and both shapes."""
    rng = np.random.default_rng(SEED)
    w1, b1 = random_conv(rng, 3, 2, [3])
    w2, b2 = random_conv(rng, 3, 2, [1])
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="conv_a"),
             helper.make_node("Conv", ["x", "w2", "b2"], ["b"], name="conv_b"),
             helper.make_node("Add", ["a", "b"], ["y"], name="the_sum")]
    # The input's length is open, so the file loads; any length mismatches.
    graph = graph_model(nodes, dict(w1=w1, b1=b1, w2=w2, b2=b2), [1, 2, None])
    client.load_onnx("mismatch", graph, replace=True)
    error = error_of(lambda: client.run_model("mismatch", np.zeros((1, 2, 9), np.float32)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert ("model 'mismatch' Add (node 'the_sum'): input 1 has shape [1, 3, 9], input 0 has "
            "[1, 3, 7]: expected equal shapes (broadcasting is not supported)") in error.details


def test_unsupported_graph_shapes_name_the_node(client):
    rng = np.random.default_rng(SEED)
    w, b = random_conv(rng, 3, 2, [3])
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1])
    cases = [
        # A concat on the length axis.
        ([conv, helper.make_node("Concat", ["c", "c"], ["y"], name="cat", axis=2)],
         "node Concat (cat): attribute axis: expected 1 (the channel axis) or -2, got 2"),
        # A branch that never reaches the output.
        ([conv, helper.make_node("Relu", ["c"], ["y"], name="relu"),
          helper.make_node("Sigmoid", ["c"], ["dead"], name="dead_end")],
         "node Sigmoid (dead_end): its output does not lead to the graph output"),
        # A bias added as a separate node.
        ([conv, helper.make_node("Add", ["c", "b"], ["y"], name="bias_add")],
         "node Add (bias_add): input 1: expected a tensor computed from the graph input, got "
         "the constant 'b'"),
    ]
    for nodes, message in cases:
        error = error_of(lambda: client.load_onnx(
            "bad_graph", graph_model(nodes, dict(w=w, b=b), [1, 2, 8])))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.details, error.details


# ---------------------------------------------------------------------------
# Graphs built with onnx.helper.

def graph_model(nodes, initializers, in_shape, opset=13):
    """Bytes of a model with input "x" of `in_shape` and output "y"."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(in_shape))],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def random_conv(rng, cout, cin, kernel, bias=True):
    w = rng.uniform(-0.5, 0.5, [cout, cin] + list(kernel)).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, cout).astype(np.float32) if bias else None
    return w, b


def torch_conv(w, b, **kwargs):
    rank = w.ndim - 2
    conv = CONVS[rank - 1](w.shape[1] * kwargs.get("groups", 1), w.shape[0], w.shape[2:],
                           bias=b is not None, **kwargs)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        if b is not None:
            conv.bias.copy_(torch.from_numpy(b))
    return conv


@pytest.mark.parametrize("rank,with_bias,opset", [(2, True, 13), (1, False, 9), (3, True, 15)])
def test_batch_normalization_after_a_conv_is_folded(client, rank, with_bias, opset):
    rng = np.random.default_rng(SEED + rank)
    c = 4
    w, b = random_conv(rng, c, 3, [3] * rank, with_bias)
    scale = rng.uniform(0.5, 2.0, c).astype(np.float32)
    beta = rng.uniform(-1, 1, c).astype(np.float32)
    mean = rng.uniform(-0.5, 0.5, c).astype(np.float32)
    var = rng.uniform(0.1, 2.0, c).astype(np.float32)
    epsilon = 1e-3
    inits = dict(w=w, scale=scale, beta=beta, mean=mean, var=var)
    conv_inputs = ["x", "w"]
    if with_bias:
        inits["b"] = b
        conv_inputs.append("b")
    nodes = [helper.make_node("Conv", conv_inputs, ["c"], name="conv", pads=[1] * (2 * rank)),
             helper.make_node("BatchNormalization", ["c", "scale", "beta", "mean", "var"], ["n"],
                              name="bn", epsilon=epsilon),
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    shape = [2, 3] + [7, 6, 5][:rank]
    model = graph_model(nodes, inits, shape, opset)
    norm = [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d][rank - 1](c, eps=epsilon)
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(scale))
        norm.bias.copy_(torch.from_numpy(beta))
        norm.running_mean.copy_(torch.from_numpy(mean))
        norm.running_var.copy_(torch.from_numpy(var))
    net = nn.Sequential(torch_conv(w, b, padding=1), norm.eval(), nn.ReLU())
    # The bound's magnitudes with the folded weights, in float64.
    factor = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + epsilon)
    folded_w = w * factor.reshape([-1] + [1] * (rank + 1))
    folded_b = ((b if with_bias else 0.0) - mean.astype(np.float64)) * factor + beta
    bound_net = nn.Sequential(torch_conv(folded_w, folded_b, padding=1).double(), nn.ReLU())
    check_parity(client, "bn%d" % rank, model, net, shape, rng, relative=1e-5 + 2.0**-24,
                 bound_net=bound_net)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_before_a_conv_is_merged(client, mode):
    rng = np.random.default_rng(SEED + len(mode))
    w, b = random_conv(rng, 3, 2, [3, 2])
    # ONNX pads: [N, C, H, W] begins, then ends; asymmetric on purpose.
    pads = np.array([0, 0, 1, 2, 0, 0, 2, 0], dtype=np.int64)
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode=mode)]
    conv_pads = [0, 1, 1, 0] if mode == "constant" else [0, 0, 0, 0]
    nodes.append(helper.make_node("Conv", ["p", "w", "b"], ["c"], name="conv", pads=conv_pads,
                                  strides=[2, 1]))
    nodes.append(helper.make_node("Sigmoid", ["c"], ["s"], name="sigmoid"))
    nodes.append(helper.make_node("Mul", ["c", "s"], ["y"], name="silu"))
    shape = [2, 2, 6, 5]
    model = graph_model(nodes, dict(w=w, b=b, pads=pads), shape)
    # torch pads are (W begin, W end, H begin, H end).
    torch_pad = {"constant": nn.ConstantPad2d((2, 0, 1, 2), 0.0),
                 "reflect": nn.ReflectionPad2d((2, 0, 1, 2)),
                 "edge": nn.ReplicationPad2d((2, 0, 1, 2))}[mode]
    layers = [torch_pad]
    if mode == "constant":
        layers.append(nn.ConstantPad2d((1, 0, 0, 1), 0.0))
    layers += [torch_conv(w, b, stride=(2, 1)), nn.SiLU()]
    check_parity(client, "pad_" + mode, model, nn.Sequential(*layers), shape, rng)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad(client, auto_pad):
    """PyTorch 1.13 cannot export padding="same" (aten::_convolution_mode):
    auto_pad as other exporters write it, with an even kernel and stride 2."""
    rng = np.random.default_rng(SEED)
    w, b = random_conv(rng, 3, 2, [4])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", auto_pad=auto_pad,
                              strides=[2])]
    shape = [1, 2, 9]
    model = graph_model(nodes, dict(w=w, b=b), shape)
    # n = 9, s = 2, span 4: output 5, total pad (5 - 1) * 2 + 4 - 9 = 3.
    begin, end = {"SAME_UPPER": (1, 2), "SAME_LOWER": (2, 1), "VALID": (0, 0)}[auto_pad]
    net = nn.Sequential(nn.ConstantPad1d((begin, end), 0.0), torch_conv(w, b, stride=2))
    y, _ = check_parity(client, "auto_pad", model, net, shape, rng)
    assert y.shape == ((1, 3, 5) if auto_pad != "VALID" else (1, 3, 3))


def test_erf_gelu_pattern_is_fused(client):
    rng = np.random.default_rng(SEED)
    w, b = random_conv(rng, 3, 2, [3, 3])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Div", ["c", "root2"], ["d"], name="div"),
             helper.make_node("Erf", ["d"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["a"], name="add"),
             helper.make_node("Mul", ["c", "a"], ["m"], name="mul"),
             helper.make_node("Mul", ["m", "half"], ["y"], name="half")]
    inits = dict(w=w, b=b, root2=np.array(np.sqrt(2.0), np.float32),
                 one=np.array(1.0, np.float32), half=np.array(0.5, np.float32))
    shape = [1, 2, 5, 5]
    net = nn.Sequential(torch_conv(w, b, padding=1), nn.GELU())
    check_parity(client, "gelu", graph_model(nodes, inits, shape), net, shape, rng)


# ---------------------------------------------------------------------------
# Bad requests.

def error_of(call):
    with pytest.raises(convserve.ConvServeError) as error:
        call()
    return error.value


def test_layers_and_onnx_together_are_refused(client):
    net = nn.Sequential(nn.Conv1d(1, 1, 1))
    request = convserve.client.pb.LoadModelRequest(name="both", onnx=export(net, (1, 1, 4)))
    layer = request.layers.add()
    layer.layer.CopyFrom(convserve.client.pb.ConvLayer(spatial_rank=1, in_channels=1,
                                                       out_channels=1, kernel=[1]))
    error = error_of(lambda: client._call(client.stub.LoadModel, request, 30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "layers, onnx: expected either layers or an ONNX model, got both" in error.details
    error = error_of(lambda: client._call(
        client.stub.LoadModel, convserve.client.pb.LoadModelRequest(name="neither"), 30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "or an ONNX model in onnx" in error.details


@pytest.mark.parametrize("data", [b"\xff" * 64, b"garbage that is not protobuf", b"\x0a"])
def test_garbage_bytes_are_refused(client, data):
    error = error_of(lambda: client.load_onnx("garbage", data))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details.startswith("onnx: ")


def test_truncated_model_is_refused(client):
    data = export(nn.Sequential(nn.Conv2d(3, 8, 3)), (1, 3, 8, 8))
    error = error_of(lambda: client.load_onnx("truncated", data[: len(data) // 2]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


def test_model_above_max_model_bytes_is_refused(start_server):
    server = start_server("--max_model_bytes=2000")
    data = export(nn.Sequential(nn.Conv2d(3, 32, 3)), (1, 3, 8, 8))
    assert len(data) > 2000
    with convserve.Client(server.target, timeout=30) as connection:
        error = error_of(lambda: connection.load_onnx("big", data))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "more than the limit of 2000 bytes for a model (--max_model_bytes)" in error.details


def test_every_graph_step_counts_against_max_layers_per_model(start_server):
    """Lone activations are steps of their own: a file of one Conv after many of
    them is bounded like a model of that many layers."""
    rng = np.random.default_rng(SEED)
    w, b = random_conv(rng, 3, 2, [3])
    ops = ["Relu", "Sigmoid", "Tanh", "Relu", "Sigmoid"]
    nodes = [helper.make_node(op, ["x" if i == 0 else "a%d" % (i - 1)], ["a%d" % i],
                              name="act%d" % i) for i, op in enumerate(ops)]
    nodes.append(helper.make_node("Conv", ["a4", "w", "b"], ["y"], name="conv"))
    data = graph_model(nodes, dict(w=w, b=b), [1, 2, 8])
    server = start_server("--max_layers_per_model=4")
    with convserve.Client(server.target, timeout=30) as connection:
        error = error_of(lambda: connection.load_onnx("steps", data))
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("the model has 1 layers and 5 other graph steps (sums, concatenations, "
                "activations), 6 steps in all, more than the server's limit of 4 layers per "
                "model (--max_layers_per_model, which counts every step)") in error.details
        # Within the limit: one activation, then the Conv.
        short = [helper.make_node("Tanh", ["x"], ["a4"], name="t"), nodes[-1]]
        info = connection.load_onnx("steps", graph_model(short, dict(w=w, b=b), [1, 2, 8]))
        assert list(info.graph) == ["%1 = tanh(%0)  [t]", "%2 = layers[0](%1)  [conv]"]
        x = rng.uniform(-1, 1, (1, 2, 8)).astype(np.float32)
        y, _ = connection.run_model("steps", x)
        net = nn.Sequential(nn.Tanh(), torch_conv(w, b))
        ref, bound = float64_with_bound(net, x)
        assert np.max(np.abs(y - ref) - bound) <= 0


def test_load_onnx_reads_a_path_and_lists_the_layers(client, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(export(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
                            (1, 3, 8, 8)))
    info = client.load_onnx("from_path", str(path), replace=True)
    assert len(info.layers) == 1
    assert info.layers[0].activation == convserve.client.pb.ACTIVATION_RELU
    assert info.parameters == 4 * 3 * 9 + 4


def test_refused_models_log_nothing_above_warn(server):
    """Runs last in this module: the refusals above are a client's mistakes,
    not the server's (docs/RELIABILITY.md)."""
    assert server.lines_above_warn() == []
