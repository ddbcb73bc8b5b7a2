"""Sequence encoders: panel embeddings -> (mu, log_sigma) of q(z | panels) (docs/original.md 1.4-1.7).

* :class:`PlainSequenceEncoder`: concatenation of the S embeddings in dataset order [p1, p2, masked p3].
* :class:`LSTMSequenceEncoder`: (Bi-)LSTM over [masked p3, p1, p2] when ``masked_first`` (the original's
  order); the final hidden state of the last layer (both directions concatenated) is the feature.
* :class:`ConvLSTMSequenceEncoder`: a peephole ConvLSTM over backbone feature maps, pooled at the end.
* :class:`LatentHead`: dropout on the features, optional Linear projector, then two Linears (mu, log_sigma).

The one sampling/KL convention of the kit (docs/design.md 10.2): the encoder returns ``log_sigma`` = log of the
standard deviation; :func:`reparameterize` draws z = mu + exp(log_sigma) * eps and :func:`kl_normal` is
the matching analytic KL(N(mu, sigma) || N(0, I)), summed over dimensions and averaged over the batch.

Differences from the original code: the KL matches the sampling (the original's HEAD KL treated log_sigma
as a log-variance, docs/original.md 1.6); no ``.cuda()`` state initialisation; the ConvLSTM peephole weights
are sized from the feature-map size of the configured panel size (the original hard-coded 10 x 10 in the
config and is broken at HEAD, docs/original.md 1.7); the LSTM is called with its default zero state.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

__all__ = [
    "reparameterize",
    "kl_normal",
    "LatentHead",
    "PlainSequenceEncoder",
    "LSTMSequenceEncoder",
    "ConvLSTMCell",
    "ConvLSTMSequenceEncoder",
    "masked_first_order",
]


def reparameterize(mu: torch.Tensor, log_sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + exp(log_sigma) * eps with eps ~ N(0, I) (``generator`` makes eps reproducible)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(log_sigma) * eps


def kl_normal(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_sigma)^2) || N(0, I)), summed over latent dims, averaged over the batch."""
    kl = 0.5 * (mu.pow(2) + torch.exp(2.0 * log_sigma) - 1.0) - log_sigma  # (B, D)
    return kl.sum(dim=1).mean()


def masked_first_order(seq_len: int) -> list[int]:
    """Time order [S-1, 0, ..., S-2]: the masked last panel first, as the original LSTMs read it."""
    return [seq_len - 1] + list(range(seq_len - 1))


class LatentHead(nn.Module):
    """features (B, F) -> dropout -> [Linear (-> dropout -> Linear ...)] -> mu, log_sigma (B, latent).

    The projector has no activation between its Linears, as the original ``fc_projector``. The dropout on
    the incoming features (``dropout`` = ``fc_dropout``) is applied even without a projector, so that the
    plain encoder can regularise its concatenated features.
    """

    def __init__(self, in_dim: int, latent_dim: int, hidden_dims: Sequence[int] = (), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        prev = in_dim
        for i, h in enumerate(hidden_dims):
            if i > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(prev, h))
            prev = h
        self.projector = nn.Sequential(*layers)
        self.mu = nn.Linear(prev, latent_dim)
        self.log_sigma = nn.Linear(prev, latent_dim)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.projector(feats)
        return self.mu(h), self.log_sigma(h)


class PlainSequenceEncoder(nn.Module):
    """Concatenate the S panel embeddings in dataset order: (B, S, E) -> (B, S*E) -> latent head."""

    def __init__(self, embed_dim: int, seq_len: int, latent_dim: int, hidden_dims: Sequence[int] = (), dropout: float = 0.0):
        super().__init__()
        self.head = LatentHead(embed_dim * seq_len, latent_dim, hidden_dims, dropout)

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(emb.flatten(1))  # (B, S*E)


