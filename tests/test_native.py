"""Scores above the input resolution: --upscale K and --refine guided."""

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from conftest import export, parity_of

from edgeseg import runtime
from edgeseg.data.base import DatasetInfo, Sample
from edgeseg.data.resample import resize
from edgeseg.data.transforms import NO_AUGMENT, TrainTransform
from edgeseg.errors import ConfigError, DataError
from edgeseg.models import ModelConfig, build_model
from edgeseg.models.native import GuidedRefine, UpscaleHead


@pytest.mark.parametrize("options", [{}, {"upscale_input": 4}])
def test_untrained_upsampler_is_bilinear_upsampling_of_the_head(options):
    torch.manual_seed(0)
    model = build_model(ModelConfig("tiny", 5, res=(48, 36), upscale=4, options=options)).eval()
    x = torch.randn(2, 3, 36, 48)
    with torch.no_grad():
        out = model(x)
        coarse = model.head(model.features(x))
    assert out.shape == (2, 5, 144, 192)
    np.testing.assert_allclose(out, F.interpolate(coarse, size=(144, 192), mode="bilinear", align_corners=False), atol=1e-5)


def test_upsampler_learns_detail_from_high_resolution_features():
    """A non-zero residual changes the output (the stride-2 path is wired), and odd sizes crop right."""
    torch.manual_seed(0)
    head = UpscaleHead(3, (8, 16, 24), (2, 4, 8), upscale=2)
    torch.nn.init.normal_(head.expand.weight, std=0.1)
    feats = [torch.randn(1, 8, 19, 25), torch.randn(1, 16, 10, 13), torch.randn(1, 24, 5, 7)]
    logits = torch.randn(1, 3, 5, 7)
    out = head(logits, feats, torch.zeros(1, 3, 37, 49))
    assert out.shape == (1, 3, 74, 98)
    assert not torch.allclose(out, F.interpolate(logits, size=(74, 98), mode="bilinear", align_corners=False))


@pytest.mark.parametrize("channels,kernel,width", [(0, 1, 8), (1, 1, 8), (1, 3, 8), (0, 1, 0), (1, 1, 0)])
def test_guided_filter_reproduces_scores_that_are_linear_in_the_guide(channels, kernel, width):
    """The defining property: where scores are a*g + b at low resolution, the filter returns a*g + b
    at the guide's resolution, with the guide's own full-resolution detail (per-class or shared
    guide, learned or linear in the colour)."""
    torch.manual_seed(0)
    refine = GuidedRefine(2, eps=1e-8, width=width, guide_channels=channels, guide_kernel=kernel).eval()
    assert len(refine.guide) == (1 if width == 0 else 4 if kernel == 1 else 7)
    frame = torch.randn(1, 3, 40, 60)
    with torch.no_grad():
        g_hi = refine.guide(frame)
        assert g_hi.shape[1] == (2 if channels == 0 else 1)
        g_lo = resize(g_hi, (10, 15), "area")
        scores = torch.stack([2.0 * g_lo[:, 0] + 1.0, -3.0 * g_lo[:, -1] + 0.5], 1)
        out = refine(scores, frame)
    expected = torch.stack([2.0 * g_hi[:, 0] + 1.0, -3.0 * g_hi[:, -1] + 0.5], 1)
    np.testing.assert_allclose(out, expected, atol=1e-3)


@pytest.mark.parametrize("kernel,width", [("area", 8), ("bilinear", 8), ("area", 0), ("bilinear", 0)])
def test_guided_filter_resizes_the_narrower_guide_map_with_the_same_result(kernel, width):
    """With more classes than hidden guide channels the low-resolution guide is computed from the
    resized hidden map (the frame itself for a linear guide); the resize kernels are linear with
    unit row sums, so it equals resizing the per-class guide itself (here with a non-integer ratio:
    the kernel-matrix path)."""
    torch.manual_seed(0)
    refine = GuidedRefine(12, kernel, width=width).eval()
    torch.nn.init.normal_(refine.guide[-1].bias)
    frame, scores = torch.randn(2, 3, 40, 60), torch.randn(2, 12, 9, 13)
    with torch.no_grad():
        out = refine(scores, frame)
        g_hi = refine.guide(frame)
        g_lo = resize(g_hi, (9, 13), kernel)
        box = lambda t: F.avg_pool2d(t, 3, 1, 1, count_include_pad=False)  # noqa: E731
        mean_g, mean_p = box(g_lo), box(scores)
        a = (box(g_lo * scores) - mean_g * mean_p) / (box(g_lo * g_lo) - mean_g * mean_g + refine.eps)
        b = mean_p - a * mean_g
        up = lambda t: F.interpolate(t, size=(40, 60), mode="bilinear", align_corners=False)  # noqa: E731
        expected = up(box(a)) * g_hi + up(box(b))
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)  # float rounding, amplified where the guide varies little


