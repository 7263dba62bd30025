"""Pictures of results (matplotlib, the `plot` extra): eval's per-class IoU and confusion matrix,
and what each label mode keeps of one label at a training resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg import __version__
from edgeseg.fileio import REPORT_SOFTWARE, atomic_path


def _plt():
    from edgeseg.optional import require

    matplotlib = require("matplotlib", "--plot")
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        # the Software chunk marks it as edgeseg's report (fileio.replace_problem), replaceable by the next
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": f"{REPORT_SOFTWARE} {__version__}"})
    return Path(path)


def _short(path) -> str:
    """The model file with its folder (run folders tell models apart; file names often do not)."""
    if not path:
        return ""
    p = Path(str(path))
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def plot_eval(result: dict, path: str | Path) -> Path:
    """Per-class IoU bars (the reference's beside them when parity was checked) and the row-normalised
    confusion matrix (rows: label, columns: prediction)."""
    plt = _plt()
    names = list(result["per_class"])
    ious = [result["per_class"][n] or 0.0 for n in names]
    parity = result.get("parity")
    confusion = np.asarray(result["confusion"], dtype=np.float64)
    rows = confusion.sum(1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6 + 0.45 * len(names), 4.8), gridspec_kw={"width_ratios": [1.3, 1]})
    x = np.arange(len(names))
    width = 0.4 if parity else 0.8
    ax1.bar(x - (width / 2 if parity else 0), ious, width, label=f"{_short(result.get('model')) or result['backend']} (mIoU {result['miou']:.2f})", color="#3b7dd8")
    if parity:
        ref = [parity["reference_per_class"].get(n) or 0.0 for n in names]
        ax1.bar(x + width / 2, ref, width, label=f"reference {_short(parity.get('reference_model')) or parity['reference']} (mIoU {parity['reference_miou']:.2f})", color="#bbbbbb")
    boundary = result.get("boundary_iou")
    if boundary and boundary.get("mean") is not None:  # boundary IoU of the model as a mark on each bar
        b = [boundary["per_class"].get(n) or 0.0 for n in names]
        ax1.scatter(x - (width / 2 if parity else 0), b, marker="_", s=160, color="#d83b3b", zorder=3,
                    label=f"boundary IoU (mean {boundary['mean']:.2f}, band {boundary['band_ratio']:g} of the diagonal)")
    ax1.set_xticks(x, names, rotation=60, ha="right")
    ax1.set_ylabel("IoU %")
    ax1.set_ylim(0, 100)
    ax1.set_title(f"{result['dataset']}/{result['split']}: {result['n_images']} images at native resolution")
    ax1.legend(loc="upper right", fontsize=8)
    im = ax2.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax2.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax2.set_yticks(x, names, fontsize=8)
    ax2.set_xlabel("prediction")
    ax2.set_ylabel("label")
    ax2.set_title("confusion (each label row sums to 1)")
    fig.colorbar(im, ax=ax2, fraction=0.046)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_label_modes(label: np.ndarray, kept: dict[str, np.ndarray], palette, class_names, res, path: str | Path,
                     thin=("pole", "sign", "signsymbol", "pedestrian", "bicyclist", "person", "rider", "traffic sign", "traffic light")) -> Path:
    """The native label and, per mode, the label it keeps at ``res`` (down-sampled, back up, arg-maxed),
    shown at native size, with each thin class's kept fraction of pixels in the title."""
    from edgeseg.runtime.processing import colourise

    plt = _plt()
    panels = [("native label", label)] + list(kept.items())
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    thin_ids = [i for i, n in enumerate(class_names) if n.lower() in thin]
    for ax, (title, lab) in zip(axes.ravel(), panels):
        ax.imshow(colourise(lab, palette), interpolation="nearest")
        ax.set_axis_off()
        if title != "native label" and thin_ids:
            kept_share = []
            for c in thin_ids:
                n = int((label == c).sum())
                if n:
                    kept_share.append(f"{class_names[c]} {100 * int(((lab == c) & (label == c)).sum()) / n:.0f}%")
            title += " kept:" + "".join(("\n" if k % 2 == 0 else ", ") + t for k, t in enumerate(kept_share))
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"what each label mode keeps at {res[0]}x{res[1]} (shown at native size)", fontsize=10)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)
