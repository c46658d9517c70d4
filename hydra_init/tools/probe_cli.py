"""``hydra-init probe``: build an app's model from its config, initialize it, probe it at step 0.

::

    hydra-init probe examples/why_init/conf/config.yaml init=normal init.std=1.0
    hydra-init probe torch.nn.TransformerEncoderLayer init=trunc_normal model.d_model=64 \\
        model.nhead=4 --shape 8,16,64

The model is built from the config exactly as ``hydra-init plan`` builds it (on
``--device``, default cpu), the init is applied, and one forward and backward
pass runs on the probe batch (:func:`hydra_init.tools.probe.probe`). The batch
and the pass are set by the config's ``probe`` node, every key optional::

    probe:
      input: {_target_: data.train_images}   # a callable returning the batch, or
      # input: [256, 64]                     # a shape: Gaussian inputs (std 1), or
      # input: {shape: [8, 128], vocab_size: 1000}   # token ids
      loss: mean_square       # or cross_entropy (to random labels)
      mode: train             # or eval
      blocks: false           # also record non-leaf modules
      threshold: 10           # flag an output std this factor off the reference
      seed: 0                 # default: the config's top-level seed, else 0

Without ``probe.input`` the batch follows the first layer: 256 Gaussian rows for
a ``Linear``, 8x128 tokens for an ``Embedding``, 16 images of 32 pixels a side
for a convolution. Writes ``probe.json`` (and ``probe.png`` with the plot extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from ..errors import InitConfigError, did_you_mean
from .probe import LOSSES, ProbeReport, probe

__all__ = ["PROBE_FILE", "ProbeSettings", "add_parser", "probe_config", "probe_document", "write_probe"]

PROBE_FILE = "probe.json"
"""What ``hydra-init probe`` and the ``init_probe`` callback write."""


@dataclass
class ProbeSettings:
    """The ``probe`` node of a config (every field optional)."""

    input: Any = None
    loss: str = "mean_square"
    mode: str = "train"
    blocks: bool = False
    threshold: float = 10.0
    seed: int | None = None


def settings_from(node: Any, key: str = "probe", **flags: Any) -> ProbeSettings:
    """Validate a ``probe`` config node; ``flags`` that are not ``None`` override it.

    >>> settings_from({"loss": "cross_entropy", "input": [32, 8]}).loss
    'cross_entropy'
    >>> settings_from({"los": "cross_entropy"})
    Traceback (most recent call last):
    ...
    hydra_init.errors.InitConfigError: probe.los: unknown probe setting. Valid: input, loss, mode, \