def test_guided_filter_with_a_flat_guide_is_a_smooth_upsampling():
    refine = GuidedRefine(3)
    torch.nn.init.zeros_(refine.guide[-1].weight)  # the guide is its bias: constant per class
    with torch.no_grad():
        scores = torch.randn(1, 3, 6, 8)
        out = refine.eval()(scores, torch.randn(1, 3, 24, 32))
    box = F.avg_pool2d(F.avg_pool2d(scores, 3, 1, 1, count_include_pad=False), 3, 1, 1, count_include_pad=False)
    np.testing.assert_allclose(out, F.interpolate(box, size=(24, 32), mode="bilinear", align_corners=False), atol=1e-5)


@pytest.mark.parametrize("upscale", [2, 4])
def test_stride_one_stage_sees_a_single_input_pixel_where_it_lies(upscale):
    """With the encoder's features held fixed (the plain up-sampler then ignores the input image's
    pixels), a change of one input pixel changes the output exactly within its 3x3 neighbourhood,
    scaled by the up-scale factor (odd input size): the stride-1 stage is wired at stride 1."""
    torch.manual_seed(0)
    feats = [torch.randn(1, 8, 19, 25), torch.randn(1, 16, 10, 13), torch.randn(1, 24, 5, 7)]
    logits, x = torch.randn(1, 3, 5, 7), torch.randn(1, 3, 37, 49)
    poked = x.clone()
    poked[..., 20, 30] += 5.0
    head = UpscaleHead(3, (8, 16, 24), (2, 4, 8), upscale=upscale, input_channels=4).eval()
    torch.nn.init.normal_(head.expand.weight, std=0.1)
    with torch.no_grad():
        diff = (head(logits, feats, poked) - head(logits, feats, x)).abs().amax(1)[0]
    assert diff.shape == (37 * upscale, 49 * upscale)
    rows, cols = torch.nonzero(diff > 1e-6, as_tuple=True)
    assert (rows.min(), rows.max() + 1) == (19 * upscale, 22 * upscale)
    assert (cols.min(), cols.max() + 1) == (29 * upscale, 32 * upscale)


def test_soft_labels_at_the_output_resolution_use_the_image_kernel():
    info = DatasetInfo("t", ("a", "b", "c"), ((0, 0, 0),) * 3, 255)
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, (36, 48)).astype(np.uint8)
    label[0, :5] = 255
    sample = Sample(np.zeros((36, 48, 3), np.uint8), label, "s")
    img, target = TrainTransform((12, 9), info, "soft", "area", NO_AUGMENT, target_res=(48, 36))(sample, rng)
    assert img.shape == (3, 9, 12) and target["mass"].shape == (3, 36, 48)
    # at native resolution the soft label is the native label itself
    onehot = F.one_hot(torch.from_numpy(label).long().clamp(max=2), 3).permute(2, 0, 1).float() * torch.from_numpy(label != 255)
    np.testing.assert_allclose(target["mass"], onehot)
    _, half = TrainTransform((12, 9), info, "soft", "area", NO_AUGMENT, target_res=(24, 18))(sample, rng)
    expected = F.avg_pool2d(onehot[None], 2)[0]
    np.testing.assert_allclose(half["mass"], expected, atol=1e-6)
    np.testing.assert_allclose(half["valid"], expected.sum(0), atol=1e-6)


