"""Why initialization matters: a deep plain network on digits, one init preset per job.

A 20-layer ReLU network without normalization or residuals is trained with SGD
for a fixed number of steps. Before training, the job measures how the signal
propagates through the freshly initialized network (the std of every hidden
layer's output and of every layer's weight gradient); during training it logs
the training loss. Everything is written as curves next to the job's
``init_report.json``, so ``hydra-init summary`` can draw the sweep::

    python train.py init=kaiming_conv                    # one job
    python train.py -m init=normal init.std=1.0,0.01 seed=0,1,2 hydra/callbacks=init_summary
    python sweep.py                                       # the full experiment (make sweep)

The init presets come from hydra_init's ``init`` group (no YAML here).
"""

from __future__ import annotations

import logging
import math
import time

import hydra
import torch
from data import digits
from model import PlainNet
from omegaconf import DictConfig
from torch import nn

import hydra_init
from hydra_init.tools.curves import log_curve

log = logging.getLogger(__name__)


def signal_at_init(model: PlainNet, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Per-layer std of the hidden outputs and of the weight gradients, before any training."""
    model.zero_grad()
    logits, hidden = model.probe(x)
    nn.functional.cross_entropy(logits, y).backward()
    activations = [h.detach().std().item() for h in hidden] + [logits.detach().std().item()]
    gradients = [layer.weight.grad.std().item() for layer in model.layers]
    model.zero_grad()
    return {"activation_std": activations, "grad_std": gradients}


def train(model: PlainNet, data: tuple[torch.Tensor, ...], cfg: DictConfig, seed: int) -> dict[str, list]:
    """SGD with momentum for ``cfg.steps`` steps; the full training loss every ``cfg.log_every``.

    Stops early once the loss is no longer finite (the run diverged).
    """
    x_train, y_train = data[0], data[1]
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    batches = torch.Generator().manual_seed(seed)
    steps, losses = [], []

    def record(step: int) -> float:
        with torch.no_grad():
            loss = nn.functional.cross_entropy(model(x_train), y_train).item()
        steps.append(step)
        losses.append(loss)
        return loss

    record(0)
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(y_train), (cfg.batch_size,), generator=batches)
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        logged = step % cfg.log_every == 0 or step == cfg.steps
        if logged and not math.isfinite(record(step)):
            log.warning("training loss is %s at step %d: stopping (diverged)", losses[-1], step)
            break
    return {"step": steps, "loss": losses}


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, float]:
    """One job: build + initialize, measure signal propagation, train, evaluate."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = digits(cfg.data.test_fraction, cfg.data.split_seed)
    model = hydra_init.instantiate(cfg.model, init=cfg.init)

    signal = signal_at_init(model, data[0], data[1])
    layers = list(range(1, len(signal["grad_std"]) + 1))
    log_curve("activation_std", signal["activation_std"], layers, xlabel="layer",
              ylabel="std of the layer's output at init", yscale="log")
    log_curve("grad_std", signal["grad_std"], layers, xlabel="layer",
              ylabel="std of the weight gradient at init", yscale="log")

    start = time.perf_counter()
    history = train(model, data, cfg.train, cfg.seed)
    log_curve("train_loss", history["loss"], history["step"], xlabel="step",
              ylabel="training loss (cross-entropy)", yscale="log")
    result = {
        "test_acc": accuracy(model, data[2], data[3]),
        "train_loss": history["loss"][-1],
        "output_std_at_init": signal["activation_std"][-1],
    }
    log.info(
        "%d steps in %.1f s: train loss %.4g -> %.4g, test accuracy %.3f, output std at init %.3g",
        history["step"][-1], time.perf_counter() - start, history["loss"][0], result["train_loss"],
        result["test_acc"], result["output_std_at_init"],
    )
    return result


if __name__ == "__main__":
    main()