blocks, threshold, seed. Hint: did you mean 'loss' or 'blocks'?
    """
    if node is None:
        values: dict[str, Any] = {}
    elif isinstance(node, (DictConfig, Mapping)):
        values = dict(node.items()) if isinstance(node, Mapping) else {
            k: node[k] for k in node}  # keep nested configs (input) unresolved-but-typed
    else:
        raise InitConfigError(key, f"must be a mapping, got {type(node).__name__}",
                              valid=", ".join(f.name for f in fields(ProbeSettings)))
    names = [f.name for f in fields(ProbeSettings)]
    for name in values:
        if name not in names:
            raise InitConfigError(f"{key}.{name}", "unknown probe setting", valid=", ".join(names),
                                  hint=did_you_mean(str(name), names))
    values.update({k: v for k, v in flags.items() if v is not None})
    settings = ProbeSettings(**values)
    if settings.loss not in LOSSES:
        raise InitConfigError(f"{key}.loss", f"unknown loss {settings.loss!r}", valid=", ".join(LOSSES),
                              hint=did_you_mean(str(settings.loss), LOSSES))
    if settings.mode not in ("train", "eval"):
        raise InitConfigError(f"{key}.mode", f"unknown mode {settings.mode!r}", valid="train, eval")
    try:
        settings.threshold = float(settings.threshold)
        settings.seed = None if settings.seed is None else int(settings.seed)
    except (TypeError, ValueError) as exc:
        raise InitConfigError(key, f"threshold and seed must be numbers ({exc})") from None
    if settings.threshold <= 1:
        raise InitConfigError(f"{key}.threshold", f"must be above 1, got {settings.threshold:g}",
                              hint="10 flags a signal a decade off its reference")
    return settings


# ---------------------------------------------------------------------------------- the batch
def make_batch(spec: Any, model: nn.Module, seed: int, key: str = "probe.input") -> tuple[Any, str]:
    """The probe batch and a short description of it.

    >>> batch, text = make_batch([4, 3], nn.Linear(3, 2), seed=0)
    >>> tuple(batch.shape), text
    ((4, 3), 'Gaussian 4x3')
    >>> batch, text = make_batch({"shape": [2, 5], "vocab_size": 7}, nn.Embedding(7, 4), seed=0)
    >>> batch.dtype, text
    (torch.int64, 'tokens 2x5 (vocabulary 7)')
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if spec is None:
        spec = _inferred_input(model, key)
    if isinstance(spec, (DictConfig, Mapping)) and "_target_" in spec:
        from hydra.utils import instantiate

        batch = instantiate(spec)
        return batch, f"{spec['_target_']}() -> {_describe(batch)}"
    shape: Any = spec
    vocab = None
    std = 1.0
    if isinstance(spec, (DictConfig, Mapping)):
        unknown = sorted(set(spec) - {"shape", "vocab_size", "std"})
        if unknown or "shape" not in spec:
            raise InitConfigError(
                key, f"unknown input keys {unknown}" if unknown else "a shape is missing",
                valid="a list of sizes (Gaussian), {shape, vocab_size} (tokens), {shape, std}, "
                "or a _target_ returning the batch")
        shape, vocab, std = spec["shape"], spec.get("vocab_size"), float(spec.get("std", 1.0))
    if not (isinstance(shape, (ListConfig, list, tuple)) and shape
            and all(isinstance(s, int) and s > 0 for s in shape)):
        raise InitConfigError(key, f"bad input shape {shape!r}", valid="a list of positive sizes, "
                              "e.g. [256, 64]", hint="or give a _target_ that returns the batch")
    generator = torch.Generator().manual_seed(seed)
    size = tuple(int(s) for s in shape)
    text = "x".join(map(str, size))
    if vocab is not None:
        return torch.randint(int(vocab), size, generator=generator).to(device), (
            f"tokens {text} (vocabulary {int(vocab)})")
    return (torch.randn(size, generator=generator) * std).to(device), f"Gaussian {text}" + (
        f" (std {std:g})" if std != 1.0 else "")


def _inferred_input(model: nn.Module, key: str) -> Any:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return [256, module.in_features]
        if isinstance(module, nn.Embedding):
            return {"shape": [8, 128], "vocab_size": module.num_embeddings}
        if isinstance(module, nn.modules.conv._ConvNd):
            dims = len(module.kernel_size)
            return [16, module.in_channels, *([32] * dims)]
        if any(True for _ in module.parameters(recurse=False)):
            break
    raise InitConfigError(key, f"cannot tell what input {type(model).__name__} takes",
                          valid="a shape [batch, ...], {shape, vocab_size} or a _target_",
                          hint="set probe.input in the config (+probe.input=[256,64] on the command "
                          "line) or pass --shape")


def _describe(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return f"{'x'.join(map(str, batch.shape))} {str(batch.dtype).removeprefix('torch.')}"
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (list, tuple)):
        return "(" + ", ".join(_describe(v) for v in batch) + ")"
    return type(batch).__name__


# ---------------------------------------------------------------------------------- config -> report
def probe_config(
    cfg: Any, model_cfg: Any, init_cfg: Any, *, build: Callable[[], nn.Module], init_key: str = "init",
    probe_key: str = "probe", **flags: Any,
) -> tuple[ProbeReport, str]:
    """Build the model with ``build``, apply ``init_cfg``, probe it; the report and the batch's description.

    The global random state is left as it was (the build and the batch are seeded
    by ``probe.seed``, else the config's top-level ``seed``, else 0).
    """
    import hydra_init

    settings = settings_from(OmegaConf.select(cfg, probe_key) if cfg is not None else None,
                             probe_key, **flags)
    seed = settings.seed
    if seed is None:
        top = OmegaConf.select(cfg, "seed", default=None) if cfg is not None else None
        seed = top if isinstance(top, int) and not isinstance(top, bool) else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        if init_cfg is not None:
            hydra_init.apply(model, init_cfg, key=init_key, log=False)
        batch, text = make_batch(settings.input, model, seed, f"{probe_key}.input")
        report = probe(model, batch, settings.loss, blocks=settings.blocks, mode=settings.mode,
                       threshold=settings.threshold, seed=seed)
    return report, text


