"""Training of S³D-NeRF: configs, data sampling, losses, discriminators and the accelerate-driven loops."""

from .config import ABLATIONS, BASE_CONFIGS, LossWeights, SyncNetConfig, TrainConfig, config_names, get_config

__all__ = ["ABLATIONS", "BASE_CONFIGS", "LossWeights", "SyncNetConfig", "TrainConfig", "config_names", "get_config"]
