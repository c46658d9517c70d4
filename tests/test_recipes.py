"""The model-family recipes (``init=resnet``, ``vit``, ``gpt2`` ...) against their references.

Each recipe is composed through Hydra's compose API, exactly as an app selects it,
and applied to a small ``torch.nn`` model that reproduces the reference
implementation's module names, classes and parameter shapes (torchvision ResNet,
timm ViT, nanoGPT and Hugging Face GPT-2, torchtitan Llama, Hugging Face BERT,
mmdet/torchvision RetinaNet heads, CleanRL's PPO agents). Before the init every
parameter is poisoned with NaN, and afterwards EVERY parameter is checked
against the reference's own formula, re-derived here from the reference source
(module class -> distribution and its parameters); :func:`check_all` fails if a
parameter has no expectation, so nothing goes unchecked.

Tolerances are ``helpers.SIGMAS`` (6) standard errors of the statistic for the
tensor's own sample size: mean within 6 sigma/sqrt(n), std within
6 sigma sqrt((kurtosis - 1) / (4 n)) (kurtosis 3, an upper bound for every law
here). The models are sized so that the smallest random weights have
n >= 4096 values (std tolerance <= 6.6%), which still tells apart every pair of
numbers the recipes differ by (0.02 vs 0.02/sqrt(2*n_layer) is 2.8x at
n_layer = 4; successive llama layers differ by >= 13%). Tiny tensors (a 64-value
class token) get proportionally wider, still justified, bounds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from helpers import assert_mean, assert_std, trunc_std_factor
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
from torch import nn

import hydra_init
from hydra_init import InitConfigError

D = 64  # transformer width: a D x D weight has 4,096 values


# ============================================================================ compose
@pytest.fixture(scope="module")
def compose_init(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., object]]:
    """Compose ``init=<recipe> [overrides]`` through Hydra, as an app does.

    The app's primary config lives in a temp dir; our presets come from the
    ``init`` group that ``hydra_init.register()`` puts on the search path. The app
    has a ``model`` node so that ``init.n_layer=${model.n_layer}`` can be tested.
    """
    hydra_init.register()
    app = tmp_path_factory.mktemp("app")
    (app / "app.yaml").write_text(
        "defaults:\n  - init: kaiming_conv\n  - _self_\nmodel:\n  n_layer: 3\n  dim: 64\n"
    )
    with initialize_config_dir(config_dir=str(app), version_base=None):

        def compose_fn(recipe: str, *overrides: str):
            return compose("app", overrides=[f"init={recipe}", *overrides])

        yield compose_fn


def apply_recipe(compose_init, model: nn.Module, recipe: str, *overrides: str) -> hydra_init.InitReport:
    """Poison every parameter with NaN, then apply the composed recipe."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    cfg = compose_init(recipe, *overrides)
    return hydra_init.apply(model, cfg.init, log=False)


# ============================================================================ checks
Expectation = Callable[[torch.Tensor], None]


def normal(std: float, mean: float = 0.0) -> Expectation:
    def check(x: torch.Tensor) -> None:
        assert_mean(x, mean, std)
        assert_std(x, std)

    return check


def trunc_normal(std: float, low: float, high: float) -> Expectation:
    """N(0, std^2) truncated to [low, high] (absolute bounds, symmetric)."""
    factor = trunc_std_factor(high / std)  # 1.0 to 12 digits when nothing is truncated

    def check(x: torch.Tensor) -> None:
        assert low <= x.min().item() and x.max().item() <= high
        assert_mean(x, 0.0, std)
        assert_std(x, std * factor)

    return check


def uniform(bound: float) -> Expectation:
    def check(x: torch.Tensor) -> None:
        assert -bound <= x.min().item() and x.max().item() <= bound
        sigma = bound / math.sqrt(3.0)
        assert_mean(x, 0.0, sigma)
        assert_std(x, sigma, kurtosis=1.8)

    return check


def constant(value: float) -> Expectation:
    """Every element equals ``value`` as stored in float32 (the parameters' dtype)."""
    stored = float(torch.tensor(value, dtype=torch.float32))

    def check(x: torch.Tensor) -> None:
        assert torch.all(x == stored), f"expected all {stored}, got {x.flatten()[:4].tolist()}..."

    return check