def probe_document(report: ProbeReport, init_cfg: Any, overrides: Sequence[str], **extra: Any) -> dict:
    """``probe.json``'s content: the report with the init config and the overrides."""
    init = OmegaConf.to_container(init_cfg, resolve=True) if isinstance(init_cfg, (DictConfig, ListConfig)) \
        else init_cfg
    return {**report.to_dict(), "init": init, "overrides": list(overrides), **extra}


def write_probe(document: dict, directory: Path, plot: str = "auto", title: str = "") -> list[Path]:
    """Write ``probe.json`` and, with matplotlib (``plot`` auto or yes), ``probe.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PROBE_FILE
    path.write_text(json.dumps(document, indent=1) + "\n")
    written = [path]
    if plot != "no":
        try:
            from .probe_plot import plot_probe

            written.append(plot_probe(document, directory / "probe.png", title=title))
        except ImportError:
            if plot == "yes":
                raise
    return written


# ---------------------------------------------------------------------------------- the command
def _shape(text: str) -> list[int]:
    try:
        return [int(s) for s in text.replace("x", ",").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape like 256,64 or 256x64, got {text!r}") from None


def add_parser(sub: Any) -> None:
    """Register the ``probe`` command on the ``hydra-init`` subparsers."""
    from .cli import add_model_arguments

    p = sub.add_parser(
        "probe", help="signal propagation at init: per-layer activation and gradient scales",
        description="Build the model as `plan` does, apply the init, run one forward and backward "
        "pass on a probe batch, print the per-layer table and write probe.json (and probe.png). "
        "SOURCE and OVERRIDES as for `plan`; the batch comes from the config's probe node "
        "(probe.input) or --shape / --vocab-size.",
    )
    add_model_arguments(p)
    p.add_argument("--probe-key", default="probe", help="config node of the probe settings (probe)")
    p.add_argument("--device", default="cpu", help="where to build and probe the model (cpu)")
    p.add_argument("--shape", type=_shape, help="Gaussian input of this shape, e.g. 256,64")
    p.add_argument("--vocab-size", type=int, help="with --shape: token ids below this instead")
    p.add_argument("--loss", choices=LOSSES, help="probe loss (default mean_square)")
    p.add_argument("--mode", choices=("train", "eval"), help="mode of the pass (default train)")
    p.add_argument("--blocks", action="store_true", default=None, help="also record non-leaf modules")
    p.add_argument("--threshold", type=float, help="flag factor (default 10)")
    p.add_argument("--seed", type=int, help="seed of the build and the batch")
    p.add_argument("--out", default=".", help="directory for probe.json and probe.png (.)")
    p.add_argument("--plot", choices=("auto", "yes", "no"), default="auto", help="draw probe.png")
    p.add_argument("--no-bars", action="store_true", help="no log-scale bars in the table")
    p.add_argument("--json", action="store_true", help="print probe.json instead of the table")
    p.set_defaults(func=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    """The ``probe`` command: the config and the model as ``plan`` loads and builds them."""
    from .cli import _build_model, _importable, _load, _UsageError

    cfg, model_cfg, init_cfg, paths = _load(args)
    shape_input = None
    if args.shape:
        shape_input = {"shape": args.shape, **({"vocab_size": args.vocab_size} if args.vocab_size else {})}
    elif args.vocab_size:
        raise _UsageError("--vocab-size needs --shape (batch, length)")
    with _importable(paths):
        report, batch_text = probe_config(
            cfg, model_cfg, init_cfg, build=lambda: _build_model(model_cfg, args.device),
            init_key=args.init_key, probe_key=args.probe_key, input=shape_input, loss=args.loss,
            mode=args.mode, blocks=args.blocks, threshold=args.threshold, seed=args.seed)
    document = probe_document(report, init_cfg, args.overrides, source=args.source, batch=batch_text)
    written = write_probe(document, Path(args.out), args.plot,
                          title=f"{args.source} {' '.join(args.overrides)}".strip())
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        print(f"probe: {args.source} {' '.join(args.overrides)}".rstrip())
        print(f"batch: {batch_text}; loss {report.loss}; {report.mode} mode; input std "
              f"{'-' if report.input_std is None else f'{report.input_std:.3g}'}")
        print()
        print(report.table(bars=not args.no_bars and _tty_bars()))
    sys.stdout.flush()
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def _tty_bars() -> bool:
    from .probe import _can_draw_bars

    return _can_draw_bars()
