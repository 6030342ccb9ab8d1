"""python3 -m convserve: command-line access to a ConvServe server.

    python3 -m convserve health
    python3 -m convserve shape --input-shape 1,3,224,224 --weight-shape 64,3,7,7 \
        --stride 2 --padding 3
    python3 -m convserve conv --input x.npy --weight w.npy [--bias b.npy] --output y.npy \
        --padding same --activation relu
    python3 -m convserve models
    python3 -m convserve info

Options and choices are convctl's, and each is also accepted as convctl spells it
(--input_shape=1,3,224,224, --padding=1:2,0:1, --with_bias, --timeout_s=10), before or after
the command; $CONVSERVE_TARGET and $CONVSERVE_TOKEN are read as convctl reads them.
"""

import argparse
import ast
import re
import sys

import numpy as np

import convserve


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def _padding(text):
    """'same', '1', '1,2' (per axis), 'B1:E1,B2:E2' or '[(1,2),(0,1)]' (begin, end per axis):
    convctl's forms and Python's."""
    text = text.strip()
    if text and (text[0].isalpha()):
        return text
    if text.startswith("["):
        return [tuple(pair) for pair in ast.literal_eval(text)]
    if ":" in text:
        return [tuple(int(v) for v in pair.split(":")) for pair in text.split(",") if pair.strip()]
    values = _ints(text)
    return values[0] if len(values) == 1 else tuple(values)


