"""A deep plain network: ``depth`` Linear layers, an activation between them, nothing else.

No normalization, no residual connections: whether a signal survives 20 layers
depends only on the scale of the initial weights, which is what this experiment
is about.

>>> import torch
>>> net = PlainNet(in_features=64, width=32, depth=12, num_classes=10)
>>> logits, hidden = net.probe(torch.randn(8, 64))
>>> logits.shape, len(hidden)
(torch.Size([8, 10]), 11)
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "PlainNet"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class PlainNet(nn.Module):
    """``depth`` Linear layers (``layers.0`` ... ``layers.{depth-1}``, the last one the classifier).

    Args:
        in_features: input size (64 pixels of an 8x8 digit).
        width: units of every hidden layer.
        depth: number of Linear layers, classifier included.
        num_classes: outputs of the classifier.
        activation: ``relu``, ``tanh`` or ``gelu``, applied after every hidden layer.
    """

    def __init__(
        self, in_features: int = 64, width: int = 128, depth: int = 20, num_classes: int = 10,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        sizes = [in_features] + [width] * (depth - 1) + [num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.activation = ACTIVATIONS[activation]()

    def probe(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The logits and every hidden layer's output (after its activation)."""
        hidden = []
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
            hidden.append(x)
        return self.layers[-1](x), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(x)[0]
