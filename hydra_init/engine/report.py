"""The init report, built from the plan (never by comparing values before and after).

>>> import torch.nn as nn, hydra_init
>>> report = hydra_init.plan(nn.Linear(4, 2), {"rules": {"fc": {"type": "Zeros", "layer": "Linear"}}})
>>> report.totals["rule"]
2
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from .columns import Kind
from .plan import Plan, without_gc

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


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(ParamRecord))
_new = object.__new__


def _record_like(template: dict[str, Any], path: str) -> ParamRecord:
    """``ParamRecord(path, **rest of template)`` without the frozen dataclass's ``__init__``
    (one ``object.__setattr__`` per field): the fields a kind's parameters share are one
    dict, copied into each record. The same record, ``==`` and ``repr`` included."""
    record = _new(ParamRecord)
    fields = record.__dict__
    fields.update(template)
    fields["path"] = path
    return record


def _describe(kind: Kind, ref: Any, cache: dict[tuple[int, str], str]) -> tuple[str, str]:
    """What a parameter's initializer is, and a detail (the plan's note, a checkpoint key)."""
    source, note = kind.source, kind.note
    if source == "pretrained":
        loaded = kind.loaded
        return f"Pretrained({loaded.checkpoint})", f"{loaded.checkpoint}:{loaded.key}"
    if source in ("default", "lazy"):
        return "-", note
    if source == "reset":
        return kind.init.reset_description(ref().module), note
    key = (id(kind.init), kind.role)  # one description per initializer and role, not per parameter
    text = cache.get(key)
    if text is None:
        text = cache[key] = f"bias={kind.init.bias_value:g}" if kind.role == "bias" else kind.init.describe()
    return text, note


class _Columns:
    """The report's per-parameter facts, counted over the plan's kinds.

    Shapes and dtypes are the parameters' as written: read while planning where the plan
    did (writing changes neither), else when the report is made (:attr:`unread`). The
    :class:`ParamRecord` rows are built only when someone reads :attr:`InitReport.params`,
    so a dry run of 10⁵ tensors that only logs the summary line never builds them.
    """

    __slots__ = ("count", "plan", "sources", "unread", "values", "won")

    def __init__(self, plan: Plan, written_by: dict[str, str]) -> None:
        columns = self.plan = plan.columns
        self.count = len(columns)
        counts = columns.counts()
        self.sources: Counter[str] = Counter()
        self.won: dict[str, int] = defaultdict(int)
        values = 0
        for kind, n in counts:
            self.sources[kind.source] += n
            if kind.rule is not None:
                self.won[kind.rule.label] += n
            if kind.shape is not None:
                values += kind.shape.numel() * n
        unread = columns.where(lambda kind: kind.shape is None)
        self.unread: dict[int, tuple[tuple[int, ...], Any]] = {}
        for i, param in zip(unread, columns.params(unread), strict=True):
            lazy = columns.at(i).source == "lazy"
            self.unread[i] = ((), param.dtype) if lazy else (param.shape, param.dtype)
            values += 0 if lazy else param.numel()
        self.values = values
        for path in written_by:
            i = columns.index.position.get(path)
            if i is not None:
                self.sources[columns.at(i).source] -= 1
                self.sources["custom"] += 1


@without_gc  # built lazily, outside from_plan: 10^5 new records would set the collector scanning the model
def _records(plan: Plan, columns: _Columns, written_by: dict[str, str],
             not_loaded: dict[str, str]) -> list[ParamRecord]:
    """One :class:`ParamRecord` per parameter, from the columns: the fields a kind's
    parameters share are described once per kind (a reset's, and those of parameters whose
    shape planning did not read, once per parameter)."""
    cols = columns.plan
    kinds, unread = cols.kinds, columns.unread
    described: dict[tuple[int, str], str] = {}
    dtype_names: dict[Any, str] = {}

    def fields(kind: Kind, i: int | None) -> tuple[Any, ...]:
        init, detail = _describe(kind, lambda: cols.ref(i), described)
        shape, dtype = (kind.shape, kind.dtype) if kind.shape is not None else unread[i]
        name = dtype_names.get(dtype)
        if name is None:
            name = dtype_names[dtype] = str(dtype).removeprefix("torch.")
        label = kind.rule.label if kind.rule is not None else None
        return tuple(shape), name, kind.source, label, init, detail

    shared = [None if k.source == "reset" or k.shape is None else fields(k, None) for k in kinds]
    templates = [None if row is None else dict(zip(_RECORD_FIELDS, (None, *row, ()), strict=True))
                 for row in shared]
    aliases_of = plan.aliases
    records = []
    add = records.append
    for i, (path, k) in enumerate(zip(cols.index.param_paths, cols.kind.tolist(), strict=True)):
        row = shared[k]
        if row is not None and not written_by and not not_loaded and path not in aliases_of:
            add(_record_like(templates[k], path))
            continue
        row = row or fields(kinds[k], i)
        shape, name, source, label, init, detail = row
        if written_by and path in written_by:
            records.append(ParamRecord(path, shape, name, "custom", None, written_by[path],
                                       "" if label is None else f"overwrote rule {label!r} ({init})"))
            continue
        if not_loaded and source != "pretrained":
            detail = not_loaded.get(path, detail)
        aliases = tuple(aliases_of.get(path, ())) if aliases_of else ()
        if aliases:
            detail = "; ".join(filter(None, [detail, "tied: also " + ", ".join(aliases)]))
        if detail is row[5] and not aliases:
            records.append(ParamRecord(path, *row))
        else:
            records.append(ParamRecord(path, shape, name, source, label, init, detail, aliases))
    return records


class InitReport:
    """What an init did (or, from :func:`hydra_init.plan`, would do) to every parameter.

    Made from the plan by :meth:`from_plan`. The per-parameter :attr:`params` rows are
    built on first access; everything else (totals, the summary line, rules, warnings)
    comes from one pass over the plan.

    Attributes:
        params: one :class:`ParamRecord` per parameter, in model order.
        rules: per rule label, its initializer and how many parameters it matched
            and won.
        warnings: non-fatal findings a user should act on.
        seed: the seed used (``None`` for a dry run without a seed).
        tiles: the tile layout of large tensors (``flat`` or ``blocks``: ``init.tiles``),
            which with the seed decides the values.
        applied: ``False`` for a dry run.
        checkpoints: one dict per Pretrained rule: file, format, loaded, missing, unexpected...
        not_loaded: parameter path -> why a Pretrained rule targeting it did not load it.
        sizes: size name -> (value, where it came from): read from the model or set
            (:mod:`hydra_init.engine.sizes`).
        families: the model families the config recognized (its ``families``).
        notes: expected findings, logged at DEBUG: a rule for a layer family the model lacks.
    """

    def __init__(self, plan: Plan, seed: int | None, applied: bool,
                 written_by: dict[str, str] | None = None) -> None:
        written_by = written_by or {}
        columns = _Columns(plan, written_by)
        self.seed = seed
        self.tiles = "blocks" if plan.blocks else "flat"
        self.applied = applied
        self.rules: dict[str, dict[str, Any]] = {
            r.label: {
                "init": r.init.describe(),
                "args": r.init.args(),
                "matched": plan.matched.get(r.label, 0),
                "written": columns.won.get(r.label, 0),
                "key": r.key,
            }
            for r in plan.rules
        }
        self.sizes: dict[str, tuple[Any, str]] = {
            name: (size.value, size.source) for name, size in plan.sizes.items()}
        self.families: list[str] = list(plan.families)
        self.notes: list[str] = list(plan.notes)
        self.warnings: list[str] = list(plan.warnings)
        self.checkpoints: list[dict[str, Any]] = []
        self.not_loaded: dict[str, str] = {}
        self._counts = {s: columns.sources.get(s, 0) for s in SOURCES}
        self._counts.update(params=columns.count, values=columns.values)
        not_loaded = _not_loaded(plan)
        self._build = lambda: _records(plan, columns, written_by, not_loaded)
        self._params: list[ParamRecord] | None = None
        if plan.pretrained:  # small models, and their warnings need the rows: build them now
            # "loaded" counts what each rule finally wrote: a higher-ranked Pretrained rule may take some
            cols = plan.columns
            taken = Counter(id(cols.at(i).loaded.rule) for i in cols.positions("pretrained"))
            self.checkpoints = [{**p.to_dict(), "loaded": taken[id(p.rule)]} for p in plan.pretrained]
            records = self.params
            self.not_loaded = {r.path: r.detail for r in records
                               if r.path in not_loaded and r.source != "pretrained"}
            self.warnings += _left_at_default_warnings(records, self.not_loaded)

    @classmethod
    @without_gc
    def from_plan(
        cls, plan: Plan, seed: int | None, applied: bool, written_by: dict[str, str] | None = None
    ) -> InitReport:
        """The report of ``plan``; ``written_by`` (path -> writer, e.g. ``Net.init_weights()``)
        records parameters that code outside the plan wrote afterwards (source ``custom``)."""
        return cls(plan, seed, applied, written_by)

    @property
    def params(self) -> list[ParamRecord]:
        """One :class:`ParamRecord` per parameter, in model order (built on first access)."""
        if self._params is None:
            self._params = self._build()
            self._build = None
        return self._params

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (or deep-copied) without the plan, which holds the model: rows built first."""
        self.params  # noqa: B018 - builds the rows
        return {k: v for k, v in self.__dict__.items() if k != "_build"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._build = None

    def __repr__(self) -> str:
        return f"<InitReport {self.summary_line()!r}>"

    # ------------------------------------------------------------------ queries
    @property
    def totals(self) -> dict[str, int]:
        """Parameter counts by source, plus ``params`` and ``values`` overall."""
        return dict(self._counts)

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
    @without_gc  # one dict per parameter: see _records
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps(report.to_dict())``)."""
        return {
            "applied": self.applied,
            "seed": self.seed,
            "tiles": self.tiles,
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

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON; indented, with one line per parameter.

        The rows are encoded one by one (json's C encoder; an indented ``json.dumps`` of
        the whole report runs its pure-Python encoder, which costs seconds for 10⁵ rows).

        >>> import torch.nn as nn, json, hydra_init
        >>> text = hydra_init.plan(nn.Linear(2, 2), {"rules": {"w": {"type": "Ones"}}}).to_json()
        >>> json.loads(text)["params"][0]["path"], text.count("\\n    {")
        ('weight', 2)
        """
        data = self.to_dict()
        if not indent or not data["params"]:
            return json.dumps(data, indent=indent)
        params = data.pop("params")
        pad = " " * indent if isinstance(indent, int) else indent
        rows = ",\n".join(pad * 2 + json.dumps(row) for row in params)
        head = json.dumps(data, indent=indent)  # ends with "\n}"
        return f'{head[:-2]},\n{pad}"params": [\n{rows}\n{pad}]\n}}'

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
            + (", block tiles" if self.tiles == "blocks" else "")
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
