"""Shared by the CamVid accuracy benchmarks: the thin classes the native-resolution work is judged on."""

from __future__ import annotations

THIN = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist")


def thin_mean(per_class: dict) -> float:
    """Mean IoU of the thin classes, from an eval summary's ``per_class``."""
    return sum(per_class[c] for c in THIN) / len(THIN)
