"""Fusion losses of the paper (eq. 11-14)."""
from diffmf.losses.fusion import FusionLoss, LossConfig, intensity_loss, sobel_gradient, ssim_loss, texture_loss
from diffmf.losses.ssim import gaussian_window, ssim, ssim_map

__all__ = ["FusionLoss", "LossConfig", "gaussian_window", "intensity_loss", "sobel_gradient", "ssim", "ssim_loss",
           "ssim_map", "texture_loss"]
