"""FP32 -> FP16 ONNX with float32 inputs and outputs kept, for strongly typed TensorRT
(TensorRT 11 has no FP16 builder flag: the precision is the ONNX model's own).

Float initializers and constants become float16, a Cast follows each float input
and precedes each float output, and internal Casts to float32 cast to float16
instead. Resize's scales and roi stay float32, as the operator requires.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
# (op type, input index) pairs that must stay float32
_KEEP_FLOAT_INPUTS = {("Resize", 1), ("Resize", 2)}


def _cast_edge(graph, name: str, into: bool) -> onnx.NodeProto:
    """Rename graph edge ``name`` to ``name_fp16`` inside the graph; the Cast that joins the two.

    ``into``: a graph input (float32 in, Cast to float16); else a graph output (Cast back to float32).
    """
    half = f"{name}_fp16"
    for node in graph.node:
        node.input[:] = [half if x == name else x for x in node.input]
        if not into:
            node.output[:] = [half if x == name else x for x in node.output]
    if into:
        return helper.make_node("Cast", [name], [half], to=HALF, name=f"{name}_to_fp16")
    return helper.make_node("Cast", [half], [name], to=FLOAT, name=f"{name}_to_fp32")


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    keep = {node.input[i] for node in graph.node for (op, i) in _KEEP_FLOAT_INPUTS if node.op_type == op and len(node.input) > i}
    for init in graph.initializer:
        if init.data_type == FLOAT and init.name not in keep:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT and node.output[0] not in keep:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = HALF
    new_nodes = [_cast_edge(graph, inp.name, into=True) for inp in graph.input if inp.type.tensor_type.elem_type == FLOAT]
    tail = [_cast_edge(graph, out.name, into=False) for out in graph.output if out.type.tensor_type.elem_type == FLOAT]
    nodes = new_nodes + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model
