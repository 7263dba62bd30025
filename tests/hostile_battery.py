"""A battery of bad inputs and faults across every command, run in one command (and in the suite,
tests/test_hostile_inputs.py):

    python tests/hostile_battery.py --json benchmarks/results/hostile_inputs.json

Each case runs the CLI in-process (tiny model and data made here) and is judged: *handled* means
exit code 2 (or 1 for a failed check) with one line on stderr and no traceback, or success where
the input is legitimate; *not handled* is anything else (a traceback, several lines, a wrong exit
code). Artefacts that existed before a failing case must be unchanged after it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest's data makers


def run_cli(args) -> tuple[int, str, str]:
    from edgeseg.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - an escaped exception is a finding
            import traceback

            err.write("Traceback (most recent call last):\n" + "".join(traceback.format_exception(exc)))
            code = 99
    return code, out.getvalue(), err.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from conftest import make_folder_dataset

    from edgeseg.trainer import TrainConfig, train

    tmp = Path(tempfile.mkdtemp(prefix="edgeseg-hostile-"))
    data = make_folder_dataset(tmp / "data")
    run = tmp / "run"
    train(TrainConfig(out=str(run), res=(48, 36), dataset="folder", data=str(data), model="tiny", epochs=1, batch=2,
                      progress=False, workers=0, device="cpu"))
    ckpt = run / "best.pt"
    exp = tmp / "exp"
    code, _, err = run_cli(["export", "--model", ckpt, "--out", exp, "--verify-images", "2", "--dataset", "folder", "--data", data, "--quiet"])
    assert code == 0, err
    onnx_path = exp / "model.onnx"
    img = tmp / "img.png"
    Image.fromarray(np.zeros((36, 48, 3), np.uint8)).save(img)

    # files of the wrong kind
    bad = tmp / "bad"
    bad.mkdir()
    files = {
        "empty.pt": b"", "garbage.pt": os.urandom(200), "text.pt": b"hello", "empty.onnx": b"", "garbage.onnx": os.urandom(300),
        "text.onnx": b"not onnx", "empty.engine": b"", "garbage.engine": os.urandom(100), "model.xyz": b"x", "image.png": b"not a png",
        "truncated.pt": ckpt.read_bytes()[:1000], "truncated.onnx": onnx_path.read_bytes()[:500],
        "empty.xml": b"", "garbage.xml": os.urandom(300), "text.xml": b"<net><layers/></net>",
    }
    for name, content in files.items():
        (bad / name).write_bytes(content)
    (bad / "image_only.png").write_bytes(img.read_bytes())
    (bad / "list.engine.json").write_text("[1, 2]")
    (bad / "list.engine").write_bytes(b"x")
    (bad / "adir.pt").mkdir()
    (bad / "afile").write_text("x")

    # (name, argv, expectation: "ok", "check" or "error", the last optionally "error:TEXT", TEXT being what the error must say)
    cases: list[tuple[str, list, str]] = []
    for name in files:
        cases.append((f"eval --model {name}", ["eval", "--model", bad / name, "--dataset", "folder", "--data", data, "--quiet"], "error"))
    for name in ("empty.pt", "garbage.pt", "truncated.pt", "garbage.onnx", "model.xyz"):
        cases.append((f"export --model {name}", ["export", "--model", bad / name, "--out", tmp / "x1", "--quiet"], "error"))
        cases.append((f"bench --model {name}", ["bench", "--model", bad / name, "--iters", "1", "--quiet"], "error"))
        cases.append((f"predict --model {name}", ["predict", "--model", bad / name, img, "--out", tmp / "p1", "--quiet"], "error"))
        cases.append((f"autolabel --model {name}", ["autolabel", "--model", bad / name, "--images", img, "--out", tmp / "a1", "--quiet"], "error"))
    engine_opts = {"--backend": ["tflite", "openvino,onnxruntime"], "--threads": ["0", "-2", "x"], "--ov-precision": ["int4"]}
    for opt, values in engine_opts.items():
        for v in values:
            cases.append((f"eval {opt} {v}", ["eval", "--model", onnx_path, opt, v, "--quiet"], "error"))
    cases += [
        ("eval --backend openvino on a checkpoint", ["eval", "--model", ckpt, "--backend", "openvino"], "error"),
        ("predict --ov-precision on onnxruntime", ["predict", "--model", onnx_path, img, "--out", tmp / "p2", "--ov-precision", "bf16"], "error"),
        ("export --int8-target unknown", ["export", "--model", ckpt, "--out", tmp / "x3", "--int8", "--int8-target", "npu"], "error"),
    ]
    cases += [
        ("eval --model adir.pt", ["eval", "--model", bad / "adir.pt"], "error"),
        ("eval --model missing", ["eval", "--model", bad / "missing.pt"], "error"),
        ("eval engine json list", ["eval", "--model", bad / "list.engine"], "error"),
        ("export --model model.onnx", ["export", "--model", onnx_path, "--out", tmp / "x2"], "error"),
    ]
    train_base = ["train", "--dataset", "folder", "--data", data, "--model", "tiny", "--res", "48x36", "--epochs", "1", "--batch", "2",
                  "--quiet", "--pretrained", "none"]
    bad_train = {
        "--lr": ["0", "-1", "nan", "inf", "abc"], "--batch": ["0", "-2", "x", "1000"], "--epochs": ["0", "-1", "1.5"],
        "--iters": ["0", "-5"], "--res": ["0x0", "100000x100000", "48", "axb", "-48x36", "48x-36"], "--workers": ["-1"],
        "--val-limit": ["0", "-3"], "--train-limit": ["0"], "--weight-decay": ["-1", "nan"], "--clip-grad": ["-1", "inf"],
        "--jitter": ["1.5", "-0.1"], "--scale": ["2,1", "0,1", "a,b", "1"], "--class-uniform": ["1.5", "-0.1"],
        "--train-fraction": ["0", "2"], "--labels": ["fuzzy"], "--kernel": ["cubic"], "--model": ["resnet9000"],
        "--upscale": ["3", "8"], "--refine": ["bilateral"], "--class-weights": ["median", ""], "--model-opt": ["bogus=1", "inter=wide", "novalue"],
        "--dataset": ["imagenet"], "--data": [str(bad / "nowhere")], "--pretrained": [str(bad / "garbage.pt"), str(bad / "missing.pt")],
        "--amp": ["fp8"], "--device": ["tpu", "cuda"], "--warmup": ["-1"], "--val-every": ["0"],
    }
    for opt, values in bad_train.items():
        for v in values:
            cases.append((f"train {opt} {v}", train_base + ["--out", tmp / f"t-{len(cases)}", opt, v], "error"))
    cases += [
        ("train --out a file", train_base + ["--out", bad / "afile"], "error"),
        ("train --out under a file", train_base + ["--out", bad / "afile" / "run"], "error"),
        ("train --out unwritable", train_base + ["--out", "/proc/edgeseg-run"], "error"),
        ("train --resume nothing", train_base + ["--out", tmp / "nothing", "--resume"], "error"),
        ("train --resume finished", ["train", "--out", run, "--resume", "--quiet"], "error"),
        ("train --resume --seed changed", ["train", "--out", run, "--resume", "--seed", "9", "--quiet"], "error"),
        ("train existing --out", train_base + ["--out", run], "error"),
    ]
    for opt in ("guide_channels=2", "guide_kernel=4", "refine_radius=0", "refine_radius=1e9", "guide_width=-1", "guide_width=1e12"):
        cases.append((f"train --refine guided --model-opt {opt}",
                      train_base + ["--out", tmp / f"t-{len(cases)}", "--refine", "guided", "--model-opt", opt],
                      f"error:--model-opt {opt.split('=')[0]}="))
    cases.append(("train --refine guided --model-opt guide_width=0 --model-opt guide_kernel=3",
                  train_base + ["--out", tmp / f"t-{len(cases)}", "--refine", "guided", "--model-opt", "guide_width=0",
                                "--model-opt", "guide_kernel=3"], "error:guide_width=0 has none"))
    for opt in ("upscale_input=-1", "upscale_input=1e300", "upscale_width=0", "upscale_width=100000"):
        # a 24x18 network so that the 2x output fits the 48x36 frames and the option itself is what is refused
        cases.append((f"train --upscale 2 --model-opt {opt}",
                      [("24x18" if a == "48x36" else a) for a in train_base]  # (--res given once: a repeat is refused)
                      + ["--out", tmp / f"t-{len(cases)}", "--upscale", "2", "--model-opt", opt],
                      f"error:--model-opt {opt.split('=')[0]}="))
    cases.append(("train --model-opt guide_kernel=3 without --refine guided",
                  train_base + ["--out", tmp / f"t-{len(cases)}", "--model-opt", "guide_kernel=3"], "error"))
    bad_export = {
        "--opset": ["5", "99"], "--output": ["probs"], "--input": ["int16"], "--output-size": ["0x0", "abc"],
        "--calib-method": ["magic"], "--int8-budget": ["-1"], "--calib-images": ["0"], "--verify-images": ["0"],
        "--workspace": ["0", "-1"], "--dla": ["-1"], "--max-batch": ["0"], "--int8-mode": ["half"],
    }
    for opt, values in bad_export.items():
        for v in values:
            extra = ["--int8"] if opt in ("--calib-method", "--int8-budget", "--calib-images") else []
            cases.append((f"export {opt} {v}", ["export", "--model", ckpt, "--out", tmp / f"e-{len(cases)}", opt, v, "--quiet"] + extra, "error"))
    cases += [
        ("export --fp16 without --trt", ["export", "--model", ckpt, "--out", tmp / "e-fp16", "--fp16"], "error"),
        ("export --trt without tensorrt", ["export", "--model", ckpt, "--out", tmp / "e-trt", "--trt", "--no-verify", "--quiet"], "error"),
        ("export --output-size with logits", ["export", "--model", ckpt, "--out", tmp / "e-os", "--output-size", "96x72"], "error"),
        ("export --out a file", ["export", "--model", ckpt, "--out", bad / "afile", "--quiet"], "error"),
        ("export --min-agreement above 100", ["export", "--model", ckpt, "--out", exp, "--min-agreement", "100.5", "--verify-images", "2",
                                              "--dataset", "folder", "--data", data, "--quiet"], "error:--min-agreement"),
        ("export --scales on a plain model", ["export", "--model", ckpt, "--out", tmp / "e-sc", "--scales", "0.5,1"], "error"),
    ]
    bad_eval = {"--batch": ["0"], "--limit": ["0", "-1"], "--dataset": ["nope"], "--split": ["nosuchsplit"], "--providers": ["NoSuchProvider"],
                "--plot": [str(tmp / "x.jpg")], "--json": [str(bad)], "--scales": ["0.5"], "--device": ["quantum"]}
    for opt, values in bad_eval.items():
        for v in values:
            cases.append((f"eval {opt} {v}", ["eval", "--model", ckpt, opt, v, "--quiet"], "error"))
    cases += [
        ("eval --reference garbage", ["eval", "--model", ckpt, "--reference", bad / "garbage.pt", "--quiet"], "error"),
        ("eval wrong data set", ["eval", "--model", ckpt, "--dataset", "synthetic", "--quiet"], "error"),
        ("bench --iters 0", ["bench", "--model", ckpt, "--iters", "0"], "error"),
        ("bench --json dir", ["bench", "--model", ckpt, "--iters", "1", "--warmup", "0", "--json", bad, "--quiet"], "error"),
        ("predict no inputs", ["predict", "--model", ckpt, "--out", tmp / "p2"], "error"),
        ("predict missing image", ["predict", "--model", ckpt, bad / "none.png", "--out", tmp / "p3"], "error"),
        ("predict broken png", ["predict", "--model", ckpt, bad / "image.png", "--out", tmp / "p4", "--quiet"], "error"),
        ("predict text file", ["predict", "--model", ckpt, bad / "afile", "--out", tmp / "p5"], "error"),
        ("predict --out a file", ["predict", "--model", ckpt, img, "--out", bad / "afile", "--quiet"], "error"),
        ("predict --alpha 2", ["predict", "--model", ckpt, img, "--out", tmp / "p6", "--alpha", "2"], "error"),
        ("predict missing video", ["predict", "--model", ckpt, bad / "none.mp4", "--out", tmp / "p7"], "error"),
        ("predict broken video", ["predict", "--model", ckpt, bad / "garbage.onnx", "--out", tmp / "p8"], "error"),
        ("predict camera 97", ["predict", "--model", ckpt, "97", "--out", tmp / "p9", "--quiet"], "error"),
        ("predict --every 0", ["predict", "--model", ckpt, "97", "--out", tmp / "p10", "--every", "0"], "error"),
        ("autolabel --threshold 2", ["autolabel", "--model", ckpt, "--images", img, "--out", tmp / "a2", "--threshold", "2"], "error"),
        ("autolabel no images", ["autolabel", "--model", ckpt, "--images", bad / "nowhere", "--out", tmp / "a3"], "error"),
        ("autolabel --out a file", ["autolabel", "--model", ckpt, "--images", img, "--out", bad / "afile", "--quiet"], "error"),
        ("labels check --res 0x0", ["labels", "check", "--res", "0x0"], "error"),
        ("labels check --modes bogus", ["labels", "check", "--modes", "bogus", "--limit", "1"], "error"),
        ("labels check --json dir", ["labels", "check", "--res", "64x32", "--limit", "1", "--json", bad, "--quiet"], "error"),
        ("labels check --plot-index 999", ["labels", "check", "--dataset", "folder", "--data", data, "--res", "24x18",
                                          "--plot", tmp / "l.png", "--plot-index", "999", "--quiet"], "error"),
        ("labels check --dup-stride 1", ["labels", "check", "--modes", "dupsample", "--dup-stride", "1", "--limit", "1"], "error"),
        ("unknown command", ["frobnicate"], "error"),
        ("unknown option", ["eval", "--model", ckpt, "--frob"], "error"),
    ]

    cases += broken_model_cases(tmp, ckpt, onnx_path, data, img)
    cases += data_fault_cases(tmp, ckpt, data)

    results = []
    before = {p: p.read_bytes() for p in (ckpt, onnx_path, run / "last.pt")}
    t0 = time.perf_counter()
    for name, argv, expectation in cases:
        expect, _, must_say = expectation.partition(":")
        after_log = expect.startswith("log+")  # the run's own notes may come first; the error is then the one last line
        expect = expect.removeprefix("log+")
        code, out, err = run_cli(argv)
        lines = [line for line in err.strip().splitlines() if line and not line.startswith(("warning:", "wrote "))]
        if after_log and lines and lines[-1].startswith("error:") and sum(line.startswith("error:") for line in lines) == 1:
            lines = lines[-1:]
        if expect == "ok":
            handled = code == 0
        else:
            want = 1 if expect == "check" else 2
            handled = code == want and "Traceback" not in err and len(lines) <= 1 + (expect == "check") and must_say in err
        results.append({"case": name, "handled": handled, "exit": code, "stderr": err.strip()[-300:]})
    lost = [str(p) for p, content in before.items() if p.read_bytes() != content]
    n_ok = sum(r["handled"] for r in results)
    print(f"{n_ok}/{len(results)} cases handled in {time.perf_counter() - t0:.0f} s; artefacts lost: {lost or 'none'}")
    for r in results:
        if not r["handled"]:
            print(f"  NOT HANDLED: {r['case']} (exit {r['exit']}): {r['stderr'][-200:]!r}")
    if args.json:
        Path(args.json).write_text(json.dumps({"handled": n_ok, "cases": len(results), "artefacts_lost": lost, "results": results,
                                               "machine": platform.machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                                               "command": "python " + " ".join(sys.argv)}, indent=1) + "\n")
    sys.exit(0 if n_ok == len(results) and not lost else 1)


def broken_model_cases(tmp: Path, ckpt: Path, onnx_path: Path, data: Path, img: Path) -> list:
    """Models that load but are wrong: NaN weights (checkpoint and ONNX), a class list shorter than
    the outputs, an unbounded recorded resolution. Each refused in one line by every command."""
    import copy

    import onnx
    import torch
    from onnx import numpy_helper

    d = tmp / "broken"
    d.mkdir()
    raw = torch.load(ckpt, weights_only=True)
    nan = copy.deepcopy(raw)
    nan["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in raw["model"].items()}
    torch.save(nan, d / "nan.pt")
    short = copy.deepcopy(raw)
    short["meta"]["data"]["class_names"] = short["meta"]["data"]["class_names"][:-1]
    short["meta"]["data"]["palette"] = short["meta"]["data"]["palette"][:-1]
    torch.save(short, d / "short.pt")
    huge = copy.deepcopy(raw)
    huge["meta"]["model"]["res"] = [100000, 100000]
    torch.save(huge, d / "huge.pt")
    graph = onnx.load(str(onnx_path))
    for init in graph.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32 and a.size > 10:
            init.CopyFrom(numpy_helper.from_array(np.full_like(a, np.nan), init.name))
            break
    onnx.save(graph, str(d / "nan.onnx"))
    cases = []
    for name, say in (("nan.pt", "NaN or infinite"), ("short.pt", "names 4"), ("huge.pt", "100000x100000"), ("nan.onnx", "NaN or infinite")):
        m = d / name
        cases += [
            (f"eval broken {name}", ["eval", "--model", m, "--dataset", "folder", "--data", data, "--quiet"], f"error:{say}"),
            (f"predict broken {name}", ["predict", "--model", m, img, "--out", d / f"p-{name}", "--quiet"], f"error:{say}"),
            (f"autolabel broken {name}", ["autolabel", "--model", m, "--images", img, "--out", d / f"a-{name}", "--quiet"], f"error:{say}"),
        ]
        if name.endswith(".pt"):
            cases += [(f"export broken {name}", ["export", "--model", m, "--out", d / f"x-{name}", "--dataset", "folder", "--data", data,
                                                 "--verify-images", "2", "--quiet"], f"error:{say}"),
                      (f"bench broken {name}", ["bench", "--model", m, "--iters", "1", "--warmup", "0", "--quiet"], f"error:{say}"),
                      (f"train --teacher broken {name}", ["train", "--dataset", "folder", "--data", data, "--model", "tiny", "--res", "48x36",
                                                          "--epochs", "1", "--batch", "2", "--out", d / f"t-{name}", "--teacher", m,
                                                          "--quiet"],
                       f"error:{say}")]
    return cases


def data_fault_cases(tmp: Path, ckpt: Path, data: Path) -> list:
    """Data that lies: a label whose header claims 50000x50000 (the size bound's own message
    everywhere), a damaged class-count cache (made again, said), calibration arrays of the wrong
    kind, a data set with other classes than the model's."""
    import shutil
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    bomb = tmp / "bombdata"
    shutil.copytree(data, bomb)
    header = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0))
              + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))
    for split in ("train", "val"):
        sorted((bomb / split / "masks").glob("*.png"))[0].write_bytes(header)
    say = "error:the header claims 50000x50000"
    train = ["train", "--dataset", "folder", "--data", bomb, "--model", "tiny", "--res", "48x36", "--epochs", "1", "--batch", "2", "--quiet"]
    cases = [
        ("train label header 50000x50000", train + ["--out", tmp / "tb"], "log+" + say),  # found mid-run, after the run's header
        ("eval label header 50000x50000", ["eval", "--model", ckpt, "--dataset", "folder", "--data", bomb, "--quiet"], say),
        ("labels check label header 50000x50000", ["labels", "check", "--dataset", "folder", "--data", bomb, "--res", "24x18", "--quiet"], say),
        ("data cache label header 50000x50000", ["data", "cache", "--dataset", "folder", "--data", bomb, "--out", tmp / "cb", "--quiet"], say),
    ]
    # a damaged class-count cache is made again (its own cache folder, so the user's is untouched)
    os.environ["EDGESEG_CACHE"] = str(tmp / "edgeseg-cache")
    counts = tmp / "edgeseg-cache" / "class_counts"
    counts.mkdir(parents=True)
    from edgeseg.data import build_dataset
    from edgeseg.data.label_stats import class_pixel_counts

    class_pixel_counts(build_dataset("folder", str(data), "train"), progress=False)
    for f in counts.glob("*.npz"):
        f.write_bytes(b"PK\x03\x04 damaged")
    cases.append(("train with a damaged class-count cache", ["train", "--dataset", "folder", "--data", data, "--model", "tiny", "--res",
                                                           "24x18", "--epochs", "1", "--batch", "2", "--class-weights", "sqrt",
                                                           "--train-limit", "2", "--val-limit", "1", "--pretrained", "none",
                                                           "--out", tmp / "tcc", "--quiet"], "ok"))
    arrays = {"npz.npz": None, "strings.npy": np.array(["a", "b"]), "nan.npy": np.full((10, 3, 36, 48), np.nan, np.float32),
              "shape.npy": np.zeros((10, 3, 10, 10), np.float32)}
    for name, arr in arrays.items():
        if arr is None:
            np.savez(tmp / name, x=np.zeros((10, 3, 36, 48), np.float32))
        else:
            np.save(tmp / name, arr)
        cases.append((f"export --calib-array {name}", ["export", "--model", ckpt, "--out", tmp / f"xc-{name}", "--int8", "--calib-array",
                                                       tmp / name, "--no-verify", "--quiet"], f"error:{name}"))
    synthetic = ["--dataset", "synthetic"]  # 9 classes; the tiny model has 5
    cases += [("export with another data set's classes", ["export", "--model", ckpt, "--out", tmp / "xs", *synthetic, "--quiet"],
               "error:are not those of data set"),
              ("export --int8 with another data set's classes", ["export", "--model", ckpt, "--out", tmp / "xs2", "--int8", *synthetic,
                                                                 "--no-verify", "--quiet"], "error:are not those of data set")]
    return cases


if __name__ == "__main__":
    main()
