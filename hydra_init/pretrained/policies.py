"""What a :class:`~hydra_init.Pretrained` rule does when checkpoint and model disagree.

Each policy is a string Enum, so it is a typed field in the structured config
(``init.rules.pretrained.shape_mismatch=skip`` on Hydra's command line) and a
typo is refused with the list of valid values. The defaults are the safe
choice for fine-tuning: load what matches, initialize the rest by rules,
report what was ignored, and never load a tensor of the wrong shape.

>>> ShapeMismatch("skip") is ShapeMismatch.skip
True
"""

from __future__ import annotations

import enum

__all__ = ["DtypeMismatch", "MissingKeys", "ShapeMismatch", "UnexpectedKeys"]


class MissingKeys(str, enum.Enum):
    """Model tensors the checkpoint has no key for.

    ``init`` (default): the other rules initialize them and the report lists them
    under "initialized (not in checkpoint)". ``error``: refuse, naming them.
    """

    init = "init"
    error = "error"


class UnexpectedKeys(str, enum.Enum):
    """Checkpoint keys that match no model tensor.

    ``ignore`` (default): skip them and list them in the report. ``error``: refuse, naming them.
    """

    ignore = "ignore"
    error = "error"


class ShapeMismatch(str, enum.Enum):
    """A checkpoint tensor whose shape differs from the model's.

    ``error`` (default): refuse, naming every mismatching key with both shapes.
    ``skip``: do not load it; the other rules initialize the parameter (a
    classifier with a new number of classes).
    """

    error = "error"
    skip = "skip"


class DtypeMismatch(str, enum.Enum):
    """A checkpoint tensor whose dtype differs from the model's.

    ``convert`` (default): cast to the model's dtype, refusing a cast that turns
    finite values into inf (float32 -> float16 overflow). ``error``: refuse.
    """

    convert = "convert"
    error = "error"
