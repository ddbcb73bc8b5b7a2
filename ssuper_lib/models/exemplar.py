"""Exemplar-SSuperGAN: attend from the masked panel over the faces of the context panels (beyond the original).

The nine original variants compress three panels into one latent vector and decode a face from it; on
synthetic comics that latent carries little identity, and the faces are an average face. This tenth
variant, registered beside the nine as ``ssuper_exemplar``, adds the mechanism the paper's idea needs:

1. **Candidates** (:mod:`ssuper_lib.exemplars`): the faces detected in p1 and p2, each with its
   surroundings (hair, neck, clothes; face greyed out) and its position.
2. **Query**: the surroundings and position of the masked face in the last panel.
3. **Attention**: ``score_c = <W_q enc(query), W_k [enc(surroundings_c), face_enc(face_c), pos_c]> / sqrt(d)``
   over the valid candidates plus a learned *null* candidate (the answer when no context face shows the
   character, and for samples with no context face at all).
4. **Generation**: the face is drawn from the attended exemplar: a small conv generator takes the
   selected face pixels, the attended face features and the latent z of the original encoder (q(z | panels),
   for variation) and paints a residual on the exemplar: ``face = clamp(exemplar + R(exemplar, v, z))``.
   With ``exemplar_hard`` the exemplar is the arg-max candidate (straight-through gradient to the
   attention), so training and evaluation see the same input.

The model keeps the whole SSuperGAN (panel encoder, latent head, DCGAN generator for prior samples,
local discriminator), so it trains in the same engine with the same losses, plus a selection loss on the
attention logits whose target is the candidate nearest to the true face in coarse colour layout, or the null
candidate when none is nearer than the null face (self-supervised: no identity labels are used, so it can be
computed on real COMICS; how well it works there is not measured, see docs/results.md "The realism ladder").
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .ssuper import SEQ_LEN, SSuperGAN

__all__ = ["CropEncoder", "ExemplarAttention", "ExemplarGenerator", "SSuperExemplar", "selection_target"]


class CropEncoder(nn.Module):
    """(B, 3, s, s) in [-1, 1] -> (B, dim): area-resized to 16x16 (colours and coarse layout are what tell
    characters apart at this scale), a 1x1 colour mixing, three stride-2 convolutions to a 2x2 map that is
    flattened (keeps the layout: hair above, clothes below), Linear. Small: it runs on every candidate."""

    SIZE = 16

    def __init__(self, dim: int = 128, width: int = 16):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 1), nn.LeakyReLU(0.2, inplace=True),  # (B, w, 16, 16)
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # (B, 2w, 8, 8)
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # (B, 4w, 4, 4)
            nn.Conv2d(4 * w, 4 * w, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # (B, 4w, 2, 2)
        )
        self.fc = nn.Linear(4 * w * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.SIZE or x.shape[-2] != self.SIZE:
            x = F.adaptive_avg_pool2d(x, self.SIZE)
        return self.fc(self.net(x).flatten(1))


class ExemplarAttention(nn.Module):
    """Scores of the candidates (B, C) and of a learned null candidate.

    ``scorer="metric"`` (default): a *learned nearest-surroundings rule*. A candidate's score is minus the
    weighted squared distance between the THUMBxTHUMB colour thumbnails of its surroundings and the query's,
    normalised per sample by the mean over its valid candidates, times a learned temperature. The weights
    (one per thumbnail cell and colour, positive, mean 1) start uniform, i.e. as the fixed nearest-context
    baseline, and learn which regions tell characters apart (clothes and hair more than background). It has
    3 * THUMB^2 + 2 parameters: with a few dozen training series it cannot memorise them.

    ``scorer="metric+mlp"`` adds an MLP (starting at zero) on comparisons with the query: the absolute
    difference of the thumbnails, the absolute difference and product of learned surroundings features,
    both positions and the candidate face's features. With the pixel-MSE selection target it ended below the
    untrained rule on the demo's validation series; with the colour-layout target it is no better than the
    metric alone (docs/exemplar.md). Kept for that ablation.
    """

    THUMB = 12
    SCORERS = ("metric", "metric+mlp")

    def __init__(self, dim: int = 128, width: int = 16, dropout: float = 0.0, scorer: str = "metric"):
        super().__init__()
        if scorer not in self.SCORERS:
            raise ValueError(f"exemplar scorer {scorer!r}: expected one of {self.SCORERS}")
        self.scorer = scorer
        self.face_enc = CropEncoder(dim, width)  # features of the attended face, for the exemplar generator
        n_thumb = 3 * self.THUMB * self.THUMB
        self.region_logits = nn.Parameter(torch.zeros(n_thumb))  # softmax * n_thumb = weights; 0 = uniform
        self.prior_weight = nn.Parameter(torch.tensor(3.0))  # temperature: about -3 at the mean distance
        self.null_score = nn.Parameter(torch.tensor([-6.0]))  # the null candidate starts below any real one
        self.ctx_enc = self.score = None
        if scorer == "metric+mlp":
            self.ctx_enc = CropEncoder(dim, width)  # shared by query and candidate surroundings
            self.score = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(n_thumb + 3 * dim + 6, dim), nn.LeakyReLU(0.2, inplace=True),
                nn.Dropout(dropout), nn.Linear(dim, dim), nn.LeakyReLU(0.2, inplace=True), nn.Linear(dim, 1),
            )
            nn.init.zeros_(self.score[-1].weight)  # the learned part starts at 0: the metric decides at first
            nn.init.zeros_(self.score[-1].bias)
        self.dim = dim

    def selector_parameters(self) -> list[nn.Parameter]:
        """The metric's parameters (own optimiser, ``train.select_lr``): region weights, temperature, null score."""
        return [self.region_logits, self.prior_weight, self.null_score]

    def region_weights(self) -> torch.Tensor:
        """(3, THUMB, THUMB) positive weights of the thumbnail distance, mean 1."""
        n = self.region_logits.numel()
        return (self.region_logits.softmax(0) * n).view(3, self.THUMB, self.THUMB)

    def forward(self, query_ctx, query_geo, cand_ctx, cand_face, cand_geo, cand_valid):
        B, C = cand_valid.shape
        null = self.null_score.expand(B, 1)
        if not C:
            return null, query_ctx.new_zeros(B, 0, self.dim)
        tq = F.adaptive_avg_pool2d(query_ctx, self.THUMB).flatten(1)  # (B, 3 T^2)
        tc = F.adaptive_avg_pool2d(cand_ctx.flatten(0, 1), self.THUMB).view(B, C, -1)  # (B, C, 3 T^2)
        fe = self.face_enc(cand_face.flatten(0, 1)).view(B, C, -1)  # (B, C, d)
        d = ((tc - tq[:, None]).square() * self.region_weights().flatten()).mean(-1)  # (B, C) weighted distance
        dv = d.masked_fill(~cand_valid, 0.0)
        scale = dv.sum(1, keepdim=True) / cand_valid.sum(1, keepdim=True).clamp(min=1) + 1e-6
        scores = -self.prior_weight * d / scale  # (B, C): 0 at distance 0, about -3 at the mean distance
        if self.score is not None:
            eq = self.ctx_enc(query_ctx)  # (B, d)
            ec = self.ctx_enc(cand_ctx.flatten(0, 1)).view(B, C, -1)  # (B, C, d)
            eqx = eq[:, None].expand_as(ec)
            pair = torch.cat([(tc - tq[:, None]).abs(), (ec - eqx).abs(), ec * eqx, fe,
                              query_geo[:, None].expand(B, C, -1), cand_geo], -1)  # (B, C, 3 T^2 + 3d + 6)
            scores = scores + self.score(pair).squeeze(-1)
        logits = torch.cat([null, scores], 1)  # (B, 1 + C): slot 0 = null
        valid = torch.cat([torch.ones_like(cand_valid[:, :1]), cand_valid], 1)
        return logits.masked_fill(~valid, float("-inf")), fe


