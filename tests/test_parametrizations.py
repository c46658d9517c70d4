"""Parametrized weights are initialized through their parametrization, or refused while planning.

A ``weight_norm``/``spectral_norm``/``orthogonal`` Linear has no ``weight`` parameter:
``m.weight`` is computed from ``parametrizations.weight.original*``. A rule for the
Linear draws the effective weight (the key of a plain Linear's ``0.weight``) and
assigns it through ``right_inverse``. Each expected value below is computed with
torch's own parametrization code from the plain model's weight, so the tests check
"the same as assigning the plain draw by hand", bit for bit where torch is exact.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_bit_identical, snapshot
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import orthogonal, spectral_norm, weight_norm

import hydra_init
from hydra_init import InitConfigError
from hydra_init.meta import build_and_init
from hydra_init.sampling import derive_key

SHAPE = (40, 30)  # Linear(40, 30): weight (30, 40), not square, so rows and columns matter
NORMAL = {"seed": 0, "rules": {"fc": {"type": "Normal", "std": 0.5, "layer": "Linear", "bias": 0.1}}}


def net(wrap=lambda m: m) -> nn.Sequential:
    return nn.Sequential(wrap(nn.Linear(*SHAPE)), nn.ReLU(), nn.Linear(30, 2))


def plain_weight(cfg: dict = NORMAL) -> torch.Tensor:
    """What the same config writes into an unparametrized model's ``0.weight``."""
    model = net()
    hydra_init.apply(model, cfg, log=False)
    return model[0].weight.detach().clone()


