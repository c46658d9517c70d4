"""Where checkpoints come from and how they are read: HTTP with hash checks, schemes, formats, security.

The HTTP tests serve files from a ``http.server`` thread bound to 127.0.0.1 and
point ``TORCH_HOME`` at a temporary directory, so the hub cache is fresh and
nothing leaves the machine. Every failure test also checks that the model is
bit-identical afterwards: errors are raised while planning, before any write.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import pickle
import sys
import threading
import types
from dataclasses import fields
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from helpers import assert_bit_identical, changed, snapshot
from torch import nn

import hydra_init
from hydra_init import InitConfigError, Pretrained
from hydra_init.pretrained import sources
from hydra_init.pretrained.sources import download_path


def small() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def load(model: nn.Module, checkpoint: str, **fields) -> hydra_init.InitReport:
    rule = {"type": "Pretrained", "checkpoint": checkpoint, **fields}
    return hydra_init.apply(model, {"rules": {"p": rule}}, log=False)


def refused(model: nn.Module, checkpoint: str, match: str, **fields) -> InitConfigError:
    """Loading fails with an InitConfigError matching ``match`` and leaves ``model`` bit-identical."""
    before = snapshot(model)
    with pytest.raises(InitConfigError, match=match) as err:
        load(model, checkpoint, **fields)
    assert_bit_identical(model, before)
    return err.value


@pytest.fixture
def source() -> nn.Module:
    model = small()
    with torch.no_grad():
        model[1].running_mean.fill_(0.25)
    return model


@pytest.fixture
def ckpt_file(tmp_path, source):
    path = tmp_path / "small.pth"
    torch.save(source.state_dict(), path)
    return path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- HTTP
@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh torch hub cache; proxies bypassed for the local server."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return tmp_path / "torch_home"


@pytest.fixture
def server(tmp_path, hub):
    """Serve ``tmp_path/www`` on 127.0.0.1 (a free port); records the requested paths."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format, *args) -> None:
            requests.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield types.SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}", requests=requests)
    httpd.shutdown()
    httpd.server_close()


def publish(server, source: nn.Module, name: str = "small.pth") -> str:
    torch.save(source.state_dict(), server.root / name)
    return f"{server.url}/{name}"


def test_http_checkpoint_is_downloaded_once_into_the_hub_cache(server, hub, source):
    url = publish(server, source)
    for _ in range(2):
        model = small()
        report = load(model, url)
        assert changed(model, snapshot(source)) == set()
    assert server.requests == ["/small.pth"]  # the second load used the cache
    cached = download_path(url)
    assert cached.is_file() and hub in cached.parents
    assert report.checkpoints[0]["file"] == str(cached) and report["0.weight"].detail == f"{url}:0.weight"


def test_http_sha256_match_loads_and_mismatch_is_refused_without_caching(server, source):
    url = publish(server, source)
    digest = sha256(server.root / "small.pth")
    model = small()
    load(model, url, sha256=digest[:10])
    assert changed(model, snapshot(source)) == set()

    other = publish(server, source, "other.pth")
    err = refused(small(), other, r"sha256 of the download from .*/other\.pth does not match", sha256="0" * 8)
    assert err.key == "init.rules.p.checkpoint"
    assert not download_path(other).exists()


def test_a_cached_file_that_changed_fails_its_sha256(server, source):
    url = publish(server, source)
    load(small(), url)
    download_path(url).write_bytes(b"tampered")
    digest = sha256(server.root / "small.pth")
    refused(small(), url, r"cached copy of .*delete it to download again", sha256=digest)


