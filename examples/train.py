"""Example experiment: build a model from the ``model`` group, initialize it from the ``init`` group, train.

The ``init`` group is not in this directory: hydra_init's search-path plugin
serves its presets to any Hydra app. Trains for a few seconds on scikit-learn's
bundled digits (8x8 images, no download) and returns the test accuracy, so
sweeps can compare presets::

    python train.py                                    # cnn + kaiming_conv
    python train.py model=mlp init=xavier init.bias=0.01
    python train.py model=transformer init=trunc_normal init.std=0.02
    python train.py -m init=kaiming_conv,xavier,trunc_normal init.bias=0,0.01
"""

from __future__ import annotations

import logging
import time

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

import hydra_init

log = logging.getLogger(__name__)


def digits(test_fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    """scikit-learn's digits as ``(x_train, y_train, x_test, y_test)``, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def fit(model: nn.Module, data: tuple[torch.Tensor, ...], cfg: DictConfig, seed: int) -> dict[str, float]:
    """Train with AdamW for ``cfg.epochs`` epochs; returns first/last loss and test accuracy."""
    x_train, y_train, x_test, y_test = data
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    batches = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(y_train), generator=batches).split(cfg.batch_size):
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    return {"first_loss": losses[0], "last_loss": losses[-1], "test_accuracy": accuracy}


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One job: seed, build + initialize (the report is logged), train; returns test accuracy."""
    torch.manual_seed(cfg.seed)  # parameters no init rule touches keep torch's seeded default
    model = hydra_init.instantiate(cfg.model, init=cfg.init)
    data = digits(cfg.train.test_fraction, cfg.seed)
    start = time.perf_counter()
    result = fit(model, data, cfg.train, cfg.seed)
    log.info(
        "trained %s for %d epochs in %.1fs: loss %.3f -> %.3f, test accuracy %.3f",
        type(model).__name__, cfg.train.epochs, time.perf_counter() - start,
        result["first_loss"], result["last_loss"], result["test_accuracy"],
    )
    return result["test_accuracy"]


if __name__ == "__main__":
    main()