def weight(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model[0].weight.detach().clone()


def test_weight_norm_gets_the_plain_weight_through_its_exact_inverse() -> None:
    model = net(weight_norm)
    report = hydra_init.apply(model, NORMAL, log=False)
    expected = plain_weight()
    plist = model[0].parametrizations.weight
    assert torch.equal(plist.original1.detach(), expected)  # right_inverse: v = w
    assert torch.equal(plist.original0.detach(), torch.norm_except_dim(expected, 2, 0))  # g = ||w|| per row
    # w = g * v / ||v|| computes w * ||w|| / ||w||: equal up to float32 rounding (a few ulps)
    torch.testing.assert_close(weight(model), expected, rtol=1e-6, atol=0)
    assert float(model[0].bias.detach()[0]) == pytest.approx(0.1)
    for path in ("0.parametrizations.weight.original0", "0.parametrizations.weight.original1"):
        record = report[path]
        assert (record.source, record.rule) == ("rule", "fc")
        assert "through 0.weight" in record.detail and "_WeightNorm.right_inverse" in record.detail
    assert report.totals["default"] == 0


def test_a_weight_normed_conv_and_the_old_hook_api_too() -> None:
    cfg = {"seed": 3, "rules": {"conv": {"type": "Kaiming", "layer": "Conv2d"}}}
    plain = nn.Sequential(nn.Conv2d(3, 8, 3))
    hydra_init.apply(plain, cfg, log=False)
    new, old = nn.Sequential(weight_norm(nn.Conv2d(3, 8, 3))), nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.warns(FutureWarning):
        torch.nn.utils.weight_norm(old[0])
    hydra_init.apply(new, cfg, log=False)
    report = hydra_init.apply(old, cfg, log=False)
    expected = plain[0].weight.detach()
    torch.testing.assert_close(weight(new), expected, rtol=1e-6, atol=0)
    assert torch.equal(old[0].weight_v.detach(), expected)
    assert torch.equal(old[0].weight_g.detach(), torch.norm_except_dim(expected, 2, 0))
    torch.testing.assert_close(old[0].weight.detach(), expected, rtol=1e-6, atol=0)  # the hook's attribute
    assert report["0.weight_g"].rule == "conv" and "weight_norm hook" in report["0.weight_g"].detail


def _seeded_like_hydra_init(path: str, shape: tuple[int, ...]) -> None:
    """The generator state the write through a parametrization runs under."""
    torch.manual_seed(derive_key(0, path, torch.Size(shape)) >> 1)


def test_spectral_norm_keeps_the_draw_and_restarts_its_power_iteration() -> None:
    model = net(spectral_norm)
    report = hydra_init.apply(model, NORMAL, log=False)
    expected = plain_weight()
    assert torch.equal(model[0].parametrizations.weight.original.detach(), expected)
    # torch's own spectral_norm registered on the drawn weight, under the same seeded generator
    reference = nn.Linear(*SHAPE)
    with torch.no_grad():
        reference.weight.copy_(expected)
    with torch.random.fork_rng():
        _seeded_like_hydra_init("0.weight", (30, 40))
        spectral_norm(reference)
    mine, theirs = model[0].parametrizations.weight[0], reference.parametrizations.weight[0]
    assert torch.equal(mine._u, theirs._u) and torch.equal(mine._v, theirs._v)
    model.eval(), reference.eval()
    assert torch.equal(weight(model), reference.weight.detach())
    assert "divided by its spectral norm" in report["0.parametrizations.weight.original"].detail


def test_orthogonal_projects_the_draw_as_assigning_it_by_hand_does() -> None:
    for shape in (SHAPE, (30, 40), (20, 20)):
        model = nn.Sequential(orthogonal(nn.Linear(*shape)))
        plain = nn.Sequential(nn.Linear(*shape))
        hydra_init.apply(model, NORMAL, log=False)
        hydra_init.apply(plain, NORMAL, log=False)
        reference = orthogonal(nn.Linear(*shape))
        with torch.no_grad(), torch.random.fork_rng():
            _seeded_like_hydra_init("0.weight", shape[::-1])
            reference.weight = plain[0].weight.detach()
        w = weight(model)
        assert torch.equal(w, reference.weight.detach())
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        # float32 QR and a 40-term dot product: errors of order 40 * 1.2e-7 = 5e-6, far below 1e-5
        torch.testing.assert_close(gram, torch.eye(min(w.shape)), atol=1e-5, rtol=0)


def test_planning_does_not_touch_the_model_even_where_reading_the_weight_would() -> None:
    model = net(spectral_norm)  # in training mode, reading model[0].weight runs a power iteration
    before = snapshot(model)
    hydra_init.plan(model, NORMAL)
    assert_bit_identical(model, before)


# ----------------------------------------------------------------------------- refusals
class Doubled(nn.Module):
    """A parametrization without right_inverse: torch cannot assign through it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


class Symmetric(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.triu() + x.triu(1).T

    def right_inverse(self, a: torch.Tensor) -> torch.Tensor:
        return a.triu()


def _custom(parametrization: nn.Module, shape=(6, 6)) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(*shape))
    parametrize.register_parametrization(model[0], "weight", parametrization)
    return model


@pytest.mark.parametrize("case", ["no right_inverse", "orthogonal without trivialization",
                                  "old spectral_norm hook"])
def test_what_cannot_be_written_through_is_refused_naming_rule_parameter_and_fix(case: str) -> None:
    if case == "no right_inverse":
        model = _custom(Doubled())
        words = ["Doubled has no right_inverse", "name: '0.parametrizations.weight'"]
    elif case == "orthogonal without trivialization":
        model = nn.Sequential(orthogonal(nn.Linear(6, 6), use_trivialization=False))  # square: matrix_exp
        words = ["_Orthogonal", "matrix_exp", "use_trivialization=False"]
    else:
        model = nn.Sequential(torch.nn.utils.spectral_norm(nn.Linear(6, 6)))
        words = ["old torch.nn.utils.spectral_norm", "params: [weight_orig]"]
    before = snapshot(model)
    with pytest.raises(InitConfigError) as caught:
        hydra_init.apply(model, NORMAL, log=False)
    assert caught.value.key == "init.rules.fc"
    assert "0.weight" in str(caught.value)
    for word in words:
        assert word in str(caught.value)
    assert_bit_identical(model, before)


def test_a_custom_parametrization_with_right_inverse_is_written_through_it() -> None:
    model = _custom(Symmetric())
    hydra_init.apply(model, NORMAL, log=False)
    w = weight(model)
    plain = nn.Sequential(nn.Linear(6, 6))
    hydra_init.apply(plain, NORMAL, log=False)
    assert torch.equal(w, w.T)
    assert torch.equal(w.triu(), plain[0].weight.detach().triu())  # right_inverse keeps the upper triangle


def test_the_refusal_suggestion_works_targeting_the_original_itself() -> None:
    model = _custom(Doubled())
    rule = {"type": "Ones", "name": "0.parametrizations.weight", "params": "original"}
    cfg = {"seed": 0, "rules": {"fc": rule}}
    report = hydra_init.apply(model, cfg, log=False)
    assert torch.equal(weight(model), torch.full((6, 6), 2.0))
    assert report["0.parametrizations.weight.original"].source == "rule"


class Positive(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.exp()

    def right_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.log()


def test_a_parametrized_bias_gets_the_rule_bias_through_its_inverse() -> None:
    model = nn.Sequential(nn.Linear(3, 4))
    parametrize.register_parametrization(model[0], "bias", Positive())
    report = hydra_init.apply(model, NORMAL, log=False)
    with torch.no_grad():
        torch.testing.assert_close(model[0].bias, torch.full((4,), 0.1))  # exp(log(0.1)): rounding only
    record = report["0.parametrizations.bias.original"]
    assert (record.rule, record.init) == ("fc", "bias=0.1") and "Positive.right_inverse" in record.detail


class InverseThatRaises(nn.Module):
    """A right_inverse that raises NotImplementedError: torch treats it as the identity when
    registering, so nothing before the assignment can tell."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def right_inverse(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("this parametrization cannot be assigned")


def test_a_right_inverse_failing_at_execution_leaves_the_model_restored() -> None:
    model = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Linear(6, 6))
    parametrize.register_parametrization(model[2], "weight", InverseThatRaises())
    bn = {"type": "Default", "layer": "BatchNorm1d"}
    cfg = {"seed": 0, "rules": {"fc": NORMAL["rules"]["fc"], "bn": bn}}
    with torch.no_grad():
        model[1].weight.fill_(7.0)  # the BatchNorm reset, which runs first, changes it
    before = snapshot(model)
    with pytest.raises(hydra_init.InitExecutionError, match="cannot be assigned; the model was restored"):
        hydra_init.apply(model, cfg, log=False)
    assert_bit_identical(model, before)


