"""The init report, built from the plan (never by comparing values before and after).

>>> import torch.nn as nn, hydra_init
>>> report = hydra_init.plan(nn.Linear(4, 2), {"rules": {"fc": {"type": "Zeros", "layer": "Linear"}}})
>>> report.totals["rule"]
2
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .plan import Plan, PlanEntry, without_gc

__all__ = ["InitReport", "ParamRecord"]

log = logging.getLogger("hydra_init")

SOURCES = ("rule", "reset", "pretrained", "custom", "default", "lazy")
_SOURCE_TITLES = {
    "rule": "initialized by a rule",
    "reset": "reset_parameters()",
    "pretrained": "loaded from a checkpoint",
    "custom": "by a module's own init_weights()",
    "default": "left at default (no rule)",
    "lazy": "lazy, skipped",
}


@dataclass(frozen=True)
class ParamRecord:
    """One parameter's line in the report."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    source: str
    rule: str | None
    init: str
    detail: str = ""
    aliases: tuple[str, ...] = ()
    """Other names of the same tensor (tied weights): one write, one record."""

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _describe(entry: PlanEntry, cache: dict[int, str]) -> tuple[str, str]:
    if entry.source == "pretrained":
        return f"Pretrained({entry.loaded.checkpoint})", f"{entry.loaded.checkpoint}:{entry.loaded.key}"
    if entry.source in ("default", "lazy"):
        return "-", entry.note
    if entry.source == "reset":
        return entry.init.reset_description(entry.ref.module), entry.note
    if entry.role == "bias":
        return f"bias={entry.init.bias_value:g}", entry.note
    text = cache.get(id(entry.init))  # one describe() per initializer, not per parameter
    if text is None:
        text = cache[id(entry.init)] = entry.init.describe()
    return text, entry.note


