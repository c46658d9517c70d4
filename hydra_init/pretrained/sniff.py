"""What a checkpoint file actually is, from its first bytes, so a refusal can say so.

:func:`sniff` tells apart the files people point ``checkpoint`` at by mistake
(a Git LFS pointer, an HTML error page, a JSON config, an empty download, a
numpy array) from real checkpoints (PyTorch zip or legacy format, a plain
pickle, safetensors), and for the real ones whether they look complete.
It reads at most a few KiB and never unpickles anything.

>>> import tempfile, os
>>> path = Path(tempfile.mkdtemp()) / "model.pth"
>>> _ = path.write_text("version https://git-lfs.github.com/spec/v1\\noid sha256:ab\\nsize 9\\n")
>>> found = sniff(path)
>>> found.kind, found.description
('lfs', 'a Git LFS pointer, not the checkpoint')
"""

from __future__ import annotations

import json
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHECKPOINT_SUFFIXES", "FileKind", "pickle_globals", "sniff"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pkl", ".tar")
"""File name endings of checkpoints, used to list candidates next to a wrong path."""

_HEAD = 4096
_ZIP = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
_NPY = b"\x93NUMPY"
_LFS = "version https://git-lfs.github.com/spec/"
# torch.save's legacy format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


@dataclass(frozen=True)
class FileKind:
    """What a file is.

    Attributes:
        kind: one of ``empty``, ``lfs``, ``html``, ``json``, ``xml``, ``text``,
            ``npy``, ``npz``, ``zip`` (some other zip archive), ``torchscript``, ``torch-zip``,
            ``torch-legacy``, ``pickle``, ``safetensors``, ``binary`` (unknown).
        description: a noun phrase for messages (``a Git LFS pointer, not the checkpoint``).
        detail: what in the file shows it (its first line, its entries, a broken header), or ``""``.
        complete: false when the bytes already show the file is cut short or corrupt.
    """

    kind: str
    description: str
    detail: str = ""
    complete: bool = True

    @property
    def is_text(self) -> bool:
        """A text file: never a checkpoint."""
        return self.kind in ("lfs", "html", "json", "xml", "text")


def _text(head: bytes) -> str | None:
    """``head`` decoded as UTF-8 text (a multi-byte character cut at the end allowed), or ``None``."""
    if b"\x00" in head:
        return None
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
        return text if printable >= 0.95 * max(len(text), 1) else None
    return None