def orthogonal(gain: float) -> Expectation:
    """Rows (or columns, whichever are fewer) orthonormal times ``gain``: W W^T = gain^2 I."""

    def check(x: torch.Tensor) -> None:
        w = x.reshape(x.shape[0], -1)
        if w.shape[0] > w.shape[1]:
            w = w.t()
        gram = w @ w.t()
        # float32 QR: entries of W W^T carry ~1e-6 relative rounding per term
        eye = torch.eye(gram.shape[0], dtype=gram.dtype) * gain**2
        assert torch.allclose(gram, eye, atol=1e-4 * gain**2), (gram - eye).abs().max()

    return check


def fan_in_out(weight: torch.Tensor, layout: str = "out_in") -> tuple[int, int]:
    """Fans computed from the reference's definition (torch: dim 1 in, dim 0 out, rest receptive)."""
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def check_all(model: nn.Module, expected: dict[str, Expectation]) -> None:
    """Every parameter (shared ones once, by their first path) meets its expectation."""
    params = dict(model.named_parameters())
    assert set(params) == set(expected), (
        f"unchecked: {sorted(set(params) - set(expected))}, unknown: {sorted(set(expected) - set(params))}"
    )
    for path, check in expected.items():
        x = params[path].detach().double()
        assert not torch.isnan(x).any(), f"{path} was never written"
        try:
            check(x)
        except AssertionError as exc:
            raise AssertionError(f"{path} {tuple(x.shape)}: {exc}") from None


# ============================================================================ torchvision ResNet
def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (names, shapes)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample


class Bottleneck(nn.Module):
    """torchvision.models.resnet.Bottleneck (names, shapes)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet with two stages and a narrow stem."""

    def __init__(self, block: type[nn.Module], layers: list[int], width: int = 32, num_classes: int = 10):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width * block.expansion, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def resnet_expected(model: ResNet, zero_init_residual: bool) -> dict[str, Expectation]:
    """torchvision ResNet.__init__: kaiming_normal_(fan_out, relu) on Conv2d; BN/GN 1 and 0;
    the fc keeps nn.Linear's reset_parameters (kaiming_uniform a=sqrt(5): U(+-1/sqrt(fan_in)),
    bias U(+-1/sqrt(fan_in))); zero_init_residual zeroes bn3 (Bottleneck) / bn2 (BasicBlock)."""
    out: dict[str, Expectation] = {}
    last_bn = {id(m.bn3) for m in model.modules() if isinstance(m, Bottleneck)}
    last_bn |= {id(m.bn2) for m in model.modules() if isinstance(m, BasicBlock)}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            _, fan_out = fan_in_out(m.weight)
            out[f"{name}.weight"] = normal(math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            zero = zero_init_residual and id(m) in last_bn
            out[f"{name}.weight"] = constant(0.0 if zero else 1.0)
            out[f"{name}.bias"] = constant(0.0)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            out[f"{name}.weight"] = uniform(bound)
            out[f"{name}.bias"] = uniform(bound)
    return out


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_resnet(compose_init, block) -> None:
    model = ResNet(block, [2, 2], num_classes=1000)  # fc: 1000 x 64 (x4): >= 64,000 values
    report = apply_recipe(compose_init, model, "resnet")
    check_all(model, resnet_expected(model, zero_init_residual=False))
    assert report.totals["default"] == 0


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_resnet_zero_init_residual(compose_init, block) -> None:
    model = ResNet(block, [2, 2], num_classes=1000)
    apply_recipe(compose_init, model, "resnet", "init.zero_init_residual=true")
    check_all(model, resnet_expected(model, zero_init_residual=True))


# ============================================================================ timm ViT
class PatchEmbed(nn.Module):
    def __init__(self, patch: int = 4, dim: int = D) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class Attention(nn.Module):
    def __init__(self, dim: int = D) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)


class Mlp(nn.Module):
    def __init__(self, dim: int = D) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)


class Block(nn.Module):
    def __init__(self, dim: int = D) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)


