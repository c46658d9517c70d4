"""scikit-learn's bundled digits (1,797 8x8 images, no download), flattened and standardized.

>>> x_train, y_train, x_test, y_test = digits()
>>> tuple(x_train.shape), tuple(x_test.shape)
((1438, 64), (359, 64))
"""

from __future__ import annotations

import torch

__all__ = ["digits", "train_images"]


def digits(test_fraction: float = 0.2, split_seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``: 64 features standardized with train statistics.

    The split depends only on ``split_seed``, so every job of a sweep sees the
    same test set whatever its own seed.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(split_seed))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-3)  # constant border pixels
    x = (x - mean) / std
    return x[train], y[train], x[test], y[test]


def train_images(test_fraction: float = 0.2, split_seed: int = 0) -> torch.Tensor:
    """The standardized training images alone: the batch ``hydra-init probe`` runs the net on."""
    return digits(test_fraction, split_seed)[0]