class LSTMSequenceEncoder(nn.Module):
    """(Bi-)LSTM over the panel embeddings; the last layer's final hidden state feeds the latent head.

    ``hidden`` is the size of the feature given to the head: a Bi-LSTM splits it over its two directions
    (``hidden // 2`` each, as the original), so it must be even.
    """

    def __init__(
        self,
        embed_dim: int,
        hidden: int,
        latent_dim: int,
        num_layers: int = 1,
        lstm_dropout: float = 0.0,
        bidirectional: bool = False,
        masked_first: bool = True,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.0,
    ):
        super().__init__()
        if bidirectional and hidden % 2:
            raise ValueError(f"model.lstm_hidden: a Bi-LSTM splits it over two directions, expected an even number, got {hidden}")
        self.bidirectional = bidirectional
        self.masked_first = masked_first
        self.num_layers = num_layers
        per_dir = hidden // 2 if bidirectional else hidden
        self.rnn = nn.LSTM(
            embed_dim, per_dir, num_layers=num_layers, dropout=lstm_dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional, batch_first=True,
        )
        self.head = LatentHead(hidden, latent_dim, hidden_dims, dropout)

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, S = emb.shape[:2]
        if self.masked_first:
            emb = emb[:, masked_first_order(S)]  # (B, S, E): [masked p3, p1, p2]
        _, (h_n, _) = self.rnn(emb)  # h_n: (L*dirs, B, H')
        dirs = 2 if self.bidirectional else 1
        last = h_n.view(self.num_layers, dirs, B, -1)[-1]  # (dirs, B, H')
        feat = last.permute(1, 0, 2).reshape(B, -1)  # (B, hidden): [forward, backward]
        return self.head(feat)


class ConvLSTMCell(nn.Module):
    """Shi et al. ConvLSTM cell with peepholes (docs/original.md 1.7).

    gates = Conv([x_t, h]) split into i, f, g, o;  i = sigm(i + Wci*c);  f = sigm(f + Wcf*c);
    c' = f*c + i*tanh(g);  o = sigm(o + Wco*c');  h' = o*tanh(c'). Peepholes (1, C, h, w), zero-initialised,
    sized for the feature map ``hw`` of the configured panel size.
    """

    def __init__(self, in_ch: int, hidden_ch: int, kernel: int, hw: tuple[int, int]):
        super().__init__()
        self.hidden_ch = hidden_ch
        self.conv = nn.Conv2d(in_ch + hidden_ch, 4 * hidden_ch, kernel, stride=1, padding=kernel // 2, bias=True)
        shape = (1, hidden_ch, int(hw[0]), int(hw[1]))
        self.w_ci = nn.Parameter(torch.zeros(shape))
        self.w_cf = nn.Parameter(torch.zeros(shape))
        self.w_co = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        if x.shape[-2:] != self.w_ci.shape[-2:]:
            raise ValueError(
                f"ConvLSTM: feature map {tuple(x.shape[-2:])} differs from the size {tuple(self.w_ci.shape[-2:])} "
                "its peepholes were built for; build the model with the panel size you feed it"
            )
        i, f, g, o = self.conv(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # each (B, C, h, w)
        i = torch.sigmoid(i + self.w_ci * c)
        f = torch.sigmoid(f + self.w_cf * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.w_co * c)
        h = o * torch.tanh(c)
        return h, c


class ConvLSTMSequenceEncoder(nn.Module):
    """ConvLSTM over feature maps (B, S, F, h, w) in masked-first order -> avg-pooled h_T -> latent head."""

    def __init__(
        self,
        in_ch: int,
        hidden_ch: int,
        kernel: int,
        hw: tuple[int, int],
        latent_dim: int,
        masked_first: bool = True,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.0,
    ):
        super().__init__()
        self.masked_first = masked_first
        self.cell = ConvLSTMCell(in_ch, hidden_ch, kernel, hw)
        self.head = LatentHead(hidden_ch, latent_dim, hidden_dims, dropout)

    def forward(self, fmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if fmaps.dim() != 5:
            raise ValueError(f"ConvLSTM: expected feature maps (B, S, F, h, w), got {tuple(fmaps.shape)}")
        B, S, _, H, W = fmaps.shape
        if self.masked_first:
            fmaps = fmaps[:, masked_first_order(S)]
        h = fmaps.new_zeros(B, self.cell.hidden_ch, H, W)  # state on the input's device and dtype
        c = torch.zeros_like(h)
        for t in range(S):
            h, c = self.cell(fmaps[:, t], (h, c))
        return self.head(h.mean(dim=(2, 3)))  # (B, C)
