"""See an init before you train: signal propagation through every layer at step 0.

:func:`probe` runs one forward and one backward pass on a batch with hooks on
every leaf module (and every module that owns parameters), and records per
module call, in forward order: the mean, std and RMS of its output, the share of
dead ReLU units, the std of the gradient reaching its output, and the std of its
parameters and of their gradients. Nothing of the model changes: parameters,
buffers (BatchNorm running statistics), ``.grad`` fields, train/eval modes and
the global random state are as before, and no graph outlives the call.

Signals are compared with a *reference* scale: the std of a floating-point
input, or 1 for token inputs. A module whose output std is more than
``threshold`` times (default 10) above or below it is flagged ``explodes`` or
``vanishes``; the *gain* of a layer with parameters is its output std over the
previous such layer's (the factor per layer).

Example:
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(64, 64), nn.ReLU())])
    >>> for layer in net[::2]:
    ...     _ = nn.init.normal_(layer.weight, std=1.0)
    >>> report = probe(net, torch.randn(512, 64))
    >>> report.verdict, round(report.factor_per_layer)   # sqrt(64 / 2) = 5.7 per layer
    ('explodes', 6)
    >>> report.flagged()[0].label  # std 8 after the first Linear (fan-in 64), 45 after the second
    '2'
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["LayerStats", "ProbeReport", "probe"]

LOSSES = ("mean_square", "cross_entropy")
"""Built-in probe losses: the mean square of the output, or cross-entropy to random labels."""

_DEAD_UNITS = (nn.ReLU, nn.ReLU6)
"""Modules whose units can be dead (exactly zero for every example)."""


@dataclass
class LayerStats:
    """What one module call did with the signal (``None`` where it does not apply).

    ``grad_std`` and ``weight_std`` are those of the module's ``weight`` (or its
    first parameter); ``params`` holds every direct parameter's ``std`` and
    ``grad_std``. ``gain`` is set for modules with parameters only.
    """

    index: int
    path: str
    type: str
    call: int = 0
    kind: str = "leaf"
    shape: list[int] = field(default_factory=list)
    act_mean: float | None = None
    act_std: float | None = None
    act_rms: float | None = None
    zero_frac: float | None = None
    dead_frac: float | None = None
    out_grad_std: float | None = None
    weight_std: float | None = None
    grad_std: float | None = None
    params: dict[str, dict[str, float | None]] = field(default_factory=dict)
    gain: float | None = None
    flag: str = ""
    label: str = ""
    """The module path, with ``#<n>`` for the n-th call of a module called several times."""

    @property
    def weighted(self) -> bool:
        """Whether the module owns parameters (a layer in the depth count)."""
        return bool(self.params)

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


