"""Down-convert an opset-18 graph to an older default-domain opset (17 for TensorRT 8.5/8.6).

PyTorch's exporter writes opset 18 at the least. Between 17 and 18 only a few
operator schemas changed; those we emit are rewritten here, and any other node
whose schema differs between the two versions is refused by name rather than
passed through unchecked.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from edgeseg.errors import ConfigError

# Reductions whose 'axes' moved from attribute to input in opset 18 (ReduceSum moved in 13).
_REDUCE_18 = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}
# Resize gained attributes in 18; at their defaults they can be dropped.
_RESIZE_DEFAULTS = {"antialias": 0, "keep_aspect_ratio_policy": b"stretch"}


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 0


def _constant_values(model: onnx.ModelProto, name: str):
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            attr = node.attribute[0]
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
            if attr.name in ("value_ints", "value_int"):
                import numpy as np

                return np.asarray(helper.get_attribute_value(attr), dtype=np.int64)
            return None
    return None


def _names_used(graph) -> set[str]:
    """Every value name a graph reads, including inside If/Loop/Scan subgraphs, plus its outputs."""
    import onnx

    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                used |= _names_used(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    used |= _names_used(g)
    return used


def prune_unused(model):
    """Drop Constant nodes and initializers nothing reads (left behind by folding); in place."""
    used = _names_used(model.graph)
    for node in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        model.graph.node.remove(node)
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
    return model


def downgrade(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    source = default_opset(model)
    if target >= source:
        return model
    if source != 18 or target < 13:
        raise ConfigError(f"--opset {target}: can only down-convert from opset 18 to 13..17 (graph has {source})")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _REDUCE_18 and (len(node.input) < 2 or not node.input[1]):
            if any(a.name == "noop_with_empty_axes" and a.i for a in node.attribute):
                raise ConfigError(f"--opset {target}: {node.op_type} '{node.name}' uses noop_with_empty_axes; use --opset 18")
            keep = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
            del node.attribute[:]
            node.attribute.extend(keep)
            continue  # no axes: reduce over all axes, the same in 13..17
        if node.op_type in _REDUCE_18 and len(node.input) > 1 and node.input[1]:
            axes = _constant_values(model, node.input[1])
            if axes is None:
                raise ConfigError(f"--opset {target}: {node.op_type} '{node.name}' has computed axes; use --opset 18")
            del node.input[1]
            keep = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
            del node.attribute[:]
            node.attribute.extend(keep + [helper.make_attribute("axes", [int(a) for a in axes.ravel()])])
            continue
        if node.op_type == "Resize":
            keep = []
            for a in node.attribute:
                if a.name == "axes":
                    raise ConfigError(f"--opset {target}: Resize '{node.name}' uses 'axes'; use --opset 18")
                if a.name in _RESIZE_DEFAULTS:
                    if helper.get_attribute_value(a) != _RESIZE_DEFAULTS[a.name]:
                        raise ConfigError(f"--opset {target}: Resize '{node.name}' uses {a.name}; use --opset 18")
                    continue
                keep.append(a)
            del node.attribute[:]
            node.attribute.extend(keep)
            continue
        if node.op_type == "Pad":
            if len(node.input) > 3 and node.input[3]:
                raise ConfigError(f"--opset {target}: Pad '{node.name}' uses 'axes'; use --opset 18")
            continue
        new = onnx.defs.get_schema(node.op_type, source, "").since_version
        old = onnx.defs.get_schema(node.op_type, target, "").since_version
        if new != old:
            raise ConfigError(f"--opset {target}: operator {node.op_type} changed in opset {new} and has no down-conversion here; use --opset {source}")
    prune_unused(model)  # axes constants now folded into attributes
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = target
    return model