def test_http_errors_and_truncated_downloads_are_clear(server, source):
    refused(small(), f"{server.url}/missing.pth", r"cannot download .*/missing\.pth: HTTP Error 404")
    url = publish(server, source, "cut.pth")
    data = (server.root / "cut.pth").read_bytes()
    (server.root / "cut.pth").write_bytes(data[: len(data) // 2])
    refused(small(), url, r"cannot read .*cut\.pth.*downloaded from .*Hint: delete the cached copy")


def test_a_web_page_served_instead_of_the_file_names_the_url_and_the_cached_copy(server):
    (server.root / "model.pth").write_text("<!DOCTYPE html><html><head><title>Sign in</title></head></html>")
    url = f"{server.url}/model.pth"
    err = refused(small(), url, r"cannot read .*model\.pth: it is an HTML page, not a checkpoint "
                  r"\(it starts with '<!DOCTYPE html>.*downloaded from .*Hint: delete the cached copy")
    assert err.key == "init.rules.p.checkpoint"
    assert str(download_path(url)) in str(err) and ".../resolve/main/..." in str(err)


# ----------------------------------------------------------------------------- local paths, file://, sha256
def test_file_url_and_local_sha256(ckpt_file, source):
    model = small()
    load(model, ckpt_file.as_uri(), sha256=sha256(ckpt_file))
    assert changed(model, snapshot(source)) == set()
    expected = r"sha256 of .*small\.pth is [0-9a-f]{64}, expected 1234abcd"  # compared in lower case
    refused(small(), str(ckpt_file), expected, sha256="1234ABCD")


def test_missing_file_and_directory_name_the_path(tmp_path):
    err = refused(small(), str(tmp_path / "nope.pth"), r"checkpoint file not found: .*nope\.pth")
    assert err.key == "init.rules.p.checkpoint"
    refused(small(), str(tmp_path), r"is a directory")


# ----------------------------------------------------------------------------- scheme registry
@pytest.fixture
def schemes(monkeypatch):
    """A registry holding only the built-in torchvision://; a test's registrations are dropped afterwards."""
    monkeypatch.setattr(sources, "_SCHEMES", {"torchvision": sources._SCHEMES["torchvision"]})


def test_registered_schemes_resolve_to_paths_urls_or_other_schemes(schemes, server, ckpt_file, source):
    url = publish(server, source)
    hydra_init.register_checkpoint_scheme("zoo", {"local": str(ckpt_file), "remote": url}.__getitem__)
    hydra_init.register_checkpoint_scheme("alias", lambda name: f"zoo://{name}")
    for location in ("zoo://local", "zoo://remote", "alias://remote"):
        model = small()
        load(model, location)
        assert changed(model, snapshot(source)) == set()
    assert "zoo" in hydra_init.checkpoint_schemes()


def test_scheme_problems_are_config_errors(schemes):
    hydra_init.register_checkpoint_scheme("zoo", {"a": "/x.pth"}.__getitem__)
    hydra_init.register_checkpoint_scheme("loop", lambda name: f"loop://{name}")
    refused(small(), "zo://a", r"unknown checkpoint scheme 'zo://'.*did you mean 'zoo'")
    refused(small(), "zoo://b", r"zoo:// cannot resolve 'b': 'b'")
    refused(small(), "loop://x", r"resolution does not end: loop://x -> loop://x")
    with pytest.raises(ValueError, match="built in"):
        hydra_init.register_checkpoint_scheme("https", str)
    with pytest.raises(ValueError, match="already registered"):
        hydra_init.register_checkpoint_scheme("zoo", str)
    hydra_init.register_checkpoint_scheme("zoo", str, replace=True)


def test_torchvision_scheme(schemes, server, source, monkeypatch):
    """Through a stand-in for torchvision.models: the name picks DEFAULT, a suffix picks a variant."""
    default_url, v1_url = publish(server, source, "r-v2.pth"), publish(server, small(), "r-v1.pth")

    class Weights(enum.Enum):
        IMAGENET1K_V1 = v1_url
        IMAGENET1K_V2 = default_url
        DEFAULT = default_url  # an alias, as in torchvision

        @property
        def url(self) -> str:
            return self.value

    package, models = types.ModuleType("torchvision"), types.ModuleType("torchvision.models")
    models.get_model_weights = {"resnet18": Weights}.__getitem__
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    model = small()
    load(model, "torchvision://resnet18")
    assert changed(model, snapshot(source)) == set()
    load(model, "torchvision://resnet18.IMAGENET1K_V1")
    assert changed(model, snapshot(source)) != set()

    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.delitem(sys.modules, "torchvision.models")
    refused(small(), "torchvision://resnet18", r"torchvision is not installed")


# ----------------------------------------------------------------------------- security
class WritesMarker:
    """Unpickling this calls open(marker, 'w'), which creates the marker file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"0.weight": torch.zeros(3, 4), "exploit": WritesMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)
    err = refused(small(), str(path), r"(refused to load|cannot read) .*evil\.pth")
    assert not marker.exists()
    assert "'io.open'" in str(err) and "may be malicious" in str(err)  # builtins.open is io.open
    if writer == "torch.save":
        assert "weights_only=True" in str(err) and "runs whatever code" in str(err)
    else:
        assert "plain Python pickle (pickle.dump), not a torch.save file" in str(err)


def test_a_whole_pickled_model_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(small(), path)
    refused(small(), str(path), r"refused to load.*'torch\.nn\.modules\.container\.Sequential'.*state dict")


def test_no_config_field_re_enables_full_unpickling():
    names = {f.name for f in fields(Pretrained)}
    assert not {n for n in names if any(w in n for w in ("pickle", "weights_only", "trust", "unsafe"))}


# ----------------------------------------------------------------------------- unreadable or wrong contents
def _truncations(tmp_path, source):
    torch.save(source.state_dict(), tmp_path / "zip.pth")
    torch.save(source.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    zipped, legacy = (tmp_path / "zip.pth").read_bytes(), (tmp_path / "legacy.pth").read_bytes()
    return {"empty": b"", "10 bytes": zipped[:10], "zip half": zipped[: len(zipped) // 2],
            "zip tail cut": zipped[:-20], "legacy half": legacy[: len(legacy) // 2],
            "garbage": b"not a checkpoint"}


@pytest.mark.parametrize("case", ["empty", "10 bytes", "zip half", "zip tail cut", "legacy half", "garbage"])
def test_truncated_or_unreadable_torch_files(tmp_path, source, case):
    path = tmp_path / "broken.pth"
    path.write_bytes(_truncations(tmp_path, source)[case])
    err = refused(small(), str(path), r"(cannot read|refused to load) .*broken\.pth")
    assert err.key == "init.rules.p.checkpoint"


@pytest.mark.parametrize(("obj", "match"), [
    ([torch.zeros(2)], r"holds a list of 1 item \(Tensor\), not a state dict"),
    (torch.zeros(2), r"holds a single tensor of shape \(2,\), not a state dict"),
    ({}, r"holds a dict with no entries, so there are no tensors to load"),
    ({"0.weight": torch.zeros(3, 4), "step": 3}, r"entry 'step' holds an int, not a tensor"),
    ({"epoch": 1, "weights": {"0.weight": torch.zeros(3, 4)}}, r"set state_dict_key to .*: weights"),
])
def test_objects_that_are_not_state_dicts(tmp_path, obj, match):
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    refused(small(), str(path), r"odd\.pth.*" + match)


# ----------------------------------------------------------------------------- safetensors
def test_safetensors_round_trip_by_suffix_and_by_header(tmp_path, source):
    from safetensors.torch import save_file

    for name in ("small.safetensors", "pytorch_model.bin"):
        save_file(source.state_dict(), tmp_path / name)
        model = small()
        report = load(model, str(tmp_path / name))
        assert changed(model, snapshot(source)) == set()
        assert report.checkpoints[0]["format"] == "safetensors"


def test_truncated_safetensors_and_missing_package(tmp_path, source, monkeypatch):
    from safetensors.torch import save_file

    path = tmp_path / "small.safetensors"
    save_file(source.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    refused(small(), str(path), r"cannot read .*small\.safetensors: .*Hint: the file is truncated")
    path.write_bytes(data)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    refused(small(), str(path), r"safetensors package is not installed.*hydra-init\[safetensors\]")
