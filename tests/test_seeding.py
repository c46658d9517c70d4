"""Seeded values depend only on (seed, parameter path, shape, rule).

Not on rule order, parameter order, other modules, the thread count (and, in
test_sharding.py, not on the world size). Without a seed, torch's global
generator decides. Models mix large tensors (tiled generator) and small ones
(counter-based generator) so both paths are covered.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hydra_init
from hydra_init import sampling

BIG = 512  # 512 x 512 = 262k values: two tiles


class Net(nn.Module):
    def __init__(self, order: str = "ab", adapter: bool = False, norm: str = "layer") -> None:
        super().__init__()
        for name in order:  # the registration order changes parameter order
            if name == "a":
                self.a = nn.Linear(BIG, BIG)
            else:
                self.b = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 8))
        if adapter:
            self.adapter = nn.Linear(BIG, 4)
        self.norm = nn.LayerNorm(8) if norm == "layer" else nn.GroupNorm(2, 8)


RULES = {
    "linear": {"type": "TruncNormal", "layer": "Linear", "std": 0.02, "a": -2, "b": 2, "bound_unit": "std"},
    "conv": {"type": "Kaiming", "layer": "Conv2d"},
    "bn": {"type": "Default", "layer": "BatchNorm2d"},
    "norm": {"type": "Normal", "name": "norm", "std": 0.5, "params": "*"},
}


def _init(model: nn.Module, rules=RULES, seed: int | None = 0) -> dict[str, torch.Tensor]:
    cfg = {"rules": rules} if seed is None else {"seed": seed, "rules": rules}
    hydra_init.apply(model, cfg, log=False)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _same(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], keys=None) -> bool:
    return all(torch.equal(x[k], y[k]) for k in (keys or x.keys()))


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not():
    first, again, other = _init(Net(), seed=3), _init(Net(), seed=3), _init(Net(), seed=4)
    assert _same(first, again)
    assert not any(torch.equal(first[k], other[k]) for k in ("a.weight", "b.0.weight", "b.2.weight"))


def test_rule_order_does_not_matter():
    reversed_rules = dict(reversed(list(RULES.items())))
    assert list(reversed_rules) != list(RULES)
    assert _same(_init(Net(), RULES), _init(Net(), reversed_rules))


def test_parameter_order_does_not_matter():
    ab, ba = Net(order="ab"), Net(order="ba")
    assert [n for n, _ in ab.named_parameters()] != [n for n, _ in ba.named_parameters()]
    assert _same(_init(ab), _init(ba))


def test_adding_a_module_leaves_every_other_parameter_unchanged():
    plain, with_adapter = _init(Net()), _init(Net(adapter=True))
    assert "adapter.weight" in with_adapter and "adapter.weight" not in plain
    assert _same(plain, with_adapter, keys=plain.keys())


def test_replacing_one_module_leaves_the_others_unchanged():
    layer, group = _init(Net(norm="layer")), _init(Net(norm="group"))
    others = [k for k in layer if not k.startswith("norm.")]
    assert _same(layer, group, keys=others)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_count_does_not_matter(threads):
    reference = _init(Net())
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert _same(reference, _init(Net()))
    finally:
        torch.set_num_threads(before)


def test_the_value_depends_on_the_shape_too():
    key_a = sampling.derive_key(0, "fc.weight", (4, 6))
    key_b = sampling.derive_key(0, "fc.weight", (6, 4))
    assert key_a != key_b


def test_default_resets_are_seeded_by_module_path():
    first, second = _init(Net(), seed=5), _init(Net(order="ba", adapter=True), seed=5)
    assert torch.equal(first["b.1.weight"], second["b.1.weight"])  # BatchNorm reset: ones
    rules = {"all": {"type": "Default", "layer": ["Linear", "Conv2d"]}}
    x, y = _init(Net(), rules, seed=5), _init(Net(order="ba", adapter=True), rules, seed=5)
    assert _same(x, y, keys=["a.weight", "a.bias", "b.0.weight", "b.2.weight"])


def test_a_seeded_init_leaves_the_global_generator_alone():
    model = Net()  # building draws PyTorch's default init from the global generator; init must not
    state = torch.random.get_rng_state()
    _init(model, {**RULES, "all": {"type": "Default", "layer": "Linear", "priority": -1}}, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())


def test_without_a_seed_torch_manual_seed_decides():
    torch.manual_seed(11)
    a = _init(Net(), seed=None)
    torch.manual_seed(11)
    b = _init(Net(), seed=None)
    torch.manual_seed(12)
    c = _init(Net(), seed=None)
    assert _same(a, b)
    assert not torch.equal(a["a.weight"], c["a.weight"])


def test_the_report_records_the_seed_that_was_drawn():
    torch.manual_seed(2)
    model = Net()
    report = hydra_init.apply(model, {"rules": RULES}, log=False)
    replay = _init(Net(), seed=report.seed)
    assert _same({k: v.detach() for k, v in model.named_parameters()}, replay)