class VisionTransformer(nn.Module):
    """timm.models.vision_transformer.VisionTransformer (names, shapes): 32x32 images, 4x4 patches."""

    def __init__(
        self, depth: int = 2, num_classes: int = 1000, dim: int = D, reg_tokens: int = 0,
        distilled: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.patch_embed = PatchEmbed(4, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # timm: reg_token (1, num_reg_tokens, dim) when reg_tokens > 0 (ViTs "need registers")
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, dim)) if reg_tokens else None
        # timm deit.VisionTransformerDistilled: dist_token (1, 1, dim) and head_dist
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, 64 + 1 + int(distilled), dim))
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.head_dist = nn.Linear(dim, num_classes) if distilled else None


def vit_expected(
    model: VisionTransformer, jax: bool, head_bias: float = 0.0, std: float = 0.02, fix_init: bool = False
) -> dict[str, Expectation]:
    """timm init_weights: (DeiT distilled: dist_token trunc_normal_(std=.02) first),
    pos_embed trunc_normal_(std=.02) (timm's absolute bounds -2, 2),
    cls_token and reg_token normal_(std=1e-6), then per module:
    '' mode: Linear trunc_normal_(std=.02) + zero bias; Conv2d untouched (its reset_parameters);
    'jax' mode: head* Linear weight 0 / bias head_bias; other Linear xavier_uniform_ with
    bias normal(1e-6) if 'mlp' in the path else 0; Conv2d lecun_normal_ (variance 1/fan_in,
    truncated at 2 std of the pre-truncation std) + zero bias. LayerNorm stays 1 / 0."""
    out: dict[str, Expectation] = {
        "pos_embed": trunc_normal(std, -2.0, 2.0),
        "cls_token": normal(1e-6),
    }
    if model.reg_token is not None:
        out["reg_token"] = normal(1e-6)
    if model.dist_token is not None:
        out["dist_token"] = trunc_normal(0.02, -2.0, 2.0)
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            if not jax:
                out[f"{name}.weight"] = trunc_normal(std, -2.0, 2.0)
                out[f"{name}.bias"] = constant(0.0)
            elif name.startswith("head"):
                out[f"{name}.weight"] = constant(0.0)
                out[f"{name}.bias"] = constant(head_bias)
            else:
                fan_in, fan_out = fan_in_out(m.weight)
                out[f"{name}.weight"] = uniform(math.sqrt(6.0 / (fan_in + fan_out)))
                out[f"{name}.bias"] = normal(1e-6) if "mlp" in name else constant(0.0)
        elif isinstance(m, nn.Conv2d):
            fan_in, _ = fan_in_out(m.weight)
            if jax:
                std = math.sqrt(1.0 / fan_in) / trunc_std_factor(2.0)
                out[f"{name}.weight"] = trunc_normal(std, -2 * std, 2 * std)
                out[f"{name}.bias"] = constant(0.0)
            else:  # nn.Conv2d.reset_parameters: kaiming_uniform(a=sqrt(5)) -> U(+-1/sqrt(fan_in))
                out[f"{name}.weight"] = uniform(1.0 / math.sqrt(fan_in))
                out[f"{name}.bias"] = uniform(1.0 / math.sqrt(fan_in))
        elif isinstance(m, nn.LayerNorm):
            out[f"{name}.weight"] = constant(1.0)
            out[f"{name}.bias"] = constant(0.0)
    if fix_init:  # timm fix_init_weight(): blocks[i].attn.proj and .mlp.fc2 weights / sqrt(2 (i + 1))
        for i in range(len(model.blocks)):
            scale = math.sqrt(2.0 * (i + 1))
            for path in (f"blocks.{i}.attn.proj.weight", f"blocks.{i}.mlp.fc2.weight"):
                out[path] = trunc_normal(std / scale, -2.0 / scale, 2.0 / scale)
    return out


def test_vit(compose_init) -> None:
    model = VisionTransformer()
    apply_recipe(compose_init, model, "vit")
    check_all(model, vit_expected(model, jax=False))


def test_vit_jax_with_nlhb_head_bias(compose_init) -> None:
    model = VisionTransformer(num_classes=1000)
    head_bias = -math.log(model.num_classes)  # timm 'jax_nlhb'
    apply_recipe(compose_init, model, "vit_jax", f"init.head_bias={head_bias}")
    check_all(model, vit_expected(model, jax=True, head_bias=head_bias))


