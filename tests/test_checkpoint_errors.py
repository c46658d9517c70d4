"""Every kind of bad checkpoint file gets one InitConfigError that says what the file is.

One test per kind of file people point ``checkpoint`` at by mistake: each
asserts the config key, the phrase that tells this kind from the others, the
file's path in the message, and a bit-identical model (the refusal comes from
the plan, before any write).
"""

from __future__ import annotations

import collections
import pickle
import zipfile

import numpy as np
import pytest
import torch
from helpers import assert_bit_identical, changed, snapshot
from torch import nn

import hydra_init
from hydra_init import InitConfigError

KEY = "init.rules.p.checkpoint"


class StateOD(collections.OrderedDict):
    """A dict subclass a weights-only load does not know: saving one pickles its class."""


class Meta:
    """Training metadata pickled as an object (its class is a global a weights-only load refuses)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch


def small() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def load(model: nn.Module, checkpoint, **fields) -> hydra_init.InitReport:
    rule = {"type": "Pretrained", "checkpoint": str(checkpoint), **fields}
    return hydra_init.apply(model, {"rules": {"p": rule}}, log=False)


def refused(checkpoint, *phrases: str, key: str = KEY, **fields) -> str:
    """Loading ``checkpoint`` fails at ``key`` naming the file and every phrase; the model is unchanged."""
    model = small()
    before = snapshot(model)
    with pytest.raises(InitConfigError) as err:
        load(model, checkpoint, **fields)
    assert_bit_identical(model, before)
    message = str(err.value)
    assert err.value.key == key, message
    assert str(checkpoint) in message, message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    assert "which a weights-only load does not allow" not in message  # the old sentence that named nothing
    return message


@pytest.fixture
def weights():
    return small().state_dict()


# ----------------------------------------------------------------------------- text files
@pytest.mark.parametrize(("content", "phrase"), [
    ('{"architectures": ["BertModel"], "hidden_size": 768}', "is a JSON file, not a checkpoint"),
    ("# My model\n\nDownload the weights from the release page.\n", "is a text file, not a checkpoint"),
    ("model:\n  depth: 18\n", "is a text file, not a checkpoint"),
    ("<!DOCTYPE html>\n<html><body>404 Not Found</body></html>", "is an HTML page, not a checkpoint"),
    ('<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "is an XML document, not a checkpoint"),
])
def test_a_text_file_is_named_as_text_with_its_first_line(tmp_path, content, phrase):
    path = tmp_path / "model.pth"
    path.write_text(content)
    first_line = content.strip().splitlines()[0]
    refused(path, phrase, f"it starts with {repr(first_line)[:40]}")


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors"])
def test_a_git_lfs_pointer_says_run_git_lfs_pull(tmp_path, name):
    path = tmp_path / name
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:4d7a2143a5c5f3f4d0b2c8e1e0d7f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4\n"
                    "size 440473133\n")
    message = refused(path, "is a Git LFS pointer, not the checkpoint", "440473133-byte object",
                      "Hint: run git lfs pull")
    assert ("despite its .safetensors name" in message) == name.endswith(".safetensors")


def test_an_empty_file(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"")
    refused(path, "is an empty file (0 bytes)", "did not finish")


def test_a_file_that_cannot_be_opened(tmp_path, weights, monkeypatch):
    from hydra_init.pretrained import sniff

    path = tmp_path / "model.pth"
    torch.save(weights, path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sniff, "open", denied, raising=False)  # root reads anything: chmod cannot show it
    refused(path, "cannot read", "Permission denied", "readable by this process")


def test_unknown_binary_lists_the_checkpoints_next_to_it(tmp_path, weights):
    torch.save(weights, tmp_path / "best.pth")
    path = tmp_path / "model.pth"
    path.write_bytes(b"\x00\x01\x02\x03\xff\xfe\xfd binary")
    refused(path, "is a binary file of unknown format", "00 01 02 03",
            "checkpoint files next to it: best.pth")


# ----------------------------------------------------------------------------- damaged checkpoints
def test_a_zip_checkpoint_cut_short(tmp_path, weights):
    path = tmp_path / "model.pth"
    torch.save(weights, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(path, "is a PyTorch checkpoint (zip format) that is cut short", "zip directory", "truncated")


def test_a_zip_checkpoint_whose_pickle_is_corrupt_gives_torchs_reason(tmp_path, weights):
    source = tmp_path / "good.pth"
    torch.save(weights, source)
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(source) as good, zipfile.ZipFile(path, "w") as bad:
        for item in good.infolist():
            data = good.read(item)
            bad.writestr(item, b"\x80\x02" + b"\xff" * 8 if item.filename.endswith("data.pkl") else data)
    refused(path, "is a PyTorch checkpoint (zip format)", "the loader says:", "truncated or corrupted")


def test_a_legacy_checkpoint_cut_short(tmp_path, weights):
    path = tmp_path / "model.pth"
    torch.save(weights, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(path, "is a PyTorch checkpoint (legacy format); the loader says:", "truncated or corrupted")


def test_a_zip_archive_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/readme.txt", "see the release page")
    refused(path, "is a zip archive that is not a PyTorch checkpoint", "weights/readme.txt", "no data.pkl")


@pytest.fixture
def safetensors_bytes(weights) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in weights.items()})


def _header(length: int, body: bytes) -> bytes:
    return length.to_bytes(8, "little") + body


@pytest.mark.parametrize("case", ["header longer than file", "header not JSON", "data cut short"])
def test_a_safetensors_file_with_a_bad_header(tmp_path, safetensors_bytes, case):
    path = tmp_path / "model.safetensors"
    length = int.from_bytes(safetensors_bytes[:8], "little")
    if case == "header longer than file":
        path.write_bytes(_header(10_000, b'{"a": 1}'))
        phrase = "is a safetensors file that is cut short (its header says 10000 bytes of header"
    elif case == "header not JSON":
        path.write_bytes(_header(12, b"{not json!!}") + b"\x00" * 16)
        phrase = "is a safetensors file with a corrupt header (its header is not valid JSON)"
    else:
        path.write_bytes(safetensors_bytes[: 8 + length + 4])
        phrase = "is a safetensors file that is cut short (its header describes"
    refused(path, phrase, "truncated or corrupted")


# ----------------------------------------------------------------------------- other formats
def test_numpy_npy_and_npz(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((3, 4), dtype=np.float32))
    refused(tmp_path / "w.npy", "is a numpy .npy array, not a PyTorch checkpoint", "torch.from_numpy")
    np.savez(tmp_path / "w.npz", weight=np.ones((3, 4)))
    refused(tmp_path / "w.npz", "is a numpy .npz archive, not a PyTorch checkpoint", "weight.npy",
            "torch.from_numpy")


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_torchscript_archive(tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(nn.Linear(4, 3)), path)
    refused(path, "is a TorchScript archive (torch.jit.save), not a state dict", "torch.jit.load(f)")


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_plain_pickle_is_told_from_a_torch_save_file(tmp_path, protocol):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"0.weight": [[0.0] * 4] * 3}, protocol=protocol))
    refused(path, "Python pickle (pickle.dump), not a torch.save file", "re-save the weights with torch.save")


# ----------------------------------------------------------------------------- pickled objects (globals)
def test_a_pickled_class_is_named_with_the_add_safe_globals_fix(tmp_path, weights):
    path = tmp_path / "model.pth"
    torch.save({"state_dict": weights, "meta": Meta(epoch=3)}, path)
    name = f"{Meta.__module__}.{Meta.__qualname__}"
    refused(path, f"refused to load {path}", "a pickled Python object that is not a tensor container",
            f"would import {name!r}", "save model.state_dict() instead",
            f"torch.serialization.add_safe_globals([{name}])")
    model = small()
    with torch.serialization.safe_globals([Meta]):  # the suggested fix works: the file then loads
        load(model, path)
    assert changed(model, dict(weights)) == set()


def test_a_dict_subclass_is_named_and_still_refused_once_allowed(tmp_path, weights):
    path = tmp_path / "model.pth"
    torch.save(StateOD(weights), path)
    name = f"{StateOD.__module__}.{StateOD.__qualname__}"
    refused(path, f"would import {name!r}", f"add_safe_globals([{name}])")
    with torch.serialization.safe_globals([StateOD]):  # a weights-only load still builds only plain dicts
        refused(path, f"it holds a pickled {name!r} that a weights-only load cannot build",
                "torch.save(dict(obj), f)")


def test_numpy_in_a_checkpoints_meta_is_named(tmp_path, weights):
    path = tmp_path / "epoch_12.pth"
    torch.save({"state_dict": weights, "meta": {"best": np.float64(0.75), "hist": np.zeros(3)}}, path)
    refused(path, "would import 'numpy.", "numpy data", "add_safe_globals([numpy.")


def test_a_whole_pickled_model(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(small(), path)
    refused(path, "would import 'torch.nn.modules.container.Sequential'", "a whole pickled model",
            "weights_only=False) and save model.state_dict() instead")


# ----------------------------------------------------------------------------- where the file is
def test_a_directory_lists_the_checkpoints_inside(tmp_path, weights):
    torch.save(weights, tmp_path / "model.pth")
    (tmp_path / "config.json").write_text("{}")
    refused(tmp_path, "is a directory, not a file", "Valid: checkpoint files in it: model.pth",
            f"e.g. {tmp_path / 'model.pth'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(empty, "is a directory, not a file", "this directory holds none")


def test_a_missing_file_suggests_the_closest_sibling(tmp_path, weights):
    torch.save(weights, tmp_path / "resnet18.pth")
    refused(tmp_path / "resnet81.pth", "checkpoint file not found", "did you mean 'resnet18.pth'",
            f"checkpoint files in {tmp_path}: resnet18.pth")
    refused(tmp_path / "gone" / "resnet18.pth", "its folder", "does not exist",
            f"the nearest existing folder is {tmp_path}")


def test_a_relative_missing_path_names_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused("weights/model.pth", f"read relative to the current directory {tmp_path}")


# ----------------------------------------------------------------------------- loads, but holds no state dict
@pytest.mark.parametrize(("obj", "phrases"), [
    ([torch.zeros(3, 4), torch.zeros(3)], ["holds a list of 2 items (Tensor), not a state dict",
                                            "save a dict that names each tensor"]),
    (torch.zeros(3, 4), ["holds a single tensor of shape (3, 4), not a state dict"]),
    ({"config": {"depth": 18}, "epoch": 3},
     ["holds no tensor at all: it is a dict with entries config, epoch", "this is not a weights file"]),
    ({"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
     ["is an optimizer state dict (optimizer.state_dict()", "not model weights"]),
])
def test_contents_that_are_not_a_state_dict(tmp_path, obj, phrases):
    path = tmp_path / "model.pth"
    torch.save(obj, path)
    refused(path, *phrases)


def test_weights_nested_deeper_are_offered_as_state_dict_key(tmp_path, weights):
    path = tmp_path / "model.pth"
    torch.save({"epoch": 3, "ema": {"model": weights}}, path)
    refused(path, "has no state dict where hydra_init looks (the top level, then state_dict/model/"
            "model_state_dict): it is a dict with entries epoch, ema",
            "set state_dict_key to the entry holding the weights: ema.model")
    model = small()
    load(model, path, state_dict_key="ema.model")
    assert changed(model, dict(weights)) == set()


def test_a_lightning_checkpoint_is_found_by_its_state_dict_entry(tmp_path, weights):
    path = tmp_path / "epoch=3-step=400.ckpt"
    torch.save({"epoch": 3, "global_step": 400, "pytorch-lightning_version": "2.4.0",
                "state_dict": weights, "optimizer_states": [{"state": {}, "param_groups": []}],
                "lr_schedulers": [], "callbacks": {}, "hyper_parameters": {"lr": 0.1}}, path)
    model = small()
    report = load(model, path)
    assert report.checkpoints[0]["entry"] == "state_dict"
    assert changed(model, dict(weights)) == set()
