"""Markdown tables from the JSON the benchmark scripts record in benchmarks/results/.

    python benchmarks/summarize.py labels [FILE.jsonl]     (default camvid_labels.jsonl)
    python benchmarks/summarize.py methods
    python benchmarks/summarize.py int8|downsampling FILE.json
    python benchmarks/summarize.py diff FILE.jsonl MODEL RES LABELS TAG_A TAG_B   (tag "-" = no tag)
    python benchmarks/summarize.py tta FILE.jsonl                                   (tta_camvid.py rows)
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from _camvid import THIN

RESULTS = Path(__file__).parent / "results"


def _path(name) -> Path:
    """A file name in benchmarks/results/, or a path as given."""
    return Path(name) if Path(name).is_file() else RESULTS / name


def _rows(name):
    path = _path(name)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _ms(values):
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def labels(name="camvid_labels.jsonl") -> str:
    groups = defaultdict(list)
    for r in _rows(name):
        groups[(r["model"], tuple(r["res"]), r.get("tag") or "-", r["epochs"], r["labels"])].append(r)
    out = ["| model | training res | variant (tag) | epochs | labels | seeds | mIoU | " + " | ".join(THIN) + " | thin mean |",
           "|---|---|---|---|---|---|---|" + "---|" * (len(THIN) + 1)]
    for (model, res, tag, epochs, mode), rs in sorted(groups.items()):
        cells = [_ms([r["per_class"][c] for r in rs]) for c in THIN]
        out.append(f"| {model} | {res[0]}x{res[1]} | {tag} | {epochs} | {mode} | {len(rs)} | {_ms([r['miou'] for r in rs])} | "
                   + " | ".join(cells) + f" | {_ms([r['thin_mean'] for r in rs])} |")
    pairs = defaultdict(dict)
    for r in _rows(name):  # the last run of each (model, res, variant, epochs, seed, labels) counts
        pairs[(r["model"], tuple(r["res"]), r.get("tag") or "-", r["epochs"], r["seed"])][r["labels"]] = r
    out += _model_differences(name)
    if not any("soft" in d and "nearest" in d for d in pairs.values()):
        return "\n".join(out)
    out.append("")
    out.append("| model | training res | variant (tag) | epochs | seed | soft - nearest mIoU | soft - nearest thin mean |")
    out.append("|---|---|---|---|---|---|---|")
    for (model, res, tag, epochs, seed), d in sorted(pairs.items()):
        if "soft" in d and "nearest" in d:
            out.append(f"| {model} | {res[0]}x{res[1]} | {tag} | {epochs} | {seed} | {d['soft']['miou'] - d['nearest']['miou']:+.2f} | "
                       f"{d['soft']['thin_mean'] - d['nearest']['thin_mean']:+.2f} |")
    return "\n".join(out)


def _class_differences(a: list[dict], b: list[dict]) -> dict:
    """Mean over pairs of per-class IoU dicts: a[i][c] - b[i][c]."""
    return {c: statistics.mean(x[c] - y[c] for x, y in zip(a, b)) for c in a[0]}


def _model_differences(name: str, base: str = "lite0-lraspp") -> list[str]:
    """Each other model against ``base`` on the same variant, labels and seed (the last run of each
    counts): per-seed mIoU and thin-mean differences, and the mean per-class differences."""
    runs = defaultdict(dict)
    for r in _rows(name):
        runs[(tuple(r["res"]), r.get("tag") or "-", r["epochs"], r["labels"])].setdefault(r["seed"], {})[r["model"]] = r
    out = []
    for (res, tag, epochs, mode), by_seed in sorted(runs.items()):
        models = sorted({m for d in by_seed.values() for m in d if m != base and base in d})
        for model in models:
            seeds = sorted(s for s, d in by_seed.items() if model in d and base in d)
            a, b = [by_seed[s][model] for s in seeds], [by_seed[s][base] for s in seeds]
            per_class = _class_differences([x["per_class"] for x in a], [y["per_class"] for y in b])
            if not out:
                out += ["", f"| model - {base} | training res | variant (tag) | epochs | labels | seeds | mIoU per seed | "
                            "thin mean per seed | mean per-class difference |", "|---|---|---|---|---|---|---|---|---|"]
            out.append(f"| {model} | {res[0]}x{res[1]} | {tag} | {epochs} | {mode} | {','.join(map(str, seeds))} | "
                       + ", ".join(f"{x['miou'] - y['miou']:+.2f}" for x, y in zip(a, b)) + " | "
                       + ", ".join(f"{x['thin_mean'] - y['thin_mean']:+.2f}" for x, y in zip(a, b)) + " | "
                       + ", ".join(f"{c} {v:+.1f}" for c, v in per_class.items()) + " |")
    return out


def diff(name: str, model: str, res: str, mode: str, tag_a: str, tag_b: str) -> str:
    """Variant ``tag_a`` against ``tag_b`` of one model, resolution and label mode, seed by seed (the
    last run of each counts; the two may differ in epochs): mIoU, thin mean and Pole differences,
    and the mean per-class differences."""
    by_tag = defaultdict(dict)
    for r in _rows(name):
        if r["model"] == model and "x".join(map(str, r["res"])) == res and r["labels"] == mode:
            by_tag[r.get("tag") or "-"][r["seed"]] = r
    seeds = sorted(set(by_tag[tag_a]) & set(by_tag[tag_b]))
    if not seeds:
        raise SystemExit(f"{name}: no seed with both {tag_a} and {tag_b} for {model} {res} {mode}")
    a, b = [by_tag[tag_a][s] for s in seeds], [by_tag[tag_b][s] for s in seeds]
    lines = [f"| {model} {res} {mode}: {tag_a} - {tag_b} | seed | epochs | mIoU | thin mean | Pole |", "|---|---|---|---|---|---|"]
    for s, x, y in zip(seeds, a, b):
        lines.append(f"| | {s} | {x['epochs']} vs {y['epochs']} | {x['miou']:.2f} - {y['miou']:.2f} = {x['miou'] - y['miou']:+.2f} | "
                     f"{x['thin_mean'] - y['thin_mean']:+.2f} | {x['per_class']['Pole'] - y['per_class']['Pole']:+.2f} |")
    mean = lambda k: statistics.mean(x[k] - y[k] for x, y in zip(a, b))  # noqa: E731
    lines.append(f"| mean | | | {mean('miou'):+.2f} | {mean('thin_mean'):+.2f} | "
                 f"{statistics.mean(x['per_class']['Pole'] - y['per_class']['Pole'] for x, y in zip(a, b)):+.2f} |")
    per_class = _class_differences([x["per_class"] for x in a], [y["per_class"] for y in b])
    lines += ["", "mean per-class difference: " + ", ".join(f"{c} {v:+.1f}" for c, v in per_class.items())]
    return "\n".join(lines)


def tta(name: str) -> str:
    """Flip test-time augmentation (benchmarks/tta_camvid.py rows): per checkpoint without -> with
    flip, the means over the rows, and the mean per-class differences."""
    rows = _rows(name)
    if not rows:
        raise SystemExit(f"{name}: no rows")
    lines = ["| run | mIoU | thin mean | Pole |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['none']['miou']:.2f} -> {r['flip']['miou']:.2f} ({r['flip']['miou'] - r['none']['miou']:+.2f}) | "
                     f"{r['none']['thin']:.2f} -> {r['flip']['thin']:.2f} | {r['none']['pole']:.2f} -> {r['flip']['pole']:.2f} |")
    mean = {k: {t: _ms([r[t][k] for r in rows]) for t in ("none", "flip")} for k in ("miou", "thin", "pole")}
    lines.append("| mean | " + " | ".join(f"{mean[k]['none']} -> {mean[k]['flip']}" for k in ("miou", "thin", "pole")) + " |")
    per_class = _class_differences([r["flip"]["per_class"] for r in rows], [r["none"]["per_class"] for r in rows])
    lines += ["", "mean per-class difference (flip - none): " + ", ".join(f"{c} {v:+.1f}" for c, v in per_class.items())]
    return "\n".join(lines)


def methods() -> str:
    groups = defaultdict(list)
    for r in _rows("camvid_methods.jsonl"):
        groups[(r["variant"].removesuffix(f"-{r['res'][0]}x{r['res'][1]}"), tuple(r["res"]))].append(r)
    out = ["| variant | training res | seeds | mIoU | thin mean | minutes per run |", "|---|---|---|---|---|---|"]
    for (name, res), rs in sorted(groups.items()):
        out.append(f"| {name} | {res[0]}x{res[1]} | {len(rs)} | {_ms([r['miou'] for r in rs])} | {_ms([r['thin_mean'] for r in rs])} | "
                   f"{statistics.mean(r['train_minutes'] for r in rs):.1f} |")
    return "\n".join(out)


def int8(name="int8_camvid_240x180.json") -> str:
    d = json.loads(_path(name).read_text())
    out = [f"model input {d['input']}, {d['val_images']} val images, {d['calib_images']} calibration images, budget {d['budget']} mIoU",
           "", "| calibration | fallback | float blocks | mIoU INT8 | mIoU FP32 | delta | pixel agreement | ORT CPU latency INT8/FP32 |",
           "|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        out.append(f"| {r['method']} | {'yes' if r['fallback'] else 'no'} | {', '.join(r['float_blocks']) or '-'} | {r['int8_miou']:.2f} | "
                   f"{r['fp32_miou']:.2f} | {r['delta_miou']:+.2f} | {r['pixel_agreement']:.2f}% | {r['latency_ratio']:.2f} |")
    return "\n".join(out)


def downsampling(name="label_downsampling.json") -> str:
    d = json.loads(_path(name).read_text())
    out = [f"{d['input']}, {d['threads']} thread(s), median of {d['rounds']} interleaved rounds", "",
           "| target | kernel | edgeseg ms | edgeseg Mpx/s | scatter one-hot + interpolate ms | speed-up | F.one_hot + interpolate ms | speed-up |",
           "|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        m = r["median_ms"]
        out.append(f"| {r['target']} | {r['kernel']} | {m['edgeseg']} | {r['mpixel_per_s']['edgeseg']} | {m['scatter one-hot + interpolate']} | "
                   f"{r['speedup_vs_scatter']}x | {m['F.one_hot + interpolate']} | {r['speedup_vs_F_one_hot']}x |")
    return "\n".join(out)


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "labels"
    args = sys.argv[2:]  # an optional results file
    print({"labels": labels, "methods": methods, "int8": int8, "downsampling": downsampling, "diff": diff, "tta": tta}[which](*args))


if __name__ == "__main__":
    main()
