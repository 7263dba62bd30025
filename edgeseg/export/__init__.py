"""Builders of deployable models: ONNX (FP32, FP16, INT8 Q/DQ with float fallback) and TensorRT
engines. ``edgeseg.tasks.export`` runs them and checks each result for parity."""

from edgeseg.export.onnx_export import OnnxOptions, export_onnx

__all__ = ["OnnxOptions", "export_onnx"]
