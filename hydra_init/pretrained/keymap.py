"""Mapping checkpoint keys onto model keys: wrapper prefixes, ``prefix``, regex renames.

Applied in this order to every key of the state dict:

1. **wrappers** (``strip_prefixes``, default ``module.`` and ``_orig_mod.``): a
   wrapper prefix is removed when *every* key starts with it, the signature of a
   whole model saved inside ``DistributedDataParallel`` or ``torch.compile``.
   Repeated, so ``module._orig_mod.`` goes too. The same is done to the model's
   own keys, so a wrapped model loads an unwrapped checkpoint and vice versa.
2. **prefix** (``backbone.`` from a detector): only keys starting with it are
   kept, with the prefix removed. A missing final dot is added (as mmengine does).
3. **rename** (``"pattern=>replacement"`` strings): each regular expression is
   applied with :func:`re.sub` to every key, in list order, so later renames see
   the result of earlier ones. ``\\1`` / ``\\g<name>`` refer to groups.

>>> keymap = KeyMap(prefix="backbone", rename=parse_rename(["^stem\\\\.=>conv1."]))
>>> keymap.apply(["module.backbone.stem.weight", "module.head.fc.bias"], file="det.pth")
{'conv1.weight': 'module.backbone.stem.weight'}
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InitConfigError, did_you_mean

__all__ = [
    "RENAME_SEPARATOR",
    "WRAPPER_PREFIXES",
    "KeyMap",
    "normalize_prefix",
    "parse_rename",
    "strip_wrappers",
    "suggest_alignment",
]

RENAME_SEPARATOR = "=>"
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

Rename = tuple[re.Pattern[str], str]


def parse_rename(items: Sequence[str], key: str = "rename") -> tuple[Rename, ...]:
    """Compile ``"pattern=>replacement"`` strings, checking patterns and group references.

    >>> [(p.pattern, r) for p, r in parse_rename(["^encoder\\\\.(.*)=>backbone.\\\\1"])]
    [('^encoder\\\\.(.*)', 'backbone.\\\\1')]
    """
    out = []
    for i, item in enumerate(items):
        pattern, sep, replacement = item.partition(RENAME_SEPARATOR)
        if not sep or not pattern:
            raise InitConfigError(
                f"{key}[{i}]", f"rename entry {item!r} is not 'pattern=>replacement'",
                valid="strings 'regex=>replacement', e.g. '^encoder\\.=>backbone.'",
            )
        try:
            compiled = re.compile(pattern)
            compiled.sub(replacement, "")  # checks \1 / \g<name> references
        except re.error as exc:
            raise InitConfigError(
                f"{key}[{i}]", f"invalid rename {item!r}: {exc}",
                hint="escape literal dots as \\. and refer to groups as \\1 or \\g<name>",
            ) from None
        out.append((compiled, replacement))
    return tuple(out)


def normalize_prefix(prefix: str | None) -> str:
    """``None``/``""`` -> ``""``; ``backbone`` -> ``backbone.`` (mmengine adds the dot too)."""
    if not prefix:
        return ""
    return prefix if prefix.endswith(".") else prefix + "."


def strip_wrappers(keys: Iterable[str], prefixes: Sequence[str] = WRAPPER_PREFIXES) -> dict[str, str]:
    """``{stripped: original}``: remove a wrapper prefix that every key starts with.

    >>> strip_wrappers(["module._orig_mod.fc.weight", "module._orig_mod.fc.bias"])
    {'fc.weight': 'module._orig_mod.fc.weight', 'fc.bias': 'module._orig_mod.fc.bias'}
    >>> strip_wrappers(["module.weight", "head.weight"])  # a child named 'module': kept
    {'module.weight': 'module.weight', 'head.weight': 'head.weight'}
    """
    names = {k: k for k in keys}
    changed = True
    while changed and names:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in names):
                names = {k[len(prefix) :]: v for k, v in names.items()}
                changed = True
    return names


def _first_segments(keys: Iterable[str]) -> list[str]:
    counts = Counter(k.split(".", 1)[0] + "." for k in keys if "." in k)
    return [p for p, _ in counts.most_common()]


@dataclass(frozen=True)
class KeyMap:
    """How checkpoint keys become model keys (see the module docstring for the order)."""

    strip: tuple[str, ...] = WRAPPER_PREFIXES
    prefix: str | None = None
    rename: tuple[Rename, ...] = ()

    def apply(self, keys: Iterable[str], *, file: str = "checkpoint", key: str = "init") -> dict[str, str]:
        """``{model key: original checkpoint key}`` for the keys that survive the mapping.

        Raises :class:`InitConfigError` when ``prefix`` keeps nothing or two keys
        are renamed to the same name.
        """
        names = strip_wrappers(keys, self.strip)
        prefix = normalize_prefix(self.prefix)
        if prefix:
            kept = {k[len(prefix) :]: v for k, v in names.items() if k.startswith(prefix)}
            if not kept:
                found = _first_segments(names)
                raise InitConfigError(
                    f"{key}.prefix", f"no key of {file} starts with {prefix!r}",
                    valid="prefixes in this checkpoint: " + (", ".join(found[:12]) or "none (flat keys)"),
                    hint=did_you_mean(prefix, found) or "leave prefix unset to load the whole file",
                )
            names = kept
        for i, (pattern, replacement) in enumerate(self.rename):
            renamed: dict[str, str] = {}
            for name, original in names.items():
                new = pattern.sub(replacement, name)
                if new in renamed:
                    raise InitConfigError(
                        f"{key}.rename[{i}]",
                        f"{pattern.pattern!r} maps both {renamed[new]!r} and {original!r} of {file} "
                        f"to {new!r}",
                        hint="anchor the pattern (^...$) so it only rewrites the keys you mean",
                    )
                renamed[new] = original
            names = renamed
        return names


def suggest_alignment(ckpt_keys: Iterable[str], model_keys: Iterable[str]) -> str | None:
    """A hint when checkpoint and model keys differ by a leading module path, else ``None``.

    >>> suggest_alignment(["backbone.conv.weight", "head.fc.weight"], ["conv.weight"])
    "set prefix: 'backbone.' (1 of 1 model tensors would match)"
    >>> suggest_alignment(["conv.weight"], ["backbone.conv.weight", "head.weight"])
    "set name: 'backbone' to load into that module (1 of 2 model tensors would match)"
    """
    ckpt, model = set(ckpt_keys), set(model_keys)
    if not ckpt or not model:
        return None
    best: tuple[int, str] = (0, "")
    for prefix in _first_segments(ckpt)[:20]:
        hits = sum(1 for k in ckpt if k.startswith(prefix) and k[len(prefix) :] in model)
        if hits > best[0]:
            best = (hits, f"set prefix: {prefix!r} ({hits} of {len(model)} model tensors would match)")
    for prefix in _first_segments(model)[:20]:
        hits = sum(1 for k in model if k.startswith(prefix) and k[len(prefix) :] in ckpt)
        if hits > best[0]:
            best = (
                hits,
                f"set name: {prefix[:-1]!r} to load into that module "
                f"({hits} of {len(model)} model tensors would match)",
            )
    return best[1] or None
