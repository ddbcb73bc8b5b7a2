"""Contextual-attention refinement (Yu et al. 2018, "Generative Image Inpainting with Contextual Attention").

The CA variant (docs/original.md 1.15) refines the coarse SSuperVAE face inside its panel: the coarse face is
pasted into the masked last panel, a two-branch fine generator (dilated "hallucination" convs and a
contextual-attention branch that copies features from the known part of the panel) repaints the hole,
and two WGAN critics judge the fine face (64x64) and the whole fine panel.

Differences from the original code:

* :class:`ContextualAttention` uses **each sample's own mask** (the original applied sample 0's mask to
  the whole batch), so a sample's output does not depend on the other samples of its batch.
* The hole mask is reduced to the matching resolution with max-pooling (a background patch is valid only
  if it touches no hole pixel at all); the original used nearest subsampling, which can miss thin holes.
* No optical-flow visualisation is computed in the forward pass (the original did it on CPU every call).
* Any panel size: the up-sampling in the fine generator goes back to the exact input size and the global
  critic's Linear is sized from the panel size (for 256 px it is the original's 32768 -> 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ContextualAttention", "FineGenerator", "LocalCritic", "GlobalCritic"]


def _gen_conv(in_ch: int, out_ch: int, k: int, stride: int = 1, dilation: int = 1, act: str = "elu") -> nn.Sequential:
    """Conv (bias, "same" padding for odd k) + ELU / ReLU / nothing, no norm (Yu et al.'s gen_conv)."""
    pad = dilation * (k - 1) // 2
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, k, stride, pad, dilation=dilation)]
    if act == "elu":
        layers.append(nn.ELU())
    elif act == "relu":
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ContextualAttention(nn.Module):
    """Fill the hole of a foreground feature map with softmax-weighted background patches.

    Per sample: match 3x3 patches of the half-resolution features (cosine similarity as a convolution),
    propagate scores along both image axes ("fuse"), keep only background patches outside the sample's
    own hole, softmax over patches (scale ``softmax_scale``), and reconstruct from the full-resolution
    2*rate x 2*rate raw patches with a transposed convolution.
    """

    def __init__(self, ksize: int = 3, rate: int = 2, fuse_k: int = 3, softmax_scale: float = 10.0, fuse: bool = True):
        super().__init__()
        self.ksize, self.rate, self.fuse_k = ksize, rate, fuse_k
        self.softmax_scale, self.fuse = softmax_scale, fuse
        self.register_buffer("fuse_weight", torch.eye(fuse_k).view(1, 1, fuse_k, fuse_k), persistent=False)

    def _fuse(self, s: torch.Tensor, hs: int, ws: int) -> torch.Tensor:
        """s (L_bg, L_fg) with row-major (y, x) order on both axes; propagate along x, then along y."""
        pad = self.fuse_k // 2
        L = hs * ws
        s = F.conv2d(s.view(1, 1, L, L), self.fuse_weight, padding=pad).view(hs, ws, hs, ws)
        s = s.permute(1, 0, 3, 2).reshape(1, 1, L, L)  # column-major (x, y) order
        s = F.conv2d(s, self.fuse_weight, padding=pad).view(ws, hs, ws, hs)
        return s.permute(1, 0, 3, 2).reshape(L, L)

    def forward(self, fg: torch.Tensor, bg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """fg, bg (B, C, h, w) features; mask (B, 1, H, W) at any resolution, 1 inside the hole."""
        B, C, h, w = fg.shape
        r = self.rate
        hs, ws = math.ceil(h / r), math.ceil(w / r)
        k_raw = 2 * r
        outs = []
        for i in range(B):
            b_i = bg[i : i + 1]
            # raw background patches (L, C, 2r, 2r) at stride r, one per half-resolution position
            pad_h, pad_w = max((hs - 1) * r + k_raw - h, 0), max((ws - 1) * r + k_raw - w, 0)
            b_pad = F.pad(b_i, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            raw = F.unfold(b_pad, k_raw, stride=r)  # (1, C*k*k, L)
            raw = raw[0].t().reshape(hs * ws, C, k_raw, k_raw)
            f_s = F.interpolate(fg[i : i + 1], size=(hs, ws), mode="nearest")  # (1, C, hs, ws)
            b_s = F.interpolate(b_i, size=(hs, ws), mode="nearest")
            p = self.ksize // 2
            w_patches = F.unfold(b_s, self.ksize, padding=p)[0].t().reshape(hs * ws, C, self.ksize, self.ksize)
            norm = w_patches.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
            scores = F.conv2d(f_s, w_patches / norm, padding=p)  # (1, L, hs, ws)
            if self.fuse:
                scores = self._fuse(scores.view(hs * ws, hs * ws), hs, ws).view(1, hs * ws, hs, ws)
            # this sample's hole: a background patch is usable only if none of its pixels is in the hole
            m = F.adaptive_max_pool2d(mask[i : i + 1].float(), (hs, ws))  # (1, 1, hs, ws)
            m_patch = F.unfold(m, self.ksize, padding=p)[0]  # (k*k, L)
            valid = (m_patch.amax(dim=0) == 0).to(scores.dtype).view(1, -1, 1, 1)  # (1, L, 1, 1)
            scores = scores * valid
            attn = F.softmax(scores * self.softmax_scale, dim=1) * valid
            out = F.conv_transpose2d(attn, raw, stride=r, padding=r // 2) / 4.0  # (1, C, ~h, ~w)
            outs.append(out[..., :h, :w])
        return torch.cat(outs, dim=0)


class FineGenerator(nn.Module):
    """Coarse-filled panel + mask -> refined panel (B, 3, H, W), clamped to [-1, 1] (docs/original.md 1.15).

    Input channels: [x (3), ones (1), mask (1)]. Width ``cnum`` (original 64 for 256 px panels:
    8,592,067 parameters). Features run at 1/4 of the panel resolution.
    """

    def __init__(self, cnum: int = 64):
        super().__init__()
        c = cnum
        self.conv_branch = nn.Sequential(
            _gen_conv(5, c, 5), _gen_conv(c, c, 3, 2), _gen_conv(c, 2 * c, 3), _gen_conv(2 * c, 2 * c, 3, 2),
            _gen_conv(2 * c, 4 * c, 3), _gen_conv(4 * c, 4 * c, 3),
            _gen_conv(4 * c, 4 * c, 3, dilation=2), _gen_conv(4 * c, 4 * c, 3, dilation=4),
            _gen_conv(4 * c, 4 * c, 3, dilation=8), _gen_conv(4 * c, 4 * c, 3, dilation=16),
        )
        self.attn_pre = nn.Sequential(
            _gen_conv(5, c, 5), _gen_conv(c, c, 3, 2), _gen_conv(c, 2 * c, 3), _gen_conv(2 * c, 4 * c, 3, 2),
            _gen_conv(4 * c, 4 * c, 3), _gen_conv(4 * c, 4 * c, 3, act="relu"),
        )
        self.attention = ContextualAttention(ksize=3, rate=2, fuse_k=3, softmax_scale=10.0, fuse=True)
        self.attn_post = nn.Sequential(_gen_conv(4 * c, 4 * c, 3), _gen_conv(4 * c, 4 * c, 3))
        self.merge = nn.Sequential(_gen_conv(8 * c, 4 * c, 3), _gen_conv(4 * c, 4 * c, 3))
        self.up1 = nn.Sequential(_gen_conv(4 * c, 2 * c, 3), _gen_conv(2 * c, 2 * c, 3))
        self.up2 = nn.Sequential(_gen_conv(2 * c, c, 3), _gen_conv(c, c // 2, 3), _gen_conv(c // 2, 3, 3, act="none"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) panel with the coarse face in the hole; mask (B, 1, H, W), 1 in the hole."""
        H, W = x.shape[-2:]
        inp = torch.cat([x, torch.ones_like(mask), mask], dim=1)  # (B, 5, H, W)
        h_conv = self.conv_branch(inp)  # (B, 4c, ~H/4, ~W/4)
        h_attn = self.attn_pre(inp)
        h_attn = self.attn_post(self.attention(h_attn, h_attn, mask))
        y = self.merge(torch.cat([h_conv, h_attn], dim=1))  # (B, 4c, H/4, W/4)
        y = self.up1(F.interpolate(y, size=(math.ceil(H / 2), math.ceil(W / 2)), mode="nearest"))  # x2
        y = self.up2(F.interpolate(y, size=(H, W), mode="nearest"))  # (B, 3, H, W)
        return y.clamp(-1.0, 1.0)


def _critic_convs(c: int) -> nn.Sequential:
    """WGAN critic trunk: conv k5 s2 p2 3->c->2c->4c->4c, LReLU 0.2, no norm."""
    return nn.Sequential(
        nn.Conv2d(3, c, 5, 2, 2), nn.LeakyReLU(0.2),
        nn.Conv2d(c, 2 * c, 5, 2, 2), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * c, 4 * c, 5, 2, 2), nn.LeakyReLU(0.2),
        nn.Conv2d(4 * c, 4 * c, 5, 2, 2), nn.LeakyReLU(0.2),
    )


class LocalCritic(nn.Module):
    """WGAN critic on faces (B, 3, 64, 64) -> scores (B,). c=32: 670,401 parameters."""

    def __init__(self, channels: int = 32, img_size: int = 64):
        super().__init__()
        self.convs = _critic_convs(channels)
        side = img_size
        for _ in range(4):
            side = (side + 1) // 2
        self.fc = nn.Linear(4 * channels * side * side, 1)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(faces).flatten(1)).squeeze(1)


class GlobalCritic(nn.Module):
    """WGAN critic on whole panels (B, 3, H, W) -> scores (B,); Linear sized from ``panel_size``.

    c=32 at 256 px: 701,121 parameters (the original's Linear(32768 -> 1)).
    """

    def __init__(self, panel_size: tuple[int, int], channels: int = 32):
        super().__init__()
        self.convs = _critic_convs(channels)
        h, w = int(panel_size[0]), int(panel_size[1])
        for _ in range(4):
            h, w = (h + 1) // 2, (w + 1) // 2
        self.fc = nn.Linear(4 * channels * h * w, 1)
        self.panel_size = (int(panel_size[0]), int(panel_size[1]))

    def forward(self, panels: torch.Tensor) -> torch.Tensor:
        if tuple(panels.shape[-2:]) != self.panel_size:
            raise ValueError(f"GlobalCritic: built for {self.panel_size} panels, got {tuple(panels.shape[-2:])}")
        return self.fc(self.convs(panels).flatten(1)).squeeze(1)
