import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(min(2, os.cpu_count() or 1))

CAMVID = Path(os.environ.get("EDGESEG_CAMVID", Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"))


def camvid_root() -> Path:
    if not (CAMVID / "val").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID}")
    return CAMVID


@pytest.fixture
def cli_run(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from edgeseg.cli import main

    def run(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_scene(rng, h=36, w=48, classes=5, void=255):
    """A small image/label pair whose colours follow the label (learnable)."""
    label = np.zeros((h, w), dtype=np.uint8)
    for c in range(1, classes):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        label[y0 : y0 + rng.integers(4, 12), x0 : x0 + rng.integers(4, 16)] = c
    label[:, rng.integers(0, w)] = classes - 1  # a thin 1-px structure
    label[rng.random((h, w)) < 0.02] = void
    palette = np.array([[40 * c + 20, 255 - 40 * c, (97 * c) % 255] for c in range(classes)], dtype=np.uint8)
    image = palette[np.minimum(label, classes - 1)]
    noise = rng.integers(-10, 10, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8), label


def make_folder_dataset(root: Path, n_train: int = 6, n_val: int = 3) -> Path:
    """A tiny `folder` data set with train/ and val/ splits (5 classes, void 255)."""
    import json

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            img, lab = make_scene(rng)
            write_png(root / split / "images" / f"s{i}.png", img)
            write_png(root / split / "masks" / f"s{i}.png", lab)
    (root / "classes.json").write_text(json.dumps({"names": ["a", "b", "c", "d", "e"], "ignore_index": 255}))
    return root


@pytest.fixture
def folder_dataset(tmp_path):
    return make_folder_dataset(tmp_path / "folder")


@pytest.fixture(scope="session")
def shared_folder(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("data") / "folder", n_train=12)


@pytest.fixture(scope="session")
def tiny_checkpoint(shared_folder, tmp_path_factory):
    """best.pt of a tiny model trained for a few steps on the folder data set (shared, read-only)."""
    from edgeseg.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny") / "run"
    train(TrainConfig(out=str(out), res=(48, 36), dataset="folder", data=str(shared_folder), model="tiny", epochs=3,
                      batch=2, lr=2e-2, progress=False, workers=0, device="cpu"))
    return out / "best.pt"


def export(checkpoint, out, onnx=None, int8=None, trt=None, source=None, images: int = 3, **job):
    """``edgeseg export`` through its Python API: model.onnx (and the formats ``int8``, ``trt``
    options or ``formats=`` ask for) checked on ``images`` images."""
    from edgeseg.data import DataSource
    from edgeseg.export.formats import ExportOptions, Request
    from edgeseg.export.onnx_export import OnnxOptions
    from edgeseg.tasks.export import export_model

    job.pop("progress", None)
    formats = tuple(job.pop("formats", ())) + (("openvino",) if job.pop("openvino", False) else ()) + (("int8",) if int8 is not None else ()) + (("tensorrt",) if trt is not None else ())
    checks = dict(verify_images=images) if job.get("verify", True) else {}  # (none without the checks)
    request = Request(Path(checkpoint), Path(out), ExportOptions(formats=formats, **checks, **job), onnx or OnnxOptions(), int8, trt)
    return export_model(request, source or DataSource(), progress=False)


def parity_of(result: dict, fmt: str = "onnx") -> dict:
    """The (first) parity report of format ``fmt`` in an export result."""
    return next(iter(result["formats"][fmt]["parity"].values()))


@pytest.fixture(autouse=True)
def _edgeseg_logging_propagates():
    """The CLI takes over the edgeseg logger (its own handler, no propagation); give it back
    after each test so that caplog sees library records in the next one."""
    import logging

    yield
    log = logging.getLogger("edgeseg")
    log.handlers = [h for h in log.handlers if type(h).__name__ != "_EchoHandler"]
    log.propagate = True
    log.setLevel(logging.NOTSET)


@pytest.fixture(autouse=True)
def _nothing_left_in_the_working_folder():
    """Every test writes under its tmp_path: a command run by a test (a refused one above all) that
    leaves a file or folder in the working folder fails that test, naming what it left."""
    before = set(os.listdir("."))
    yield
    left = sorted(set(os.listdir(".")) - before - {".pytest_cache", ".ruff_cache", ".grimp_cache", "__pycache__"})
    if left:
        pytest.fail(f"left in the working folder {os.getcwd()}: {', '.join(left[:10])}", pytrace=False)