# The choices convctl accepts, in its order.
PADDING_MODES = ["zeros", "reflect", "replicate", "circular"]
DATA_FORMATS = ["channels_first", "channels_last"]
WEIGHT_FORMATS = ["oihw", "hwio"]
ACTIVATIONS = ["none", "relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "silu", "gelu"]
FRAMEWORKS = ["pytorch", "keras", "onnx"]


def _option(parser, name, *aliases, **kwargs):
    """Adds --name with dashes and, as convctl spells it, with underscores: every convctl
    command line is also a command line of this CLI."""
    spellings = []
    for flag in (name,) + aliases:
        for spelling in ("--" + flag.replace("_", "-"), "--" + flag.replace("-", "_")):
            if spelling not in spellings:
                spellings.append(spelling)
    kwargs.setdefault("dest", name.replace("-", "_"))
    return parser.add_argument(*spellings, **kwargs)


def _layer_options(parser):
    _option(parser, "stride", type=_ints, default=[1])
    _option(parser, "dilation", type=_ints, default=[1])
    _option(parser, "padding", type=_padding, default=0,
            help="valid, same, same_upper, same_lower, causal, P, P1,P2, B1:E1,B2:E2 or "
                 "[(b,e),...]")
    _option(parser, "padding-mode", default="zeros", choices=PADDING_MODES)
    _option(parser, "groups", type=int, default=1)
    _option(parser, "data-format", default="channels_first", choices=DATA_FORMATS)
    _option(parser, "weight-format", default="oihw", choices=WEIGHT_FORMATS)
    _option(parser, "activation", default="none", choices=ACTIVATIONS)
    _option(parser, "activation-alpha", type=float, default=None)


def _layer_kwargs(args):
    return dict(stride=args.stride, padding=args.padding, padding_mode=args.padding_mode,
                dilation=args.dilation, groups=args.groups, data_format=args.data_format,
                weight_format=args.weight_format,
                activation=None if args.activation == "none" else args.activation,
                activation_alpha=args.activation_alpha)


def _connection_options(parser, suppress=False):
    """The options of every command. With `suppress`, for the commands' own parsers: there they
    may follow the command, as convctl allows, and override only when given."""
    def option(name, *aliases, **kwargs):
        if suppress:
            kwargs["default"] = argparse.SUPPRESS
            kwargs["help"] = argparse.SUPPRESS
        _option(parser, name, *aliases, **kwargs)

    option("target", default=None,
           help="server address, or several: ipv4:H:P1,H:P2 or dns:///name:port "
                "(default $CONVSERVE_TARGET or localhost:50051)")
    option("lb-policy", default=convserve.client.DEFAULT_LB_POLICY,
           choices=convserve.client.LB_POLICIES,
           help="how calls spread over the addresses of --target")
    option("retries", action="store_true",
           help="retry Conv, ValidateShape and RunModel on UNAVAILABLE")
    option("timeout-s", "timeout", type=float, default=30.0,
           help="deadline of each call, in seconds")
    option("auth-token-file", default=None,
           help="file holding the server's bearer token (default: the token in "
                "$CONVSERVE_TOKEN); send it only over TLS")
    option("tls-ca-file", default=None,
           help="connect over TLS, trusting this PEM CA for the server's certificate (any "
                "--tls-* option turns TLS on)")
    option("tls-cert-file", default=None,
           help="PEM client certificate for servers that require one; needs --tls-key-file")
    option("tls-key-file", default=None, help="PEM private key of --tls-cert-file")
    option("tls-server-name", default=None,
           help="name the server's certificate must carry, if not --target's host")
    option("request-id", default=None,
           help="x-request-id sent with every call (the server logs the call under it); "
                "default: a new one per call")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m convserve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    health = commands.add_parser("health", help="print the server's serving status")
    shape = commands.add_parser("shape", help="explain a layer's shapes without computing it")
    _option(shape, "input-shape", type=_ints, required=True)
    _option(shape, "weight-shape", type=_ints, required=True)
    _option(shape, "with-bias", "bias", action="store_true", help="the layer has a bias")
    _option(shape, "enforce", default=None, choices=FRAMEWORKS,
            help="also refuse what this framework refuses")
    _layer_options(shape)
    conv = commands.add_parser("conv", help="run one layer on .npy tensors")
    _option(conv, "input", required=True, help="input .npy (float32)")
    _option(conv, "weight", required=True, help="weight .npy (float32)")
    _option(conv, "bias", default=None, help="bias .npy (float32), optional")
    _option(conv, "output", required=True, help="output .npy to write")
    _layer_options(conv)
    stream = commands.add_parser(
        "stream", help="run a loaded causal model over a .npy signal in chunks (StreamModel)")
    _option(stream, "model", required=True, help="name of a loaded causal model")
    _option(stream, "input", required=True, help="input .npy (float32)")
    _option(stream, "output", required=True, help="output .npy to write")
    _option(stream, "chunk", type=int, default=160,
            help="cells per chunk along the time axis (the input's last spatial axis)")
    _option(stream, "data-format", default="channels_first", choices=DATA_FORMATS)
    models = commands.add_parser("models", help="list loaded models")
    info = commands.add_parser("info",
                               help="print the server's version, build, kernel tiers and limits")
    for command in (health, shape, conv, stream, models, info):
        _connection_options(command, suppress=True)
    args = parser.parse_args(argv)

    try:
        token = None
        if args.auth_token_file:
            with open(args.auth_token_file) as token_file:
                token = token_file.readline().strip()
        with convserve.Client(args.target, timeout=args.timeout_s, token=token,
                              lb_policy=args.lb_policy, retries=args.retries,
                              tls_ca=args.tls_ca_file, tls_cert=args.tls_cert_file,
                              tls_key=args.tls_key_file, tls_server_name=args.tls_server_name,
                              request_id=args.request_id) as client:
            if args.command == "health":
                status = client.health()
                print(status)
                return 0 if status == "SERVING" else 1
            if args.command == "shape":
                report = convserve.validate(args.input_shape, args.weight_shape, args.with_bias,
                                            enforce_framework=args.enforce, client=client,
                                            **_layer_kwargs(args))
                print(convserve.format_report(report))
                return 0
            if args.command == "conv":
                x = np.load(args.input)
                w = np.load(args.weight)
                b = np.load(args.bias) if args.bias else None
                rank = w.ndim - 2
                function = {1: convserve.conv1d, 2: convserve.conv2d, 3: convserve.conv3d}.get(rank)
                if function is None:
                    print("--weight: expected 3 to 5 dims, got shape %s" % (w.shape,),
                          file=sys.stderr)
                    return 2
                y = function(x, w, b, client=client, **_layer_kwargs(args))
                np.save(args.output, y)
                print("output %s written to %s" % (list(y.shape), args.output))
                return 0
            if args.command == "stream":
                if args.chunk < 1:
                    print("error: --chunk: expected at least 1 cell, got %d" % args.chunk,
                          file=sys.stderr)
                    return 1
                x = np.load(args.input)
                if not 3 <= x.ndim <= 5:
                    print("error: --input: expected (N, C, *S) or (N, *S, C) with 1 to 3 spatial "
                          "axes, got shape %s" % (list(x.shape),), file=sys.stderr)
                    return 1
                axis = x.ndim - (1 if args.data_format == "channels_first" else 2)
                chunks = [x[(slice(None),) * axis + (slice(at, at + args.chunk),)]
                          for at in range(0, x.shape[axis], args.chunk)]
                y = np.concatenate(list(client.stream(args.model, chunks)), axis=axis)
                np.save(args.output, y)
                print("output %s written to %s (%d chunks)" % (list(y.shape), args.output,
                                                                len(chunks)))
                return 0
            if args.command == "info":
                info = client.server_info()
                limits = info.limits
                for name, value in [
                        ("version", info.version), ("git_commit", info.git_commit),
                        ("build_type", info.build_type),
                        ("kernel_tiers", ", ".join(info.kernel_tiers)),
                        ("compute_threads", info.compute_threads),
                        ("auth_required", "true" if info.auth_required else "false")] + [
                        # Every limit, in the proto's order, as convctl prints them.
                        (field.name, getattr(limits, field.name))
                        for field in limits.DESCRIPTOR.fields]:
                    print("%s: %s" % (name, value))
                return 0
            if args.command == "models":
                for model in client.list_models():
                    print("%s: %d layers, %d parameters" % (model.name, len(model.layers),
                                                            model.parameters))
                    # A model with branches: how its layers connect, one step per line.
                    for step in model.graph:
                        print("  " + step)
                return 0
    except convserve.ConvServeError as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        # The Client's parameter names as this command spells them.
        message = re.sub(r"\btls_(ca|cert|key)\b",
                         lambda match: "--tls-%s-file" % match.group(1), str(error))
        print("error: %s" % message, file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
