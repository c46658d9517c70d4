"""Small models for the example app, built from ``torch.nn`` only.

Every model reads an 8x8 grey image (scikit-learn's digits) and ends in a
classifier named ``head``, so ``+init/rules=[head_zero]`` reaches all three.

>>> import torch
>>> [m(torch.zeros(2, 1, 8, 8)).shape for m in (MLP(), SmallCNN(), SmallTransformer())]
[torch.Size([2, 10]), torch.Size([2, 10]), torch.Size([2, 10])]
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "SmallCNN", "SmallTransformer"]


class MLP(nn.Module):
    """Flattened pixels -> ``depth`` x (Linear, LayerNorm, ReLU) -> ``head``."""

    def __init__(self, hidden: int = 128, depth: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = 64
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SmallCNN(nn.Module):
    """Two (Conv2d, BatchNorm2d, ReLU) blocks with 2x2 max pooling, then ``head``."""

    def __init__(self, channels: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
        )
        self.head = nn.Linear(2 * channels * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallTransformer(nn.Module):
    """Each image row is a token: Linear patch embedding, position Embedding, encoder, ``head``."""

    def __init__(self, dim: int = 32, heads: int = 4, layers: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Embedding(8, dim)
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.reshape(x.shape[0], 8, 8)) + self.pos.weight
        return self.head(self.norm(self.encoder(tokens)).mean(dim=1))