# ----------------------------------------------------------------------------- targeting originals
def test_a_later_rule_on_an_original_wins_it_and_is_written_after() -> None:
    cfg = {"seed": 0, "rules": {
        "fc": NORMAL["rules"]["fc"],
        "g_is_one": {"type": "Ones", "name": "0", "params": ["parametrizations.weight.original0"]},
    }}
    model = net(weight_norm)
    report = hydra_init.apply(model, cfg, log=False)
    plist = model[0].parametrizations.weight
    assert torch.equal(plist.original0.detach(), torch.ones(30, 1))
    assert torch.equal(plist.original1.detach(), plain_weight())
    norms = weight(model).norm(dim=1)  # g = 1: every row of the weight has norm 1
    torch.testing.assert_close(norms, torch.ones(30), atol=1e-6, rtol=0)
    assert report["0.parametrizations.weight.original0"].rule == "g_is_one"
    assert report["0.parametrizations.weight.original1"].rule == "fc"


def test_an_earlier_rule_on_an_original_and_a_catch_all_lose_to_the_effective_weight() -> None:
    expected = plain_weight()
    earlier = {"seed": 0, "rules": {
        "g_is_one": {"type": "Ones", "params": ["*.original0"]}, "fc": NORMAL["rules"]["fc"]}}
    # one rule for every parameter of every module: the originals and 0.weight, equal rank
    catch_all = {"seed": 0, "rules": {"all": {"type": "Normal", "std": 0.5, "params": ["*"]}}}
    for cfg, rule in ((earlier, "fc"), (catch_all, "all")):
        model = net(weight_norm)
        report = hydra_init.apply(model, cfg, log=False)
        torch.testing.assert_close(weight(model), expected, rtol=1e-6, atol=0)
        assert report["0.parametrizations.weight.original0"].rule == rule
        assert "through 0.weight" in report["0.parametrizations.weight.original0"].detail


def test_default_resets_a_parametrized_module_through_its_parametrization() -> None:
    cfg = {"seed": 5, "rules": {"fc": {"type": "Default", "layer": "Linear"}}}
    plain, model = net(), net(weight_norm)
    hydra_init.apply(plain, cfg, log=False)
    report = hydra_init.apply(model, cfg, log=False)
    # Linear.reset_parameters() draws into the weight under a parametrize.cached() read, then assigns it
    torch.testing.assert_close(weight(model), plain[0].weight.detach(), rtol=1e-6, atol=0)
    assert torch.equal(model[0].bias.detach(), plain[0].bias.detach())
    record = report["0.parametrizations.weight.original1"]
    assert (record.source, record.init) == ("reset", "ParametrizedLinear.reset_parameters()")


# ----------------------------------------------------------------------------- meta builds
@pytest.mark.parametrize("wrap", [weight_norm, orthogonal, spectral_norm], ids=lambda f: f.__name__)
def test_a_meta_build_equals_the_eager_build_and_apply(wrap) -> None:
    """Buffers included: a spectral norm's u/v (left without values by the meta build) and an
    orthogonal parametrization's base are set by the write through the parametrization."""
    model, report = build_and_init(lambda: net(wrap), NORMAL, device="cpu", log=False)
    eager = net(wrap)
    hydra_init.apply(eager, NORMAL, log=False)
    got, want = model.state_dict(), eager.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert all(torch.isfinite(t).all() for t in got.values())
    assert report.totals["default"] == 0


def test_a_meta_build_refuses_parametrization_buffers_that_nothing_would_fill() -> None:
    cfg = {"seed": 0, "rules": {"o": {"type": "Ones", "params": "*.original"}}}
    words = r"u, v\) get values only when a weight is written through"
    with pytest.raises(InitConfigError, match=words) as caught:
        build_and_init(lambda: net(spectral_norm), cfg, device="cpu", log=False)
    assert "name: '0', params: weight" in str(caught.value)


def test_an_uncovered_parametrized_weight_on_a_meta_build_is_reset_through_it() -> None:
    """No rule: the meta build's fallback, Linear.reset_parameters() seeded per path, as Default does."""
    cfg = {"seed": 2, "rules": {"head": {"type": "Zeros", "name": "2"}}}
    model, report = build_and_init(lambda: net(orthogonal), cfg, device="cpu", log=False)
    eager = net(orthogonal)
    hydra_init.apply(eager, {"seed": 2, "rules": {**cfg["rules"], "d": {"type": "Default", "name": "0"}}},
                     log=False)
    for key, value in eager.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert report["0.parametrizations.weight.original"].source == "reset"
