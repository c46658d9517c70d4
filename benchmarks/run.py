"""hydra_init benchmarks: against what a user would run instead, and against the limit.

Run ``make bench`` (or ``python benchmarks/run.py``); ``--quick`` is a smoke run
with tiny models; ``--write`` also replaces the generated blocks of README.md and
docs/performance.md with this run's tables (every number there comes from here).
Prints Markdown:

1. models: seconds per init for hydra_init, the *limit* (torch's own sampler
   drawing the same number of random values with one generator per thread, the
   threads in parallel), the torch loop a user would write (each tensor once,
   tied tensors once, timm's truncated-normal algorithm for ViTs) and mmengine;
2. samplers: one full-size buffer per draw, against the limit, torch's single
   generator, timm's algorithm and torch's ``trunc_normal_``;
3. per-parameter overhead: a dry run (``hydra_init.plan``) of a meta-device
   model with 240,000 parameter tensors and four rules next to the floor (a bare
   Python walk reading each tensor's shape, dtype and size), where ``apply`` of
   10,000 small parameters spends its time, and the cost curve over parameters x rules;
4. tensor-parallel shards: per-rank CPU time against world size (gloo), and what block
   tiles cost a single process;
5. meta-device build of a 570M-parameter model against eager build + apply;
6. on a CUDA machine, fill throughput as a fraction of memory bandwidth;
7. the targets, each with its measured figure.

Every timing is the best of ``--reps`` warm runs, the methods interleaved (so load
from other processes hits them alike), every method on the same full-size
tensors with the same ``torch.get_num_threads()``. A ratio of two methods is the
median of their per-round ratios (each round runs the methods back to back), which
drift of the machine's speed between rounds moves less than a ratio of bests. This is a benchmark, not a
test: nothing here asserts a speed (``check`` asserts the inits are the recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from cases import CASES, SMALL_CFG, Case, mmengine_version, small_loop  # noqa: E402
from comparators import limit, timm_trunc_normal_  # noqa: E402
from models import many_small, many_tensors  # noqa: E402

import hydra_init  # noqa: E402
from hydra_init import sampling  # noqa: E402
from hydra_init.engine.execute import execute  # noqa: E402
from hydra_init.engine.parse import parse_config  # noqa: E402
from hydra_init.engine.plan import build_plan  # noqa: E402
from hydra_init.engine.report import InitReport  # noqa: E402
from hydra_init.sampling import truncnormal  # noqa: E402
from hydra_init.sampling.truncnormal import trunc_plan  # noqa: E402

THREADS = torch.get_num_threads()


class Timings(dict):
    """Each function's best time over the rounds (the mapping), and every round's times.

    :meth:`ratio` compares two functions round by round: each round runs every function
    back to back, so the median of the per-round ratios moves less than a ratio of two
    bests when the machine's speed drifts between rounds (a shared VM's does).
    """

    def __init__(self, rounds: dict[str, list[float]]) -> None:
        super().__init__({name: min(times) for name, times in rounds.items()})
        self.rounds = rounds

    def ratio(self, a: str, b: str) -> float:
        """The median over rounds of ``a``'s time over ``b``'s."""
        return float(np.median(np.divide(self.rounds[a], self.rounds[b])))


def best_of(
    functions: dict[str, Callable[[], None]], reps: int, after: Callable[[str], None] | None = None
) -> Timings:
    """Wall times of each function over ``reps`` rounds after one warm-up, interleaved.

    ``after(name)`` runs after each timed call, outside the timing (result checks).
    """
    rounds: dict[str, list[float]] = {name: [] for name in functions}
    for rep in range(reps + 1):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            if rep:  # round 0 warms up (allocations, caches, pools)
                rounds[name].append(time.perf_counter() - start)
            if after is not None:
                after(name)
    return Timings(rounds)


class Results:
    """Figures the targets table and the prose read (so none is typed by hand)."""

    def __init__(self) -> None:
        self.figures: dict[str, float] = {}

    def __setitem__(self, key: str, value: float) -> None:
        self.figures[key] = value

    def get(self, key: str) -> float | None:
        return self.figures.get(key)


# ----------------------------------------------------------------------------- models
def model_table(size: str, reps: int, names: list[str] | None, results: Results) -> list[str]:
    mm = mmengine_version()
    rows = [
        "| case | params | values drawn | limit | hydra_init | hydra_init / limit | loop | loop time "
        "| loop / hydra_init | mmengine | mmengine / hydra_init |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for case in CASES:
        if names and not any(n.lower() in case.name.lower() for n in names):
            continue
        rows.append(_case_row(case, size, reps, mm, results))
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.1f} ms"


def _case_row(case: Case, size: str, reps: int, mm: str | None, results: Results) -> str:
    model = case.build(size)
    params = sum(p.numel() for p in model.parameters())
    drawn = case.drawn(model)

    def loop() -> None:
        with torch.no_grad():
            case.loop(model)

    functions = {
        "hydra_init": lambda: hydra_init.apply(model, case.hydra_cfg, log=False),
        "limit": limit(drawn, THREADS),
        "loop": loop,
    }
    models = {"hydra_init": model, "loop": model}
    if mm and case.mm is not None:
        mm_model = case.mm_build(size) if case.mm_build else model
        functions["mmengine"] = lambda: case.mm(mm_model)
        models["mmengine"] = mm_model
    checks = {name: (lambda m=m: case.check(m)) for name, m in models.items()}
    times = best_of(functions, reps, after=lambda name: checks.get(name, lambda: None)())  # untimed
    ours = times["hydra_init"]
    to_limit, loop_ratio = times.ratio("hydra_init", "limit"), times.ratio("loop", "hydra_init")
    results[f"{case.kind}/limit"] = to_limit
    results[f"{case.kind}/loop"] = loop_ratio
    mm_cells = "not installed | -"
    if "mmengine" in times:
        results[f"{case.kind}/mmengine"] = mm_ratio = times.ratio("mmengine", "hydra_init")
        mm_cells = f"{_ms(times['mmengine'])} | {mm_ratio:.2f}x"
    elif mm:
        mm_cells = "- | -"
    return (
        f"| {case.name} | {params / 1e6:.2f}M | {drawn / 1e6:.2f}M | {_ms(times['limit'])} | {_ms(ours)} "
        f"| {to_limit:.2f}x | {case.loop_label} | {_ms(times['loop'])} "
        f"| {loop_ratio:.2f}x | {mm_cells} |"
    )


# ----------------------------------------------------------------------------- samplers
INF = float("inf")
DRAWS = [
    ("normal", sampling.NormalDraw(0.0, 1.0), None),
    ("uniform", sampling.UniformDraw(-1.0, 1.0), None),
    ("trunc normal [-2, 2] (ViT)", sampling.TruncNormalDraw(0.0, 1.0, -2.0, 2.0), (-2.0, 2.0)),
    ("trunc normal [-0.1, 0.1] (narrow)", sampling.TruncNormalDraw(0.0, 1.0, -0.1, 0.1), (-0.1, 0.1)),
    ("trunc normal [0.5, 1] (one side)", sampling.TruncNormalDraw(0.0, 1.0, 0.5, 1.0), (0.5, 1.0)),
    ("trunc normal [0, inf) (one-sided)", sampling.TruncNormalDraw(0.0, 1.0, 0.0, INF), None),
    ("trunc normal [1, inf) (one-sided tail)", sampling.TruncNormalDraw(0.0, 1.0, 1.0, INF), None),
    ("trunc normal [3, 5] (tail)", sampling.TruncNormalDraw(0.0, 1.0, 3.0, 5.0), (3.0, 5.0)),
    ("trunc normal [8, inf) (far tail)", sampling.TruncNormalDraw(0.0, 1.0, 8.0, INF), None),
]
_SAMPLER_KEYS = {"normal": "sampler/normal", "uniform": "sampler/uniform",
                 "trunc normal [-2, 2] (ViT)": "sampler/trunc2"}


def draw_table(numel: int, reps: int, results: Results, draws: list = DRAWS) -> list[str]:
    out = torch.empty(numel)
    key = sampling.derive_key(0, "bench", out.shape)
    limits = {"normal": limit(numel, THREADS), "uniform": limit(numel, THREADS, "uniform")}
    rows = [
        f"{numel:,} float32 values per draw; the limit is torch's `normal_` (`uniform_` for "
        f"the uniform row) on {THREADS} threads with one generator each.",
        "",
        "| draw | method | limit | hydra_init | hydra_init / limit | torch, one generator "
        "| timm-style | torch `trunc_normal_` |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, draw, bounds in draws:  # the comparators are re-measured next to each draw
        kind = "uniform" if isinstance(draw, sampling.UniformDraw) else "normal"
        functions = {
            "limit": limits[kind],
            "ours": lambda d=draw: sampling.fill_(out, d, key),
            "single": (lambda: out.uniform_(-1.0, 1.0)) if kind == "uniform" else (lambda: out.normal_()),
        }
        if bounds is not None:
            functions["timm"] = lambda b=bounds: timm_trunc_normal_(out, 0.0, 1.0, *b)
            functions["torch"] = lambda b=bounds: torch.nn.init.trunc_normal_(out, 0.0, 1.0, *b)
        times = best_of(functions, reps)
        to_limit = times.ratio("ours", "limit")
        if name in _SAMPLER_KEYS:
            results[_SAMPLER_KEYS[name]] = to_limit
        if name.endswith("(ViT)"):
            results["sampler/trunc2_timm"] = times.ratio("timm", "ours")
        method = trunc_plan(draw.a, draw.b).method if isinstance(draw, sampling.TruncNormalDraw) else "-"

        def rate(name: str, times: dict[str, float] = times) -> str:
            return f"{numel / times[name] / 1e6:.0f} M/s" if name in times else "-"

        rows.append(
            f"| {name} | {method} | {rate('limit')} | {rate('ours')} | {to_limit:.2f}x "
            f"| {rate('single')} | {rate('timm')} | {rate('torch')} |"
        )
    return rows


# ----------------------------------------------------------------------------- where the time goes
def profile_table(tiles: int, results: Results) -> list[str]:
    """The ±2 std truncated-normal tile, step by step (thread CPU time, one thread).

    The steps are the sampler's own, replayed here in order with the same calls,
    and the replayed tile is checked to equal the sampler's bit for bit.
    """
    from hydra_init.sampling.generators import generator
    from hydra_init.sampling.keys import TILE, tile_seed
    from hydra_init.sampling.scratch import thread_buffer

    draw = sampling.TruncNormalDraw(0.0, 0.02, -0.04, 0.04)
    plan = trunc_plan(-2.0, 2.0)
    cpu = torch.device("cpu")
    z, spent = torch.empty(TILE), {}
    gen = torch.Generator()

    def step(name: str, start: float) -> float:
        now = time.thread_time()
        spent[name] = spent.get(name, 0.0) + now - start
        return now

    std = np.float32(draw.std)
    low, high = np.float32(np.float32(plan.lo) * std), np.float32(np.float32(plan.hi) * std)

    def accepted(n: int) -> np.ndarray:  # the redraw of truncnormal._scaled_tile_
        values = thread_buffer(n, torch.float32, cpu, slot=1).normal_(0.0, draw.std, generator=gen).numpy()
        if truncnormal._on_bound(values, low, high):
            raise truncnormal._Undecided
        kept = truncnormal._outside(values, low, high, inclusive=True)
        return values[np.logical_not(kept, out=kept)]

    def replay(i: int) -> None:
        nonlocal gen
        seed = tile_seed(12345, i)
        t = time.thread_time()
        gen = generator(cpu, seed)
        t = step("seed the tile's generator", t)
        z.normal_(0.0, draw.std, generator=gen)
        t = step("`normal_`, scaled by std in torch's kernel (the limit)", t)
        a = z.numpy()
        rejected = truncnormal._outside(a, low, high, inclusive=True)
        t = step("bounds mask", t)
        pending = truncnormal._positions(rejected)
        t = step("positions of rejected values", t)
        undecided = truncnormal._on_bound(a[pending], low, high)
        t = step("check for values on a bound", t)
        try:
            if not undecided:
                truncnormal._refill_in_order_(a, pending, accepted, plan.acceptance)
        except truncnormal._Undecided:
            undecided = True
        t = step("redraw the rejected values", t)
        if undecided:  # about one tile in 400: the sampler draws it again the plain way
            draw.fill_tile(z, generator(cpu, seed))
            t = step("undecided tiles, drawn again the plain way", t)
        if i < 4:
            reference = torch.empty(TILE)
            draw.fill_tile(reference, generator(cpu, seed))
            assert torch.equal(reference, z), "the replayed tile differs from the sampler's"

    with ThreadPoolExecutor(max_workers=1) as worker:  # a worker thread, as the sampler's tiles run
        worker.submit(lambda: [replay(i) for i in range(tiles)]).result()
    total = sum(spent.values())
    results["profile/normal_share"] = spent["`normal_`, scaled by std in torch's kernel (the limit)"] / total
    rows = [f"One ±2 std tile ({TILE:,} float32 values), thread CPU time per step, summed over {tiles} tiles "
            "(the replay is checked bit for bit against the sampler):", "",
            "| step | µs per tile | share |", "|---|---:|---:|"]
    for name, seconds in spent.items():
        rows.append(f"| {name} | {seconds / tiles * 1e6:.0f} | {seconds / total:.0%} |")
    rows.append(f"| total | {total / tiles * 1e6:.0f} | 100% |")
    return rows


# ----------------------------------------------------------------------------- per-parameter overhead
def _overhead_rules(count: int) -> dict:
    """``count`` rules: the four class rules (1: Linear only), then path-pattern rules over Linears."""
    rules = {
        "linear": {"type": "Normal", "layer": "Linear", "std": 0.02, "bias": 0.0},
        "norm": {"type": "Ones", "layer": "LayerNorm", "bias": 0.0},
        "embed": {"type": "Normal", "layer": "Embedding", "std": 0.02},
        "conv": {"type": "Kaiming", "layer": "Conv1d", "mode": "fan_in"},
    }
    chosen = dict(list(rules.items())[: min(count, 4)])
    for i in range(count - len(chosen)):
        chosen[f"path{i}"] = {"type": "Normal", "name": f"*{i}.lin", "std": 0.01}
    return {"seed": 0, "rules": chosen}


def _dry_run_seconds(model: torch.nn.Module, rules: int, reps: int,
                     rows: bool = False) -> tuple[float, int]:
    """Best time of ``hydra_init.plan`` (its report's per-parameter rows are built on first
    access; ``rows=True`` times building them too, as printing the report does)."""
    count = sum(1 for _ in model.parameters())
    cfg = _overhead_rules(rules)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        report = hydra_init.plan(model, cfg)
        if rows:
            len(report.params)
        best = min(best, time.perf_counter() - start)
    return best, count


def _bare_walk(model: torch.nn.Module) -> int:
    """What any Python planner pays at least: every module's own parameters, each one's shape,
    dtype and size read once (no matching, no checks, nothing kept)."""
    values = 0
    for _, module in model.named_modules(remove_duplicate=False):
        for param in module._parameters.values():
            if param is not None:
                _ = param.shape, param.dtype
                values += param.numel()
    return values


def small_split_rows(size: str, reps: int) -> list[str]:
    """Where the time of the 10,000-small-parameter ``apply`` goes, against the plain loop."""
    model = many_small(size)
    parsed = parse_config(SMALL_CFG)
    resolved = build_plan(model, parsed)
    times = best_of({
        "plan": lambda: build_plan(model, parsed),
        "execute": lambda: execute(resolved),
        "report": lambda: InitReport.from_plan(resolved, seed=0, applied=True),
        "apply": lambda: hydra_init.apply(model, SMALL_CFG, log=False),
        "loop": lambda: small_loop(model),
    }, reps)
    count = sum(1 for _ in model.parameters())
    cells = ", ".join(f"{name} {times[name] * 1e3:.0f} ms ({times[name] / count * 1e6:.1f} µs per "
                      "parameter)" for name in ("plan", "execute", "report"))
    return [
        f"Where `apply` of the {count:,}-small-parameter model goes (each step timed on its own): "
        f"{cells}; `apply` as a whole {times['apply'] * 1e3:.0f} ms, the plain torch loop "
        f"{times['loop'] * 1e3:.0f} ms ({times['loop'] / count * 1e6:.1f} µs per parameter: "
        "`nn.init.normal_`/`zeros_` calls).",
        "",
    ]


def overhead_table(size: str, reps: int, results: Results, curve_max: int = 10**6) -> list[str]:
    target = 240_000 if size == "full" else 2_400
    model = many_tensors(target)
    seconds, count = _dry_run_seconds(model, 4, reps)
    with_rows, _ = _dry_run_seconds(model, 4, reps, rows=True)
    floor = best_of({"walk": lambda: _bare_walk(model)}, reps)["walk"]
    results["dry_run/us"] = seconds / count * 1e6
    results["dry_run/s"] = seconds
    rows = [
        f"Dry run (`hydra_init.plan`) of a meta-device model with {count:,} parameter tensors and four "
        f"rules: **{seconds:.2f} s**, {seconds / count * 1e6:.1f} µs per tensor (the report's totals, "
        f"rules and summary line; its {count:,} per-parameter rows are built on first access: "
        f"{with_rows:.2f} s with them).",
        "",
        f"The floor on this machine: a bare Python loop over the same model "
        f"(`named_modules()`, then each parameter's shape, dtype and `numel()`, nothing matched or "
        f"kept) takes {floor:.2f} s, {floor / count * 1e6:.1f} µs per tensor; the dry run is "
        f"{seconds / floor:.1f}x that.",
        "",
        *small_split_rows(size, reps),
        "Cost curve, dry run (µs per parameter tensor; best of "
        f"{reps} up to 10⁵ tensors, one run above):",
        "",
    ]
    sizes = [n for n in (10**3, 10**4, 10**5, 10**6) if n <= curve_max] if size == "full" else [10**2]
    rule_counts = [1, 4, 16] if size == "full" else [1, 4]
    rows.append("| parameter tensors | " + " | ".join(f"{r} rule{'s' * (r > 1)}" for r in rule_counts) + " |")
    rows.append("|---:|" + "---:|" * len(rule_counts))
    for n in sizes:
        cells, model = [], many_tensors(n)
        for r in rule_counts:
            secs, count = _dry_run_seconds(model, r, reps if n <= 10**5 else 1)
            cells.append(f"{secs / count * 1e6:.1f} µs ({secs:.2f} s)")
        rows.append(f"| {count:,} | " + " | ".join(cells) + " |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------- shards
def shard_table(size: str, results: Results) -> list[str]:
    run = subprocess.run([sys.executable, str(HERE / "shard_probe.py"), size], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    base: dict[str, float] = {}  # world size 1 (the whole tensor on one rank), the best of its layouts
    for r in lines:
        if r["world"] == 1:
            base[r["tiles"]] = min(base.get(r["tiles"], float("inf")), r["seconds"])
    values = lines[0]["values"] if lines else 0
    rows = [
        f"{values / 1e6:.1f}M truncated-normal values (Linear weights) as DTensors on gloo; per-rank CPU "
        "time of `hydra_init.apply` (the largest over ranks, best of 3; one torch thread per rank), with "
        "flat tiles (the default) and block tiles (`init.tiles: blocks`), against world size 1 with the "
        "same tiles (the faster of its `Shard(0)` and `Shard(1)` runs: both draw the whole tensor).",
        "",
        "| tiles | placement | world size | shard share | per-rank CPU time | vs world size 1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in lines:
        ref = base.get(r["tiles"])
        ratio = f"{r['seconds'] / ref:.2f}x" if ref else "-"
        if r["world"] == 4:
            results[f"shard/{r['tiles']}/{r['layout']}/4"] = r["seconds"] / ref if ref else float("nan")
        rows.append(f"| {r['tiles']} | {r['layout']} | {r['world']} | {r['share']:.2f} | {_ms(r['seconds'])} "
                    f"| {ratio} |")
    return rows


# ----------------------------------------------------------------------------- tile layouts
LAYOUT_SHAPES = {"full": [(50257, 768), (3072, 768), (4096, 4096)], "quick": [(512, 768)]}


def tiles_table(size: str, reps: int) -> list[str]:
    """Single-process cost of block tiles against flat tiles: one tensor, the same draw."""
    from hydra_init.sampling import derive_key, fill_

    draws = {"normal": sampling.NormalDraw(0.0, 0.02), "trunc normal ±2 std": sampling.TruncNormalDraw(
        0.0, 0.02, -0.04, 0.04)}
    rows = [f"One tensor filled by `hydra_init.sampling.fill_` in one process, {THREADS} threads, best of "
            f"{reps} interleaved warm runs: block tiles (`init.tiles: blocks`) against the default "
            "flat tiles.",
            "", "| shape | draw | flat | blocks | blocks / flat |", "|---|---|---:|---:|---:|"]
    for shape in LAYOUT_SHAPES[size]:
        out = torch.empty(shape)
        key = derive_key(0, "w", shape)
        for name, draw in draws.items():
            best = best_of({"flat": lambda d=draw, o=out, k=key: fill_(o, d, k),
                            "blocks": lambda d=draw, o=out, k=key: fill_(o, d, k, blocks=True)}, reps)
            rows.append(f"| {shape[0]} x {shape[1]} | {name} | {_ms(best['flat'])} | {_ms(best['blocks'])} "
                        f"| {best.ratio('blocks', 'flat'):.2f}x |")
    return rows


# ----------------------------------------------------------------------------- meta device
def meta_table(size: str, reps: int, results: Results) -> list[str]:
    probe = HERE / "meta_probe.py"
    runs: dict[str, list[dict]] = {"eager": [], "meta": []}
    for _ in range(reps):
        for mode in ("eager", "meta"):
            run = subprocess.run([sys.executable, str(probe), mode, size], capture_output=True, text=True,
                                 check=True)
            runs[mode].append(json.loads(run.stdout.strip().splitlines()[-1]))
    best = {mode: min(r, key=lambda x: x["seconds"]) for mode, r in runs.items()}
    peak = {mode: max(x["peak_rss"] - x["base_rss"] for x in r) for mode, r in runs.items()}
    param_bytes = best["meta"]["param_bytes"]
    results["meta/time"] = best["meta"]["seconds"] / best["eager"]["seconds"]
    results["meta/peak"] = peak["meta"] / param_bytes
    rows = [
        "| build + init | params | time | peak RSS above baseline | peak / parameter bytes |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {"eager": "eager build + `hydra_init.apply`", "meta": "`build_and_init` (meta device)"}
    for mode, label in labels.items():
        rows.append(
            f"| {label} | {best[mode]['params'] / 1e6:.0f}M | {best[mode]['seconds']:.2f} s "
            f"| {peak[mode] / 2**30:.2f} GiB | {peak[mode] / param_bytes:.2f}x |"
        )
    rows.append("")
    rows.append(f"meta / eager time: **{results.get('meta/time'):.2f}x**; meta peak: "
                f"**{results.get('meta/peak'):.2f}x** parameter bytes")
    return rows


# ----------------------------------------------------------------------------- GPU
def gpu_table(reps: int) -> list[str]:
    """Fill throughput on CUDA as a fraction of the device's copy bandwidth (untested without a GPU)."""
    if not torch.cuda.is_available():
        return ["No CUDA device: GPU figures skipped."]
    device = torch.device("cuda")
    numel = 1 << 28  # 1 GiB of float32
    out = torch.empty(numel, device=device)
    src = torch.empty_like(out).fill_(1.0)

    def timed(fn: Callable[[], None]) -> float:
        best = float("inf")
        for _ in range(reps + 1):  # the first call warms up
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    copy_rate = 2 * out.numel() * 4 / timed(lambda: out.copy_(src))  # bytes read + written per second
    key = sampling.derive_key(0, "bench", out.shape)
    rows = [
        f"Device: {torch.cuda.get_device_name(device)}; "
        f"copy bandwidth {copy_rate / 1e9:.0f} GB/s (measured).",
        "",
        "| fill | GB/s written | fraction of bandwidth |",
        "|---|---:|---:|",
    ]
    fills = {
        "torch `normal_`": lambda: out.normal_(),
        "hydra_init normal": lambda: sampling.fill_(out, sampling.NormalDraw(0.0, 1.0), key),
        "hydra_init trunc normal ±2 std": lambda: sampling.fill_(
            out, sampling.TruncNormalDraw(0.0, 1.0, -2.0, 2.0), key),
        "hydra_init uniform": lambda: sampling.fill_(out, sampling.UniformDraw(-1.0, 1.0), key),
    }
    for name, fn in fills.items():
        rate = out.numel() * 4 / timed(fn)
        rows.append(f"| {name} | {rate / 1e9:.0f} | {rate / copy_rate:.0%} |")
    return rows


