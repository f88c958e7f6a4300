"""A small configurable UNet ``D(x_t, t) -> x0`` for DifFIQA, sized for CPU training.

Layout (four down / four up levels, as in the paper): ``112 -> 56 -> 28 -> 14 -> 7`` and back.
Each level has ``num_res_blocks`` residual blocks (GroupNorm + SiLU + 3x3 conv, the timestep
embedding injected as a per-channel scale and shift), optional multi-head self-attention at the
resolutions listed in ``attn_resolutions``, and a skip connection to the mirrored up level.
The timestep is a sinusoidal embedding followed by a 2-layer MLP. The output is the predicted
clean image (x0 prediction), ``(N, 3, 112, 112)``, nominally in [-1, 1] (not clamped here).

The official DifFIQA UNet has ~143M parameters (width 128, multipliers 1-2-4-8); the presets
here (:data:`PRESETS`) are 1-15M so that the model trains and runs on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

from ..errors import InvalidArgumentError


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`.

    ``dim`` is the width of the first level; level ``k`` has ``dim * mults[k]`` channels.
    ``attn_resolutions`` are feature-map sides (of 112, 56, 28, 14, 7) that get self-attention;
    7 is the bottleneck. ``residual`` makes the output ``x_t + UNet(x_t, t)``: still an x0
    prediction, but one that starts as the identity, which suits DifFIQA's small noise levels
    (``t < 100``: ``x_t`` is already close to ``x0``) and a short CPU training budget.
    """

    dim: int = 32
    mults: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (7,)
    attn_heads: int = 4
    norm_groups: int = 8
    dropout: float = 0.0
    image_size: int = 112
    in_channels: int = 3
    residual: bool = False  # predict x0 as x_t + UNet(x_t, t)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mults"] = list(self.mults)
        d["attn_resolutions"] = list(self.attn_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = dict(d)
        d["mults"] = tuple(d.get("mults", cls.mults))
        d["attn_resolutions"] = tuple(d.get("attn_resolutions", cls.attn_resolutions))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


#: Named sizes. Parameter counts and CPU timings: see docs/diffiqa-training.md.
PRESETS: dict[str, UNetConfig] = {
    # ~0.84M parameters
    "tiny": UNetConfig(dim=16, mults=(1, 2, 4, 4), num_res_blocks=1, attn_resolutions=(7,), residual=True),
    # ~3.4M
    "small": UNetConfig(dim=32, mults=(1, 2, 4, 4), num_res_blocks=1, attn_resolutions=(7,), residual=True),
    # ~11.3M
    "base": UNetConfig(dim=48, mults=(1, 2, 4, 4), num_res_blocks=2, attn_resolutions=(14, 7),
                       residual=True),
}


def unet_config(preset: str | UNetConfig | dict = "small", **overrides) -> UNetConfig:
    """A :class:`UNetConfig` from a preset name, a dict or a config, with keyword overrides."""
    if isinstance(preset, UNetConfig):
        cfg = preset
    elif isinstance(preset, dict):
        cfg = UNetConfig.from_dict(preset)
    else:
        if preset not in PRESETS:
            raise InvalidArgumentError(f"unknown UNet preset {preset!r}; available: {', '.join(PRESETS)}")
        cfg = PRESETS[preset]
    if overrides:
        cfg = UNetConfig.from_dict({**cfg.to_dict(), **overrides})
    return cfg


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(N,) -> (N, dim)`` (sin half, cos half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    g = math.gcd(ch, groups)
    return nn.GroupNorm(g, ch)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, 2 * cout)
        self.norm2 = _norm(cout, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.temb(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return h + self.skip(x)


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map (pre-norm, residual)."""

    def __init__(self, ch: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        o = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(o.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    """``forward(x, t)``: ``x`` ``(N, 3, S, S)`` float in [-1, 1], ``t`` ``(N,)`` long time
    indices -> predicted x0 ``(N, 3, S, S)``. ``S`` must be divisible by ``2 ** len(mults)``."""

    def __init__(self, config: UNetConfig | str | dict = "small", **overrides) -> None:
        super().__init__()
        cfg = unet_config(config, **overrides)
        self.config = cfg
        g, tdim = cfg.norm_groups, cfg.dim * 4
        self.time_mlp = nn.Sequential(nn.Linear(cfg.dim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.dim, 3, padding=1)

        chans = [cfg.dim * m for m in cfg.mults]
        self.down = nn.ModuleList()
        res, cin = cfg.image_size, cfg.dim
        for cout in chans:
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout, tdim, g, cfg.dropout))
                cin = cout
            attn = Attention(cout, cfg.attn_heads, g) if res in cfg.attn_resolutions else nn.Identity()
            self.down.append(nn.ModuleDict({
                "blocks": blocks, "attn": attn, "pool": nn.Conv2d(cout, cout, 3, stride=2, padding=1)}))
            res //= 2
        self.mid1 = ResBlock(cin, cin, tdim, g, cfg.dropout)
        self.mid_attn = Attention(cin, cfg.attn_heads, g) if res in cfg.attn_resolutions else nn.Identity()
        self.mid2 = ResBlock(cin, cin, tdim, g, cfg.dropout)

        self.up = nn.ModuleList()
        below = cin
        for cout in reversed(chans):
            res *= 2
            blocks = nn.ModuleList()
            c = 2 * cout  # the first block sees the up-sampled features and the skip
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, cout, tdim, g, cfg.dropout))
                c = cout
            attn = Attention(cout, cfg.attn_heads, g) if res in cfg.attn_resolutions else nn.Identity()
            self.up.append(nn.ModuleDict({
                "upconv": nn.Conv2d(below, cout, 3, padding=1), "blocks": blocks, "attn": attn}))
            below = cout
        self.norm_out = _norm(cfg.dim * cfg.mults[0], g)
        self.conv_out = nn.Conv2d(cfg.dim * cfg.mults[0], cfg.in_channels, 3, padding=1)
        if cfg.residual:  # start as the identity x0 = x_t
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.config.dim))
        h = self.conv_in(x)
        skips = []
        for lvl in self.down:
            for blk in lvl["blocks"]:
                h = blk(h, temb)
            h = lvl["attn"](h)
            skips.append(h)
            h = lvl["pool"](h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for lvl in self.up:
            h = lvl["upconv"](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = torch.cat([h, skips.pop()], dim=1)
            for blk in lvl["blocks"]:
                h = blk(h, temb)
            h = lvl["attn"](h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return x + out if self.config.residual else out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
