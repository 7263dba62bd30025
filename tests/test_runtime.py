"""One contract, run against every backend that can run here."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from edgeseg import runtime
from edgeseg.runtime.spec import RunnerSpec
from edgeseg.errors import ConfigError, DataError, EdgesegError
from edgeseg.export import export_onnx
from edgeseg.optional import available

# "tensorrt-double" runs the TensorRT runner against tests/trt_double.py here and in CI, so that a
# broken fixture or engine path fails before the first GPU does; "tensorrt" is the real thing.
# Every backend in runtime.registry.BACKENDS has an entry here (checked below).
BACKENDS = ["torch", "onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(not available("openvino"), reason="openvino not installed")),
            "tensorrt-double",
            pytest.param("tensorrt", marks=[pytest.mark.gpu, pytest.mark.skipif(not available("tensorrt"), reason="tensorrt not installed")])]


def test_every_registered_backend_is_in_the_contract():
    from edgeseg.runtime.registry import BACKENDS as REGISTERED

    named = {b if isinstance(b, str) else b.values[0] for b in BACKENDS}
    assert set(REGISTERED) <= named


def build_test_engine(onnx_path, engine_path):
    """An FP32 engine of ``onnx_path`` with its metadata, as 'edgeseg export --trt' builds it."""
    from edgeseg.export.trt_build import TrtOptions, build_engine
    from edgeseg.runtime.ort_runner import meta_from_graph, read_onnx

    meta = meta_from_graph(read_onnx(onnx_path), onnx_path, strict=True)
    return build_engine(onnx_path, engine_path, TrtOptions(precision="fp32"), meta=meta)["engine"]


@pytest.fixture(scope="module")
def model_files(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("backends")
    onnx_path, _ = export_onnx(tiny_checkpoint, out / "model.onnx")
    files = {"torch": tiny_checkpoint, "onnxruntime": onnx_path}
    if available("openvino"):
        from edgeseg.export.openvino_ir import write_ir

        files["openvino"] = write_ir(onnx_path, out / "model.xml")
    if available("tensorrt"):
        files["tensorrt"] = build_test_engine(onnx_path, out / "model.engine")
    return files


@pytest.fixture
def backend_file(request, model_files, monkeypatch, tmp_path):
    backend = request.param
    if backend != "tensorrt-double":
        return backend, model_files[backend]
    import sys

    from trt_double import GENERATIONS, make_tensorrt

    from edgeseg.runtime.trt_runner import TrtRunner

    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(GENERATIONS["10"]))
    monkeypatch.setattr(TrtRunner, "default_device", "cpu")  # the double runs engines on host memory
    monkeypatch.setattr("edgeseg.runtime.fingerprint.gpu_info", lambda: {"gpu": "Fake GPU", "compute_capability": "8.7", "cuda": None})
    return "tensorrt", build_test_engine(model_files["onnxruntime"], tmp_path / "model.engine")


@pytest.mark.parametrize("backend_file", BACKENDS, indirect=True)
def test_runner_contract(backend_file):
    backend, path = backend_file
    runner = runtime.load(path, device="auto")
    assert runner.backend == backend and runner.meta.num_classes == 5 and tuple(runner.meta.res) == (48, 36)
    x = np.random.default_rng(0).standard_normal(runner.input_shape(2)).astype(np.float32)
    with pytest.raises(EdgesegError, match="not active"):
        runner.infer(x)
    with runner:
        assert runner.is_active
        out = runner.infer(x)
        assert out["logits"].shape == (2, 5, 36, 48) and out["logits"].dtype == np.float32
        with pytest.raises(ConfigError, match="input shape"):
            runner.infer(x[:, :, :10])
        with pytest.raises(ConfigError, match="dtype"):
            runner.infer(x.astype(np.float64))
    assert not runner.is_active
    runner.activate()
    again = runner.infer(x)["logits"]
    runner.deactivate()
    np.testing.assert_allclose(again, out["logits"], atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_bench_and_predict(backend, model_files, tmp_path, cli_run, shared_folder):
    code, out, err = cli_run("bench", "--model", model_files[backend], "--iters", "3", "--warmup", "1", "--json", tmp_path / "b.json", "--quiet")
    assert code == 0, err
    result = json.loads((tmp_path / "b.json").read_text())
    row = result["results"][0]
    assert row["backend"] == backend and row["model_only"]["p50_ms"] > 0 and row["end_to_end"]["throughput_ips"] > 0
    parts = row["breakdown_p50_ms"]  # where an end-to-end call's time goes
    assert set(parts) == {"pre", "network", "post"} and all(v > 0 for v in parts.values())
    assert sum(parts.values()) <= row["end_to_end"]["p50_ms"] * 1.5 and "pre" in out and "post" in out
    code, out, err = cli_run("predict", "--model", model_files[backend], shared_folder / "val" / "images", shared_folder / "train/images/s0.png",
                             "--out", tmp_path / "pred", "--quiet")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert "s0_label.png" in names and "s0_2_overlay.png" in names and len(names) == 8
    label = np.array(Image.open(tmp_path / "pred" / "s1_label.png"))
    assert label.shape == (36, 48) and label.max() < 5
    assert np.array(Image.open(tmp_path / "pred" / "s1_overlay.png")).shape == (36, 48, 3)


def test_bench_times_on_the_data_asked_for_or_says_what_stood_in(model_files, tmp_path, cli_run, monkeypatch):
    """A --split (or --dataset, --data, --skip-bad) that cannot be opened is the user's error, never
    timed on synthetic images instead; synthetic images stand in only for a model's own data set
    that cannot be opened, and bench says so."""
    base = ["bench", "--model", model_files["onnxruntime"], "--iters", "1", "--warmup", "0", "--quiet"]
    code, _, err = cli_run(*base, "--split", "nonsense")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err  # not timed on synthetic images
    from edgeseg.tasks import bench as bench_module

    def unopenable(self, *a, **k):
        raise bench_module.DataError("/moved/data: folder data set root not found")

    monkeypatch.setattr(bench_module.DataSource, "open", unopenable)
    code, out, err = cli_run(*base)
    assert code == 0 and "end to end from synthetic images: the model's data set cannot be opened" in err, err
    code, out, err = cli_run(*base, "--split", "val")  # typed, at its default: asked for, so refused, not replaced
    assert code == 2 and "/moved/data: folder data set root not found" in err and err.count("\n") == 1, err


def test_bench_two_models_side_by_side(model_files):
    from edgeseg.tasks.bench import bench

    result = bench([model_files["torch"], model_files["onnxruntime"]], iters=2, warmup=0)
    assert [r["backend"] for r in result["results"]] == ["torch", "onnxruntime"]
    for row in result["results"]:
        for kind in ("model_only", "end_to_end"):
            st = row[kind]
            assert 0 < st["p50_ms"] <= st["p90_ms"] <= st["p99_ms"] and st["throughput_ips"] > 0
    p50 = [r["model_only"]["p50_ms"] for r in result["results"]]
    ratios = result["p50_ratio_to_first"]
    assert ratios[str(model_files["torch"])] == 1.0
    assert ratios[str(model_files["onnxruntime"])] == pytest.approx(p50[1] / p50[0], abs=1e-3)


def test_bench_isolates_models_in_worker_processes_or_runs_them_in_process(model_files, cli_run, tmp_path, monkeypatch):
    import onnx

    from edgeseg.tasks.bench import bench

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    models = [model_files["torch"], model_files["onnxruntime"]]
    alone = bench(models, iters=3, warmup=1, progress=False, block=2)
    # PyTorch's OpenMP threads wait passively beside another engine; the PyTorch worker keeps the default
    assert [r["ran"]["omp_wait_policy"] for r in alone["results"]] == ["default", "PASSIVE"]
    assert "OMP_WAIT_POLICY" not in __import__("os").environ
    together = bench(models, iters=3, warmup=1, progress=False, isolate=False)
    assert alone["isolation"].startswith("a worker process per model") and together["isolation"].startswith("one process")
    for result in (alone, together):
        assert [(r["model_only"]["n"], r["end_to_end"]["n"]) for r in result["results"]] == [(3, 3), (3, 3)]
    # A model that only fails on activation fails inside its worker: one line, exit 2, no traceback.
    broken = onnx.load(str(model_files["onnxruntime"]))
    broken.opset_import[0].version = 40
    onnx.save(broken, str(tmp_path / "future.onnx"))
    code, _, err = cli_run("bench", "--model", model_files["onnxruntime"], "--model", tmp_path / "future.onnx", "--iters", "1", "--quiet")
    assert code == 2 and "opset 40" in err and err.count("\n") == 1 and "Traceback" not in err


def test_predict_bad_inputs(model_files, tmp_path):
    from edgeseg.tasks.predict import predict

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt: not an image"):
        predict(model_files["torch"], [tmp_path / "notes.txt"], tmp_path / "o")
    with pytest.raises(DataError, match="missing.png: input not found"):
        predict(model_files["torch"], [tmp_path / "missing.png"], tmp_path / "o")
    Image.fromarray(np.zeros((10, 40, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(DataError, match="aspect ratio.*--strict"):
        predict(model_files["torch"], [tmp_path / "wide.png"], tmp_path / "o", RunnerSpec(strict=True))
    assert predict(model_files["torch"], [tmp_path / "wide.png"], tmp_path / "o")["outputs"] == 1


def test_predict_never_replaces_inputs_or_earlier_outputs_unasked(model_files, tmp_path):
    """Earlier outputs are replaced only with exist_ok; an output that would be an input is refused
    even then; a bad image among good ones leaves the folder as it was (no new files)."""
    from edgeseg.tasks.predict import predict

    Image.fromarray(np.zeros((36, 48, 3), np.uint8)).save(tmp_path / "a.png")
    assert predict(model_files["torch"], [tmp_path / "a.png"], tmp_path / "o", progress=False)["outputs"] == 1
    before = (tmp_path / "o" / "a_label.png").read_bytes()
    with pytest.raises(ConfigError, match="a_label.png exists .* --exist-ok"):
        predict(model_files["torch"], [tmp_path / "a.png"], tmp_path / "o", progress=False)
    assert predict(model_files["torch"], [tmp_path / "a.png"], tmp_path / "o", progress=False, exist_ok=True)["outputs"] == 1
    (tmp_path / "b_overlay.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    for exist_ok in (False, True):
        with pytest.raises(ConfigError, match="would replace the input"):
            predict(model_files["torch"], [tmp_path / "b.png", tmp_path / "b_overlay.png"], tmp_path, exist_ok=exist_ok)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "bad" / "z.png").write_bytes((tmp_path / "a.png").read_bytes()[:40])
    with pytest.raises(DataError, match="z.png"):
        predict(model_files["torch"], [tmp_path / "bad"], tmp_path / "o2", progress=False)
    assert not (tmp_path / "o2").exists() or not [p for p in (tmp_path / "o2").iterdir() if p.suffix == ".png"]
    assert (tmp_path / "o" / "a_label.png").read_bytes() == before
    # --exist-ok, and a bad image after a good one: the earlier outputs stay as they were (the good one's were replaced before)
    earlier = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    (tmp_path / "o" / "a_label.png").write_bytes(b"an earlier run's")
    earlier["a_label.png"] = b"an earlier run's"
    with pytest.raises(DataError, match="z.png"):
        predict(model_files["torch"], [tmp_path / "bad"], tmp_path / "o", progress=False, exist_ok=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == earlier  # nothing staged left either


def test_predict_interrupted_keeps_the_finished_pairs_whole_and_says_how_many(model_files, tmp_path, monkeypatch, caplog):
    from edgeseg.tasks import predict as predict_task

    for name in "abc":
        Image.fromarray(np.full((36, 48, 3), 50, np.uint8)).save(tmp_path / f"{name}.png")
    real, calls = predict_task.overlay, []

    def interrupt_on_the_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(predict_task, "overlay", interrupt_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        predict_task.predict(model_files["torch"], [tmp_path / n for n in ("a.png", "b.png", "c.png")], tmp_path / "o", progress=False)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_label.png", "a_overlay.png", "b_label.png", "b_overlay.png"]
    assert "interrupted: wrote 2 of 3 label and overlay pairs" in caplog.text


def make_clip(path, frames=8, size=(96, 72), rate=10):
    """A short H.264 (or MPEG-4) clip of synthetic street scenes."""
    import av

    from edgeseg.data.synthetic import Synthetic

    ds = Synthetic("val")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.array(Image.fromarray(ds[i % len(ds)].image).resize(size))
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_predict_on_a_video_file_writes_an_overlay_video(model_files, tmp_path, cli_run):
    av = pytest.importorskip("av", reason="video needs the 'video' extra")
    clip = make_clip(tmp_path / "drive.mp4")
    code, out, err = cli_run("predict", "--model", model_files["onnxruntime"], clip, "--out", tmp_path / "pred", "--labels", "--quiet")
    assert code == 0, err
    assert "decode" in out and "infer" in out and "encode" in out
    video = tmp_path / "pred" / "drive_overlay.mp4"
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert (s.width, s.height) == (96, 72) and len(frames) == 8 and int(round(float(s.average_rate))) == 10
    assert len(list((tmp_path / "pred" / "drive_labels").glob("*.png"))) == 8
    # --every 2 halves the frames; an existing output is refused without --exist-ok
    image = tmp_path / "still.png"
    Image.fromarray(np.zeros((72, 96, 3), np.uint8)).save(image)
    code, _, err = cli_run("predict", "--model", model_files["onnxruntime"], image, clip, "--out", tmp_path / "pred", "--quiet")
    assert code == 2 and "already exists" in err
    assert not (tmp_path / "pred" / "still_label.png").exists()  # refused before the image's outputs were written
    code, _, err = cli_run("predict", "--model", model_files["torch"], clip, "--out", tmp_path / "pred", "--every", "2",
                           "--exist-ok", "--quiet")
    assert code == 0, err
    with av.open(str(video)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4


def test_frame_labels_of_a_video_replace_only_earlier_frame_labels_and_only_when_whole(model_files, tmp_path, cli_run):
    """predict --labels on a video: an existing <stem>_labels folder is refused without --exist-ok;
    one holding a file predict did not write is refused even with it (and kept); with --exist-ok the
    earlier frames give way whole, and a source that fails leaves the earlier frames as they were."""
    pytest.importorskip("av", reason="video needs the 'video' extra")
    clip = make_clip(tmp_path / "drive.mp4")
    base = ["predict", "--model", model_files["onnxruntime"], "--out", tmp_path / "pred", "--labels", "--quiet"]
    labels = tmp_path / "pred" / "drive_labels"
    labels.mkdir(parents=True)
    for n in range(12):  # an earlier, longer run's frames
        (labels / f"{n:06d}.png").write_bytes(b"earlier")
    code, _, err = cli_run(*base, clip)
    assert code == 2 and "already holds frame labels" in err and len(err.strip().splitlines()) == 1, err
    (labels / "notes.txt").write_text("mine")
    code, _, err = cli_run(*base, clip, "--exist-ok")
    assert code == 2 and "holds files predict did not write (notes.txt)" in err, err
    assert (labels / "notes.txt").read_text() == "mine" and len(list(labels.glob("*.png"))) == 12
    (labels / "notes.txt").unlink()
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    (tmp_path / "bad_labels").mkdir()
    code, _, err = cli_run(*base[:4], tmp_path, *base[5:], tmp_path / "bad.mp4", "--exist-ok")  # --out is the folder holding bad_labels
    assert code == 2 and "cannot open this video source" in err and (tmp_path / "bad_labels").is_dir()
    code, _, err = cli_run(*base, clip, "--exist-ok")
    assert code == 0, err
    assert sorted(p.name for p in labels.iterdir()) == [f"{n:06d}.png" for n in range(8)]  # this run's frames, none of the earlier
    assert not list((tmp_path / "pred").glob("*.partial"))


def test_strict_refuses_a_video_of_another_aspect_ratio_as_it_does_images(model_files, tmp_path, cli_run):
    pytest.importorskip("av", reason="video needs the 'video' extra")
    clip = make_clip(tmp_path / "wide.mp4", size=(96, 48))  # 2:1 against the model's 4:3
    base = ["predict", "--model", model_files["onnxruntime"], clip, "--quiet"]
    code, _, err = cli_run(*base, "--out", tmp_path / "strict", "--strict")
    assert code == 2 and "another aspect ratio than the model input" in err and "(--strict)" in err, err
    assert not list((tmp_path / "strict").glob("*.mp4*"))
    code, _, err = cli_run(*base, "--out", tmp_path / "loose")
    assert code == 0 and (tmp_path / "loose" / "wide_overlay.mp4").is_file(), err


def test_video_sources_that_cannot_be_used_are_one_line_errors(model_files, tmp_path, cli_run):
    pytest.importorskip("av", reason="video needs the 'video' extra")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    for source, expect in [(tmp_path / "missing.mp4", "missing.mp4: video file not found"),
                           (tmp_path / "broken.mp4", "broken.mp4: cannot open this video source"),
                           ("97", "camera 97: /dev/video97 does not exist")]:
        code, _, err = cli_run("predict", "--model", model_files["onnxruntime"], source, "--out", tmp_path / "o", "--quiet")
        assert code == 2 and expect in err and len(err.strip().splitlines()) == 1, (source, err)
    assert not list((tmp_path / "o").glob("*.mp4*"))


def test_channel_argmax_matches_argmax_with_first_index_on_ties():
    from edgeseg.runtime.processing import channel_argmax, scores_to_labels

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (2, 9, 37, 53), generator=g).float()  # many ties
    assert torch.equal(channel_argmax(scores), scores.argmax(1))
    up = torch.nn.functional.interpolate(scores, size=(74, 106), mode="bilinear", align_corners=False)
    assert torch.equal(scores_to_labels(scores, (74, 106)), up.argmax(1))


def test_bench_names_tell_same_named_models_apart():
    from edgeseg.tasks.bench import short_names

    assert short_names(["runs/a/best.pt", "runs/a/export/model.onnx"]) == ["best.pt", "model.onnx"]
    assert short_names(["/tmp/x/export/model.onnx", "/tmp/y/export/model.onnx"]) == ["x/export/model.onnx", "y/export/model.onnx"]
    assert short_names(["m.onnx", "m.onnx"]) == ["m.onnx", "m.onnx"]


def test_ctrl_c_keeps_a_playable_video_and_no_extra_means_one_line(model_files, tmp_path, monkeypatch):
    av = pytest.importorskip("av", reason="video needs the 'video' extra")
    from edgeseg.tasks.video import predict_video

    clip = make_clip(tmp_path / "drive.mp4", frames=10)
    runner = runtime.load(model_files["onnxruntime"], device="cpu").activate()
    real, calls = runner.infer, []

    def infer(x):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(runner, "infer", infer)
    result = predict_video(runner, str(clip), tmp_path / "out")
    assert result["interrupted"] and result["frames"] == 3
    with av.open(result["video"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
    from edgeseg.errors import MissingDependencyError

    monkeypatch.setitem(__import__("sys").modules, "av", None)
    with pytest.raises(MissingDependencyError, match=r'edgeseg\[video\]'):
        predict_video(runner, str(clip), tmp_path / "out2")


def test_a_stream_that_drops_is_reopened_a_bounded_number_of_times(model_files, tmp_path):
    """An HTTP stream on loopback that breaks off after part of the clip, every time it is opened."""
    av = pytest.importorskip("av", reason="video needs the 'video' extra")
    import http.server
    import threading

    from edgeseg.tasks.video import predict_video

    # MPEG-TS streams decode up to the break; serve the first half of one, then drop the connection
    src = tmp_path / "drive.ts"
    with av.open(str(src), "w", format="mpegts") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 72, "yuv420p"
        from edgeseg.data.synthetic import Synthetic

        ds = Synthetic("val")
        for i in range(40):
            img = np.array(Image.fromarray(ds[i % len(ds)].image).resize((96, 72)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = src.read_bytes()
    opened = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server hook
            opened.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # then the connection closes mid-stream

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        runner = runtime.load(model_files["onnxruntime"], device="cpu").activate()
        url = f"http://127.0.0.1:{server.server_address[1]}/live.ts"
        result = predict_video(runner, url, tmp_path / "out", reconnects=2)
    finally:
        server.shutdown()
    assert len(opened) == 3  # the first connection and two reconnects, then it stopped with what it had
    assert result["frames"] > 0 and not result["interrupted"]
    with av.open(result["video"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == result["frames"]


def test_the_command_runs_exported_models_with_pytorch_threads_waiting_passively(model_files, shared_folder):
    import os
    import subprocess
    import sys

    from edgeseg.launch import wait_policy

    assert wait_policy(["eval", "--model", "m.onnx"]) == "PASSIVE" and wait_policy(["predict", "--model=x/m.XML", "a.png"]) == "PASSIVE"
    assert wait_policy(["eval", "--model", "best.pt"]) is None and wait_policy(["train", "--out", "r.onnx"]) is None
    assert wait_policy(["bench", "--model", "m.onnx"]) is None and wait_policy([]) is None  # bench sets it per worker
    # the real entry point, as `python -m edgeseg`: the variable is set before PyTorch loads, a user's value is kept
    probe = ("import os, sys, types; sys.argv = ['edgeseg'] + sys.argv[1:]; cli = types.ModuleType('edgeseg.cli'); "
             "cli.main = lambda: print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules); sys.modules['edgeseg.cli'] = cli; "
             "import edgeseg.launch; edgeseg.launch.main()")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe, "eval", "--model", str(model_files["onnxruntime"])], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == ["PASSIVE", "False"]  # and PyTorch not yet loaded when it was set
    out = subprocess.run([sys.executable, "-c", probe, "eval", "--model", str(model_files["onnxruntime"])],
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True, check=True).stdout.split()
    assert out[-2] == "ACTIVE"


def test_runner_options_a_backend_or_device_would_not_honour_are_refused(model_files, monkeypatch, tmp_path, shared_folder):
    """--threads on a TensorRT engine; --providers against --device; cuda:N reaching ONNX Runtime as
    its device id (a stand-in onnxruntime with a CUDA provider records what it was given); eval
    --strict on images of another shape; --boundary-band with --reference."""
    import types

    from edgeseg.runtime import ort_runner
    from edgeseg.runtime.registry import BACKENDS
    from edgeseg.tasks.evaluate import evaluate_model

    with pytest.raises(ConfigError, match="--threads 2: x.engine runs on tensorrt"):
        RunnerSpec(threads=2).check_for(BACKENDS["tensorrt"], "x.engine")
    RunnerSpec(strict=True).check_for(BACKENDS["tensorrt"], "x.engine")  # the image check is every backend's
    given = {}

    class Session:
        def __init__(self, path, sess_options=None, providers=None):
            given["providers"] = providers

        def get_providers(self):
            return [p[0] if isinstance(p, tuple) else p for p in given["providers"]]

    real = ort_runner._ort()
    fake = types.SimpleNamespace(get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
                                 InferenceSession=Session, SessionOptions=real.SessionOptions, __version__=real.__version__)
    monkeypatch.setattr(ort_runner, "_ort", lambda: fake)
    for device, providers in (("cuda", "CPUExecutionProvider"), ("cpu", "CUDAExecutionProvider")):
        with pytest.raises(ConfigError, match=f"--providers .*not --device {device}"):
            ort_runner.OrtRunner.from_file(model_files["onnxruntime"], RunnerSpec(device=device, providers=providers))
    runner = ort_runner.OrtRunner.from_file(model_files["onnxruntime"], RunnerSpec(device="cuda:1"))
    try:
        runner.activate()
    except Exception:
        pass  # the stand-in session cannot run; what it was given is what counts
    assert given["providers"][0] == ("CUDAExecutionProvider", {"device_id": 1}) and given["providers"][-1] == "CPUExecutionProvider"
    monkeypatch.undo()

    with pytest.raises(ConfigError, match="--boundary-band"):
        evaluate_model(model_files["torch"], reference=model_files["torch"], boundary=0.05, progress=False)
    import shutil

    wide = tmp_path / "wide"
    shutil.copytree(shared_folder, wide)
    for img in (wide / "val" / "images").iterdir():
        Image.open(img).resize((96, 36)).save(img)
    for mask in (wide / "val" / "masks").iterdir():
        Image.open(mask).resize((96, 36), Image.NEAREST).save(mask)
    from edgeseg.data import DataSource

    with pytest.raises(DataError, match="96x36 images have another aspect ratio .*--strict"):
        evaluate_model(model_files["torch"], RunnerSpec(strict=True), DataSource("folder", str(wide)), progress=False)


def test_bench_says_when_a_fixed_batch_model_ran_a_batch_in_calls(model_files):
    from edgeseg.tasks.bench import bench, format_bench

    result = bench([model_files["onnxruntime"]], batch=2, iters=2, warmup=1, progress=False)
    assert result["results"][0]["ran"]["fixed_batch"] == 1
    assert "takes batches of 1: each batch of 2 ran as 2 calls" in format_bench(result)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_model_scored_against_another_class_list_of_the_same_length_is_refused(backend, model_files, shared_folder, tmp_path):
    import shutil

    from edgeseg.data import DataSource
    from edgeseg.tasks.evaluate import evaluate_model

    other = tmp_path / "other"
    shutil.copytree(shared_folder, other)
    (other / "classes.json").write_text(json.dumps({"names": ["e", "d", "c", "b", "a"], "ignore_index": 255}))
    with pytest.raises(ConfigError, match=r"the model's classes \(a, b, c, d, e; 5 classes\) are not those of data set"):
        evaluate_model(model_files[backend], source=DataSource("folder", str(other)), progress=False)
    with pytest.raises(ConfigError, match=r"the model's classes \(a, b, c, d, e; 5 classes\) are not those of data set"):
        evaluate_model(model_files[backend], source=DataSource("folder", str(other)), progress=False, reference=model_files["torch"])


def test_predict_turns_a_photo_as_its_exif_orientation_says(model_files, tmp_path):
    """A camera's JPEG stored landscape with orientation 6 (shown portrait): its label and overlay
    are portrait, as the photo is seen; a data set's images are read as stored."""
    from edgeseg.data.base import read_image
    from edgeseg.tasks.predict import predict

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(np.full((36, 48, 3), 90, np.uint8)).save(tmp_path / "photo.jpg", exif=exif)
    predict(model_files["torch"], [tmp_path / "photo.jpg"], tmp_path / "o", progress=False)
    assert Image.open(tmp_path / "o" / "photo_label.png").size == (36, 48)
    assert Image.open(tmp_path / "o" / "photo_overlay.png").size == (36, 48)
    assert read_image(tmp_path / "photo.jpg").shape == (36, 48, 3)


