"""Model files written by an earlier edgeseg (tests/fixtures/v0_1_0, commit 15c22ca) still load,
describe the same model, and compute what they computed then."""

from pathlib import Path

import numpy as np
import pytest

from edgeseg import runtime
from edgeseg.optional import available

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1_0"
EXPECTED = np.load(FIXTURES / "expected.npz")
FILES = ["tiny.pt", "tiny_up2.pt", "tiny.onnx", "tiny_labels.onnx",
         pytest.param("tiny.xml", marks=pytest.mark.skipif(not available("openvino"), reason="openvino not installed"))]


@pytest.mark.parametrize("name", FILES)
def test_files_of_0_1_0_run_as_they_did(name):
    # the IR in f32, as it was run when its expected outputs were recorded (a BF16-capable CPU's default is bf16)
    runner = runtime.load(FIXTURES / name, device="cpu", **({"precision": "f32"} if name.endswith(".xml") else {}))
    meta = runner.meta
    assert meta.class_names == ("a", "b", "c", "d", "e") and meta.num_classes == 5 and tuple(meta.res) == (24, 18)
    assert meta.data.name == "data" and meta.kernel == "area"
    assert meta.dataset == ("folder" if name.endswith(".pt") else "data")  # checkpoints recorded the --dataset they trained with
    x = EXPECTED[f"{name}:input"]
    with runner:
        out = runner.infer(x)
    for key in ("logits", "labels"):
        if f"{name}:{key}" in EXPECTED:
            np.testing.assert_allclose(out[key], EXPECTED[f"{name}:{key}"], atol=1e-4, rtol=1e-4)
    if name == "tiny_labels.onnx":
        assert meta.input_layout == "nhwc-uint8" and tuple(meta.labels_size) == (48, 36) and meta.outputs == ("labels",)
    if name == "tiny_up2.pt":
        assert out["logits"].shape[-2:] == (36, 48)


def test_checkpoint_of_0_1_0_keeps_its_training_state():
    from edgeseg.models import load_checkpoint

    ckpt = load_checkpoint(FIXTURES / "tiny.pt")
    assert ckpt.training is not None and ckpt.training.epoch == 1 and ckpt.training.train_config["model"] == "tiny"
    assert ckpt.training.train_config["res"] == [24, 18]


def test_engine_fingerprint_of_0_1_0_reads(monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from trt_double import GENERATIONS, make_tensorrt

    from edgeseg.runtime.trt_runner import TrtRunner

    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(GENERATIONS["10"]))
    monkeypatch.setattr(TrtRunner, "default_device", "cpu")
    monkeypatch.setattr("edgeseg.runtime.fingerprint.gpu_info", lambda: {"gpu": "Fake GPU", "compute_capability": "8.7", "cuda": None})
    runner = runtime.load(FIXTURES / "tiny.engine")
    assert runner.meta.class_names == ("a", "b", "c", "d", "e") and tuple(runner.meta.res) == (24, 18)