def _quote_start(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return repr(line[:60] + ("..." if len(line) > 60 else ""))


def _text_kind(text: str) -> FileKind:
    start = _quote_start(text)
    if text[:1] in "(}]c" and "p0\n" in text:
        return FileKind("pickle", "a protocol-0 Python pickle (pickle.dump), not a torch.save file",
                        f"it starts with {start}")
    stripped = text.lstrip("\ufeff \t\r\n")
    lowered = stripped[:200].lower()
    if stripped.startswith(_LFS):
        size = next((ln.split()[1] for ln in stripped.splitlines() if ln.startswith("size ")), "?")
        return FileKind("lfs", "a Git LFS pointer, not the checkpoint",
                        f"a {len(text.encode())}-byte text file for a {size}-byte object, starting {start}")
    if lowered.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in lowered:
        return FileKind("html", "an HTML page, not a checkpoint", f"it starts with {start}")
    if lowered.startswith("<?xml") or lowered.startswith("<error"):
        return FileKind("xml", "an XML document, not a checkpoint", f"it starts with {start}")
    if stripped[:1] in ("{", "["):
        return FileKind("json", "a JSON file, not a checkpoint", f"it starts with {start}")
    return FileKind("text", "a text file, not a checkpoint", f"it starts with {start}")


def _zip_kind(path: Path, head: bytes) -> FileKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        names = []
        complete = False
    else:
        complete = True
    if not names:  # read the first entry's name from its local header
        size = int.from_bytes(head[26:28], "little")
        first = head[30 : 30 + size].decode("utf-8", "replace") if len(head) >= 30 + size else ""
        names = [first] if first else []
    shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
    if complete and any(n.endswith("constants.pkl") for n in names):
        return FileKind("torchscript", "a TorchScript archive (torch.jit.save), not a state dict",
                        f"it holds {shown}")
    if any(n.endswith("data.pkl") for n in names):
        if complete:
            return FileKind("torch-zip", "a PyTorch checkpoint (zip format)", f"it holds {shown}")
        return FileKind("torch-zip", "a PyTorch checkpoint (zip format) that is cut short",
                        "its zip directory, written at the end of the file, is missing", complete=False)
    if names and all(n.endswith(".npy") for n in names):
        return FileKind("npz", "a numpy .npz archive, not a PyTorch checkpoint", f"it holds {shown}")
    if not complete:
        return FileKind("zip", "a zip archive that is cut short or corrupt",
                        "its zip directory, written at the end of the file, is missing", complete=False)
    return FileKind("zip", "a zip archive that is not a PyTorch checkpoint",
                    f"it holds {shown or 'nothing'} and no data.pkl")


def _safetensors_kind(head: bytes, size: int) -> FileKind | None:
    """A safetensors file (the u64 header length then ``{``), and whether its header is sound."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    length = int.from_bytes(head[:8], "little")
    if length < 2 or length > 100_000_000:
        return None
    name = "a safetensors file"
    if length > size - 8:
        return FileKind("safetensors", f"{name} that is cut short",
                        f"its header says {length} bytes of header but the file has {size} bytes in all",
                        complete=False)
    if 8 + length > len(head):
        return FileKind("safetensors", name)  # header longer than sniffed: let the reader judge it
    try:
        header = json.loads(head[8 : 8 + length].decode("utf-8"))
    except ValueError:
        return FileKind("safetensors", f"{name} with a corrupt header", "its header is not valid JSON",
                        complete=False)
    if not isinstance(header, dict):
        return FileKind("safetensors", f"{name} with a corrupt header", "its header is not a JSON object",
                        complete=False)
    ends = [e["data_offsets"][1] for k, e in header.items() if k != "__metadata__" and isinstance(e, dict)
            and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2]
    if ends and 8 + length + max(ends) > size:
        return FileKind("safetensors", f"{name} that is cut short",
                        f"its header describes {8 + length + max(ends)} bytes but the file has {size}",
                        complete=False)
    return FileKind("safetensors", name)


_TORCH_OWN = ("torch.", "collections.OrderedDict", "_codecs.encode")
"""Globals every pickled tensor names; the others are what a refusal points at."""


def pickle_globals(path: Path, limit: int = 100_000) -> list[str]:
    """The globals (``module.name``) a plain pickle would import, torch's own left out; runs nothing.

    Reads the opcodes with :mod:`pickletools` (the first ``limit`` of them) and
    stops quietly at a corrupt or cut one.

    >>> import pickle, tempfile, collections
    >>> path = Path(tempfile.mkdtemp()) / "c.pkl"
    >>> _ = path.write_bytes(pickle.dumps({"c": collections.Counter("ab")}))
    >>> pickle_globals(path)
    ['collections.Counter']
    """
    names: list[str] = []
    strings: list[str | None] = []
    memo: dict[int, str | None] = {}
    try:
        with open(path, "rb") as handle:
            for count, (op, arg, _) in enumerate(pickletools.genops(handle)):
                if count >= limit:
                    break
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", ".", 1))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2 and None not in strings[-2:]:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = strings[-1] if strings else None
                elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)] = strings[-1] if strings else None
                elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                    strings.append(memo.get(int(arg)))
                else:
                    strings.append(arg if isinstance(arg, str) and "UNICODE" in op.name else None)
                del strings[:-2]
    except (ValueError, EOFError, OSError):
        pass  # a cut or corrupt pickle: what was read so far
    return list(dict.fromkeys(n for n in names if not n.startswith(_TORCH_OWN)))


def _pickle_kind(head: bytes) -> FileKind | None:
    if head[:1] != b"\x80" or len(head) < 2 or not 2 <= head[1] <= 5:
        return None
    if head[2:14] == _LEGACY_MAGIC:
        return FileKind("torch-legacy", "a PyTorch checkpoint (legacy format)")
    return FileKind("pickle", "a plain Python pickle (pickle.dump), not a torch.save file",
                    f"pickle protocol {head[1]} without torch's magic number")


def sniff(path: Path) -> FileKind:
    """Classify ``path`` by its first bytes (and, for zip archives, its entry names).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "error.bin"
    >>> _ = path.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    >>> sniff(path).description
    'an HTML page, not a checkpoint'
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(_HEAD)
    if not head:
        return FileKind("empty", "an empty file (0 bytes)")
    if head.startswith(_ZIP):
        return _zip_kind(path, head)
    if head.startswith(_EMPTY_ZIP):
        return FileKind("zip", "an empty zip archive, not a PyTorch checkpoint")
    if head.startswith(_NPY):
        return FileKind("npy", "a numpy .npy array, not a PyTorch checkpoint")
    found = _safetensors_kind(head, size) or _pickle_kind(head)
    if found is not None:
        return found
    text = _text(head)
    if text is not None:
        return _text_kind(text)
    return FileKind("binary", "a binary file of unknown format",
                    f"it starts with the bytes {head[:8].hex(' ')}")
