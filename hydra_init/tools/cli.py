"""The ``hydra-init`` command: list presets, dry-run an init, summarize a sweep.

::

    hydra-init presets
    hydra-init plan torch.nn.TransformerEncoderLayer init=trunc_normal model.d_model=512 model.nhead=8
    hydra-init plan examples/why_init/conf/config.yaml init=orthogonal init.gain=1.4142
    hydra-init summary multirun/2026-01-01/12-00-00
    hydra-init probe examples/why_init/conf/config.yaml init=xavier

``plan`` takes Hydra overrides: ``init=<preset>``, ``init.<knob>=<value>``,
``init.rules.<rule>.<field>=<value>`` and, for a ``_target_``, the model's
constructor arguments as ``model.<arg>=<value>``. The model is built on the
``meta`` device (no memory, no values), so even a huge model plans instantly;
nothing is written.

Exit status: 0 on success, 2 for a bad config or command line (the message
names the config key), 1 for other failures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["main"]

log = logging.getLogger("hydra_init")

_WRAPPERS = ("hydra_init.initialized", "hydra_init.integration.initialized",
             "hydra_init.integration.instantiate.initialized")


# ----------------------------------------------------------------------------- presets
def _cmd_presets(args: argparse.Namespace) -> int:
    from ..integration.presets import format_presets, list_presets, rule_names

    presets = list_presets()
    if args.json:
        print(json.dumps([{"name": p.name, "description": p.description, "knobs": p.knobs,
                           "path": str(p.path), "error": p.error} for p in presets], indent=2))
    else:
        print(format_presets(presets, rule_names()))
    return 0


# ----------------------------------------------------------------------------- plan
def _is_config_file(source: str) -> bool:
    return source.endswith((".yaml", ".yml")) or Path(source).is_file()


def _target_overrides(target: str, overrides: Sequence[str], model_key: str) -> list[str]:
    """Overrides for an empty primary config: groups and model arguments are added with ``+``."""
    out = [f"+{model_key}._target_={target}"]
    for item in overrides:
        if item.startswith(("+", "~")):
            out.append(item)
        elif item.split("=", 1)[0] == "init" or item.startswith(f"{model_key}."):
            out.append(f"+{item}")
        else:
            out.append(item)
    return out


@contextmanager
def _importable(paths: Sequence[Path]) -> Iterator[None]:
    """``paths`` on ``sys.path`` for the duration (a console script does not have the cwd there)."""
    added = [str(p) for p in paths if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            sys.path.remove(p)


def _is_wrapper(node: Any) -> bool:
    from omegaconf import DictConfig

    return isinstance(node, DictConfig) and node.get("_target_") in _WRAPPERS


def _wrappers(node: Any, key: str) -> list[tuple[str, Any]]:
    """``(key, node)`` of every ``hydra_init.initialized`` node at or under ``node``, outermost first.

    Interpolations (``net: ${model.net}``, ``init: ${init}``) are not followed, so a
    wrapper is found once, where it is written.
    """
    from omegaconf import DictConfig, ListConfig

    if _is_wrapper(node):
        return [(key, node)]
    children: list[tuple[str, Any]] = []
    if isinstance(node, DictConfig):
        children = [(k, node._get_node(k)) for k in node]
    elif isinstance(node, ListConfig):
        children = [(f"[{i}]", node._get_node(i)) for i in range(len(node))]
    out = []
    for name, child in children:
        if child is None or child._is_interpolation() or child._is_missing():
            continue
        child_key = f"{key}[{name[1:-1]}]" if name.startswith("[") else (f"{key}.{name}" if key else name)
        out += _wrappers(child, child_key)
    return out


def _unwrapped(model_cfg: Any) -> Any:
    """``model_cfg`` resolved, with every ``initialized`` wrapper replaced by its ``module``,
    so that building it initializes nothing."""
    from omegaconf import OmegaConf

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("_target_") in _WRAPPERS:
                return strip(node.get("module"))
            return {k: strip(v) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    plain = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else model_cfg
    return strip(plain)


def _build_model(model_cfg: Any, device: str) -> Any:
    """Instantiate the model, on the meta device by default (no memory, no values)."""
    import torch
    from hydra.utils import instantiate

    if device == "meta":
        try:
            with torch.device("meta"):
                return instantiate(model_cfg)
        except Exception as exc:  # some constructors compute values (buffers, .item())
            print(f"note: cannot build the model on the meta device ({type(exc).__name__}: {exc}); "
                  "building it on cpu", file=sys.stderr)
    with torch.device(device if device != "meta" else "cpu"):
        return instantiate(model_cfg)


def _targets(cfg: Any, args: argparse.Namespace) -> list[tuple[str, Any, Any, str]]:
    """What to plan: ``(model key, module config, init node, init key)`` for each model.

    ``--model-key`` (default ``model``) names the node; an ``initialized`` wrapper at
    or under it (a LightningModule's ``net``) is planned through its ``module`` with
    its own ``init``. Without a ``model`` node the whole config is searched for
    wrappers. A node without a wrapper is planned with the ``--init-key`` node.
    """
    from omegaconf import OmegaConf

    root = OmegaConf.select(cfg, args.model_key, throw_on_missing=False)
    explicit = args.model_key != "model"
    if root is None and explicit:
        raise _UsageError(f"the config has no {args.model_key!r} node")
    found = _wrappers(root, args.model_key) if root is not None else _wrappers(cfg, "")
    if found:
        out = []
        for key, node in found:
            init_node = node.get("init")
            init_key = init_node._get_full_key(None) if OmegaConf.is_config(init_node) else f"{key}.init"
            out.append((key, node.module, init_node, init_key or f"{key}.init"))
        return out
    if root is None:
        raise _UsageError("the config has no 'model' node and no hydra_init.initialized node: "
                          "pick the node that builds the model with --model-key")
    return [(args.model_key, root, OmegaConf.select(cfg, args.init_key), args.init_key)]


def _compose(args: argparse.Namespace) -> tuple[Any, list[Path]]:
    """The composed config and the paths the app's modules import from."""
    from ..integration.presets import compose

    if _is_config_file(args.source):
        config = Path(args.source).resolve()
        # the app's own modules, importable as `python train.py` next to its conf/ would see them
        paths = [Path.cwd(), config.parent, config.parent.parent]
        cfg = compose(args.overrides, config=config)
    else:
        if not any(o.split("=", 1)[0].lstrip("+") == args.init_key for o in args.overrides):
            raise _UsageError(f"no init config: add {args.init_key}=<preset> "
                              "(`hydra-init presets` lists them)")
        paths = [Path.cwd()]
        cfg = compose(_target_overrides(args.source, args.overrides, args.model_key))
    return cfg, paths


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any, list[Path]]:
    """The composed config, the (first) model's module config and init node, and the import paths."""
    cfg, paths = _compose(args)
    _, module_cfg, init_cfg, _ = _targets(cfg, args)[0]
    return cfg, _unwrapped(module_cfg), init_cfg, paths


