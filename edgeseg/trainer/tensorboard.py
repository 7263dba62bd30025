"""TensorBoard scalars and prediction images, when tensorboard is installed."""

from __future__ import annotations

from pathlib import Path

from edgeseg.models.meta import ModelMeta
from edgeseg.runtime.torch_runner import TorchRunner


def open_writer(out: Path):
    """A SummaryWriter in DIR/tensorboard when tensorboard is installed, else None."""
    from edgeseg.optional import available

    if not available("tensorboard"):
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def log_epoch(writer, record: dict, model, meta: ModelMeta, val_ds, device) -> None:
    """Epoch scalars and, for the first val images, image | prediction | label panels."""
    import numpy as np

    from edgeseg.runtime.processing import Preprocess, colourise, native_labels

    step = record["step"]
    for key in ("train_loss", "val_miou", "val_pixel_acc", "lr", "img_per_s"):
        if key in record:
            writer.add_scalar(key, record[key], step)
    runner = TorchRunner(model, meta, str(device))
    with runner:
        for i in range(min(2, len(val_ds))):
            s = val_ds[i]
            pred = native_labels(runner.infer(Preprocess.from_meta(meta)([s.image])), [s.label.shape])[0].numpy()
            panel = np.concatenate([s.image, colourise(pred, meta.palette), colourise(s.label, meta.palette)], axis=1)
            writer.add_image(f"val/{i}", panel, step, dataformats="HWC")
