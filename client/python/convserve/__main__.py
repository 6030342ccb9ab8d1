"""python3 -m convserve: command-line access to a ConvServe server.

    python3 -m convserve health
    python3 -m convserve shape --input-shape 1,3,224,224 --weight-shape 64,3,7,7 \
        --stride 2 --padding 3
    python3 -m convserve conv --input x.npy --weight w.npy [--bias b.npy] --output y.npy \
        --padding same --activation relu
    python3 -m convserve models
    python3 -m convserve info
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
    """'same', '1', '1,2' (per axis) or '[(1,2),(0,1)]' (begin, end per axis)."""
    text = text.strip()
    if text and (text[0].isalpha()):
        return text
    if text.startswith("["):
        return [tuple(pair) for pair in ast.literal_eval(text)]
    values = _ints(text)
    return values[0] if len(values) == 1 else tuple(values)


def _layer_options(parser):
    parser.add_argument("--stride", type=_ints, default=[1])
    parser.add_argument("--dilation", type=_ints, default=[1])
    parser.add_argument("--padding", type=_padding, default=0,
                        help="valid, same, same_lower, causal, P, P1,P2 or [(b,e),...]")
    parser.add_argument("--padding-mode", default="zeros")
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--data-format", default="channels_first")
    parser.add_argument("--weight-format", default="oihw")
    parser.add_argument("--activation", default=None)
    parser.add_argument("--activation-alpha", type=float, default=None)


def _layer_kwargs(args):
    return dict(stride=args.stride, padding=args.padding, padding_mode=args.padding_mode,
                dilation=args.dilation, groups=args.groups, data_format=args.data_format,
                weight_format=args.weight_format, activation=args.activation,
                activation_alpha=args.activation_alpha)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m convserve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default=None,
                        help="server address, or several: ipv4:H:P1,H:P2 or dns:///name:port "
                             "(default $CONVSERVE_TARGET or localhost:50051)")
    parser.add_argument("--lb-policy", default=convserve.client.DEFAULT_LB_POLICY,
                        choices=convserve.client.LB_POLICIES,
                        help="how calls spread over the addresses of --target")
    parser.add_argument("--retries", action="store_true",
                        help="retry Conv, ValidateShape and RunModel on UNAVAILABLE")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    parser.add_argument("--auth-token-file", default=None,
                        help="file holding the server's bearer token (default $CONVSERVE_TOKEN); "
                             "send it only over TLS")
    parser.add_argument("--tls-ca-file", default=None,
                        help="connect over TLS, trusting this PEM CA for the server's "
                             "certificate (any --tls-* option turns TLS on)")
    parser.add_argument("--tls-cert-file", default=None,
                        help="PEM client certificate for servers that require one; needs "
                             "--tls-key-file")
    parser.add_argument("--tls-key-file", default=None, help="PEM private key of --tls-cert-file")
    parser.add_argument("--tls-server-name", default=None,
                        help="name the server's certificate must carry, if not --target's host")
    parser.add_argument("--request-id", default=None,
                        help="x-request-id sent with every call (the server logs the call "
                             "under it); default: a new one per call")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("health", help="print the server's serving status")
    shape = commands.add_parser("shape", help="explain a layer's shapes without computing it")
    shape.add_argument("--input-shape", type=_ints, required=True)
    shape.add_argument("--weight-shape", type=_ints, required=True)
    shape.add_argument("--bias", action="store_true")
    shape.add_argument("--enforce", default=None, help="pytorch, keras or onnx")
    _layer_options(shape)
    conv = commands.add_parser("conv", help="run one layer on .npy tensors")
    conv.add_argument("--input", required=True)
    conv.add_argument("--weight", required=True)
    conv.add_argument("--bias", default=None)
    conv.add_argument("--output", required=True)
    _layer_options(conv)
    commands.add_parser("models", help="list loaded models")
    commands.add_parser("info", help="print the server's version, build, kernel tiers and limits")
    args = parser.parse_args(argv)

    try:
        token = None
        if args.auth_token_file:
            with open(args.auth_token_file) as token_file:
                token = token_file.readline().strip()
        with convserve.Client(args.target, timeout=args.timeout, token=token,
                              lb_policy=args.lb_policy, retries=args.retries,
                              tls_ca=args.tls_ca_file, tls_cert=args.tls_cert_file,
                              tls_key=args.tls_key_file, tls_server_name=args.tls_server_name,
                              request_id=args.request_id) as client:
            if args.command == "health":
                status = client.health()
                print(status)
                return 0 if status == "SERVING" else 1
            if args.command == "shape":
                report = convserve.validate(args.input_shape, args.weight_shape, args.bias,
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
            if args.command == "info":
                info = client.server_info()
                limits = info.limits
                for name, value in [
                        ("version", info.version), ("git_commit", info.git_commit),
                        ("build_type", info.build_type),
                        ("kernel_tiers", ", ".join(info.kernel_tiers)),
                        ("compute_threads", info.compute_threads),
                        ("auth_required", "true" if info.auth_required else "false"),
                        ("max_message_bytes", limits.max_message_bytes),
                        ("max_elements", limits.max_elements), ("max_macs", limits.max_macs),
                        ("memory_budget_bytes", limits.memory_budget_bytes),
                        ("max_model_bytes", limits.max_model_bytes)]:
                    print("%s: %s" % (name, value))
                return 0
            if args.command == "models":
                for model in client.list_models():
                    print("%s: %d layers, %d parameters" % (model.name, len(model.layers),
                                                            model.parameters))
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