# ----------------------------------------------------------------------------- targets
# (figure, label, target, "max" when the figure must stay at or below the target)
TARGETS = [
    ("sampler/normal", "normal sampler, time / limit", 1.15, "max"),
    ("sampler/uniform", "uniform sampler, time / limit", 1.15, "max"),
    ("sampler/trunc2", "trunc normal ±2 std sampler, time / limit", 1.4, "max"),
    ("sampler/trunc2_timm", "trunc normal ±2 std sampler, speedup vs timm-style", 1.8, "min"),
    ("normal/limit", "GPT-2 normal init, time / limit", 1.15, "max"),
    ("trunc_normal/limit", "ViT-Base trunc normal init, time / limit", 1.4, "max"),
    ("trunc_normal/loop", "ViT-Base, speedup vs timm-style loop", 1.8, "min"),
    ("trunc_normal/mmengine", "ViT-Base, speedup vs mmengine", 1.8, "min"),
    ("kaiming/loop", "ResNet Kaiming, speedup vs torch loop (ResNet-152 row)", 1.6, "min"),
    ("small/loop", "10,000 small parameters, speedup vs plain loop", 1.0, "min"),
    ("small/mmengine", "10,000 small parameters, speedup vs mmengine", 2.0, "min"),
    ("dry_run/s", "dry run, 240,000 tensors and four rules (s)", 1.2, "max"),
    ("shard/blocks/Shard(1)/4", "Shard(1) at world size 4, block tiles, per-rank time / world size 1",
     0.25 * 1.2, "max"),
    ("shard/blocks/2-D (2x2)/4", "2-D mesh (2x2), block tiles, per-rank time / world size 1",
     0.25 * 1.2, "max"),
    ("meta/time", "meta-device build, time / eager", 0.6, "max"),
    ("meta/peak", "meta-device build, peak / parameter bytes", 1.15, "max"),
]