@dataclass
class InitReport:
    """What an init did (or, from :func:`hydra_init.plan`, would do) to every parameter.

    Attributes:
        params: one :class:`ParamRecord` per parameter, in model order.
        rules: per rule label, its initializer and how many parameters it matched
            and won.
        warnings: non-fatal findings a user should act on.
        seed: the seed used (``None`` for a dry run without a seed).
        applied: ``False`` for a dry run.
    """

    params: list[ParamRecord]
    rules: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    seed: int | None = None
    applied: bool = True
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    not_loaded: dict[str, str] = field(default_factory=dict)
    """Parameter path -> why a Pretrained rule targeting it did not load it."""
    sizes: dict[str, tuple[Any, str]] = field(default_factory=dict)
    """Size name -> (value, where it came from): read from the model or set (engine/sizes.py)."""
    families: list[str] = field(default_factory=list)
    """The model families the config recognized (its ``families``)."""
    notes: list[str] = field(default_factory=list)
    """Expected findings, logged at DEBUG: a rule for a layer family the model lacks."""

    @classmethod
    @without_gc
    def from_plan(
        cls, plan: Plan, seed: int | None, applied: bool, written_by: dict[str, str] | None = None
    ) -> InitReport:
        """The report of ``plan``; ``written_by`` (path -> writer, e.g. ``Net.init_weights()``)
        records parameters that code outside the plan wrote afterwards (source ``custom``)."""
        records = []
        written_by = written_by or {}
        won: dict[str, int] = defaultdict(int)
        not_loaded = _not_loaded(plan)
        described: dict[int, str] = {}
        dtypes: dict[Any, str] = {}
        for entry in plan.entries.values():
            init, detail = _describe(entry, described)
            detail = not_loaded.get(entry.path, detail) if entry.source != "pretrained" else detail
            label = entry.rule.label if entry.rule is not None else None
            if label is not None:
                won[label] += 1
            param = entry.ref.param
            shape = () if entry.source == "lazy" else tuple(param.shape)
            dtype = dtypes.get(param.dtype)
            if dtype is None:
                dtype = dtypes[param.dtype] = str(param.dtype).removeprefix("torch.")
            if entry.path in written_by:
                records.append(ParamRecord(entry.path, shape, dtype, "custom", None,
                                           written_by[entry.path],
                                           "" if label is None else f"overwrote rule {label!r} ({init})"))
                continue
            aliases = tuple(plan.aliases.get(entry.path, ()))
            if aliases:
                detail = "; ".join(filter(None, [detail, "tied: also " + ", ".join(aliases)]))
            records.append(
                ParamRecord(entry.path, shape, dtype, entry.source, label, init, detail, aliases)
            )
        rules = {
            r.label: {
                "init": r.init.describe(),
                "args": r.init.args(),
                "matched": plan.matched.get(r.label, 0),
                "written": won.get(r.label, 0),
                "key": r.key,
            }
            for r in plan.rules
        }
        # "loaded" counts what each rule finally wrote: a higher-ranked Pretrained rule may take some
        taken = Counter(id(e.loaded.rule) for e in plan.entries.values() if e.source == "pretrained")
        checkpoints = [{**p.to_dict(), "loaded": taken[id(p.rule)]} for p in plan.pretrained]
        not_loaded = {r.path: r.detail for r in records if r.path in not_loaded and r.source != "pretrained"}
        warnings = list(plan.warnings) + _left_at_default_warnings(records, not_loaded)
        sizes = {name: (size.value, size.source) for name, size in plan.sizes.items()}
        return cls(records, rules, warnings, seed, applied, checkpoints, not_loaded, sizes, plan.families,
                   list(plan.notes))

    # ------------------------------------------------------------------ queries
    @property
    def totals(self) -> dict[str, int]:
        """Parameter counts by source, plus ``params`` and ``values`` overall."""
        out = {s: 0 for s in SOURCES}
        for rec in self.params:
            out[rec.source] += 1
        out["params"] = len(self.params)
        out["values"] = sum(r.numel for r in self.params)
        return out

    @property
    def not_in_checkpoint(self) -> list[str]:
        """Parameters a Pretrained rule targeted but did not load, initialized by another rule.

        The new head or adapter of a fine-tuning model: "initialized (not in checkpoint)".
        """
        return [r.path for r in self.params if r.path in self.not_loaded and r.source in _INITIALIZED]

    @property
    def pretrained_totals(self) -> dict[str, int]:
        """Counts over all parameters: loaded, initialized (of which not in a checkpoint),
        left at default, plus checkpoint keys that matched nothing (``unexpected_keys``)."""
        t = self.totals
        return {
            "loaded": t["pretrained"],
            "initialized": sum(t[s] for s in _INITIALIZED if s in t),
            "initialized_not_in_checkpoint": len(self.not_in_checkpoint),
            "left_at_default": t["default"],
            "unexpected_keys": sum(len(c["unexpected"]) for c in self.checkpoints),
            "buffers_loaded": sum(c["buffers_loaded"] for c in self.checkpoints),
        }

    def by_source(self, source: str) -> list[str]:
        """Paths of the parameters with this source (``default`` = left untouched)."""
        return [r.path for r in self.params if r.source == source]

    def __getitem__(self, path: str) -> ParamRecord:
        """The record of a parameter, by its path or any other name of a tied tensor."""
        for rec in self.params:
            if rec.path == path or path in rec.aliases:
                return rec
        raise KeyError(path)

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps(report.to_dict())``)."""
        return {
            "applied": self.applied,
            "seed": self.seed,
            "totals": self.totals,
            "rules": self.rules,
            "warnings": self.warnings,
            "notes": self.notes,
            "checkpoints": self.checkpoints,
            **({"sizes": {k: {"value": v, "source": src} for k, (v, src) in self.sizes.items()}}
               if self.sizes else {}),
            **({"families": self.families} if self.families else {}),
            **({"pretrained": {**self.pretrained_totals, "not_loaded": self.not_loaded}}
               if self.checkpoints else {}),
            "params": [
                {"path": r.path, "shape": list(r.shape), "dtype": r.dtype, "source": r.source,
                 "rule": r.rule, "init": r.init, "detail": r.detail,
                 **({"aliases": list(r.aliases)} if r.aliases else {})}
                for r in self.params
            ],
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _groups(self) -> list[tuple[str, str, str, list[ParamRecord]]]:
        groups: dict[tuple[str, str, str], list[ParamRecord]] = {}
        for rec in self.params:
            groups.setdefault((rec.source, rec.rule or "-", rec.init), []).append(rec)
        order = {s: i for i, s in enumerate(SOURCES)}
        return [(*k, v) for k, v in sorted(groups.items(), key=lambda kv: order[kv[0][0]])]

    def __str__(self) -> str:
        return self._table(with_warnings=True)

    def _head(self) -> str:
        t = self.totals
        return (
            f"hydra_init {'init report' if self.applied else 'plan (dry run)'}: "
            f"{t['params']} parameters, {t['values']:,} values"
            + (f", seed {self.seed}" if self.seed is not None else "")
        )

    def _totals(self) -> str:
        t = self.totals
        return ", ".join(f"{t[s]} {_SOURCE_TITLES[s]}" for s in SOURCES if t[s]) or "nothing"

    def summary_line(self) -> str:
        """The one line logged at INFO: counts, seed and totals by source.

        >>> import torch.nn as nn, hydra_init
        >>> hydra_init.plan(nn.Linear(4, 2), {"seed": 0, "rules": {}}).summary_line()
        'hydra_init plan (dry run): 2 parameters, 10 values, seed 0; 2 left at default (no rule)'
        """
        return f"{self._head()}; {self._totals()}"

    def _table(self, with_warnings: bool) -> str:
        head = self._head()
        rows = [("source", "rule", "initializer", "params", "values", "examples")]
        for source, rule, init, recs in self._groups():
            paths = [r.path for r in recs]
            more = f", ... (+{len(paths) - 3})" if len(paths) > 3 else ""
            examples = ", ".join(paths[:3]) + more
            rows.append((source, rule, init, str(len(recs)),
                         f"{sum(r.numel for r in recs):,}", examples))
        widths = [min(max(len(r[i]) for r in rows), 80) for i in range(5)]
        lines = [head, *_recipe_lines(self)]
        for row in rows:
            cells = [row[i][: widths[i]].ljust(widths[i]) if i < 3 else row[i].rjust(widths[i])
                     for i in range(5)]
            lines.append("  " + "  ".join(cells) + "  " + row[5])
        lines.append("  totals: " + self._totals())
        lines.extend(_pretrained_lines(self))
        if with_warnings:
            lines.extend(f"  warning: {w}" for w in self.warnings)
            lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def log(self, logger: logging.Logger = log) -> None:
        """One summary line at INFO; the table, the notes and one line per parameter at DEBUG;
        each warning once, at WARNING."""
        logger.info("%s", self.summary_line())
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", self._table(with_warnings=False))
            for n in self.notes:
                logger.debug("hydra_init: note: %s", n)
            for r in self.params:
                logger.debug("%s %s %s: %s %s", r.path, list(r.shape), r.dtype, r.init, r.detail)
        for w in self.warnings:
            logger.warning("hydra_init: %s", w)


# ----------------------------------------------------------------------------- pretrained
_INITIALIZED = ("rule", "reset", "custom")


def _recipe_lines(report: InitReport) -> list[str]:
    out = [f"  family: {', '.join(report.families)}"] if report.families else []
    if report.sizes:
        out.append("  sizes: " + ", ".join(f"{k}={v:g} ({src})" for k, (v, src) in report.sizes.items()))
    return out


def _not_loaded(plan: Plan) -> dict[str, str]:
    """Parameter path -> why no Pretrained rule loaded it, for paths some rule targeted."""
    out: dict[str, str] = {}
    for load in plan.pretrained:
        for path, why in load.not_loaded.items():
            out.setdefault(path, f"{why} ({load.checkpoint})")
    return out


def _examples(paths: list[str], limit: int = 8) -> str:
    return ", ".join(paths[:limit]) + (f", ... (+{len(paths) - limit})" if len(paths) > limit else "")


def _left_at_default_warnings(records: list[ParamRecord], not_loaded: dict[str, str]) -> list[str]:
    """The mmengine trap made loud: targeted by a checkpoint, absent from it, and no rule."""
    left = [r.path for r in records if r.path in not_loaded and r.source == "default"]
    if not left:
        return []
    return [
        f"{len(left)} parameter(s) were not loaded from the checkpoint and no rule initializes "
        f"them, so they keep their current values: {_examples(left)}; add a rule for them"
    ]


def _pretrained_lines(report: InitReport) -> list[str]:
    if not report.checkpoints:
        return []
    p = report.pretrained_totals
    lines = [
        f"  pretrained: {p['loaded']} loaded, {p['initialized']} initialized "
        f"({p['initialized_not_in_checkpoint']} not in checkpoint), {p['left_at_default']} left at "
        f"default, {p['unexpected_keys']} unexpected keys"
    ]
    for c in report.checkpoints:
        where = c["file"] if c["file"] == c["checkpoint"] else f"{c['checkpoint']} -> {c['file']}"
        entry = f" [{c['entry']}]" if c["entry"] else ""
        lines.append(
            f"  checkpoint {where}{entry} ({c['format']}, rule {c['rule']}): {c['loaded']} params + "
            f"{c['buffers_loaded']} buffers loaded, {len(c['missing'])} not in checkpoint, "
            f"{len(c['shape_skipped'])} shape-skipped, {len(c['reinit'])} reinit, "
            f"{len(c['unexpected'])} unexpected keys"
            + (f" ({_examples(c['unexpected'], 4)})" if c["unexpected"] else "")
        )
    if report.not_in_checkpoint:
        lines.append("  initialized (not in checkpoint): " + _examples(report.not_in_checkpoint))
    return lines
