"""Face generators: the DCGAN generator (docs/original.md 1.8) and the IntroVAE residual decoder (1.9).

Both map z (B, latent) to a face (B, 3, img_size, img_size) in the kit's [-1, 1] convention.

Differences from the original code:

* The IntroVAE decoder ends with ``tanh`` by default (``vae_output="tanh"``). The original had no output
  activation: faces were unbounded and clamped only for display/PSNR, so the Gaussian NLL could push
  pixels outside the image range. ``vae_output="none"`` restores the original behaviour. The parameter
  count is unchanged (tanh has no parameters).
* Residual blocks test ``in_ch != out_ch`` by value (the original compared ints with ``is not``).
* The LayerNorm of the DCGAN generator is sized per layer (the original used ngf*8 for the first layer
  whatever the image size; the same for the 64 px faces of every reported model).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

__all__ = ["DCGANGenerator", "IntroVAEDecoder", "ResidualBlock", "make_norm", "dcgan_init"]


def make_norm(kind: str, channels: int, hw: int | tuple[int, int] | None = None) -> nn.Module:
    """batch | instance (affine) | layer (LayerNorm over (C, H, W), needs ``hw``) | none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        if hw is None:
            raise ValueError("layer norm needs the spatial size")
        h, w = (hw, hw) if isinstance(hw, int) else hw
        return nn.LayerNorm([channels, h, w])
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm {kind!r}: expected batch, instance, layer or none")


def dcgan_init(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02); norm weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.LayerNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """z (B, latent) -> ConvT k4 stack (4 -> 8 -> ... -> img_size) with norm + ReLU -> tanh.

    For 64 px and ngf=64: nz->512@4, 256@8, 128@16, 64@32, 3@64 (6,951,808 parameters at latent 512).
    """

    def __init__(self, latent_dim: int, ngf: int = 64, img_size: int = 64, norm: str = "batch"):
        super().__init__()
        n_up = int(round(math.log2(img_size / 4)))
        if 4 * 2**n_up != img_size or n_up < 1:
            raise ValueError(f"model.img_size: the DCGAN generator needs 4 * 2^k, got {img_size}")
        self.latent_dim = latent_dim
        ch = ngf * 2 ** (n_up - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=False),
            make_norm(norm, ch, 4),
            nn.ReLU(True),
        ]
        size = 4
        for _ in range(n_up - 1):
            size *= 2
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), make_norm(norm, ch // 2, size), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]  # (B, latent, 1, 1)
        return self.net(z)  # (B, 3, img, img)


class ResidualBlock(nn.Module):
    """IntroVAE block: [1x1 expand if in != out] + conv3 -> norm -> lrelu -> conv3, add, norm -> lrelu."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch", hw: int | None = None):
        super().__init__()
        self.expand = nn.Conv2d(in_ch, out_ch, 1, bias=False) if in_ch != out_ch else None
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.norm1 = make_norm(norm, out_ch, hw)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = make_norm(norm, out_ch, hw)
        self.act = nn.LeakyReLU(0.2, inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.expand is None else self.expand(x)
        out = self.act(self.norm1(self.conv1(x)))
        out = self.conv2(out) + identity
        return self.act(self.norm2(out))


class IntroVAEDecoder(nn.Module):
    """z -> Linear -> (c_last, 4, 4) -> [res block, nearest x2] per width (reversed) -> res block -> conv5.

    With ``channels=[64, 128, 256, 512]`` and 64 px faces: 9,401,027 parameters at latent 256.
    """

    def __init__(self, latent_dim: int, channels: Sequence[int] = (64, 128, 256, 512), img_size: int = 64,
                 norm: str = "batch", output: str = "tanh"):
        super().__init__()
        channels = list(channels)
        if 4 * 2 ** len(channels) != img_size:
            raise ValueError(f"model.vae_channels: need 4 * 2^len(channels) == img_size, got {len(channels)} widths for {img_size} px")
        if output not in ("tanh", "none"):
            raise ValueError(f"model.vae_output: expected tanh or none, got {output!r}")
        self.latent_dim = latent_dim
        top = channels[-1]
        self.fc = nn.Sequential(nn.Linear(latent_dim, top * 16), nn.ReLU(True))
        self.top = top
        blocks: list[nn.Module] = []
        prev, size = top, 4
        for ch in reversed(channels):
            blocks += [ResidualBlock(prev, ch, norm, size), nn.Upsample(scale_factor=2, mode="nearest")]
            prev, size = ch, size * 2
        blocks.append(ResidualBlock(prev, prev, norm, size))
        blocks.append(nn.Conv2d(prev, 3, 5, 1, 2, bias=True))
        if output == "tanh":
            blocks.append(nn.Tanh())
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z.flatten(1)).view(z.shape[0], self.top, 4, 4)  # (B, C, 4, 4)
        return self.net(x)  # (B, 3, img, img)
