"""Which parts of the network lose accuracy in INT8, and the smallest float fallback that
keeps the mIoU change within budget.

Quantisable nodes are grouped into blocks by the PyTorch module that produced
them (an MBConv block, the stem, a decoder branch, the head). Each block is
quantised on its own and scored on a validation subset at native resolution;
then blocks go back to float, most sensitive first, until the whole model is
within ``budget`` mIoU points of FP32. Sensitivity is ranked by pixel
agreement with FP32: on a few dozen images a block's mIoU change is mostly
noise, while its disagreement is not.
"""

from __future__ import annotations

import ast
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeseg.calibration.qdq import QUANT_OP_TYPES, quantize_qdq
from edgeseg.metrics import ConfusionMatrix
from edgeseg.progress import Progress
from edgeseg.runtime.processing import Preprocess, native_labels

logger = logging.getLogger(__name__)

_BLOCK = re.compile(r"^model\.encoder\.[A-Za-z_]\w*\.\d+$")  # an indexed encoder stage: _blocks.3, stages.1


def node_block(node, initializers: set[str]) -> str:
    """A readable block name for an ONNX node exported from an edgeseg model."""
    scopes = []
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if isinstance(s, str)]
            except (ValueError, SyntaxError):
                scopes = []
    if not scopes:  # no exporter metadata: use the module path of a weight it reads
        for name in node.input:
            if name in initializers and name.startswith("model."):
                scopes = [name.rsplit(".", 1)[0]]
                break
    for s in reversed(scopes):
        if _BLOCK.match(s):
            return s[len("model."):]
    for s in scopes:
        parts = s.split(".")
        if len(parts) >= 2 and parts[0] == "model" and parts[1] in ("encoder", "decoder", "head"):
            if parts[1] == "encoder":
                return "encoder.stem"
            deeper = [t for t in scopes if t.startswith(f"model.{parts[1]}.")]
            return f"{parts[1]}.{deeper[0].split('.')[2]}" if deeper else parts[1]
    # ops of SegModel.forward itself (the final up-sampling), or of the export wrapper
    return "model" if "model" in scopes else "graph"


def blocks_of(model_proto, op_types=QUANT_OP_TYPES) -> dict[str, list[str]]:
    inits = {i.name for i in model_proto.graph.initializer}
    out: dict[str, list[str]] = {}
    for node in model_proto.graph.node:
        if node.op_type in op_types:
            out.setdefault(node_block(node, inits), []).append(node.name)
    return out


class SubsetScorer:
    """Scores ONNX variants on a fixed validation subset against the labels and the FP32 model."""

    def __init__(self, fp32_path: Path, ds, indices, device: str = "cpu"):
        from edgeseg import runtime

        self.ds = ds
        self.samples = [ds[i] for i in indices]
        ref = runtime.load(fp32_path, device=device, backend="onnxruntime")
        self.meta = ref.meta
        self.device = device
        pre = Preprocess.from_meta(ref.meta)
        self.inputs = [pre([s.image]) for s in self.samples]
        with ref:
            self.fp32_labels = [native_labels(ref.infer(x), [s.label.shape])[0] for x, s in zip(self.inputs, self.samples)]
        self.fp32_miou = self._miou(self.fp32_labels)

    def _miou(self, preds) -> float:
        cm = ConfusionMatrix(self.meta.num_classes)
        for s, p in zip(self.samples, preds):
            cm.update(torch.from_numpy(s.label), p)
        return cm.miou()

    def score(self, path: Path) -> dict:
        from edgeseg import runtime

        runner = runtime.load(path, device=self.device, backend="onnxruntime")
        with runner:
            preds = [native_labels(runner.infer(x), [s.label.shape])[0] for x, s in zip(self.inputs, self.samples)]
        agree = sum(int((p == q).sum()) for p, q in zip(preds, self.fp32_labels))
        total = sum(p.numel() for p in preds)
        miou = self._miou(preds)
        return {"miou": round(miou, 4), "delta_miou": round(miou - self.fp32_miou, 4), "pixel_agreement": round(100.0 * agree / total, 4)}


@dataclass
class FallbackResult:
    float_blocks: list[str]
    full_int8: dict
    final: dict
    sensitivity: list[dict]
    fp32_miou: float
    within_budget: bool


def fallback_search(fp32_path: Path, out_path: Path, ranges: dict, method: str, scorer: SubsetScorer, budget: float,
                    analyse: bool = True, progress: bool = True, target: str = "tensorrt") -> FallbackResult:
    """Quantise ``fp32_path`` to ``out_path``, keeping the fewest most-sensitive blocks in float
    so that ``delta_miou >= -budget`` on the scorer's subset."""
    import onnx

    from edgeseg.calibration.qdq import CPU_OP_TYPES

    model = onnx.load(str(fp32_path), load_external_data=False)
    blocks = blocks_of(model, CPU_OP_TYPES if target == "cpu" else QUANT_OP_TYPES)
    all_nodes = [n for names in blocks.values() for n in names]
    with tempfile.TemporaryDirectory(prefix="edgeseg-int8-") as tmp:
        trial = Path(tmp) / "trial.onnx"

        def run(exclude) -> dict:
            quantize_qdq(fp32_path, trial, ranges, method, exclude_nodes=exclude, target=target)
            return scorer.score(trial)

        full = run([])
        logger.info(f"full INT8 ({method}) on {len(scorer.samples)} val images: mIoU {full['miou']:.2f} vs FP32 {scorer.fp32_miou:.2f} "
            f"(delta {full['delta_miou']:+.2f}), pixel agreement {full['pixel_agreement']:.2f}%")
        sensitivity: list[dict] = []
        float_blocks: list[str] = []
        final = full
        if full["delta_miou"] < -budget and analyse:
            bar = Progress(len(blocks), "INT8 sensitivity", "block", enabled=progress)
            for name, nodes in blocks.items():
                only = run([n for n in all_nodes if n not in set(nodes)])
                sensitivity.append({"block": name, "nodes": len(nodes), **only})
                bar.update()
            bar.close()
            # Pixel agreement with FP32 is the steadier signal on a small subset; mIoU breaks ties.
            sensitivity.sort(key=lambda r: (r["pixel_agreement"], r["delta_miou"]))
            for row in sensitivity:
                if final["delta_miou"] >= -budget:
                    break
                float_blocks.append(row["block"])
                final = run([n for b in float_blocks for n in blocks[b]])
                logger.info(f"  + keep {row['block']} in float: mIoU delta {final['delta_miou']:+.2f}, agreement {final['pixel_agreement']:.2f}%")
        exclude = [n for b in float_blocks for n in blocks[b]]
        quantize_qdq(fp32_path, out_path, ranges, method, exclude_nodes=exclude, target=target)
    return FallbackResult(float_blocks, full, final, sensitivity, round(scorer.fp32_miou, 4), final["delta_miou"] >= -budget)
