"""``edgeseg export``: ONNX (FP32, INT8 Q/DQ) and TensorRT engines, each checked for parity."""

from edgeseg.export.onnx_export import OnnxOptions, export_onnx
from edgeseg.export.pipeline import export_model

__all__ = ["OnnxOptions", "export_model", "export_onnx"]
