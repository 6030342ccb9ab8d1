"""Human-readable rendering of a convserve.v1.ShapeReport."""

from convserve.client import pb


def _shape(values):
    return "[" + ", ".join(str(v) for v in values) + "]"


def format_report(report):
    lines = [
        "input   %s" % _shape(report.input_shape),
        "output  %s" % _shape(report.output_shape),
        "weight  %s" % _shape(report.weight_shape),
        "bias    %s" % (_shape(report.bias_shape) if len(report.bias_shape) else "none"),
        "",
        "per spatial axis:",
    ]
    for index, axis in enumerate(report.axes):
        lines.append("  axis %d: %s" % (index, axis.derivation))
    lines += [
        "",
        "parameters %d   MACs %d   FLOPs %d" % (report.parameters, report.macs, report.flops),
        "bytes: input %d, output %d, weight %d" % (report.input_bytes, report.output_bytes,
                                                  report.weight_bytes),
    ]
    if report.warnings:
        lines.append("")
        lines += ["warning: %s" % warning for warning in report.warnings]
    lines += ["", "frameworks:"]
    for verdict in report.frameworks:
        name = pb.Framework.Name(verdict.framework).replace("FRAMEWORK_", "").capitalize()
        name = {"Pytorch": "PyTorch", "Onnx": "ONNX"}.get(name, name)
        lines.append("  %-8s %s" % (name, "accepts" if verdict.accepted
                                    else "refuses: %s" % verdict.reason))
        for code_line in verdict.equivalent.splitlines():
            lines.append("           %s" % code_line)
    return "\n".join(lines)