class ExemplarGenerator(nn.Module):
    """Residual painter on the selected exemplar: (exemplar (B,3,64,64), code (B, c)) -> face (B, 3, 64, 64).

    Down to 16x16, the code joined there, back up with bilinear upsampling; the residual's last conv starts
    at zero, so an untrained generator returns the exemplar itself."""

    def __init__(self, code_dim: int, width: int = 16, img_size: int = 64):
        super().__init__()
        w = width
        # the null candidate's face: learned, starts grey (the data's mean face is close to it)
        self.null_face = nn.Parameter(torch.zeros(3, img_size, img_size))
        self.down = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # (B, w, 32, 32)
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, inplace=True),  # (B, 2w, 16, 16)
        )
        self.code = nn.Linear(code_dim, 2 * w)
        self.mid = nn.Sequential(nn.Conv2d(4 * w, 2 * w, 3, 1, 1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True))
        self.up1 = nn.Sequential(nn.Conv2d(2 * w, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True))  # at 32x32
        self.out = nn.Conv2d(w, 3, 3, 1, 1)  # at 64x64
        nn.init.zeros_(self.out.weight)  # start as the identity on the exemplar
        nn.init.zeros_(self.out.bias)

    def forward(self, exemplar: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.down(exemplar)  # (B, 2w, 16, 16)
        c = self.code(code)[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        h = self.mid(torch.cat([h, c], 1))  # (B, 2w, 16, 16)
        h = self.up1(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False))  # (B, w, 32, 32)
        r = self.out(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False))  # (B, 3, 64, 64)
        return (exemplar + r).clamp(-1, 1)


