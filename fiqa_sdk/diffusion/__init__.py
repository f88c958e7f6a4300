"""DifFIQA's diffusion parts: the cosine schedule and DDIM sampler (:mod:`.schedule`), the
x0-predicting UNet (:mod:`.unet`) and the BSRGAN-style degradations (:mod:`.degrade`)."""

from .degrade import degrade, degrade_batch
from .schedule import Schedule, cosine_alpha_bar, time_pairs
from .unet import PRESETS, UNet, UNetConfig, unet_config

__all__ = ["Schedule", "cosine_alpha_bar", "time_pairs", "UNet", "UNetConfig", "PRESETS",
           "unet_config", "degrade", "degrade_batch"]