def test_vit_deit_distilled_with_registers(compose_init) -> None:
    """dist_token (DeiT distilled) and reg_token (registers) are drawn, not left uninitialized."""
    model = VisionTransformer(reg_tokens=4, distilled=True)
    apply_recipe(compose_init, model, "vit")
    check_all(model, vit_expected(model, jax=False))
    model = VisionTransformer(reg_tokens=4, distilled=True)
    apply_recipe(compose_init, model, "vit_jax")
    check_all(model, vit_expected(model, jax=True))


def test_vit_fix_init_scales_proj_and_fc2_by_depth(compose_init) -> None:
    # depth 4: block 3's scale sqrt(8) = 2.83x, far beyond the 6.6% std tolerance of a 4,096-value weight
    model = VisionTransformer(depth=4)
    apply_recipe(compose_init, model, "vit", "init.fix_init=true")
    check_all(model, vit_expected(model, jax=False, fix_init=True))


def test_vit_std_knob_reaches_linear_and_pos_embed(compose_init) -> None:
    model = VisionTransformer()
    apply_recipe(compose_init, model, "vit", "init.std=0.05")
    check_all(model, vit_expected(model, jax=False, std=0.05))


# ============================================================================ GPT-2: nanoGPT
# (Hugging Face's GPT2LMHeadModel is checked against transformers itself: tests/test_recipes_hf.py)
class LayerNorm(nn.Module):
    """nanoGPT's LayerNorm (own class, optional bias)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        self.c_attn = nn.Linear(dim, 3 * dim, bias=bias)
        self.c_proj = nn.Linear(dim, dim, bias=bias)


class MLP(nn.Module):
    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * dim, dim, bias=bias)


class NanoBlock(nn.Module):
    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(dim, bias)
        self.attn = CausalSelfAttention(dim, bias)
        self.ln_2 = LayerNorm(dim, bias)
        self.mlp = MLP(dim, bias)


class GPTConfig:
    """nanoGPT's GPTConfig (the fields read here)."""

    def __init__(self, n_layer: int) -> None:
        self.n_layer = n_layer


class GPT(nn.Module):
    """nanoGPT model.py GPT (names, shapes, weight tying of wte and lm_head, its config)."""

    def __init__(
        self, n_layer: int = 4, vocab: int = 512, block_size: int = 64, dim: int = D, bias=True,
        with_config: bool = True,
    ):
        super().__init__()
        if with_config:
            self.config = GPTConfig(n_layer)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, dim),
            wpe=nn.Embedding(block_size, dim),
            drop=nn.Dropout(0.0),
            h=nn.ModuleList([NanoBlock(dim, bias) for _ in range(n_layer)]),
            ln_f=LayerNorm(dim, bias),
        ))
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight


def gpt2_expected(model: nn.Module, n_layer: int, std: float = 0.02) -> dict[str, Expectation]:
    """nanoGPT _init_weights: Linear and Embedding normal(std), biases 0, LayerNorm 1/0;
    then every '*c_proj.weight' normal(std/sqrt(2*n_layer))."""
    out: dict[str, Expectation] = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            out[f"{name}.weight"] = normal(std)
            if getattr(m, "bias", None) is not None:
                out[f"{name}.bias"] = constant(0.0)
        elif isinstance(m, (nn.LayerNorm, LayerNorm)):
            out[f"{name}.weight"] = constant(1.0)
            if m.bias is not None:
                out[f"{name}.bias"] = constant(0.0)
        if name.endswith("c_proj"):
            out[f"{name}.weight"] = normal(std / math.sqrt(2 * n_layer))
    shared = dict(model.named_parameters())  # tied lm_head.weight is listed once, as wte
    return {k: v for k, v in out.items() if k in shared}


