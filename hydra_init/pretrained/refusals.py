"""The errors for a checkpoint file that cannot be read: what the file is, and what to do.

Each builder returns one :class:`~hydra_init.InitConfigError` at the rule's
``checkpoint`` key. The message names the file, says what it actually is (from
:func:`~hydra_init.pretrained.sniff.sniff`), adds torch's or safetensors' reason
when a load was tried, and gives the fix for that kind of file.

>>> from hydra_init.pretrained.sniff import FileKind
>>> print(unreadable(Path("m.pth"), FileKind("empty", "an empty file (0 bytes)"), "init.rules.p.checkpoint"))
init.rules.p.checkpoint: cannot read m.pth: it is an empty file (0 bytes). Valid: a PyTorch \
checkpoint written by torch.save (a state dict of tensors) or a .safetensors file. Hint: the download \
or copy did not finish; fetch or save the file again
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InitConfigError
from .sniff import CHECKPOINT_SUFFIXES, FileKind, pickle_globals

__all__ = ["VALID_FILE", "checkpoint_files", "load_reason", "pickled_global", "unreadable"]

VALID_FILE = "a PyTorch checkpoint written by torch.save (a state dict of tensors) or a .safetensors file"

_RESAVE = "download or save it again, and compare its size or sha256 with the original"
_HINTS = {
    "empty": "the download or copy did not finish; fetch or save the file again",
    "lfs": "run git lfs pull in the repository that holds it (after git lfs install) to fetch the real file",
    "html": "a download returned a web page (an error, login or preview page) instead of the file: use the "
    "direct download link (on the Hugging Face Hub .../resolve/main/..., not .../blob/main/...) and check "
    "access tokens",
    "xml": "a download returned an error document (often a storage bucket's AccessDenied or NoSuchKey) "
    "instead of the file: check the URL and its credentials",
    "npy": "convert it: torch.save({'name': torch.from_numpy(numpy.load(f))}, 'model.pth')",
    "npz": "convert it: torch.save({k: torch.from_numpy(v) for k, v in numpy.load(f).items()}, 'model.pth')",
    "torchscript": "load it where you trust it with torch.jit.load(f) and torch.save(model.state_dict(), f)",
    "pickle": "torch.load(weights_only=True) reads only torch.save files: unpickle it where you trust it "
    "and re-save the weights with torch.save(state_dict, f) or as .safetensors",
    "torch-zip": f"the file is truncated or corrupted: {_RESAVE}",
    "torch-legacy": f"the file is truncated or corrupted: {_RESAVE}",
    "safetensors": f"the file is truncated or corrupted: {_RESAVE}",
}
_POINT = "point checkpoint at the weights file"

# Modules whose functions run code or touch the system: a file asking for them is hostile or broken.
_DANGEROUS_MODULES = {"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "runpy", "importlib",
                      "pty", "webbrowser", "io", "pathlib", "codecs", "pickle", "marshal", "ctypes"}
_DANGEROUS_BUILTINS = {"eval", "exec", "compile", "open", "getattr", "setattr", "__import__", "input",
                       "breakpoint", "globals", "vars"}
_DANGER = "a function that runs code or touches the system"
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_BUILT = re.compile(r"but got <class '([\w.]+)'>")
_WHY = ("hydra_init reads checkpoints with torch.load(weights_only=True), which unpickles only tensors and "
        "plain containers, because full unpickling runs whatever code the file names")
_ENFORCE = re.compile(r"^\[enforce fail at [^\]]*\]\s*\.?\s*")


def checkpoint_files(folder: Path, limit: int = 8) -> list[str]:
    """Names of the checkpoint-like files in ``folder`` (by suffix), sorted; ``[]`` if unreadable."""
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    except OSError:
        return []
    return names[:limit]


def _siblings(path: Path) -> str:
    others = [n for n in checkpoint_files(path.parent) if n != path.name]
    return f"; checkpoint files next to it: {', '.join(others)}" if others else ""


def load_reason(exc: BaseException) -> str:
    """The line of torch's or safetensors' error that says what went wrong, without boilerplate."""
    text = str(exc).replace("\x1b[1m", "").replace("\x1b[0m", "").strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _ENFORCE.sub("", line)
    line = line.split(". This is an internal miniz error")[0].rstrip(".")
    operand = re.fullmatch(r"Unsupported operand (\d+)", line)
    if operand:
        return f"the weights-only unpickler cannot read pickle opcode {int(operand.group(1))}"
    if not line:
        return "the file ends too early (EOFError)" if isinstance(exc, EOFError) else type(exc).__name__
    return line


def unreadable(path: Path, found: FileKind, key: str, reason: str | None = None) -> InitConfigError:
    """``path`` is not a checkpoint hydra_init can read; ``reason`` is the loader's, if one was tried."""
    detail = f" ({found.detail})" if found.detail else ""
    misnamed = path.suffix == ".safetensors" and found.kind != "safetensors"
    named = " despite its .safetensors name" if misnamed else ""
    said = f"; the loader says: {reason}" if reason and found.kind != "pickle" else ""
    hint = _HINTS.get(found.kind) if found.complete else f"the file is truncated or corrupted: {_RESAVE}"
    hint = hint or _POINT + _siblings(path)
    imports = pickle_globals(path) if found.kind == "pickle" else []
    if imports:
        what, fix = _origin(imports[0])
        shown = ", ".join(repr(n) for n in imports[:4]) + (" ..." if len(imports) > 4 else "")
        said += f"; unpickling it would import {shown}, the first being {what}"
        hint = fix if what.startswith(_DANGER) else hint
    return InitConfigError(key, f"cannot read {path}: it is {found.description}{named}{detail}{said}",
                           valid=VALID_FILE, hint=hint)