def targets_table(results: Results) -> list[str]:
    rows = ["| target | measured | goal | met |", "|---|---:|---:|:---:|"]
    for key, label, goal, sense in TARGETS:
        value = results.get(key)
        if value is None:
            continue
        met = value <= goal if sense == "max" else value >= goal
        unit = "" if key.endswith("/s") else "x"
        bound = "≤" if sense == "max" else "≥"
        rows.append(f"| {label} | {value:.2f}{unit} | {bound} {goal:g}{unit} | {'✓' if met else '✗'} |")
    return rows


# ----------------------------------------------------------------------------- main
def header(args: argparse.Namespace) -> list[str]:
    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        load = "load average unknown"
    mm = mmengine_version()
    return [
        f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, {THREADS} threads for every method (torch's samplers and "
        f"`nn.init` functions use one of them per generator), {load} at start; "
        f"mmengine {mm or 'not installed'}; best of {args.reps} warm interleaved runs (ratios: the "
        "median of per-round ratios).",
    ]


SECTIONS = ("models", "draws", "profile", "overhead", "shards", "tiles", "meta", "gpu")


DOCS = (ROOT / "README.md", ROOT / "docs" / "performance.md")


def write_blocks(text: dict[str, str], paths: tuple[Path, ...] = DOCS) -> None:
    """Replace ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->`` blocks in the README and docs."""
    for path in paths:
        content = path.read_text()
        for name, body in text.items():
            pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.DOTALL)
            content = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), content)
        path.write_text(content)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="hydra_init benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny models, one run: a smoke test")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed runs per measurement (default 5, quick 1)")
    parser.add_argument("--cases", nargs="*", help="only the model cases whose names contain these words")
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    parser.add_argument("--curve-max", type=int, default=10**6,
                        help="largest model of the overhead curve, in parameter tensors (default 10^6)")
    parser.add_argument("--write", action="store_true",
                        help="replace the generated blocks of README.md and docs/performance.md")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    args.reps = args.reps or (1 if args.quick else 5)
    results = Results()
    sections = {"header": ("", header(args))}
    if "models" not in args.skip:
        sections["models"] = ("Models", model_table(size, args.reps, args.cases, results))
    if "draws" not in args.skip:
        draws = DRAWS[:3] if args.quick else DRAWS
        numel = 1 << (16 if args.quick else 24)
        sections["draws"] = ("Samplers", draw_table(numel, args.reps, results, draws))
    if "profile" not in args.skip:
        tiles = 20 if args.quick else 400
        sections["profile"] = ("Where the truncated-normal time goes", profile_table(tiles, results))
    if "overhead" not in args.skip:
        sections["overhead"] = ("Per-parameter overhead",
                                overhead_table(size, min(args.reps, 3), results, args.curve_max))
    if "shards" not in args.skip:
        sections["shards"] = ("Tensor-parallel shards", shard_table(size, results))
    if "tiles" not in args.skip:
        sections["tiles"] = ("Tile layouts in one process", tiles_table(size, args.reps))
    if "meta" not in args.skip:
        sections["meta"] = ("Meta-device build", meta_table(size, 1 if args.quick else 2, results))
    if "gpu" not in args.skip:
        sections["gpu"] = ("GPU", gpu_table(args.reps))
    if not args.quick:  # tiny models say nothing about the targets
        sections["targets"] = ("Targets", targets_table(results))
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    print(f"Command: `{command}`\n")
    blocks = {}
    for name, (title, rows) in sections.items():
        body = "\n".join(rows)
        blocks[name] = body
        if title:
            print(f"### {title}\n")
        print(body + "\n")
    if args.write:
        write_blocks(blocks)


if __name__ == "__main__":
    main()