@pytest.mark.parametrize(
    ("n_layer", "with_config", "source"),
    [(4, True, "model.config.n_layer"), (2, True, "model.config.n_layer"),
     (3, False, "count of modules matching '*h.{i}'")],
)
def test_gpt2_depth_read_from_the_model(compose_init, n_layer, with_config, source) -> None:
    """No knob: the depth comes from nanoGPT's config, or from counting transformer.h.* blocks."""
    model = GPT(n_layer=n_layer, with_config=with_config)
    report = apply_recipe(compose_init, model, "gpt2")
    check_all(model, gpt2_expected(model, n_layer=n_layer))
    assert report.totals["default"] == 0
    # nanoGPT's GPTConfig has no initializer_range: GPT-2's 0.02
    assert report.sizes == {"std": (0.02, "the preset's fixed value"), "n_layer": (n_layer, source)}
    assert f"n_layer={n_layer} ({source})" in str(report)


def test_gpt2_explicit_n_layer_wins_over_the_model(compose_init) -> None:
    model = GPT(n_layer=4)
    report = apply_recipe(compose_init, model, "gpt2", "init.n_layer=12")
    check_all(model, gpt2_expected(model, n_layer=12))
    assert report.sizes["n_layer"] == (12, "init.n_layer")


def test_gpt2_n_layer_interpolated_from_model_config(compose_init) -> None:
    """init.n_layer=${model.n_layer}: the app's model node (n_layer: 3) sets the depth scaling."""
    cfg = compose_init("gpt2", "init.n_layer=${model.n_layer}")
    assert cfg.init.n_layer == 3
    model = GPT(n_layer=3, with_config=False)
    hydra_init.apply(model, cfg.init, log=False)
    check_all(model, gpt2_expected(model, n_layer=3))


def test_gpt2_nanogpt_without_biases(compose_init) -> None:
    model = GPT(n_layer=2, bias=False)
    apply_recipe(compose_init, model, "gpt2")
    check_all(model, gpt2_expected(model, n_layer=2))


def test_gpt2_zero_layers_is_a_config_error(compose_init) -> None:
    model = GPT(n_layer=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitConfigError, match=r"init\.rules\.residual\.expr\.std"):
        hydra_init.apply(model, compose_init("gpt2", "init.n_layer=0").init, log=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ============================================================================ torchtitan Llama
class LlamaAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        head_dim = dim // n_heads
        self.wq = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wo = nn.Linear(n_heads * head_dim, dim, bias=False)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attention = LlamaAttention(dim, n_heads=4, n_kv_heads=2)
        self.feed_forward = FeedForward(dim, hidden=192)
        self.attention_norm = nn.RMSNorm(dim)
        self.ffn_norm = nn.RMSNorm(dim)


class Transformer(nn.Module):
    """torchtitan models/llama3 Transformer (names, shapes; layers is a ModuleDict keyed '0'..)."""

    def __init__(self, n_layers: int = 4, vocab: int = 512, dim: int = D) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleDict({str(i): TransformerBlock(dim) for i in range(n_layers)})
        self.norm = nn.RMSNorm(dim)
        self.output = nn.Linear(dim, vocab, bias=False)


class FusedQKVLinear(nn.Module):
    """torchtitan 0.3 common/attention.py FusedQKVLinear: one wqkv projection."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        head_dim = dim // n_heads
        self.wqkv = nn.Linear(dim, (n_heads + 2 * n_kv_heads) * head_dim, bias=False)


class Llama3Attention(nn.Module):
    def __init__(self, dim: int, n_heads: int = 4, n_kv_heads: int = 2) -> None:
        super().__init__()
        self.qkv_linear = FusedQKVLinear(dim, n_heads, n_kv_heads)
        self.wo = nn.Linear(dim, dim, bias=False)


class Llama3Block(TransformerBlock):
    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.attention = Llama3Attention(dim)


class Llama3ModelConfig:
    """torchtitan 0.3 Llama3Model.Config (the field read here)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim


class Llama3Model(nn.Module):
    """torchtitan 0.3 models/llama3 Llama3Model (common/decoder.py Decoder): fused wqkv, lm_head, config."""

    def __init__(self, n_layers: int = 4, vocab: int = 512, dim: int = D) -> None:
        super().__init__()
        self.config = Llama3ModelConfig(dim)
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleDict({str(i): Llama3Block(dim) for i in range(n_layers)})
        self.norm = nn.RMSNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)


