"""Why edgeseg keeps its own opset down-conversion (export/opset.py) and FP16 conversion
(export/fp16.py): on an edgeseg graph the library routes are wrong today. When one of these
tests fails, the library has caught up: switch to it and delete ours."""

import warnings

import numpy as np
import onnx
import pytest
import torch

from edgeseg.export.onnx_export import ExportWrapper, OnnxOptions, _quiet_exporter
from edgeseg.data.base import DatasetInfo
from edgeseg.models import ModelConfig, ModelMeta, build_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """lite0-lraspp (its gate has a ReduceMean, its head a Resize) exported at the exporter's own opset."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("lite0-lraspp", 5)).eval()
    meta = ModelMeta(ModelConfig("lite0-lraspp", 5, res=(64, 32)), DatasetInfo("d", tuple("abcde"), ((0, 0, 0),) * 5))
    wrapper = ExportWrapper(model, meta, OnnxOptions(output="both", output_size=(128, 64))).eval()
    path = tmp_path_factory.mktemp("lib") / "m.onnx"
    with _quiet_exporter(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (torch.zeros(1, 3, 32, 64),), str(path), dynamo=True, opset_version=17,
                          input_names=["input"], output_names=["logits", "labels"], external_data=False)
    return onnx.load(str(path))


def test_the_exporter_ignores_an_opset_below_18(exported):
    assert next(i.version for i in exported.opset_import if i.domain in ("", "ai.onnx")) >= 18


def test_the_onnx_version_converter_cannot_bring_our_graph_to_17(exported):
    from onnx import version_converter

    with pytest.raises(Exception):  # noqa: B017 - any failure will do; the point is that it does not work
        onnx.checker.check_model(version_converter.convert_version(exported, 17), full_check=True)
    from edgeseg.export.opset import downgrade

    ours = downgrade(exported, 17)
    onnx.checker.check_model(ours, full_check=True)
    assert next(i.version for i in ours.opset_import if i.domain in ("", "ai.onnx")) == 17


def test_onnxruntime_float16_conversion_breaks_our_graph(exported):
    from onnxruntime.transformers import float16

    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(float16.convert_float_to_float16(exported, keep_io_types=True), full_check=True)
    from edgeseg.export.fp16 import convert_fp16

    ours = convert_fp16(exported)  # checks itself
    assert {t.type.tensor_type.elem_type for t in ours.graph.input} == {onnx.TensorProto.FLOAT}
    halves = [i for i in ours.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert halves and all(np.isfinite(onnx.numpy_helper.to_array(i)).all() for i in halves)