def test_bad_native_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="--upscale: expected one of 1, 2, 4; got 3"):
        build_model(ModelConfig("tiny", 3, res=(48, 36), upscale=3))
    with pytest.raises(ConfigError, match="--refine: expected one of none, guided"):
        build_model(ModelConfig("tiny", 3, res=(48, 36), refine="bilateral", native_res=(96, 72)))
    with pytest.raises(ConfigError, match="output 192x144 exceeds the native frame 96x72"):
        build_model(ModelConfig("tiny", 3, res=(48, 36), upscale=4, refine="guided", native_res=(96, 72)))
    with pytest.raises(ConfigError, match="own output stage"):
        build_model(ModelConfig("tiny-msa", 3, res=(48, 36), upscale=2))
    guided = dict(res=(48, 36), refine="guided", native_res=(96, 72))
    with pytest.raises(ConfigError, match=r"--model-opt guide_channels=2: expected 0 \(one guide per class\) or 1"):
        build_model(ModelConfig("tiny", 3, options={"guide_channels": 2}, **guided))
    with pytest.raises(ConfigError, match="--model-opt guide_kernel=2: expected 1, 3 or 5"):
        build_model(ModelConfig("tiny", 3, options={"guide_kernel": 2}, **guided))
    with pytest.raises(ConfigError, match=r"--model-opt refine_radius=0: expected the box filters' radius, a whole number from 1 to 8"):
        build_model(ModelConfig("tiny", 3, options={"refine_radius": 0}, **guided))
    with pytest.raises(ConfigError, match=r"--model-opt guide_width=-1: expected the guide's hidden channels \(0: linear in the colour\), a whole number from 0 to 256"):
        build_model(ModelConfig("tiny", 3, options={"guide_width": -1}, **guided))
    with pytest.raises(ConfigError, match="--model-opt guide_kernel=3: needs a hidden guide stage; guide_width=0 has none"):
        build_model(ModelConfig("tiny", 3, options={"guide_width": 0, "guide_kernel": 3}, **guided))
    with pytest.raises(ConfigError, match="--model-opt guide_width: applies only with --refine guided"):
        build_model(ModelConfig("tiny", 3, res=(48, 36), options={"guide_width": 0}))
    with pytest.raises(ConfigError, match="--model-opt guide_kernel: applies only with --refine guided"):
        build_model(ModelConfig("tiny", 3, res=(48, 36), upscale=2, options={"guide_kernel": 3}))
    with pytest.raises(ConfigError, match=r"--model-opt upscale_input=-2: expected the stride-1 stage's channels \(0: none\), a whole number from 0 to 256"):
        build_model(ModelConfig("tiny", 3, res=(48, 36), upscale=2, options={"upscale_input": -2}))
    with pytest.raises(ConfigError, match="--model-opt upscale_width=0: expected the up-sampler's channels, a whole number from 1 to 256"):
        build_model(ModelConfig("tiny", 3, res=(48, 36), upscale=2, options={"upscale_width": 0}))
    with pytest.raises(ConfigError, match="--model-opt upscale_input: applies only with --upscale 2 or 4"):
        build_model(ModelConfig("tiny", 3, res=(48, 36), options={"upscale_input": 8}))
    with pytest.raises(ConfigError, match="--model-opt upscale_width: applies only with --upscale 2 or 4"):
        build_model(ModelConfig("tiny", 3, options={"upscale_width": 8}, **guided))


@pytest.fixture(scope="module")
def guided_run(shared_folder, tmp_path_factory):
    """A tiny guided model (shared guide with a 3x3 stage) with a 2x up-sampler, trained a few steps on
    48x36 frames at 24x18."""
    from edgeseg.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("guided") / "run"
    train(TrainConfig(out=str(out), res=(24, 18), dataset="folder", data=str(shared_folder), model="tiny", iters=4,
                      batch=2, lr=2e-2, progress=False, workers=0, device="cpu", upscale=2, refine="guided",
                      model_options=(("guide_channels", 1), ("guide_kernel", 3))))
    return out