def _cmd_plan(args: argparse.Namespace) -> int:
    import hydra_init

    cfg, paths = _compose(args)
    targets = _targets(cfg, args)
    reports = []
    for _, module_cfg, init_cfg, init_key in targets:
        with _importable(paths):
            model = _build_model(_unwrapped(module_cfg), args.device)
        reports.append(hydra_init.plan(model, init_cfg, key=init_key))
    if args.json:
        data = [r.to_dict() for r in reports]
        print(json.dumps(data[0] if len(data) == 1 else
                         {key: d for (key, *_), d in zip(targets, data, strict=True)}, indent=2))
        return 0
    for (key, *_), report in zip(targets, reports, strict=True):
        if len(targets) > 1 or key != args.model_key:
            print(f"{key}:")
        print(report)
        if args.params:
            width = max((len(r.path) for r in report.params), default=0)
            print()
            for r in report.params:
                shape = "x".join(map(str, r.shape)) or "-"
                print(f"  {r.path.ljust(width)}  {shape:>14}  {r.source:<10} {r.rule or '-'}: {r.init}")
    return 0


# ----------------------------------------------------------------------------- summary
def _cmd_summary(args: argparse.Namespace) -> int:
    from ..integration.callbacks import collect_rows, markdown_table, varying_overrides, write_summary

    dirs = [Path(d).resolve() for d in args.dirs]
    for directory in dirs:
        if not directory.is_dir():
            raise _UsageError(f"{directory} is not a directory")
    out = Path(args.out).resolve() if args.out else (
        dirs[0] if len(dirs) == 1 else Path(os.path.commonpath(dirs)))
    rows: list[dict[str, Any]] = []
    job_dirs: list[Path] = []
    for directory in dirs:
        found = collect_rows(directory, hydra_files=True)
        if not found:
            raise _UsageError(
                f"{directory} is not a Hydra run or multirun directory: no job under it has a .hydra/ "
                "folder (Hydra writes .hydra/overrides.yaml into every job's output directory). "
                "Point at a multirun's multirun/<date>/<time> or a run's outputs/<date>/<time>"
            )
        for row in found:
            job_dirs.append(directory / row["dir"])
            row["dir"] = os.path.relpath(directory / row["dir"], out)  # relative to the table
        rows.extend(found)
    shared = varying_overrides(rows)
    if shared:
        print("overrides shared by every job: " + " ".join(shared), file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    written = write_summary(rows, out)
    if args.format == "markdown":
        print(markdown_table(rows))
    else:
        print(next(p for p in written if p.suffix == f".{args.format}").read_text(), end="")
    if args.plot != "no":
        try:
            from .sweep_plot import plot_sweep, require_matplotlib

            require_matplotlib()
        except ImportError as exc:
            if args.plot == "yes":
                raise _UsageError(str(exc)) from None
            print(f"note: no pictures ({exc})", file=sys.stderr)
        else:
            written += plot_sweep(rows, job_dirs, out, title=args.title or "")
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- main
class _UsageError(Exception):
    """A problem with the command line itself (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    return _parsers()[0]


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """SOURCE, OVERRIDES, --model-key and --init-key: how `plan` and `probe` find the model and its init."""
    p.add_argument("source", metavar="SOURCE", help="model _target_ or config .yaml")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDES", help="Hydra overrides")
    p.add_argument("--model-key", default="model", help="config node that builds the model (model)")
    p.add_argument("--init-key", default="init", help="config node of the init (init)")


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's own parser (parsed with options anywhere)."""
    parser = argparse.ArgumentParser(
        prog="hydra-init",
        description="Config-driven weight initialization for PyTorch: presets, dry runs, sweep summaries.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("presets", help="list the init presets with their descriptions and knobs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "plan", help="dry run: what every parameter would get (nothing is written)",
        description="Dry run of an init on a model: the report of what each parameter would get. "
        "SOURCE is a model _target_ (e.g. torch.nn.Transformer) or a Hydra app's primary config "
        "YAML; OVERRIDES are Hydra overrides (init=<preset>, init.<knob>=..., model.<arg>=...).",
    )
    add_model_arguments(p)
    p.add_argument("--device", default="meta",
                   help="where to build the model: meta (default, no memory) or cpu, cuda ...")
    p.add_argument("--params", action="store_true", help="also list every parameter")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser(
        "summary", help="the table (and pictures) of a multirun",
        description="One row per job of one or more multirun directories: overrides, returned "
        "metric, what the init did. Writes init_summary.{csv,json,md} and, with matplotlib (the "
        "plot extra), init_summary.png (metric per job) and curve_<name>.png per logged curve.",
    )
    p.add_argument("dirs", nargs="+", metavar="MULTIRUN_DIR")
    p.add_argument("--out", help="where to write the files (default: the multirun dir, or the "
                   "common parent of several)")
    p.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown",
                   help="what to print (default markdown)")
    p.add_argument("--plot", choices=("auto", "yes", "no"), default="auto",
                   help="draw PNGs: auto (if matplotlib is installed), yes, no")
    p.add_argument("--title", help="title of the pictures")
    p.set_defaults(func=_cmd_summary)

    from .probe_cli import add_parser as add_probe

    add_probe(sub)
    return parser, dict(sub.choices)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line with a subcommand's options and overrides in any order
    (``plan SOURCE init=xavier --params model.d=8``): argparse's intermixed parsing,
    which does not work through subparsers, runs on the subcommand's own parser."""
    parser, commands = _parsers()
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is None or argv[first] not in commands or any(a in ("-h", "--help") for a in argv[:first]):
        return parser.parse_args(argv)  # usage, --help, or an unknown command: argparse says so
    args = commands[argv[first]].parse_intermixed_args(argv[first + 1:])
    args.command = argv[first]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hydra-init``; returns the exit status.

    >>> main(["presets"])  # doctest: +ELLIPSIS
    init presets (select with init=<name>, set a knob with init.<knob>=<value>):
    ...
    0
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ..errors import InitConfigError

    args = _parse(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (InitConfigError, HydraException, OmegaConfBaseException, _UsageError) as exc:
        print(f"hydra-init {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
