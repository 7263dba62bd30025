"""Label-based pixel contrastive pretraining (Zhao et al., "Contrastive Learning for Label
Efficient Semantic Segmentation", ICCV 2021).

Before supervised training, encoder and decoder learn an embedding in which pixels of
the same class are close: decoder features are resized (bilinear) to a small grid and
passed through a projection head (1x1 conv 256, BN, ReLU, twice, then 1x1 conv 256,
L2-normalised); the supervised contrastive loss at temperature 0.07 pulls same-class
pixels together and pushes other classes away, void excluded. With soft labels a pixel
takes the arg-max class where that class holds at least ``threshold`` of the valid mass.
At most ``max_pixels`` pixels of the batch enter the loss, which bounds its memory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeseg.errors import TrainingStopped
from edgeseg.progress import Progress
from edgeseg.trainer.distributed import DistInfo
from edgeseg.trainer.epoch import train_one_epoch

logger = logging.getLogger(__name__)

IGNORE = -1


class ProjectionHead(nn.Module):
    def __init__(self, in_channels: int, dim: int = 256):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.body(x), dim=1)


def contrastive_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss over pixels ``z`` (N, D), L2-normalised, with class ``labels`` (N,).

    For each anchor i with at least one positive: -mean over positives p of
    log(exp(z_i.z_p / t) / sum over a != i of exp(z_i.z_a / t)).
    """
    n = z.shape[0]
    sim = (z @ z.T) / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = positive.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~positive, 0.0)).sum(1)[has] / n_pos[has]
    return per_anchor.mean()


def grid_labels(target: dict, grid: tuple[int, int], num_classes: int, threshold: float, ignore_index: int = 255) -> torch.Tensor:
    """Per-pixel class on the grid, or IGNORE: soft targets by area-averaged mass and a
    confidence threshold, hard targets by the majority that also passes the threshold."""
    if "label" in target:
        lab = target["label"]
        valid = lab != ignore_index
        mass = F.one_hot(lab.clamp(max=num_classes - 1), num_classes).permute(0, 3, 1, 2).float() * valid[:, None]
        valid = valid.float()
    else:
        mass, valid = target["mass"], target["valid"]
    m = F.adaptive_avg_pool2d(mass, grid)
    v = F.adaptive_avg_pool2d(valid[:, None], grid)[:, 0]
    top, cls = m.max(1)
    ok = (v > 0) & (top >= threshold * v)
    return torch.where(ok, cls, torch.full_like(cls, IGNORE))


def sample_pixels(z: torch.Tensor, labels: torch.Tensor, max_pixels: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D, h, w) embeddings and (B, h, w) labels -> at most ``max_pixels`` labelled pixels."""
    D = z.shape[1]
    flat = z.permute(0, 2, 3, 1).reshape(-1, D)
    lab = labels.reshape(-1)
    keep = torch.nonzero(lab != IGNORE).flatten()
    if len(keep) > max_pixels:
        pick = torch.randperm(len(keep), generator=generator)[:max_pixels].to(keep.device)
        keep = keep[pick]
    return flat[keep], lab[keep]


class ContrastiveNet(nn.Module):
    """Encoder + decoder + projection on a fixed grid: the module trained in this phase."""

    def __init__(self, model: nn.Module, projection: ProjectionHead, grid: tuple[int, int]):
        super().__init__()
        self.model = model
        self.projection = projection
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.features(x)
        feats = F.interpolate(feats, size=self.grid, mode="bilinear", align_corners=False)
        return self.projection(feats)


def pretrain(model: nn.Module, make_loader, steps_per_epoch: int, epochs: int, *, device, normalise, num_classes: int,
             lr: float, weight_decay: float, grid: tuple[int, int], optimizer: str = "adamw", schedule: str = "poly", clip_grad: float = 5.0,
             max_pixels: int = 10000, temperature: float = 0.07, threshold: float = 0.75, seed: int = 0, dist_info=None,
             progress: bool = True, out: Path | None = None, prepare=None) -> dict:
    """Contrastive phase: trains ``model``'s encoder and decoder in place with the run's optimiser,
    schedule and gradient clipping; returns a summary."""
    from edgeseg.trainer.schedule import LRSchedule, build_optimizer

    net = ContrastiveNet(model, ProjectionHead(model.decoder.out_channels), grid).to(device)
    train_net = net
    if dist_info is not None and dist_info.enabled:
        train_net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                                        find_unused_parameters=True)
    params = [p for n, p in net.named_parameters() if not n.startswith("model.head.") and p.requires_grad]
    opt = build_optimizer(optimizer, [{"params": params, "weight_decay": weight_decay}], lr)
    sched = LRSchedule(opt, lr, epochs * steps_per_epoch, schedule, warmup=min(100, epochs * steps_per_epoch // 20))
    gen = torch.Generator().manual_seed(seed + 17)
    dist = dist_info or DistInfo()
    main = dist_info is None or dist_info.is_main
    scaler = torch.amp.GradScaler(device.type, enabled=False)

    # steps whose sampled pixels hold two of one class and one of another: without both the loss is 0 and teaches nothing
    paired = {"steps": 0, "with_pairs": 0}

    def loss_fn(z: torch.Tensor, target: dict) -> torch.Tensor:
        zs, ys = sample_pixels(z, grid_labels(target, grid, num_classes, threshold), max_pixels, gen)
        paired["steps"] += 1
        counts = torch.unique(ys, return_counts=True)[1]
        paired["with_pairs"] += int(len(counts) > 1 and int(counts.max()) > 1)
        return contrastive_loss(zs, ys, temperature)

    history = []
    for epoch in range(epochs):
        bar = Progress(steps_per_epoch, f"contrastive {epoch + 1}/{epochs}", "img", enabled=progress and main)
        t0 = time.perf_counter()
        try:
            stats = train_one_epoch(train_net, make_loader(epoch), opt, sched, scaler, device=device, normalise=normalise,
                                    loss_fn=loss_fn, clip_grad=clip_grad, dist_info=dist, progress=bar, prepare=prepare)
        except TrainingStopped as exc:
            raise TrainingStopped(f"contrastive {exc} (epoch {epoch + 1}); try a lower --lr") from None
        finally:
            bar.close()
        record = {"epoch": epoch + 1, "loss": round(stats["loss"], 5), "img_per_s": round(stats["img_per_s"], 2),
                  "epoch_s": round(time.perf_counter() - t0, 2)}
        history.append(record)
        if main:
            logger.info(f"contrastive epoch {epoch + 1}: loss {record['loss']:.4f}, {record['img_per_s']:.1f} img/s")
            if paired["steps"] and not paired["with_pairs"]:
                logger.warning(f"contrastive epoch {epoch + 1}: no step sampled two pixels of one class and one of another that pass "
                               f"--contrastive-threshold {threshold:g}, so the loss was 0 and the encoder learnt nothing; lower the "
                               "threshold or give more --contrastive-pixels")
        paired.update(steps=0, with_pairs=0)
    if out is not None and main:
        from edgeseg.trainer.checkpoint import save_torch

        save_torch(out / "contrastive.pt", {"model": model.state_dict(), "projection": net.projection.state_dict(), "history": history})
    return {"epochs": epochs, "history": history}
