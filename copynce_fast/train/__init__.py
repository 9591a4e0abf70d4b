"""Training: configs in ``copynce_fast.config``, the loop in ``loop.train``."""
from copynce_fast.train.loop import NonFiniteLossError, TrainResult, train

__all__ = ["train", "TrainResult", "NonFiniteLossError"]