def llama_expected(model: Transformer, dim: int) -> dict[str, Expectation]:
    """torchtitan init_weights: tok_embeddings normal_(std=1); per block weight_init_std =
    0.02 / (2 * (layer_id + 1)) ** 0.5 on wo, w2, w3 and 0.02 on wq, wk, wv, w1 (all
    trunc_normal_ with torch's absolute bounds -2, 2); norms reset to 1; output
    trunc_normal_(std=dim**-0.5, a=-3 std, b=3 std)."""
    out: dict[str, Expectation] = {"tok_embeddings.weight": normal(1.0), "norm.weight": constant(1.0)}
    for layer_id, block in model.layers.items():
        depth_std = 0.02 / (2 * (int(layer_id) + 1)) ** 0.5
        prefix = f"layers.{layer_id}"
        for name in ("attention.wq", "attention.wk", "attention.wv", "attention.qkv_linear.wqkv",
                     "feed_forward.w1"):
            out[f"{prefix}.{name}.weight"] = trunc_normal(0.02, -2.0, 2.0)
        for name in ("attention.wo", "feed_forward.w2", "feed_forward.w3"):
            out[f"{prefix}.{name}.weight"] = trunc_normal(depth_std, -2.0, 2.0)
        out[f"{prefix}.attention_norm.weight"] = constant(1.0)
        out[f"{prefix}.ffn_norm.weight"] = constant(1.0)
        del block
    std = dim**-0.5
    out["output.weight"] = out["lm_head.weight"] = trunc_normal(std, -3 * std, 3 * std)
    params = dict(model.named_parameters())
    return {k: v for k, v in out.items() if k in params}  # the two layouts' names


@pytest.mark.parametrize("make", [Transformer, Llama3Model], ids=["torchtitan<0.3", "torchtitan-0.3"])
def test_llama_depth_scaled_from_path(compose_init, make) -> None:
    model = make(n_layers=4)
    report = apply_recipe(compose_init, model, "llama")
    check_all(model, llama_expected(model, dim=D))
    assert report.warnings == []
    # the report names the std computed for each module from its captured layer_id
    for layer_id in range(4):
        text = report[f"layers.{layer_id}.feed_forward.w2.weight"].init
        std = float(re.search(r"std=([0-9.e-]+)", text).group(1))
        assert std == pytest.approx(0.02 / math.sqrt(2 * (layer_id + 1)), rel=1e-12), text


class TransformerModelArgs:
    """torchtitan's TransformerModelArgs (the field read here)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim


@pytest.mark.parametrize(("make", "dim", "model_args", "source"), [
    (Transformer, 256, True, "model.model_args.dim"), (Transformer, 256, False, "output.weight.shape[1]"),
    (Transformer, D, False, "output.weight.shape[1]"), (Llama3Model, 256, False, "model.config.dim"),
])
def test_llama_dim_read_from_the_model(compose_init, make, dim, model_args, source) -> None:
    """No knob: output std dim**-0.5 with dim from torchtitan's config or model_args, else the output's
    in_features. dim 256 vs the old fixed 4096: 0.0625 vs 0.0156 (4x, beyond the 1.7% std tolerance of
    131,072 values)."""
    model = make(n_layers=2, dim=dim)
    if model_args:
        model.model_args = TransformerModelArgs(dim)
    report = apply_recipe(compose_init, model, "llama")
    check_all(model, llama_expected(model, dim=dim))
    assert report.sizes == {"dim": (dim, source)}


def test_llama_size_unreadable_is_an_error_naming_the_knob(compose_init) -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(InitConfigError, match=r"init\.dim: could not read 'dim'.*init\.dim=<value>"):
        apply_recipe(compose_init, model, "llama")


def test_llama_dim_interpolated_from_model_config(compose_init) -> None:
    cfg = compose_init("llama", "init.dim=${model.dim}")
    model = Transformer(n_layers=2, dim=128)  # the explicit knob (64) wins over the model's 128
    report = hydra_init.apply(model, cfg.init, log=False)
    check_all(model, llama_expected(model, dim=64))
    assert report.sizes == {"dim": (64, "init.dim")}


# ============================================================================ Hugging Face BERT
# checked against transformers' BertForMaskedLM itself: tests/test_recipes_hf.py


# ============================================================================ RetinaNet heads
class ConvModule(nn.Module):
    """mmcv ConvModule without norm: conv + activate."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.activate = nn.ReLU()