def _origin(name: str) -> tuple[str, str]:
    """What the global ``name`` is, and the fix for a file that needs it."""
    module, _, attr = name.rpartition(".")
    root = module.split(".")[0]
    resave = "save model.state_dict() instead of the object"
    allow = (f"or, if you trust the file and {name!r} is a plain data type, allow exactly it before "
             f"loading with torch.serialization.add_safe_globals([{name}]) (the file may then ask for "
             "further globals, one at a time)")
    if root in _DANGEROUS_MODULES or (root == "builtins" and attr in _DANGEROUS_BUILTINS):
        return (_DANGER + ", so the file may be malicious",
                "do not load this file; if you made it, save model.state_dict() instead")
    if module.startswith("torch.nn.") and "modules" in module:
        return ("a whole pickled model (torch.save(model))",
                "load it where you trust it with torch.load(f, weights_only=False) and save "
                "model.state_dict() instead")
    if root == "numpy":
        return ("numpy data (often a numpy array or scalar in a 'meta' or training-state entry)",
                f"{resave} (only the weights), {allow}")
    if module == "__main__":
        return ("a class defined in the script that saved the file", f"{resave}, {allow}")
    return (f"a class or function of the module {module}", f"{resave}, {allow}")


def pickled_global(path: Path, exc: BaseException, key: str) -> InitConfigError | None:
    """The refusal for a weights-only load that stopped at a global or an object it cannot build.

    ``None`` when torch's error names neither (the file is then damaged or not a pickle).
    """
    message = str(exc)
    found = _GLOBAL.search(message)
    if found is not None:
        name = found.group(1)
        what, hint = _origin(name)
        return InitConfigError(
            key,
            f"refused to load {path}: it holds a pickled Python object that is not a tensor container, "
            f"and unpickling it would import {name!r}, {what}. {_WHY}",
            valid=VALID_FILE, hint=hint,
        )
    built = _BUILT.search(message)
    if built is None:
        return None
    name = built.group(1)
    return InitConfigError(
        key,
        f"refused to load {path}: it holds a pickled {name!r} that a weights-only load cannot build, even "
        f"when the class is allowed ({load_reason(exc)}). {_WHY}",
        valid=VALID_FILE,
        hint=f"re-save it with plain containers: if {name!r} subclasses dict or list, "
        "torch.save(dict(obj), f); else save model.state_dict() instead",
    )
