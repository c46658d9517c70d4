"""What the plan's overlap check, the parametrization scan and the execution guard cost.

Runs each case with those steps switched off and on, interleaved in one process
(median of several runs), one thread:

    .venv/bin/python benchmarks/guard_cost.py

``hydra_init/engine/restore.py`` explains from these timings why only user code's writes are copied.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch
from torch import nn

import hydra_init
import hydra_init.engine.execute as execute
import hydra_init.engine.plan as planning

GUARD = execute.Restorer
REAL = {"overlaps": planning.check_overlaps, "computed": planning.find_computed, "restore": GUARD}
OFF = {"overlaps": lambda entries: None, "computed": lambda index: [],
       "restore": lambda plan, **_: contextlib.nullcontext()}
EVERYTHING = lambda plan, **_: GUARD(plan)  # noqa: E731 - a copy of all the plan writes, not only user code's
VARIANTS = {"none": (), "all": ("overlaps", "computed", "restore"), "restore only": ("restore",),
            "overlaps+computed": ("overlaps", "computed"), "copy everything": ("everything",)}


def switch(on: tuple[str, ...]) -> None:
    planning.check_overlaps = (REAL if "overlaps" in on else OFF)["overlaps"]
    planning.find_computed = (REAL if "computed" in on else OFF)["computed"]
    execute.Restorer = EVERYTHING if "everything" in on else (REAL if "restore" in on else OFF)["restore"]


def main() -> None:
    torch.set_num_threads(1)
    small = nn.Sequential(*[m for _ in range(2500) for m in (nn.Linear(8, 8), nn.LayerNorm(8))])  # 10,000
    big = nn.Sequential(*[nn.Linear(2048, 2048, bias=False) for _ in range(8)])  # 128 MiB of weights
    cfg = hydra_init.parse_config({"seed": 0, "rules": {
        "fc": {"type": "Normal", "std": 0.02, "layer": "Linear"},
        "ln": {"type": "Ones", "layer": "LayerNorm"},
    }})
    cases = [("plan, 10,000 params", small, lambda m: planning.build_plan(m, cfg), 15),
             ("apply, 10,000 params", small, lambda m: hydra_init.apply(m, cfg, log=False), 15),
             ("apply, 8 x 2048x2048", big, lambda m: hydra_init.apply(m, cfg, log=False), 5)]
    try:
        for label, model, run, repeats in cases:
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(repeats):
                for variant, on in VARIANTS.items():
                    switch(on)
                    start = time.perf_counter()
                    run(model)
                    times[variant].append(time.perf_counter() - start)
            shown = ", ".join(f"{v} {statistics.median(t) * 1e3:.0f} ms" for v, t in times.items())
            print(f"{label}: {shown}")
    finally:
        switch(tuple(REAL))


if __name__ == "__main__":
    main()
