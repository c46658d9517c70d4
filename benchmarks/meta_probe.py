"""One measurement in a fresh process: build + init a large model eagerly or on the meta device.

``python benchmarks/meta_probe.py eager|meta full|quick`` prints one JSON line:
seconds, peak and baseline RSS (bytes) and the parameter count and bytes.
The baseline is the RSS after imports and a warm-up; the peak is ``ru_maxrss``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from cases import GPT_CFG
from models import lm

import hydra_init
from hydra_init.meta import build_and_init


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main(mode: str, size: str) -> None:
    # Warm up both paths alike on a tiny model: imports, the thread pool, and torch's
    # one-time loading of meta kernels (~1 s in a fresh process, paid once per process).
    hydra_init.apply(lm("quick"), GPT_CFG, log=False)
    build_and_init(lambda: lm("quick"), GPT_CFG, device="cpu", log=False)
    base = rss()
    start = time.perf_counter()
    if mode == "eager":
        model = lm(size)
        hydra_init.apply(model, GPT_CFG, log=False)
    else:
        model, _ = build_and_init(lambda: lm(size), GPT_CFG, device="cpu", log=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = {id(p): p for p in model.parameters()}.values()
    assert not any(p.is_meta for p in params) and all(bool(torch.isfinite(p).all()) for p in params)
    print(json.dumps({
        "mode": mode, "seconds": seconds, "peak_rss": peak, "base_rss": base,
        "params": sum(p.numel() for p in params),
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