@dataclass
class ProbeReport:
    """The result of :func:`probe`: per-layer statistics and the verdict.

    Attributes:
        layers: one entry per module call, in forward order.
        input_shape, input_std: the (first) input tensor's shape and std (std
            ``None`` for integer inputs such as token ids).
        output_std: std of the model's output.
        loss: the probe loss's name and value.
        mode: ``train`` or ``eval``, the mode the pass ran in.
        reference: the scale the flags compare with (input std, or 1).
        threshold: flag factor.
    """

    layers: list[LayerStats]
    input_shape: list[int]
    input_std: float | None
    output_std: float | None
    loss: str
    loss_value: float | None
    mode: str
    reference: float
    threshold: float
    input_grad_std: float | None = None

    # ------------------------------------------------------------------ views
    def __getitem__(self, label: str) -> LayerStats:
        for layer in self.layers:
            if layer.label == label or layer.path == label:
                return layer
        raise KeyError(f"no probed module {label!r}; probed: {', '.join(lay.label for lay in self.layers)}")

    def weighted(self) -> list[LayerStats]:
        """The calls of modules with parameters: the layers that count for depth."""
        return [layer for layer in self.layers if layer.weighted]

    def flagged(self) -> list[LayerStats]:
        """The calls whose output std left the band ``reference / threshold ... reference * threshold``."""
        return [layer for layer in self.layers if layer.flag]

    @property
    def act_std(self) -> list[float | None]:
        """Output std of every module call, in forward order."""
        return [layer.act_std for layer in self.layers]

    @property
    def factor_per_layer(self) -> float | None:
        """Geometric mean gain of the layers with parameters (last output std / reference)^(1/L)."""
        weighted = self.weighted()
        if not weighted or not _positive(weighted[-1].act_std):
            return None
        return (weighted[-1].act_std / self.reference) ** (1.0 / len(weighted))

    @property
    def grad_factor_per_layer(self) -> float | None:
        """Geometric mean growth per layer of the output gradient, from the last layer back to the first."""
        grads = [layer.out_grad_std for layer in self.weighted()]
        if len(grads) < 2 or not (_positive(grads[0]) and _positive(grads[-1])):
            return None
        return (grads[0] / grads[-1]) ** (1.0 / (len(grads) - 1))

    @property
    def verdict(self) -> str:
        """``explodes``, ``vanishes`` or ``stable``: where the last layer with parameters ends up."""
        weighted = self.weighted() or self.layers
        if not weighted:
            return "stable"
        return _flag(weighted[-1].act_std, self.reference, self.threshold) or "stable"

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``layers`` (forward order) and ``summary``."""
        first = next((lay for lay in self.layers if lay.flag), None)
        return _finite({
            "layers": [layer.to_dict() for layer in self.layers],
            "input": {"shape": self.input_shape, "std": self.input_std, "grad_std": self.input_grad_std},
            "output": {"std": self.output_std},
            "loss": {"name": self.loss, "value": self.loss_value},
            "mode": self.mode,
            "summary": {
                "verdict": self.verdict, "reference": self.reference, "threshold": self.threshold,
                "factor_per_layer": self.factor_per_layer,
                "grad_factor_per_layer": self.grad_factor_per_layer,
                "layers_with_parameters": len(self.weighted()),
                "first_flagged": first.label if first else None,
                "flagged": [lay.label for lay in self.flagged()],
            },
        })

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def summary(self) -> str:
        """One or two lines: what happens to the signal, with the factor per layer."""
        n = len(self.weighted())
        factor = self.factor_per_layer
        out = self.weighted()[-1].act_std if n else self.output_std
        per = f", x{factor:.3g} per layer" if factor is not None else ""
        first = next((lay for lay in self.layers if lay.flag), None)
        where = (f"; first beyond x{self.threshold:g} of the reference at {first.label}"
                 if first is not None else "")
        lines = [f"signal {self.verdict}: std {_num(out)} after {n} layers with parameters "
                 f"(reference {self.reference:.3g}{per}){where}"]
        grad = self.grad_factor_per_layer
        if grad is not None:
            lines.append(f"gradient: x{grad:.3g} per layer from the last layer back to the first "
                         f"(output-gradient std {_num(self.weighted()[-1].out_grad_std)} -> "
                         f"{_num(self.weighted()[0].out_grad_std)})")
        return "\n".join(lines)

    def table(self, bars: bool = True) -> str:
        """The per-layer table; ``bars`` adds the log10 of output std / reference as a bar.

        Bars grow right of ``|`` for a signal above the reference, left of it below.
        """
        head = ["#", "module", "type", "out shape", "act mean", "act std", "gain", "out-grad std",
                "weight std", "grad std", "dead", "flag"]
        rows = [[str(lay.index), lay.label, lay.type, "x".join(map(str, lay.shape)), _num(lay.act_mean),
                 _num(lay.act_std), "" if lay.gain is None else f"x{lay.gain:.3g}",
                 _num(lay.out_grad_std), _num(lay.weight_std), _num(lay.grad_std),
                 "" if lay.dead_frac is None else f"{lay.dead_frac:.0%}", lay.flag] for lay in self.layers]
        if bars:
            drawn, span = _bars([lay.act_std for lay in self.layers], self.reference)
            head.insert(6, f"act std / ref, log (edge 1e±{span:g})")
            for row, bar in zip(rows, drawn, strict=True):
                row.insert(6, bar)
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        right = {"#", "act mean", "act std", "gain", "out-grad std", "weight std", "grad std", "dead"}

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if h in right else c.ljust(w)
                             for c, w, h in zip(cells, widths, head, strict=True)).rstrip()

        return "\n".join([line(head), *map(line, rows), "", self.summary()])

    def __str__(self) -> str:
        return self.table(bars=_can_draw_bars())


# ---------------------------------------------------------------------------------- probe
def probe(
    model: nn.Module,
    batch: Any,
    loss: str | Callable[[Any], torch.Tensor] | None = None,
    *,
    blocks: bool = False,
    mode: str = "train",
    threshold: float = 10.0,
    seed: int = 0,
) -> ProbeReport:
    """One forward and one backward pass on ``batch``; per-module statistics in forward order.

    Args:
        model: the module to probe (its parameters must hold values: build it on
            a real device or initialize a meta-built model first).
        batch: a tensor (``model(batch)``), a tuple or list (``model(*batch)``) or
            a mapping (``model(**batch)``); tensors are moved to the model's device.
        loss: ``None`` or ``"mean_square"`` (the mean square of the output),
            ``"cross_entropy"`` (to random labels over the output's last
            dimension, for classification heads), or a callable of the output
            returning a scalar.
        blocks: also record non-leaf modules (blocks), after their children.
        mode: ``train`` (what the first training step sees: batch statistics,
            dropout) or ``eval``; the model's own modes are restored afterwards.
        threshold: flag a module whose output std is this factor above or below
            the reference (the input std, or 1 for integer inputs).
        seed: seeds the random labels and the pass's random ops (dropout); the
            global random state is left as it was.

    Returns:
        A :class:`ProbeReport`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
        >>> report = probe(net, torch.randn(64, 16), loss="cross_entropy")
        >>> [layer.label for layer in report.layers]
        ['0', '1', '2', '3']
        >>> round(report["1"].act_std, 1), net[1].num_batches_tracked.item()  # batch-normalized; untouched
        (1.0, 0)
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if not ((isinstance(loss, str) and loss in LOSSES) or loss is None or callable(loss)):
        raise ValueError(f"loss must be one of {LOSSES}, a callable or None, got {loss!r}")
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if meta:
        raise ValueError(f"the model has parameters on the meta device ({meta[0]} ...): initialize it "
                         "first (hydra_init.meta.build_and_init materializes and initializes it)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with _restored(model, device), torch.enable_grad():
        model.train(mode == "train")
        return _run(model, batch, loss, blocks, mode, threshold, seed, device)


def _run(model: nn.Module, batch: Any, loss: Any, blocks: bool, mode: str, threshold: float,
         seed: int, device: torch.device) -> ProbeReport:
    batch = _to(batch, device)
    inputs = [t for t in _tensors(batch) if t.is_floating_point()]
    first_input = next(iter(_tensors(batch)), None)
    records: list[dict[str, Any]] = []
    modules = _hooked(model, blocks)
    handles = []
    grad_handles: list[Any] = []

    def on_output(module: nn.Module, _args: Any, output: Any) -> None:
        out = _first_float(output)
        name, kind = modules[module]
        record: dict[str, Any] = {"path": name, "kind": kind, "module": module, "stats": None,
                                  "out_grad": None, "shape": []}
        records.append(record)
        if out is None:
            return
        record["shape"] = list(out.shape)
        record["stats"] = _act_stats(out.detach(), isinstance(module, _DEAD_UNITS))
        if out.requires_grad:
            def on_grad(grad: torch.Tensor, record: dict[str, Any] = record) -> None:
                record["out_grad"] = _std(grad.detach())

            grad_handles.append(out.register_hook(on_grad))

    try:
        for module in modules:
            handles.append(module.register_forward_hook(on_output))
        output = _call(model, batch)
        out = _first_float(output)
        if out is None:
            raise ValueError(f"the model returned no floating-point tensor ({type(output).__name__})")
        loss_name, loss_tensor = _loss(loss, output, out, seed)
        params = [p for p in model.parameters() if p.requires_grad]
        wrt = params + [t for t in inputs if t.requires_grad]
        grads: dict[int, torch.Tensor | None] = {}
        if wrt and loss_tensor.requires_grad:
            found = torch.autograd.grad(loss_tensor, wrt, allow_unused=True)
            grads = {id(t): None if g is None else _std(g) for t, g in zip(wrt, found, strict=True)}
            del found
        stats = [_param_stats(r["module"], grads) for r in records]
        values = _tolist({"out": _std(out.detach()), "loss": loss_tensor.detach().float(),
                          "input": _std(first_input) if first_input is not None
                          and first_input.is_floating_point() else None,
                          "input_grad": grads.get(id(inputs[0])) if inputs else None,
                          "records": [(r["stats"], r["out_grad"]) for r in records], "params": stats})
        del output, out, loss_tensor, grads
    finally:
        for handle in handles + grad_handles:
            handle.remove()
    return _report(records, values, first_input, loss_name, mode, threshold)


def _report(records: list[dict[str, Any]], values: dict[str, Any], first_input: Any, loss_name: str,
            mode: str, threshold: float) -> ProbeReport:
    calls: dict[int, int] = {}
    layers = []
    for index, (record, (act, out_grad), params) in enumerate(
            zip(records, values["records"], values["params"], strict=True), start=1):
        key = id(record["module"])
        call = calls.get(key, 0)
        calls[key] = call + 1
        layer = LayerStats(index=index, path=record["path"], type=type(record["module"]).__name__,
                           call=call, kind=record["kind"], shape=record["shape"], out_grad_std=out_grad,
                           params=params)
        if act is not None:
            layer.act_mean, layer.act_std, layer.act_rms, zero, dead = act
            layer.zero_frac = None if math.isnan(zero) else zero
            layer.dead_frac = None if math.isnan(dead) else dead
        main = params.get("weight") or next(iter(params.values()), None)
        if main is not None:
            layer.weight_std, layer.grad_std = main["std"], main["grad_std"]
        layers.append(layer)
        record.clear()  # drop the module reference
    repeated = {lay.path for lay in layers if lay.call > 0}
    for layer in layers:
        name = layer.path or "(model)"
        layer.label = f"{name}#{layer.call + 1}" if layer.path in repeated else name
    input_std = values["input"]
    reference = input_std if _positive(input_std) else 1.0
    previous = reference
    for layer in layers:
        layer.flag = _flag(layer.act_std, reference, threshold)
        if layer.weighted and layer.act_std is not None:
            layer.gain = layer.act_std / previous if _positive(previous) else None
            previous = layer.act_std
    return ProbeReport(
        layers=layers, input_shape=list(first_input.shape) if first_input is not None else [],
        input_std=input_std, output_std=values["out"], loss=loss_name, loss_value=values["loss"],
        mode=mode, reference=reference, threshold=threshold, input_grad_std=values["input_grad"],
    )


# ---------------------------------------------------------------------------------- helpers
@contextmanager
def _restored(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Restore buffers, every module's train/eval mode and the random state after the pass."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, training in modes:
            module.training = training


def _hooked(model: nn.Module, blocks: bool) -> dict[nn.Module, tuple[str, str]]:
    """Module -> (path, kind) for the leaf modules, those owning parameters, and blocks if asked."""
    out = {}
    for name, module in model.named_modules():
        leaf = not any(True for _ in module.children())
        owns = any(True for _ in module.parameters(recurse=False))
        if leaf or owns:
            out[module] = (name, "leaf" if leaf else "module")
        elif blocks and module is not model:
            out[module] = (name, "block")
    return out


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _first_float(value: Any) -> torch.Tensor | None:
    return next((t for t in _tensors(value) if t.is_floating_point()), None)


def _to(value: Any, device: torch.device) -> Any:
    """``value`` on ``device``; floating-point tensors become leaves that require grad."""
    if isinstance(value, torch.Tensor):
        value = value.detach().to(device)
        return value.requires_grad_(True) if value.is_floating_point() else value
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value) if isinstance(value, list) else tuple(
            _to(v, device) for v in value)
    return value


def _call(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (list, tuple)):
        return model(*batch)
    return model(batch)


def _loss(loss: Any, output: Any, out: torch.Tensor, seed: int) -> tuple[str, torch.Tensor]:
    if callable(loss):
        return getattr(loss, "__name__", "custom"), loss(output)
    if loss == "cross_entropy":
        logits = out.reshape(-1, out.shape[-1]) if out.dim() > 1 else out.reshape(1, -1)
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(logits.shape[-1], (logits.shape[0],), generator=generator)
        return "cross_entropy", nn.functional.cross_entropy(logits.float(), labels.to(out.device))
    return "mean_square", out.float().pow(2).mean()


def _std(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().float()
    return t.std() if t.numel() > 1 else t.new_zeros(())


def _act_stats(out: torch.Tensor, dead_units: bool) -> torch.Tensor:
    """mean, std, rms, share of zeros, share of dead units (NaN where not applicable)."""
    x = out.float()
    nan = x.new_full((), math.nan)
    zero = dead = nan
    if dead_units:
        zeros = x == 0
        zero = zeros.float().mean()
        if x.dim() >= 2:
            dead = zeros.reshape(x.shape[0], -1).all(dim=0).float().mean()
    return torch.stack([x.mean(), _std(x), x.pow(2).mean().sqrt(), zero, dead])


def _param_stats(module: nn.Module, grads: Mapping[int, Any]) -> dict[str, dict[str, Any]]:
    return {name: {"std": _std(p), "grad_std": grads.get(id(p))}
            for name, p in module.named_parameters(recurse=False)}


def _tolist(value: Any) -> Any:
    """Tensors -> floats (0-dim) or lists of floats, with one device sync for all of them."""
    flat: list[torch.Tensor] = []

    def collect(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            flat.append(v.detach().float().reshape(-1))
            return _Slot(len(flat) - 1, v.dim() == 0)
        if isinstance(v, dict):
            return {k: collect(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(collect(x) for x in v)
        return v

    shape = collect(value)
    numbers = torch.cat([t.cpu() for t in flat]).tolist() if flat else []
    starts = [0]
    for t in flat:
        starts.append(starts[-1] + t.numel())

    def rebuild(v: Any) -> Any:
        if isinstance(v, _Slot):
            chunk = numbers[starts[v.index]:starts[v.index + 1]]
            return chunk[0] if v.scalar else chunk
        if isinstance(v, dict):
            return {k: rebuild(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(rebuild(x) for x in v)
        return v

    return rebuild(shape)


@dataclass(frozen=True)
class _Slot:
    index: int
    scalar: bool


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _flag(std: float | None, reference: float, threshold: float) -> str:
    if std is None:
        return ""
    if math.isnan(std) or std > reference * threshold:
        return "explodes"
    if std < reference / threshold:
        return "vanishes"
    return ""


def _finite(value: Any) -> Any:
    """Non-finite floats -> ``None`` (JSON has no NaN or infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def _can_draw_bars() -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "█▏".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _bars(values: Sequence[float | None], reference: float, half: int = 12) -> tuple[list[str], float]:
    """A diverging log-scale bar per value (left of ``|`` below ``reference``, right above) and
    the decades a full half-width stands for."""
    logs = [math.log10(v / reference) if _positive(v) else None for v in values]
    finite = [abs(x) for x in logs if x is not None]
    span = float(math.ceil(max(max(finite, default=1.0), 1.0)))
    per_char = span / half  # decades per character
    block = "█" if _can_draw_bars() else "#"
    out = []
    for value, x in zip(values, logs, strict=True):
        if x is None:
            out.append(" " * half + ("|" + ">" * half if value is not None and value > 0 else "|"))
            continue
        n = min(half, round(abs(x) / per_char))
        left = (block * n).rjust(half) if x < 0 else " " * half
        right = block * n if x > 0 else ""
        out.append(f"{left}|{right}")
    return out, span