def test_guided_model_trains_exports_and_evaluates_at_native_resolution(guided_run, shared_folder, tmp_path):
    from edgeseg.tasks.evaluate import evaluate_model

    ckpt = torch.load(guided_run / "last.pt", weights_only=True)
    config = ckpt["meta"]["model"]
    assert config["refine"] == "guided" and config["native_res"] == [48, 36]
    assert config["options"] == {"guide_channels": 1, "guide_kernel": 3}
    result = export(guided_run / "last.pt", tmp_path, images=3)
    assert parity_of(result)["passed"] and parity_of(result)["pixel_agreement"] > 99.9
    proto = onnx.load(str(tmp_path / "model.onnx"))
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 36, 48] and out_dims[2:] == [36, 48]  # native frame in, native scores out
    ops = {n.op_type for n in proto.graph.node}
    assert ops.isdisjoint({"Loop", "If", "Scan"}) and not any(n.domain not in ("", "ai.onnx") for n in proto.graph.node)
    meta = runtime.load(tmp_path / "model.onnx").meta
    assert meta.native_res == (48, 36) and meta.res == (24, 18) and meta.input_res == (48, 36)
    a = evaluate_model(str(guided_run / "last.pt"))
    from edgeseg.data import DataSource

    b = evaluate_model(str(tmp_path / "model.onnx"), source=DataSource("folder", str(shared_folder)))
    assert a["miou"] == pytest.approx(b["miou"], abs=0.05)
    with runtime.load(tmp_path / "model.onnx", device="cpu") as runner:
        with pytest.raises(ConfigError, match=r"input shape \(1, 3, 72, 96\) does not match the model's \(1, 3, 36, 48\)"):
            runner.infer(np.zeros((1, 3, 72, 96), np.float32))


def test_guided_model_refuses_frames_smaller_than_its_network_resolution(guided_run):
    from edgeseg.runtime.processing import Preprocess

    runner = runtime.load(guided_run / "last.pt")
    pre = Preprocess.from_meta(runner.meta)
    assert pre([np.zeros((36, 48, 3), np.uint8)]).shape == (1, 3, 36, 48)
    with pytest.raises(DataError, match="a 20x16 frame is smaller than the model's network resolution 24x18"):
        pre([np.zeros((16, 20, 3), np.uint8)])


def test_upscaled_model_exports_with_uint8_labels_at_its_output_resolution(shared_folder, tmp_path):
    from edgeseg.export import OnnxOptions, export_onnx
    from edgeseg.trainer import TrainConfig, train

    out = tmp_path / "run"
    train(TrainConfig(out=str(out), res=(24, 18), dataset="folder", data=str(shared_folder), model="tiny", iters=2,
                      batch=2, progress=False, workers=0, device="cpu", upscale=2))
    path, meta = export_onnx(out / "last.pt", tmp_path / "m.onnx", OnnxOptions(output="both", input_format="uint8"))
    assert meta.labels_size == (48, 36) and meta.native_res is None
    with runtime.load(path, device="cpu") as runner:
        res = runner.infer(np.zeros((1, 18, 24, 3), np.uint8))
    assert res["logits"].shape == (1, 5, 36, 48) and res["labels"].shape == (1, 36, 48)


@pytest.mark.parametrize("upscale,res", [(2, (24, 18)), (4, (12, 9))])
def test_plain_upsampled_model_exports_with_parity_and_builds_through_the_tensorrt_double(upscale, res, shared_folder, tmp_path, monkeypatch):
    """--upscale 2 and 4 without a guide: a trained model's ONNX graph (plain ops, scores at K x its
    input) agrees with the checkpoint, and the TensorRT double builds and runs it with parity."""
    import sys

    from trt_double import GENERATIONS, make_tensorrt

    from edgeseg.export.trt_build import TrtOptions
    from edgeseg.runtime.trt_runner import TrtRunner
    from edgeseg.trainer import TrainConfig, train

    out = tmp_path / "run"
    train(TrainConfig(out=str(out), res=res, dataset="folder", data=str(shared_folder), model="tiny", iters=4,
                      batch=2, lr=2e-2, progress=False, workers=0, device="cpu", upscale=upscale))
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(GENERATIONS["10"]))
    monkeypatch.setattr(TrtRunner, "default_device", "cpu")
    monkeypatch.setattr("edgeseg.runtime.fingerprint.gpu_info", lambda: {"gpu": "Fake GPU", "compute_capability": "8.7", "cuda": None})
    result = export(out / "last.pt", tmp_path / "export", images=3, trt=TrtOptions(precision="fp16"))
    assert parity_of(result)["passed"] and parity_of(result)["max_abs_logit_diff"] < 1e-4
    assert parity_of(result, "tensorrt")["passed"] and parity_of(result, "tensorrt")["n_images"] == 3
    proto = onnx.load(str(tmp_path / "export" / "model.onnx"))
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims[2:] == [res[1], res[0]] and out_dims[2:] == [res[1] * upscale, res[0] * upscale]
    assert not any(n.domain not in ("", "ai.onnx") for n in proto.graph.node)