def test_folder_inputs_refuse_an_output_folder_inside_them_and_say_what_they_leave_out(model_files, tmp_path, cli_run):
    """predict and autolabel read a folder with its sub-folders: an --out inside it would have its
    outputs read as inputs by the next run (label maps segmented as photos); files of other types are
    said, not skipped in silence; WebP and TIFF images are read."""
    images = tmp_path / "in"
    images.mkdir()
    for suffix in (".png", ".webp", ".tif"):
        Image.fromarray(np.full((36, 48, 3), 80, np.uint8)).save(images / f"a{suffix[1:]}{suffix}")
    (images / "notes.txt").write_text("not an image")
    (images / ".ipynb_checkpoints").mkdir()  # hidden files and folders are not inputs
    Image.fromarray(np.full((36, 48, 3), 80, np.uint8)).save(images / ".ipynb_checkpoints" / "apng-checkpoint.png")
    for command in (["predict", "--model", model_files["torch"], images], ["autolabel", "--model", model_files["torch"], "--images", images]):
        code, _, err = cli_run(*command, "--out", images / "out", "--quiet")
        assert code == 2 and err.count("\n") == 1 and "inside the input folder" in err, err
    code, out, err = cli_run("predict", "--model", model_files["torch"], images, "--out", tmp_path / "out", "--quiet")
    assert code == 0 and "1 file(s) that are not images" in err and "notes.txt" in err, err
    assert sorted(p.name for p in (tmp_path / "out").glob("*_label.png")) == ["apng_label.png", "atif_label.png", "awebp_label.png"]


def test_input_folders_predict_cannot_read_are_refused_or_said(tmp_path, monkeypatch, caplog):
    """A folder that cannot be read is refused as such (not "no images in this folder"); sub-folders
    that cannot be read, which rglob passes over in silence, are said. Permissions are simulated
    (os.access): as root, which CI may be, every folder reads."""
    import os
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from edgeseg.errors import DataError
    from edgeseg.tasks import predict as predict_mod

    for rel in ("top/a.png", "top/locked/b.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / rel)
    real = os.access
    locked = {tmp_path / "top"}
    monkeypatch.setattr(predict_mod.os, "access", lambda p, mode: Path(p) not in locked and real(p, mode))
    with pytest.raises(DataError, match="top: this folder cannot be read"):
        predict_mod.collect_inputs([tmp_path / "top"])
    locked = {tmp_path / "top" / "locked"}
    with caplog.at_level("WARNING"):
        images, _ = predict_mod.collect_inputs([tmp_path / "top"])
    assert "1 sub-folder(s) cannot be read" in caplog.text and images
