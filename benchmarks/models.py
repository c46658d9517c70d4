"""Benchmark models, shaped like the real ones, built from ``torch.nn`` only.

Every builder takes a ``size`` ("full" or "quick"); "quick" keeps the structure
with tiny widths for a smoke run.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["deep_stack", "gpt2_small", "lm", "many_small", "many_tensors", "resnet50", "resnet152",
           "vit_base"]


# ----------------------------------------------------------------------------- ViT-Base/16
class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class ViTBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)


class ViT(nn.Module):
    """timm's VisionTransformer layout: patch embedding, tokens, blocks, norm, head."""

    def __init__(self, dim: int, depth: int, patches: int = 196, classes: int = 1000) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 16, 16)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, dim))
        self.blocks = nn.Sequential(*(ViTBlock(dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)


def vit_base(size: str = "full") -> nn.Module:
    """ViT-Base/16: 86M parameters (quick: 2 blocks of width 64)."""
    return ViT(768, 12) if size == "full" else ViT(64, 2, patches=16, classes=10)


# ----------------------------------------------------------------------------- ResNet-50
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )


class ResNet(nn.Module):
    """torchvision's ResNet layout."""

    def __init__(self, layers: tuple[int, ...], width: int = 64, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inplanes = width
        stages = []
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            stage = []
            for j in range(blocks):
                stage.append(Bottleneck(inplanes, planes, 2 if (j == 0 and i > 0) else 1))
                inplanes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(inplanes, classes)


def resnet50(size: str = "full") -> nn.Module:
    """ResNet-50: 25.6M parameters (quick: one block per stage, width 8)."""
    return ResNet((3, 4, 6, 3)) if size == "full" else ResNet((1, 1, 1, 1), width=8, classes=10)


def resnet152(size: str = "full") -> nn.Module:
    """ResNet-152: 60.2M parameters, ResNet-50's layer shapes, more blocks (quick: as resnet50)."""
    return ResNet((3, 8, 36, 3)) if size == "full" else ResNet((1, 2, 1, 1), width=8, classes=10)


# ----------------------------------------------------------------------------- GPT-2
class GPTBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(dim, 3 * dim)
        self.attn.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(dim, 4 * dim)
        self.mlp.c_proj = nn.Linear(4 * dim, dim)


class GPT(nn.Module):
    """nanoGPT's layout, with the output head tied to the token embedding."""

    def __init__(self, vocab: int, context: int, dim: int, depth: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.h = nn.ModuleList(GPTBlock(dim) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight


def gpt2_small(size: str = "full") -> nn.Module:
    """GPT-2 small: 124M parameters (quick: width 64, 2 blocks, vocab 500)."""
    return GPT(50257, 1024, 768, 12) if size == "full" else GPT(500, 64, 64, 2)


def lm(size: str = "full") -> nn.Module:
    """A 570M-parameter GPT (width 1600, 16 blocks) for the meta-device benchmark (quick: 4M)."""
    return GPT(50257, 1024, 1600, 16) if size == "full" else GPT(2000, 64, 256, 4)


# ----------------------------------------------------------------------------- deep stack
def deep_stack(
    base: type[nn.Module] = nn.Module, size: str = "full", module_list: type[nn.Module] = nn.ModuleList
) -> nn.Module:
    """Blocks within blocks, each level with its own ``init_cfg`` (OpenMMLab's BaseModule style).

    ``base`` is ``nn.Module`` (the ``init_cfg`` attributes are read by hydra_init)
    or mmengine's ``BaseModule`` (whose ``init_weights()`` applies them; it needs
    mmengine's own ``ModuleList`` as ``module_list``, since a plain one stops its
    recursion). The root's rules overlap (two rules for every Linear); even blocks
    override them with Kaiming, and every attention module inside overrides again
    with Xavier.
    """
    dim, depth = (512, 24) if size == "full" else (32, 4)

    def make(init_cfg):
        kwargs = {"init_cfg": init_cfg} if base is not nn.Module else {}

        def init(self):
            base.__init__(self, **kwargs)
            if base is nn.Module:
                self.init_cfg = init_cfg

        return init

    class Inner(base):
        def __init__(self) -> None:
            make({"type": "Xavier", "layer": "Linear", "distribution": "normal"})(self)
            self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    class Block(base):
        def __init__(self, even: bool) -> None:
            cfg = {"type": "Kaiming", "layer": "Linear", "mode": "fan_in", "nonlinearity": "relu"}
            make(cfg if even else None)(self)
            self.norm = nn.LayerNorm(dim)
            self.attn = Inner()
            self.fc1 = nn.Linear(dim, 4 * dim)
            self.fc2 = nn.Linear(4 * dim, dim)

    class Stack(base):
        def __init__(self) -> None:
            make([
                {"type": "Normal", "layer": "Linear", "std": 0.02, "bias": 0.0},
                {"type": "TruncNormal", "layer": "Linear", "std": 0.02, "a": -0.04, "b": 0.04, "bias": 0.0},
                {"type": "Constant", "layer": "LayerNorm", "val": 1.0, "bias": 0.0},
            ])(self)
            self.blocks = module_list(Block(i % 2 == 0) for i in range(depth))

    return Stack()


# ----------------------------------------------------------------------------- many small parameters
def many_small(size: str = "full") -> nn.Module:
    """10,000 small parameters: 5,000 ``Linear(8, 8)`` (quick: 500 parameters)."""
    return nn.Sequential(*(nn.Linear(8, 8) for _ in range(5000 if size == "full" else 250)))


# ----------------------------------------------------------------------------- many parameter tensors
class TinyBlock(nn.Module):
    """Seven parameter tensors of four module classes (Linear, LayerNorm, Embedding, Conv1d)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.emb = nn.Embedding(4, 4)
        self.conv = nn.Conv1d(2, 2, 1)


def many_tensors(tensors: int) -> nn.Module:
    """About ``tensors`` parameter tensors on the meta device (blocks of seven; planning cost only)."""
    with torch.device("meta"):
        return nn.ModuleList(TinyBlock() for _ in range(max(1, round(tensors / 7))))
