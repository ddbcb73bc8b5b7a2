"""Discriminators on faces and whole panels, and the face paste that builds the global inputs.

* :class:`LocalDiscriminator`: the DCGAN discriminator on 64x64 faces (docs/original.md 1.10), logits.
* :class:`GlobalDiscriminator`: the same conv stack on whole panels (docs/original.md 1.11), channels capped at
  512. The original ended with a 4x4 conv meant to leave 1x1, which holds only for square panels. Here the
  final 4x4 conv yields a patch map of logits that is averaged to one logit per panel, so any size and
  aspect ratio works; for square 256/300 px panels the map is 1x1 and the network (11,156,224 parameters)
  is the **main branch's** global D (docs/original.md 1.11, the Bi-LSTM-SSuperGlobalGAN row). The ``global-disc``
  branch, which most likely produced the Plain-SSuperGlobalGAN row (docs/original.md 1.14), used an uncapped
  stack (64 -> 2048 channels, 44,739,328 parameters at 256 px) ending in a Sigmoid; ``max_channels=2048``
  gives its channel widths, the logits replace its Sigmoid.
* :func:`paste_faces`: faces resized (bilinear) to their mask boxes and pasted into a copy of the panels.
  The original pasted with nearest resizing into a view of its input (overwriting the batch in place),
  swapped H and W names (square panels only) and, at HEAD, pasted detached faces (no gradient). This paste
  never mutates its inputs, handles H != W and is differentiable with respect to the faces.
* :func:`crop_faces`: the inverse (crop each box, resize to a square face), used by the CA variant.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .generator import make_norm

__all__ = ["LocalDiscriminator", "GlobalDiscriminator", "paste_faces", "crop_faces", "box_list"]


def _disc_block(in_ch: int, out_ch: int, norm: str, hw: tuple[int, int] | None, first: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False)]
    if not first:
        layers.append(make_norm(norm, out_ch, hw))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class LocalDiscriminator(nn.Module):
    """Faces (B, 3, 64, 64) -> logits (B,): conv k4 s2 64->128->256->512 (norm, LReLU 0.2) + conv 4x4.

    2,765,568 parameters at ndf=64 with batch norm; no sigmoid (use BCE-with-logits).
    """

    def __init__(self, ndf: int = 64, img_size: int = 64, norm: str = "batch"):
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, ch, size = 3, ndf, img_size
        first = True
        while size > 4:
            size //= 2
            layers += _disc_block(ch_in, ch, norm, (size, size), first)
            first = False
            ch_in, ch = ch, min(ch * 2, ndf * 8)
        layers.append(nn.Conv2d(ch_in, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.net(faces).flatten(1).mean(dim=1)  # (B,)


class GlobalDiscriminator(nn.Module):
    """Panels (B, 3, H, W) of any size -> logits (B,).

    Stride-2 k4 convs while the shorter side is > 4 (as the original: six for 256 or 300 px), channels doubling
    from ``ndf`` and capped at ``max_channels``; then a k4 conv giving a patch map of logits, averaged.
    """

    def __init__(self, panel_size: tuple[int, int], ndf: int = 64, norm: str = "batch", max_channels: int = 512):
        super().__init__()
        h, w = int(panel_size[0]), int(panel_size[1])
        layers: list[nn.Module] = []
        ch_in, ch = 3, ndf
        first = True
        while min(h, w) > 4:
            h, w = h // 2, w // 2
            layers += _disc_block(ch_in, ch, norm, (h, w), first)
            first = False
            ch_in, ch = ch, min(ch * 2, max_channels)
        k = min(4, h, w)
        layers.append(nn.Conv2d(ch_in, 1, k, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        self.patch_map = (h - k + 1, w - k + 1)  # logits averaged over this map

    def forward(self, panels: torch.Tensor) -> torch.Tensor:
        return self.net(panels).flatten(1).mean(dim=1)  # (B,)


def box_list(mask_coords: torch.Tensor, H: int, W: int) -> list[tuple[int, int, int, int]]:
    """(B, 4) (y1, y2, x1, x2) end-exclusive -> python ints, validated against an (H, W) panel."""
    coords = mask_coords.detach().to("cpu", torch.int64).tolist()
    boxes = []
    for i, (y1, y2, x1, x2) in enumerate(coords):
        if y2 <= y1 or x2 <= x1:
            raise ValueError(f"mask_coords[{i}] = {(y1, y2, x1, x2)}: empty box (expected y1 < y2, x1 < x2)")
        if y2 <= 0 or x2 <= 0 or y1 >= H or x1 >= W:
            raise ValueError(f"mask_coords[{i}] = {(y1, y2, x1, x2)}: box lies outside the {H}x{W} panel")
        boxes.append((y1, y2, x1, x2))
    return boxes


def paste_faces(panels: torch.Tensor, faces: torch.Tensor, mask_coords: torch.Tensor) -> torch.Tensor:
    """A new tensor: ``panels`` with each face resized (bilinear) to its box (y1, y2, x1, x2) and pasted.

    panels (B, 3, H, W), faces (B, 3, h, w), mask_coords (B, 4) end-exclusive resized-panel pixels. The
    inputs are never modified; the result is differentiable w.r.t. ``faces`` (and ``panels`` outside the
    boxes). A box that crosses the panel border is resized whole and clipped.
    """
    if panels.dim() != 4 or faces.dim() != 4 or panels.shape[0] != faces.shape[0]:
        raise ValueError(f"paste_faces: expected panels (B,3,H,W) and faces (B,3,h,w), got {tuple(panels.shape)} and {tuple(faces.shape)}")
    H, W = panels.shape[-2:]
    out = panels.clone()
    for i, (y1, y2, x1, x2) in enumerate(box_list(mask_coords, H, W)):
        face = F.interpolate(faces[i : i + 1], size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)[0]
        cy1, cy2, cx1, cx2 = max(y1, 0), min(y2, H), max(x1, 0), min(x2, W)
        out[i, :, cy1:cy2, cx1:cx2] = face[:, cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1].to(out.dtype)
    return out


def crop_faces(panels: torch.Tensor, mask_coords: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Crop each box (clipped to the panel) and resize it bilinearly to (size, size): (B, 3, size, size)."""
    H, W = panels.shape[-2:]
    crops = []
    for i, (y1, y2, x1, x2) in enumerate(box_list(mask_coords, H, W)):
        crop = panels[i : i + 1, :, max(y1, 0) : min(y2, H), max(x1, 0) : min(x2, W)]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(crops, dim=0)