def test_cli_rejects_an_unknown_upscale(cli_run, tmp_path):
    code, _, err = cli_run("train", "--out", tmp_path / "r", "--upscale", "3")
    assert code == 2 and "--upscale" in err and "Traceback" not in err


def test_training_refuses_an_output_above_the_native_frames(shared_folder, tmp_path):
    from edgeseg.trainer import TrainConfig, train

    with pytest.raises(ConfigError, match="--upscale 4: the output 96x72 exceeds the native 48x36 frames of folder"):
        train(TrainConfig(out=str(tmp_path / "r"), res=(24, 18), dataset="folder", data=str(shared_folder), model="tiny", iters=1,
                          batch=2, progress=False, workers=0, device="cpu", upscale=4))


def test_guided_model_goes_through_int8_and_the_tensorrt_double(guided_run, tmp_path, monkeypatch):
    import sys

    from trt_double import GENERATIONS, make_tensorrt

    from edgeseg.export import OnnxOptions
    from edgeseg.export.int8 import Int8Options
    from edgeseg.export.trt_build import TrtOptions
    from edgeseg.runtime.trt_runner import TrtRunner

    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(GENERATIONS["10"]))
    monkeypatch.setattr(TrtRunner, "default_device", "cpu")
    monkeypatch.setattr("edgeseg.runtime.fingerprint.gpu_info", lambda: {"gpu": "Fake GPU", "compute_capability": "8.7", "cuda": None})
    result = export(guided_run / "last.pt", tmp_path, OnnxOptions(), images=2,
                          int8=Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=2, budget=100.0),
                          trt=TrtOptions(precision="int8", int8_mode="explicit"))
    assert parity_of(result, "int8")["passed"] and parity_of(result, "tensorrt")["passed"]
    qdq = onnx.load(str(tmp_path / "model.int8.onnx"))
    assert [d.dim_value for d in qdq.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 36, 48]
    assert parity_of(result, "tensorrt")["n_images"] == 2


def test_flip_tta_is_mirror_symmetric_and_exports_in_graph(tiny_checkpoint, tmp_path, cli_run, shared_folder):
    from edgeseg import runtime
    from edgeseg.export import OnnxOptions
    from edgeseg.models import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    plain, tta = model_from_checkpoint(ckpt).eval(), model_from_checkpoint(ckpt, tta="flip").eval()
    x = torch.randn(2, 3, 36, 48)
    with torch.no_grad():
        a, b = tta(x), tta(x.flip(-1))
        assert torch.allclose(a, b.flip(-1), atol=1e-5)  # mirror in, mirror out: what averaging with the mirror buys
        assert not torch.allclose(plain(x), plain(x.flip(-1)).flip(-1), atol=1e-3)  # the bare model is not symmetric
        assert torch.allclose(a, 0.5 * (plain(x) + plain(x.flip(-1)).flip(-1)), atol=1e-5)
    result = export(tiny_checkpoint, tmp_path, OnnxOptions(tta="flip"), images=3)
    assert parity_of(result)["passed"] and parity_of(result)["max_abs_logit_diff"] < 1e-4  # against the checkpoint with --tta flip
    runner = runtime.load(tmp_path / "model.onnx")
    assert runner.meta.extra["tta"] == "flip"
    with runner:
        np.testing.assert_allclose(runner.infer(x.numpy())["logits"], a.numpy(), atol=1e-4)
    code, _, err = cli_run("eval", "--model", tmp_path / "model.onnx", "--tta", "flip", "--data", shared_folder)
    assert code == 2 and "fixed in the graph" in err and err.count("\n") == 1
    code, _, err = cli_run("eval", "--model", tmp_path / "model.onnx", "--reference", tiny_checkpoint, "--data", shared_folder,
                           "--json", tmp_path / "p.json", "--quiet")
    assert code == 0, err  # the checkpoint reference runs with the TTA the exported graph has
    assert json.loads((tmp_path / "p.json").read_text())["parity"]["pixel_agreement"] > 99.99
    code, _, err = cli_run("eval", "--model", tiny_checkpoint, "--tta", "mirror")
    assert code == 2 and "--tta" in err
    code, out, err = cli_run("eval", "--model", tiny_checkpoint, "--tta", "flip", "--json", tmp_path / "e.json", "--quiet")
    assert code == 0, err
    from edgeseg.data import DataSource
    from edgeseg.tasks.evaluate import evaluate_model

    assert json.loads((tmp_path / "e.json").read_text())["miou"] == pytest.approx(
        evaluate_model(tmp_path / "model.onnx", source=DataSource(data=str(shared_folder)))["miou"], abs=0.01)


