"""Reading pretrained checkpoints: sources, file formats, key mapping, policies.

One job per module:

* :mod:`~hydra_init.pretrained.sources`: ``checkpoint`` string -> local file
  (paths, ``file://``, ``http(s)://`` through torch's hub cache, registered
  schemes such as ``torchvision://``), with an optional sha256 check.
* :mod:`~hydra_init.pretrained.formats`: file -> flat state dict, always with
  ``torch.load(weights_only=True)`` or safetensors.
* :mod:`~hydra_init.pretrained.sniff`: what a file is, from its first bytes (a Git
  LFS pointer, an HTML page, a cut zip checkpoint, ...), without unpickling it.
* :mod:`~hydra_init.pretrained.contents`: the state dict inside a loaded object,
  or what the object holds instead.
* :mod:`~hydra_init.pretrained.refusals`: the errors for unreadable files and
  pickled globals, with the fix for each kind.
* :mod:`~hydra_init.pretrained.keymap`: wrapper prefixes, ``prefix``, regex renames.
* :mod:`~hydra_init.pretrained.policies`: what to do with missing and unexpected
  keys, shape and dtype mismatches.

Matching a state dict to a model and planning the copy is
:mod:`hydra_init.pretrained.stage`'s job.
"""

from .formats import StateDict, read_state_dict
from .keymap import KeyMap, parse_rename, strip_wrappers
from .policies import DtypeMismatch, MissingKeys, ShapeMismatch, UnexpectedKeys
from .sources import Located, checkpoint_schemes, locate, register_checkpoint_scheme

__all__ = [
    "DtypeMismatch",
    "KeyMap",
    "Located",
    "MissingKeys",
    "ShapeMismatch",
    "StateDict",
    "UnexpectedKeys",
    "checkpoint_schemes",
    "locate",
    "parse_rename",
    "read_state_dict",
    "register_checkpoint_scheme",
    "strip_wrappers",
]
