"""Every initializer, checked statistically against its formula on large tensors.

Sample sizes: a 256x1024 weight (n = 262,144) unless the shape itself is under test
(a 64x32x5x5 conv weight, n = 51,200). Tolerances are SIGMAS = 6 standard errors
of the statistic (see tests/helpers.py): for the mean sigma / sqrt(n), for the std
sigma / sqrt(2 n), i.e. 0.83% (n = 262,144) or 1.9% (n = 51,200) of sigma. A wrong
fan (factor 2 in variance) or a missing gain (factor sqrt(2)) is 20+ standard errors.
Expected values are computed here from the published formulas, and checked against
torch.nn.init where torch has the same initializer.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import (
    COLS,
    CONV_SHAPE,
    ROWS,
    SIGMAS,
    assert_bounds,
    assert_mean,
    assert_std,
    draw,
    init_holder,
    trunc_std_factor,
)
from scipy.stats import truncnorm
from torch import nn

import hydra_init
from hydra_init import (
    Caffe2Xavier,
    Constant,
    Default,
    Eye,
    Kaiming,
    LecunNormal,
    Normal,
    Ones,
    Orthogonal,
    TruncNormal,
    Uniform,
    VarianceScaling,
    Xavier,
    Zeros,
)

FAN_IN, FAN_OUT = COLS, ROWS  # of a (ROWS, COLS) weight
CONV_FAN_IN = CONV_SHAPE[1] * CONV_SHAPE[2] * CONV_SHAPE[3]  # 800
CONV_FAN_OUT = CONV_SHAPE[0] * CONV_SHAPE[2] * CONV_SHAPE[3]  # 1600
TRUNC_AT_2 = trunc_std_factor(2.0)  # 0.8796: std of N(0,1) truncated to [-2, 2]


def uniform_density(bound: float) -> float:
    return 1.0 / (2.0 * bound)


def normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


# ----------------------------------------------------------------------------- constants
@pytest.mark.parametrize(
    ("init", "value"),
    [(Constant(val=0.37), 0.37), (Constant(val=-2.0), -2.0), (Zeros(), 0.0), (Ones(), 1.0)],
)
def test_constant_family_fills_every_element(init, value):
    holder = init_holder(init, (64, 32))
    assert torch.equal(holder.weight, torch.full((64, 32), value))
    assert torch.equal(holder.bias, torch.zeros(64))  # default bias=0


def test_bias_argument_fills_bias():
    holder = init_holder(Kaiming(bias=0.25), (32, 16))
    assert torch.equal(holder.bias, torch.full((32,), 0.25))


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9])
def test_bias_prob_gives_prior_probability(p):
    # bias = -log((1 - p) / p), i.e. sigmoid(bias) = p (focal-loss head prior).
    holder = init_holder(Normal(std=0.01, bias_prob=p), (8, 16))
    expected = -math.log((1 - p) / p)
    assert torch.allclose(holder.bias, torch.full((8,), expected))
    assert torch.allclose(torch.sigmoid(holder.bias), torch.full((8,), p), atol=1e-6)
    assert hydra_init.bias_from_prob(p) == pytest.approx(expected, rel=1e-12)


def test_bias_prob_from_mmengine_dict():
    holder = init_holder({"type": "Normal", "std": 0.01, "bias_prob": 0.01}, (8, 16))
    assert holder.bias[0].item() == pytest.approx(-4.59512, abs=1e-5)


# ----------------------------------------------------------------------------- normal / uniform
def test_normal_mean_and_std():
    x = draw(Normal(mean=0.3, std=0.05))
    assert_mean(x, 0.3, 0.05)
    assert_std(x, 0.05)


def test_normal_default_std_is_mmengine_one():
    # Documented trap kept for compatibility: Normal() has std=1.
    x = draw(Normal())
    assert_mean(x, 0.0, 1.0)
    assert_std(x, 1.0)


def test_uniform_mean_std_and_bounds():
    a, b = -0.3, 0.7
    x = draw(Uniform(a=a, b=b))
    sigma = (b - a) / math.sqrt(12.0)
    assert_mean(x, (a + b) / 2, sigma)
    assert_std(x, sigma, kurtosis=1.8)
    assert_bounds(x, a, b, density_at_edges=1.0 / (b - a))


def test_uniform_default_is_zero_one():
    # Documented trap kept for compatibility: Uniform() draws from [0, 1].
    x = draw(Uniform())
    assert_bounds(x, 0.0, 1.0, density_at_edges=1.0)
    assert_mean(x, 0.5, 1 / math.sqrt(12.0))


# ----------------------------------------------------------------------------- truncated normal
def _truncnorm_moments(mean: float, std: float, low: float, high: float) -> tuple[float, float]:
    alpha, beta = (low - mean) / std, (high - mean) / std
    return mean + std * truncnorm.mean(alpha, beta), std * truncnorm.std(alpha, beta)


@pytest.mark.parametrize(
    ("mean", "std", "a", "b", "unit"),
    [
        (0.0, 0.02, -0.03, 0.05, "absolute"),  # asymmetric, [-1.5, 2.5] std
        (0.1, 0.02, -2.0, 2.0, "std"),  # timm's trunc_normal_tf_: +-2 std around the mean
        (0.0, 1.0, -1.0, 3.0, "std"),
        (0.0, 1.0, 1.0, 3.0, "std"),  # acceptance 0.16: the inverse-CDF branch
        (0.0, 1.0, 6.0, 7.0, "std"),  # far tail
        (0.0, 1.0, 9.0, 10.0, "std"),  # beyond float64 erfinv(2u - 1): needs a tail sampler
        (1.0, 0.5, -12.0, -8.0, "absolute"),  # far left tail, absolute bounds
    ],
)
def test_trunc_normal_moments_and_bounds(mean, std, a, b, unit):
    x = draw(TruncNormal(mean=mean, std=std, a=a, b=b, bound_unit=unit))
    low, high = (a, b) if unit == "absolute" else (mean + a * std, mean + b * std)
    t_mean, t_std = _truncnorm_moments(mean, std, low, high)
    assert_mean(x, t_mean, t_std)
    assert_std(x, t_std)
    # Density at the ends of the interval: pdf(z) / (std * mass); take the smaller end.
    alpha, beta = (low - mean) / std, (high - mean) / std
    mass = truncnorm.cdf(beta, alpha, beta) - truncnorm.cdf(alpha, alpha, beta)
    edge = min(truncnorm.pdf(alpha, alpha, beta), truncnorm.pdf(beta, alpha, beta)) / (std * mass)
    assert_bounds(x, low, high, density_at_edges=edge)


def test_trunc_normal_mmengine_default_truncates_nothing_at_std_002():
    # mmengine's defaults a=-2, b=2 are ABSOLUTE: at std=0.02 they sit 100 std away.
    x = draw(TruncNormal(std=0.02))
    assert_std(x, 0.02)  # the untruncated std, not 0.02 * 0.88 (14% lower, ~17 tolerances away)
    # 4.55% of N(0, 0.02^2) lies beyond 2 std; binomial sd sqrt(n p (1-p)) = 107 samples.
    p = math.erfc(2.0 / math.sqrt(2.0))
    n = x.numel()
    beyond = int((x.abs() > 0.04).sum())
    assert abs(beyond - n * p) <= SIGMAS * math.sqrt(n * p * (1 - p))
    assert x.abs().max().item() < 0.2  # 10 std: never reached, and far inside [-2, 2]


def test_trunc_normal_std_units_truncate_at_two_std():
    x = draw(TruncNormal(std=0.02, a=-2, b=2, bound_unit="std"))
    assert_std(x, 0.02 * TRUNC_AT_2)
    assert_bounds(x, -0.04, 0.04, density_at_edges=normal_pdf(2.0) / (0.02 * math.erf(2 / 2**0.5)))


# ----------------------------------------------------------------------------- variance scaling family
def _kaiming_gain(nonlinearity: str, a: float) -> float:
    return {"relu": math.sqrt(2.0), "leaky_relu": math.sqrt(2.0 / (1 + a * a)),
            "linear": 1.0, "tanh": 5.0 / 3.0}[nonlinearity]


@pytest.mark.parametrize(
    ("init", "shape", "std", "distribution"),
    [
        # Xavier: std = gain * sqrt(2 / (fan_in + fan_out)); uniform bound = sqrt(3) std.
        (Xavier(), (ROWS, COLS), math.sqrt(2 / (FAN_IN + FAN_OUT)), "normal"),
        (Xavier(gain=2.0, distribution="uniform"), (ROWS, COLS),
         2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT)), "uniform"),
        (Xavier(gain=0.5), CONV_SHAPE, 0.5 * math.sqrt(2 / (CONV_FAN_IN + CONV_FAN_OUT)), "normal"),
        # Kaiming: std = gain / sqrt(fan); mmengine defaults fan_out / relu / normal.
        (Kaiming(), (ROWS, COLS), math.sqrt(2.0) / math.sqrt(FAN_OUT), "normal"),
        (Kaiming(mode="fan_in"), (ROWS, COLS), math.sqrt(2.0 / FAN_IN), "normal"),
        (Kaiming(mode="fan_in", distribution="uniform"), (ROWS, COLS), math.sqrt(2.0 / FAN_IN),
         "uniform"),
        (Kaiming(a=0.2, mode="fan_in", nonlinearity="leaky_relu", distribution="uniform"),
         (ROWS, COLS), _kaiming_gain("leaky_relu", 0.2) / math.sqrt(FAN_IN), "uniform"),
        (Kaiming(a=0.2, nonlinearity="leaky_relu"), CONV_SHAPE,
         _kaiming_gain("leaky_relu", 0.2) / math.sqrt(CONV_FAN_OUT), "normal"),
        (Kaiming(mode="fan_in", nonlinearity="tanh"), CONV_SHAPE, (5 / 3) / math.sqrt(CONV_FAN_IN),
         "normal"),
        # Caffe2Xavier: uniform with bound sqrt(3 / fan_in), i.e. std 1 / sqrt(fan_in).
        (Caffe2Xavier(), (ROWS, COLS), 1.0 / math.sqrt(FAN_IN), "uniform"),
        (Caffe2Xavier(), CONV_SHAPE, 1.0 / math.sqrt(CONV_FAN_IN), "uniform"),
        # LeCun normal: truncated normal whose variance is still 1 / fan_in.
        (LecunNormal(), (ROWS, COLS), 1.0 / math.sqrt(FAN_IN), "truncated_normal"),
        (LecunNormal(), CONV_SHAPE, 1.0 / math.sqrt(CONV_FAN_IN), "truncated_normal"),
    ]
    + [
        # VarianceScaling: std = sqrt(scale / fan) for every distribution (truncated rescaled).
        (VarianceScaling(scale=3.0, mode=mode, distribution=dist), (ROWS, COLS),
         math.sqrt(3.0 / fan), dist)
        for mode, fan in [("fan_in", FAN_IN), ("fan_out", FAN_OUT), ("fan_avg", (FAN_IN + FAN_OUT) / 2)]
        for dist in ["normal", "uniform", "truncated_normal"]
    ],
    ids=lambda v: type(v).__name__ if hasattr(v, "type_name") else None,
)
def test_variance_scaling_family(init, shape, std, distribution):
    x = draw(init, shape=shape)
    assert_mean(x, 0.0, std)
    if distribution == "normal":
        assert_std(x, std)
        # Untruncated: n * P(|z| > 3.5) >= 51,200 * 4.65e-4 = 24 samples expected beyond 3.5 std
        # (none with probability e^-24); a normal truncated at 2 std never goes past 2.3 std.
        assert x.abs().max().item() > 3.5 * std
    elif distribution == "uniform":
        bound = math.sqrt(3.0) * std
        assert_std(x, std, kurtosis=1.8)
        assert_bounds(x, -bound, bound, density_at_edges=uniform_density(bound))
    else:
        # Truncated at +-2 std of the underlying normal whose std is std / 0.8796.
        inner = std / TRUNC_AT_2
        assert_std(x, std)
        edge = normal_pdf(2.0) / (inner * math.erf(2.0 / math.sqrt(2.0)))
        assert_bounds(x, -2.0 * inner, 2.0 * inner, density_at_edges=edge)


@pytest.mark.parametrize(
    ("torch_init", "expected_std", "kurtosis"),
    [
        (lambda t: nn.init.xavier_normal_(t, gain=2.0), 2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT)), 3.0),
        (lambda t: nn.init.xavier_uniform_(t, gain=2.0), 2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT)), 1.8),
        (lambda t: nn.init.kaiming_normal_(t, mode="fan_out"), math.sqrt(2.0 / FAN_OUT), 3.0),
        (lambda t: nn.init.kaiming_uniform_(t, a=0.2, nonlinearity="leaky_relu"),
         _kaiming_gain("leaky_relu", 0.2) / math.sqrt(FAN_IN), 1.8),
    ],
)
def test_expected_formulas_agree_with_torch(torch_init, expected_std, kurtosis):
    # Guards the expectations above: torch.nn.init draws the same std on the same shape.
    torch.manual_seed(0)
    t = torch.empty(ROWS, COLS)
    torch_init(t)
    assert_std(t.double(), expected_std, kurtosis=kurtosis)


def test_fans_match_torch():
    for shape in [(ROWS, COLS), CONV_SHAPE, (8, 4, 3), (6, 2, 3, 3, 3)]:
        t = torch.empty(shape)
        assert hydra_init.initializers.fans(shape) == nn.init._calculate_fan_in_and_fan_out(t)
    assert hydra_init.initializers.fans(CONV_SHAPE) == (CONV_FAN_IN, CONV_FAN_OUT)


def test_caffe2xavier_equals_mmengine_definition():
    # mmengine: Caffe2Xavier = Kaiming(a=1, fan_in, leaky_relu, uniform); same draw, same seed.
    a = draw(Caffe2Xavier(), shape=CONV_SHAPE)
    b = draw(Kaiming(a=1.0, mode="fan_in", nonlinearity="leaky_relu", distribution="uniform"),
             shape=CONV_SHAPE)
    assert torch.allclose(a, b, rtol=1e-6, atol=0)


# ----------------------------------------------------------------------------- structured inits
@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (96, 96), (32, 8, 3, 3)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    gain = 1.5
    w = draw(Orthogonal(gain=gain), shape=shape).reshape(shape[0], -1)
    rows, cols = w.shape
    # W W^T = g^2 I when rows <= cols, W^T W = g^2 I otherwise. The matrix is computed in
    # float32 (QR of at most 256 dims): entries are off by ~1e-6, so 1e-4 is generous while
    # any non-orthogonal matrix (a random one has off-diagonals ~ 1/sqrt(cols)) fails.
    gram = w @ w.T if rows <= cols else w.T @ w
    assert torch.allclose(gram, gain**2 * torch.eye(min(rows, cols), dtype=gram.dtype), atol=1e-4)
    assert w.abs().max().item() < gain  # not a (scaled) permutation/identity


def test_orthogonal_is_seeded():
    a = draw(Orthogonal(), shape=(32, 64), seed=1)
    assert torch.equal(a, draw(Orthogonal(), shape=(32, 64), seed=1))
    assert not torch.equal(a, draw(Orthogonal(), shape=(32, 64), seed=2))


@pytest.mark.parametrize(
    ("conv", "groups"),
    [
        (nn.Conv1d(6, 6, 3, padding=1), 1),
        (nn.Conv2d(8, 8, 3, padding=1), 1),
        (nn.Conv2d(8, 8, 3, padding=1, groups=2), 2),
        (nn.Conv3d(4, 4, 3, padding=1), 1),
    ],
)
def test_dirac_preserves_the_input(conv, groups):
    hydra_init.apply(conv, {"seed": 0, "rules": {"id": {"type": "Dirac", "groups": groups,
                                                       "layer": "_ConvNd"}}}, log=False)
    expected = torch.empty_like(conv.weight)
    nn.init.dirac_(expected, groups)
    assert torch.equal(conv.weight, expected)
    x = torch.randn(2, conv.in_channels, *([5] * (conv.weight.dim() - 2)))
    assert torch.allclose(conv(x), x, atol=1e-6)


def test_eye_on_square_and_rectangular_linear():
    square, wide = nn.Linear(8, 8), nn.Linear(6, 4)
    for layer in (square, wide):
        hydra_init.apply(layer, {"seed": 0, "rules": {"id": {"type": "Eye", "layer": "Linear"}}},
                         log=False)
        assert torch.equal(layer.weight, torch.eye(*layer.weight.shape))
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    x = torch.randn(3, 8)
    assert torch.allclose(square(x), x)


# ----------------------------------------------------------------------------- Default
def test_default_runs_reset_parameters_with_torch_statistics():
    # nn.Linear.reset_parameters: kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    # and the bias also U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    layer = nn.Linear(COLS, ROWS)
    with torch.no_grad():
        layer.weight.fill_(7.0)
        layer.bias.fill_(7.0)
    report = hydra_init.apply(layer, {"seed": 3, "rules": {"d": {"type": "Default"}}}, log=False)
    assert report.totals["reset"] == 2
    bound = 1.0 / math.sqrt(COLS)
    w = layer.weight.detach().double()
    assert_bounds(w, -bound, bound, density_at_edges=uniform_density(bound))
    assert_std(w, bound / math.sqrt(3.0), kurtosis=1.8)
    assert layer.bias.detach().abs().max().item() <= bound


def test_default_is_reproducible_and_leaves_global_rng_alone():
    def fresh():
        torch.manual_seed(123)  # different torch-default init ...
        return nn.Sequential(nn.Linear(16, 16), nn.Conv2d(3, 4, 3))

    state = torch.get_rng_state()
    a, b, c = fresh(), fresh(), fresh()
    torch.set_rng_state(state)
    for model, seed in ((a, 5), (b, 5), (c, 6)):
        hydra_init.apply(model, {"seed": seed, "rules": {"d": {"type": "Default"}}}, log=False)
        assert torch.equal(torch.get_rng_state(), state)  # seeded: the global RNG is untouched
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)  # ... yet the same seed gives the same values
        assert not torch.equal(pa, pc)


# ----------------------------------------------------------------------------- padding rows, seeds
PADDED_INITS = [
    Normal(std=0.02), TruncNormal(std=0.02, bound_unit="std"), Uniform(a=-1, b=1), Constant(val=3.0),
    Ones(), Xavier(), Kaiming(), Caffe2Xavier(), LecunNormal(), VarianceScaling(), Orthogonal(),
    Eye(), Default(),
]


@pytest.mark.parametrize("init", PADDED_INITS, ids=lambda i: i.type_name)
def test_embedding_padding_row_stays_zero(init):
    emb = nn.Embedding(50, 16, padding_idx=3)
    hydra_init.apply(emb, {"seed": 0, "rules": {"e": hydra_init.Rule(init, layer="Embedding")}},
                     log=False)
    assert torch.equal(emb.weight[3], torch.zeros(16))
    others = torch.cat([emb.weight[:3], emb.weight[4:]])
    assert bool((others != 0).any())


def test_padding_rows_of_nested_and_subclassed_embeddings_stay_zero():
    """The padded embeddings are found per class while planning: subclasses and EmbeddingBag
    deep in the model count, and one without a padding_idx keeps every row drawn."""

    class TokenEmbedding(nn.Embedding):
        pass

    model = nn.ModuleDict({
        "enc": nn.Sequential(TokenEmbedding(20, 4, padding_idx=1)),
        "bag": nn.EmbeddingBag(20, 4, padding_idx=7),
        "plain": nn.Embedding(20, 4),
    })
    hydra_init.apply(model, {"seed": 0, "rules": {"e": {"type": "Normal", "layer": ["Embedding",
                                                                                   "EmbeddingBag"]}}},
                     log=False)
    assert torch.equal(model["enc"][0].weight[1], torch.zeros(4))
    assert torch.equal(model["bag"].weight[7], torch.zeros(4))
    assert bool((model["plain"].weight != 0).all())


RANDOM_INITS = [
    Normal(std=0.02), TruncNormal(std=0.02), Uniform(a=-1, b=1), Xavier(), Kaiming(),
    Caffe2Xavier(), LecunNormal(), VarianceScaling(distribution="uniform"), Orthogonal(),
]


@pytest.mark.parametrize("init", RANDOM_INITS, ids=lambda i: i.type_name)
def test_same_seed_same_bits_other_seed_differs(init):
    shape = (48, 40)
    a = init_holder(init, shape, seed=11).weight
    b = init_holder(init, shape, seed=11).weight
    c = init_holder(init, shape, seed=12).weight
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not bool(torch.isnan(a).any())


def test_large_tensor_seeded_across_tiles():
    # 4 tiles of 65,536 values drawn in parallel: still bit-identical for a seed, and the
    # tiles are independent draws (a repeated tile would pass every moment check above).
    a = draw(Normal(std=1.0), shape=(ROWS, COLS), seed=4)
    b = draw(Normal(std=1.0), shape=(ROWS, COLS), seed=4)
    assert torch.equal(a, b)
    tiles = a.reshape(4, -1)
    for i in range(4):
        for j in range(i):
            assert not torch.equal(tiles[i], tiles[j])


def test_conv_receptive_field_enters_the_fan():
    # Catch a fan that ignores the kernel: (8, 8, 7, 7) with fan_in = 392, not 8 (7x larger std).
    conv = nn.Conv2d(8, 256, 7)
    hydra_init.apply(conv, {"seed": 0, "rules": {"k": {"type": "Kaiming", "mode": "fan_in",
                                                      "layer": "Conv2d"}}}, log=False)
    assert_std(conv.weight.detach().double(), math.sqrt(2.0 / (8 * 49)))


def test_uniform_deciles_are_flat():
    # Each decile of U(0, 1) holds 10% of the samples: binomial sd sqrt(n * 0.1 * 0.9) = 154.
    x = draw(Uniform(a=0.0, b=1.0))
    counts = torch.histc(x.float(), bins=10, min=0.0, max=1.0)
    n = x.numel()
    assert (counts - n / 10).abs().max().item() <= SIGMAS * math.sqrt(n * 0.09)