class RetinaHead(nn.Module):
    """mmdet RetinaHead (names, shapes): 9 anchors, 20 classes, 4 stacked convs of 64 channels."""

    def __init__(self, num_classes: int = 20, channels: int = 64, anchors: int = 9, stacked: int = 4):
        super().__init__()
        self.cls_convs = nn.ModuleList([ConvModule(channels, channels) for _ in range(stacked)])
        self.reg_convs = nn.ModuleList([ConvModule(channels, channels) for _ in range(stacked)])
        self.retina_cls = nn.Conv2d(channels, anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(channels, anchors * 4, 3, padding=1)


class TorchvisionRetinaNetHead(nn.Module):
    """torchvision RetinaNetHead (names, shapes): conv.{i}.0 convs, cls_logits, bbox_reg."""

    def __init__(self, num_classes: int = 20, channels: int = 64, anchors: int = 9) -> None:
        super().__init__()

        def tower() -> nn.Sequential:
            return nn.Sequential(*[nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
                                   for _ in range(4)])

        self.classification_head = nn.Module()
        self.classification_head.conv = tower()
        self.classification_head.cls_logits = nn.Conv2d(channels, anchors * num_classes, 3, padding=1)
        self.regression_head = nn.Module()
        self.regression_head.conv = tower()
        self.regression_head.bbox_reg = nn.Conv2d(channels, anchors * 4, 3, padding=1)


def retina_expected(model: nn.Module, cls_name: str, prior: float = 0.01) -> dict[str, Expectation]:
    """mmdet RetinaHead init_cfg / torchvision heads: Conv2d normal(0.01), bias 0; the class
    logits bias is bias_init_with_prob(0.01) = -log((1 - 0.01) / 0.01) = -4.59512."""
    out: dict[str, Expectation] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[f"{name}.weight"] = normal(0.01)
            out[f"{name}.bias"] = constant(0.0)
    out[f"{cls_name}.bias"] = constant(-math.log((1 - prior) / prior))
    return out


def test_retinanet_head_mmdet(compose_init) -> None:
    model = RetinaHead()
    apply_recipe(compose_init, model, "retinanet_head")
    check_all(model, retina_expected(model, "retina_cls"))
    assert model.retina_cls.bias[0].item() == pytest.approx(-4.595, abs=5e-4)


def test_retinanet_head_torchvision_names(compose_init) -> None:
    model = TorchvisionRetinaNetHead()
    apply_recipe(compose_init, model, "retinanet_head", "init.cls_head=*cls_logits")
    check_all(model, retina_expected(model, "classification_head.cls_logits"))


def test_retinanet_head_bias_prob_knob(compose_init) -> None:
    model = RetinaHead()
    apply_recipe(compose_init, model, "retinanet_head", "init.bias_prob=0.1")
    check_all(model, retina_expected(model, "retina_cls", prior=0.1))


def test_retinanet_head_wrong_cls_head_names_the_key(compose_init) -> None:
    with pytest.raises(InitConfigError, match=r"init\.rules\.cls_logits\.name.*retina_cls"):
        apply_recipe(compose_init, TorchvisionRetinaNetHead(), "retinanet_head")


# ============================================================================ CleanRL PPO
class Agent(nn.Module):
    """CleanRL ppo.py Agent (classic control): critic/actor MLPs of width 64."""

    def __init__(self, obs: int = 64, actions: int = 6) -> None:
        super().__init__()
        self.critic = nn.Sequential(nn.Linear(obs, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                                    nn.Linear(64, 1))
        self.actor = nn.Sequential(nn.Linear(obs, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                                   nn.Linear(64, actions))


class AtariAgent(nn.Module):
    """CleanRL ppo_atari.py Agent: Nature-CNN trunk, actor and critic heads on top."""

    def __init__(self, actions: int = 6) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
        )
        self.actor = nn.Linear(512, actions)
        self.critic = nn.Linear(512, 1)


class LSTMAgent(AtariAgent):
    """CleanRL ppo_atari_lstm.py Agent: the Nature-CNN trunk, an LSTM(512, 128), heads on its output."""

    def __init__(self, actions: int = 6) -> None:
        super().__init__(actions)
        self.lstm = nn.LSTM(512, 128)
        self.actor = nn.Linear(128, actions)
        self.critic = nn.Linear(128, 1)


def ppo_expected(model: nn.Module, policy: str, value: str) -> dict[str, Expectation]:
    """CleanRL layer_init: orthogonal_(weight, std) with std sqrt(2), the policy head 0.01 and
    the value head 1.0; constant_(bias, 0). ppo_atari_lstm.py: every LSTM parameter named
    '*bias*' constant_ 0, '*weight*' orthogonal_(param, 1.0)."""
    out: dict[str, Expectation] = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            gain = {policy: 0.01, value: 1.0}.get(name, math.sqrt(2))
            out[f"{name}.weight"] = orthogonal(gain)
            out[f"{name}.bias"] = constant(0.0)
        elif isinstance(m, nn.LSTM):
            for pname, _ in m.named_parameters():
                out[f"{name}.{pname}"] = constant(0.0) if "bias" in pname else orthogonal(1.0)
    return out


def test_rl_orthogonal_classic_control(compose_init) -> None:
    model = Agent()
    apply_recipe(compose_init, model, "rl_orthogonal")
    check_all(model, ppo_expected(model, "actor.4", "critic.4"))


def test_rl_orthogonal_atari_head_names(compose_init) -> None:
    model = AtariAgent()
    apply_recipe(compose_init, model, "rl_orthogonal", "init.policy_head=actor", "init.value_head=critic")
    check_all(model, ppo_expected(model, "actor", "critic"))


def test_rl_orthogonal_lstm_agent(compose_init) -> None:
    """The LSTM's (512, 512) weight_ih and (512, 128) weight_hh: orthogonal (W Wt = I), not uniform."""
    model = LSTMAgent()
    apply_recipe(compose_init, model, "rl_orthogonal", "init.policy_head=actor", "init.value_head=critic")
    check_all(model, ppo_expected(model, "actor", "critic"))


def test_rl_orthogonal_typo_in_head_name_is_refused_before_writing(compose_init) -> None:
    model = Agent()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitConfigError, match=r"init\.rules\.policy_head\.name.*actr\.4"):
        hydra_init.apply(model, compose_init("rl_orthogonal", "init.policy_head=actr.4").init, log=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ============================================================================ all recipes
RECIPES = ["resnet", "vit", "vit_jax", "gpt2", "llama", "bert", "hf", "retinanet_head", "rl_orthogonal"]
CONF = Path(__file__).resolve().parent.parent / "conf" / "init"


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_file_has_description_and_binds_the_schema(compose_init, recipe) -> None:
    text = (CONF / f"{recipe}.yaml").read_text()
    first = text.splitlines()[0]
    assert first.startswith("# ") and len(first) > 20
    cfg = compose_init(recipe)
    assert cfg.init._target_ == "hydra_init.Init"
    # lean: the composed node holds what the file (and its rules/ defaults) set, no null padding ...
    in_file = OmegaConf.load(CONF / f"{recipe}.yaml")
    assert not [k for k, v in cfg.init.items() if v is None and k not in in_file]
    # ... each knob typed as in the schema: a wrong type fails at composition, naming the key
    knobs = ("std", "n_layer", "gain", "dim", "head_bias", "bias", "mode", "zero_init_residual")
    knob = next(k for k in knobs if k in cfg.init)
    with pytest.raises(ValidationError, match=rf"full_key: init\.{knob}"):
        cfg.init[knob] = "abc"


@pytest.mark.parametrize("recipe", RECIPES)
def test_unused_knob_is_refused(compose_init, recipe) -> None:
    """A knob no rule of the recipe uses (init.scale here) is refused, naming the key."""
    cfg = compose_init(recipe, "+init.scale=2.0")  # without the +, Hydra refuses it: not in the preset
    with pytest.raises(InitConfigError, match=r"init\.scale"):
        hydra_init.apply(nn.Linear(2, 2), cfg.init, log=False)
