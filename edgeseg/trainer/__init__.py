"""Low-resolution training with soft labels."""

from edgeseg.trainer.config import TrainConfig
from edgeseg.trainer.loop import train, train_one_epoch, validate

__all__ = ["TrainConfig", "train", "train_one_epoch", "validate"]