def selection_target(cand_face: torch.Tensor, cand_valid: torch.Tensor, null_face: torch.Tensor,
                     face: torch.Tensor, size: int = 4, null_margin: float = 1.0) -> torch.Tensor:
    """(B,) index in [0, 1 + C) of the slot whose face is nearest to the true ``face``; slot 0 is the null
    candidate (``null_face``, (3, F, F)).

    Faces are compared as ``size`` x ``size`` average-pooled colour layouts (mean squared error): skin, hair
    and clothes colours, which is what identifies a character, and not the exact pose. At full resolution
    (``size`` = F) a blurry null face is nearer than a misaligned face of the right character for about half
    of the samples, and the selection learns to answer "not in context" when the character is there.
    ``null_margin`` multiplies the null face's error: above 1 a candidate must be that much nearer than the
    null face to lose (printed, turned or greyscale faces are far from every candidate, right or wrong).
    """
    def pooled(x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.adaptive_avg_pool2d(x, size)
        return x.reshape(*lead, -1)

    f = pooled(face)  # (B, D)
    err_null = (pooled(null_face[None]) - f).square().mean(1, keepdim=True)  # (B, 1)
    if null_margin != 1.0:
        err_null = err_null * null_margin
    if cand_face.shape[1]:
        err = (pooled(cand_face) - f[:, None]).square().mean(2)  # (B, C)
        err = err.masked_fill(~cand_valid, float("inf"))
        err = torch.cat([err_null, err], 1)
    else:
        err = err_null
    return err.argmin(1)


class SSuperExemplar(SSuperGAN):
    """SSuperGAN + context-exemplar attention and a residual exemplar generator (``model.variant: ssuper_exemplar``)."""

    variant = "ssuper_exemplar"

    def __init__(self, cfg: ModelConfig, panel_size: tuple[int, int] = (300, 300), seq_len: int = SEQ_LEN):
        super().__init__(cfg, panel_size, seq_len)
        d = cfg.exemplar_dim
        self.attention = ExemplarAttention(d, cfg.exemplar_width, cfg.exemplar_dropout, cfg.exemplar_scorer)
        self.exemplar_generator = ExemplarGenerator(d + cfg.latent_dim, cfg.exemplar_width, cfg.img_size)
        self.hard = cfg.exemplar_hard
        self.copy = cfg.exemplar_output == "copy"

    @property
    def null_face(self) -> nn.Parameter:
        """(3, F, F) the face drawn for the null candidate (no context face shows the character)."""
        return self.exemplar_generator.null_face

    def exemplar_forward(self, z: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Attention over the batch's candidates and the face drawn from the attended exemplar.

        Returns ``face`` (B, 3, F, F), ``logits`` (B, 1 + C; slot 0 = null), ``attn`` (B, 1 + C), ``exemplar``
        (B, 3, F, F) the selected (hard) or attended (soft) exemplar pixels.
        """
        cand_face, cand_valid = batch["cand_face"], batch["cand_valid"].bool()
        logits, fe = self.attention(batch["query_ctx"], batch["query_geo"], batch["cand_ctx"], cand_face,
                                    batch["cand_geo"], cand_valid)
        attn = logits.softmax(1)  # (B, 1 + C)
        B = z.shape[0]
        faces = torch.cat([self.null_face.expand(B, 1, *self.null_face.shape), cand_face], 1)  # (B, 1 + C, 3, F, F)
        feats = torch.cat([fe.new_zeros(B, 1, fe.shape[-1]), fe], 1)  # (B, 1 + C, d); null has no features
        w = attn
        if self.hard:  # straight-through: the arg-max exemplar forward, the soft attention's gradient backward
            hard = F.one_hot(attn.argmax(1), attn.shape[1]).to(attn.dtype)
            w = hard + attn - attn.detach()
        exemplar = (w[:, :, None, None, None] * faces).sum(1)  # (B, 3, F, F)
        v = (w[:, :, None] * feats).sum(1)  # (B, d)
        face = self.exemplar_generator(exemplar, torch.cat([v, z], 1))
        if self.copy:  # the selected context face itself (its texture kept: printed faces are halftone dots)
            face = exemplar
        return {"face": face, "logits": logits, "attn": attn, "exemplar": exemplar}

    def generate_for(self, z: torch.Tensor, batch: dict | None = None) -> torch.Tensor:
        """Faces for latent ``z`` and the batch's context exemplars (no exemplars: the DCGAN generator)."""
        if batch is None or "cand_face" not in batch:
            return self.generate(z)
        return self.exemplar_forward(z, batch)["face"]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super().parameter_groups()
        selector = set(self.attention.selector_parameters())
        extra = list(self.attention.parameters()) + list(self.exemplar_generator.parameters())
        groups["generator"] = groups["generator"] + [p for p in extra if p.requires_grad and p not in selector]
        groups["selector"] = [p for p in self.attention.selector_parameters() if p.requires_grad]
        return groups

    def parts(self) -> dict[str, nn.Module]:
        out = super().parts()
        out["exemplar_attention"] = self.attention
        out["exemplar_generator"] = self.exemplar_generator
        return out
