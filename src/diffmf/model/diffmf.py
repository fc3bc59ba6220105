"""DIFF-MF: Difference-Driven Channel-Spatial State Space Model (Sun et al.), Fig. 2.

    I_ir, I_vi (B, 1, H, W) in [0, 1]
      -> pad to a multiple of 2^(levels-1)
      -> shallow embedding per modality                         (B, H, W, C) x 2
      -> difference-driven feature extraction, N stages (Alg. 1) -> F_ir^e, F_vi^e
      -> channel-exchange module (eq. 4-8)                       -> F_ir^c, F_vi^c
      -> spatial-exchange module, three scales (eq. 9-10)        -> (B, H, W, C)
      -> decoder                                                 -> (B, 1, H, W) in [0, 1]
      -> crop to H x W
The network fuses one-channel inputs (IR and visible luminance Y); colour handling is
outside the network (:mod:`diffmf.engine.fuse`).
"""
from __future__ import annotations

from torch import Tensor, nn

from diffmf.model.channel_exchange import ChannelExchange
from diffmf.model.config import ModelConfig
from diffmf.model.decoder import Decoder
from diffmf.model.diff_extraction import DiffDrivenExtractor
from diffmf.model.embedding import ShallowEmbed
from diffmf.model.layers import pad_to_multiple
from diffmf.model.spatial_exchange import SpatialExchange


class DIFFMF(nn.Module):
    """The DIFF-MF fusion network; every ablation of Tables II-VII through ``config.variant``/``block``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.embed_ir = ShallowEmbed(cfg.in_chans, cfg.embed_dim)
        self.embed_vi = ShallowEmbed(cfg.in_chans, cfg.embed_dim)
        v = cfg.variant
        self.extractor = None if v == "wo_feature_extraction" else DiffDrivenExtractor(cfg)
        self.channel_exchange = None if v == "wo_channel_exchange" else ChannelExchange(cfg)
        self.spatial_exchange = None if v == "wo_spatial_exchange" else SpatialExchange(cfg)
        self.decoder = Decoder(cfg.embed_dim, cfg.in_chans)

    def forward(self, ir: Tensor, vi: Tensor) -> Tensor:
        """ir, vi: (B, 1, H, W) in [0, 1], any H x W -> fused (B, 1, H, W) in [0, 1]."""
        if ir.shape != vi.shape or ir.dim() != 4 or ir.shape[1] != self.config.in_chans:
            raise ValueError(f"ir and vi must both be (B, {self.config.in_chans}, H, W); got {tuple(ir.shape)} and {tuple(vi.shape)}")
        ir, (h, w) = pad_to_multiple(ir, self.config.pad_multiple)
        vi, _ = pad_to_multiple(vi, self.config.pad_multiple)
        f_ir, f_vi = self.embed_ir(ir), self.embed_vi(vi)
        if self.extractor is not None:
            f_ir, f_vi = self.extractor(f_ir, f_vi)
        if self.channel_exchange is not None:
            f_ir, f_vi = self.channel_exchange(f_ir, f_vi)
        if self.spatial_exchange is not None:
            fused = self.spatial_exchange(f_ir, f_vi)
        else:  # Table II: spatial exchange replaced by averaging
            fused = (f_ir + f_vi) * 0.5
        return self.decoder(fused)[..., :h, :w]