def _exported_against_checkpoint(model, cfg, tmp_path, x):
    """``model`` saved as an edgeseg checkpoint, exported by edgeseg's exporter and run on ONNX Runtime
    CPU with ``x``: (the ONNX path, ONNX Runtime's logits, the model's own)."""
    from edgeseg.export import OnnxOptions, export_onnx
    from edgeseg.data.base import DatasetInfo
    from edgeseg.models import Checkpoint, ModelMeta
    from edgeseg.trainer.checkpoint import save_checkpoint

    n = cfg.num_classes
    meta = ModelMeta(cfg, DatasetInfo("folder", tuple(f"c{i}" for i in range(n)), ((0, 0, 0),) * n))
    save_checkpoint(tmp_path / "m.pt", Checkpoint(meta, model.state_dict()))
    path, _ = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx", OnnxOptions())
    with torch.no_grad():
        expected = model(x).numpy()
    with runtime.load(path, device="cpu") as runner:
        got = runner.infer(x.numpy())["logits"]
    return path, got, expected


@pytest.mark.parametrize("options", [{}, {"guide_kernel": 3}, {"guide_width": 0}])
def test_per_class_guide_exports_to_onnx_with_the_checkpoints_scores(tmp_path, options):
    """The per-class guide with more classes than hidden guide channels (the path that resizes the
    hidden map) through edgeseg's exporter: ONNX Runtime returns the checkpoint's native scores."""
    torch.manual_seed(0)
    cfg = ModelConfig("tiny", 12, res=(24, 18), refine="guided", native_res=(48, 36), options=options)
    model = build_model(cfg).eval()
    torch.nn.init.normal_(model.refiner.guide[-1].weight)  # a guide that varies across the frame
    _, got, expected = _exported_against_checkpoint(model, cfg, tmp_path, torch.randn(1, 3, 36, 48))
    assert got.shape == (1, 12, 36, 48)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_stride_one_upsampler_exports_to_onnx_with_the_checkpoints_scores(tmp_path):
    """``--upscale 2 --model-opt upscale_input=4`` through edgeseg's exporter: plain ONNX operators,
    and ONNX Runtime returns the checkpoint's scores at twice the input resolution."""
    torch.manual_seed(0)
    cfg = ModelConfig("tiny", 4, res=(25, 19), upscale=2, options={"upscale_input": 4})
    model = build_model(cfg).eval()
    torch.nn.init.normal_(model.upsampler.expand.weight, std=0.1)
    path, got, expected = _exported_against_checkpoint(model, cfg, tmp_path, torch.randn(1, 3, 19, 25))
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "DepthToSpace" in ops and ops <= {"Conv", "Relu", "Resize", "Concat", "DepthToSpace", "Add", "Slice", "Clip",
                                               "Constant", "Shape", "Gather", "Cast", "Mul", "Sub", "Div", "ReduceMean",
                                               "Sigmoid", "MaxPool", "AveragePool", "BatchNormalization", "Identity"}
    assert got.shape == (1, 4, 38, 50)
    np.testing.assert_allclose(got, expected, atol=1e-4)
