"""The schemas of the model-family recipes: :class:`~hydra_init.InitConfig` plus each recipe's own knobs.

A recipe preset binds to its schema in its defaults list
(``/hydra_init/schema/gpt2@_here_``), so its knobs are typed and a knob of
another recipe (``init.n_layer`` on ``init=resnet``) is a Hydra error. A knob
whose default is ``None`` and that the preset lists under ``sizes`` is read
from the model (:mod:`hydra_init.engine.sizes`); setting it wins.

>>> from omegaconf import OmegaConf
>>> OmegaConf.structured(RECIPE_SCHEMAS["gpt2"]).n_layer is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .schema import InitConfig

__all__ = ["RECIPE_SCHEMAS"]


@dataclass
class ResNetInitConfig(InitConfig):
    """``init=resnet``."""

    zero_init_residual: Optional[bool] = None  # noqa: UP045  # zero each residual block's last BN scale


@dataclass
class ViTInitConfig(InitConfig):
    """``init=vit`` and ``init=vit_jax``."""

    fix_init: Optional[bool] = None  # noqa: UP045  # timm fix_init: blocks.i proj/fc2 / sqrt(2 (i+1))
    head_bias: Optional[float] = None  # noqa: UP045  # vit_jax: classifier head bias (timm head_bias)


@dataclass
class GPT2InitConfig(InitConfig):
    """``init=gpt2``."""

    n_layer: Optional[int] = None  # noqa: UP045  # depth in std/sqrt(2*n_layer); null: read from the model


@dataclass
class LlamaInitConfig(InitConfig):
    """``init=llama`` (torchtitan)."""

    dim: Optional[int] = None  # noqa: UP045  # width in output std dim**-0.5; null: read from the model


@dataclass
class RetinaNetInitConfig(InitConfig):
    """``init=retinanet_head``."""

    cls_head: Optional[str] = None  # noqa: UP045  # module glob of the class-logits conv


@dataclass
class RLInitConfig(InitConfig):
    """``init=rl_orthogonal`` (CleanRL)."""

    policy_head: Optional[str] = None  # noqa: UP045  # module glob of the policy output
    value_head: Optional[str] = None  # noqa: UP045  # module glob of the value output
    policy_gain: Optional[float] = None  # noqa: UP045  # policy head gain (0.01)
    value_gain: Optional[float] = None  # noqa: UP045  # value head gain (1.0)
    recurrent_gain: Optional[float] = None  # noqa: UP045  # LSTM/GRU weights (CleanRL: 1.0)


@dataclass
class HFInitConfig(InitConfig):
    """``init=hf`` (transformers' ``_init_weights``); every size null = read from ``model.config``."""

    n_layer: Optional[int] = None  # noqa: UP045  # GPT-2: c_proj std / sqrt(2 * n_layer)
    initializer_factor: Optional[float] = None  # noqa: UP045  # T5: every std's factor
    d_model: Optional[int] = None  # noqa: UP045  # T5
    d_kv: Optional[int] = None  # noqa: UP045  # T5
    d_ff: Optional[int] = None  # noqa: UP045  # T5
    num_heads: Optional[int] = None  # noqa: UP045  # T5


RECIPE_SCHEMAS: dict[str, type[InitConfig]] = {
    "resnet": ResNetInitConfig,
    "vit": ViTInitConfig,
    "gpt2": GPT2InitConfig,
    "llama": LlamaInitConfig,
    "retinanet_head": RetinaNetInitConfig,
    "rl_orthogonal": RLInitConfig,
    "hf": HFInitConfig,
}
"""Schema name in ``hydra_init/schema`` -> its class (``vit_jax`` binds to ``vit``)."""
