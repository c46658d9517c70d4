"""hydra_init benchmarks: speed against a hand-written torch loop and mmengine, side by side.

Run ``make bench`` (or ``python benchmarks/run.py``); ``--quick`` is a smoke run
with tiny models. Prints Markdown tables:

1. models: seconds per init for hydra_init, a torch loop doing the same init, and
   mmengine (``initialize`` / ``BaseModule.init_weights``), with the ratios;
2. samplers: throughput of each draw, against ``normal_`` and ``trunc_normal_``;
3. meta-device build of a 570M-parameter model against eager build + apply
   (time and peak RSS, each in a fresh subprocess);
4. on a CUDA machine, fill throughput as a fraction of memory bandwidth.

Timings are the best of ``--reps`` runs, with the methods interleaved so that
load from other processes hits them alike. This is a benchmark, not a test:
nothing here asserts a speed (``check`` asserts the inits are the same recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from cases import CASES, Case, mmengine_version  # noqa: E402

import hydra_init  # noqa: E402
from hydra_init import sampling  # noqa: E402
from hydra_init.sampling.truncnormal import trunc_plan  # noqa: E402

TARGETS = {"trunc_normal": (8.0, 1.5), "normal": (1.4, 1.5), "nested": (None, 4.0), "small": (None, 1.5)}
"""Targets on 2 cores, by case kind: (speedup vs the torch loop, speedup vs mmengine)."""


def best_of(
    functions: dict[str, Callable[[], None]], reps: int, after: Callable[[str], None] | None = None
) -> dict[str, float]:
    """Best wall time of each function over ``reps`` rounds, the functions interleaved.

    ``after(name)`` runs after each timed call, outside the timing (result checks).
    """
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(reps):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
            if after is not None:
                after(name)
    return best


def _fmt_ratio(ratio: float | None, target: float | None) -> str:
    if ratio is None:
        return "-"
    if target is None:
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x {'✓' if ratio >= target else '✗'} (≥{target:g}x)"


def model_table(size: str, reps: int, names: list[str] | None) -> list[str]:
    mm = mmengine_version()
    rows = [
        "| case | params | hydra_init | torch loop | mmengine | vs torch loop | vs mmengine |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        if names and not any(n.lower() in case.name.lower() for n in names):
            continue
        rows.append(_case_row(case, size, reps, mm))
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _case_row(case: Case, size: str, reps: int, mm: str | None) -> str:
    model = case.build(size)
    params = sum(p.numel() for p in model.parameters())

    def loop() -> None:
        with torch.no_grad():
            case.loop(model)

    functions = {"hydra_init": lambda: hydra_init.apply(model, case.hydra_cfg, log=False), "loop": loop}
    models = dict.fromkeys(functions, model)
    if mm and case.mm is not None:
        mm_model = case.mm_build(size) if case.mm_build else model
        functions["mmengine"] = lambda: case.mm(mm_model)
        models["mmengine"] = mm_model
    times = best_of(functions, reps, after=lambda name: case.check(models[name]))  # checks untimed
    loop_target, mm_target = TARGETS[case.kind]
    vs_loop = times["loop"] / times["hydra_init"]
    vs_mm = times["mmengine"] / times["hydra_init"] if "mmengine" in times else None
    mm_cell = f"{times['mmengine'] * 1e3:.0f} ms" if "mmengine" in times else "not installed"
    ours, loop_ms = times["hydra_init"] * 1e3, times["loop"] * 1e3
    return (
        f"| {case.name} | {params / 1e6:.2f}M | {ours:.0f} ms | {loop_ms:.0f} ms "
        f"| {mm_cell} | {_fmt_ratio(vs_loop, loop_target)} | {_fmt_ratio(vs_mm, mm_target)} |"
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


def draw_table(numel: int, reps: int) -> list[str]:
    out = torch.empty(numel)
    key = sampling.derive_key(0, "bench", out.shape)
    rows = [
        "| draw | method | hydra_init | vs torch `normal_` | vs torch `trunc_normal_` |",
        "|---|---|---:|---:|---:|",
    ]
    for name, draw, bounds in DRAWS:  # the baseline is re-measured next to each draw
        times = best_of({"normal_": lambda: out.normal_(),
                         "ours": lambda d=draw: sampling.fill_(out, d, key)}, reps)
        base, ours = times["normal_"], times["ours"]
        method = "-"
        if isinstance(draw, sampling.TruncNormalDraw):
            method = trunc_plan(draw.a, draw.b).method
        theirs = "-"
        if bounds is not None:  # torch's sampler on a smaller tensor (it is slow), scaled
            small = torch.empty(max(numel // 8, 1))
            start = time.perf_counter()
            torch.nn.init.trunc_normal_(small, 0.0, 1.0, *bounds)
            theirs = f"{(time.perf_counter() - start) * 8 / ours:.1f}x faster"
        rows.append(
            f"| {name} | {method} | {numel / ours / 1e6:.0f} M/s | {base / ours:.2f}x the speed | {theirs} |"
        )
    return rows


# ----------------------------------------------------------------------------- meta device
def meta_table(size: str, reps: int) -> list[str]:
    probe = HERE / "meta_probe.py"
    results: dict[str, list[dict]] = {"eager": [], "meta": []}
    for _ in range(reps):
        for mode in ("eager", "meta"):
            run = subprocess.run([sys.executable, str(probe), mode, size], capture_output=True, text=True,
                                 check=True)
            results[mode].append(json.loads(run.stdout.strip().splitlines()[-1]))
    best = {mode: min(r, key=lambda x: x["seconds"]) for mode, r in results.items()}
    peak = {mode: max(x["peak_rss"] - x["base_rss"] for x in r) for mode, r in results.items()}
    param_bytes = best["meta"]["param_bytes"]
    ratio_time = best["meta"]["seconds"] / best["eager"]["seconds"]
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
    rows.append(
        f"meta / eager time: **{ratio_time:.2f}x** (target ≤ 0.6x); meta peak: "
        f"**{peak['meta'] / param_bytes:.2f}x** parameter bytes (target ≤ 1.15x)"
    )
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


# ----------------------------------------------------------------------------- main
def header(args: argparse.Namespace) -> list[str]:
    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        load = "load average unknown"
    mm = mmengine_version()
    return [
        f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, {load} at start; "
        f"mmengine {mm or 'not installed'}; best of {args.reps} interleaved runs.",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="hydra_init benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny models, one run: a smoke test")
    parser.add_argument("--reps", type=int, default=None, help="runs per measurement (default 3, quick 1)")
    parser.add_argument("--cases", nargs="*", help="only the model cases whose names contain these words")
    parser.add_argument("--skip", nargs="*", default=[], choices=["models", "draws", "meta", "gpu"])
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    args.reps = args.reps or (1 if args.quick else 3)
    sections = [("", header(args))]
    if "models" not in args.skip:
        sections.append(("Models", model_table(size, args.reps, args.cases)))
    if "draws" not in args.skip:
        sections.append(("Samplers (all threads)", draw_table(1 << (16 if args.quick else 24), args.reps)))
    if "meta" not in args.skip:
        sections.append(("Meta-device build", meta_table(size, 1 if args.quick else 2)))
    if "gpu" not in args.skip:
        sections.append(("GPU", gpu_table(args.reps)))
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    print(f"Command: `{command}`\n")
    for title, rows in sections:
        if title:
            print(f"### {title}\n")
        print("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
