"""Generator: shapes, ranges, gradients, the pretrained-weights path, and the checkpoint file."""

import os
import re
import stat
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision import models as tvm

from colorize import models
from colorize.models import build_generator, load_generator, read_checkpoint_metadata, save_generator


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return build_generator("resnet18", size=64, pretrained=False)


def test_generator_shapes_range_and_gradients(generator):
    L = torch.rand(2, 1, 64, 64) * 2 - 1  # (B,1,H,W) L in [-1,1]
    ab = generator.train()(L)
    assert ab.shape == (2, 2, 64, 64)
    assert torch.isfinite(ab).all() and ab.abs().max() < 1  # bounded output, y_range (-1, 1)
    ab.abs().mean().backward()
    missing = [n for n, p in generator.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing, f"no gradient reaches {missing[:5]}"


def test_generator_runs_at_other_sizes(generator):
    with torch.no_grad():
        assert generator.eval()(torch.zeros(1, 1, 96, 128)).shape == (1, 2, 96, 128)


def test_unknown_arch_lists_choices():
    with pytest.raises(ValueError, match="resnet18, resnet34"):
        build_generator("vgg11", pretrained=False)


def test_pretrained_weights_really_arrive(tmp_path, monkeypatch):
    """Plant a state dict where torchvision caches ImageNet weights; the encoder must be built from it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried the network"))
    torch.manual_seed(123)
    planted = tvm.resnet18().state_dict()  # random, so it can't be mistaken for any default init
    cache = tmp_path / "hub" / "checkpoints" / Path(tvm.ResNet18_Weights.IMAGENET1K_V1.url).name
    cache.parent.mkdir(parents=True)
    torch.save(planted, cache)

    encoder = build_generator("resnet18", size=64, pretrained=True)[0]  # DynamicUnet[0] is the ResNet body
    # fastai's n_in=1 adaptation: the first conv's RGB filters summed into one channel
    assert torch.equal(encoder[0].weight, planted["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(encoder[1].weight, planted["bn1.weight"])
    assert torch.equal(encoder[7][1].conv2.weight, planted["layer4.1.conv2.weight"])
    assert torch.equal(encoder[4][0].bn1.running_var, planted["layer1.0.bn1.running_var"])


def test_checkpoint_round_trip_is_bitwise(generator, tmp_path):
    path = save_generator(generator, tmp_path / "g.safetensors", epoch=3)
    meta = read_checkpoint_metadata(path)
    assert (meta["arch"], meta["size"], meta["extra"]["epoch"]) == ("resnet18", 64, 3)
    assert "L/50" in meta["normalisation"] and meta["colorize_version"]
    loaded = load_generator(path)
    L = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(L), generator.eval()(L))
    # every tensor the loaded generator holds (built on the meta device) came from the checkpoint, none left empty
    original = {**dict(generator.named_parameters()), **dict(generator.named_buffers())}
    held = {**dict(loaded.named_parameters()), **dict(loaded.named_buffers())}
    assert held.keys() == original.keys() and all(torch.equal(t, original[k]) for k, t in held.items())
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left nothing behind


def test_checkpoint_file_mode_follows_the_umask(generator, tmp_path):
    old = os.umask(0o022)
    try:
        path = save_generator(generator, tmp_path / "g.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # others can read it, as any file the user writes


def test_loading_a_file_that_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"\x80\x04 not a safetensors file")
    with pytest.raises(ValueError, match="not a colorize generator checkpoint"):
        load_generator(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(ValueError, match="not a colorize generator checkpoint"):
        load_generator(other)
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "missing.safetensors")


def test_resnet34_is_the_second_choice():
    g = build_generator("resnet34", size=64, pretrained=False)
    assert sum(p.numel() for p in g[0].parameters()) > 20e6  # the ResNet-34 body, not ResNet-18's 11M


def test_a_checkpoint_in_the_first_format_still_loads(generator, tmp_path):
    """colorize-generator/1, written as the first release wrote it: no in_channels, arch and size in the metadata."""
    old = tmp_path / "old.safetensors"
    meta = {"format": "colorize-generator/1", "arch": "resnet18", "size": "64",
            "normalisation": '{"L": "L/50 - 1", "ab": "ab/110"}', "colorize_version": "0.1.0",
            "extra": '{"stage": "pretrain", "epoch": 2}'}
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(old), metadata=meta)
    loaded = load_generator(old)
    assert loaded.spec.in_channels == 1 and (loaded.spec.arch, loaded.spec.size) == ("resnet18", 64)
    L = torch.rand(1, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(L), generator.eval()(L))


def test_the_generator_carries_its_spec_into_the_checkpoint(tmp_path):
    g = build_generator("resnet18", size=32, pretrained=False)
    meta = read_checkpoint_metadata(save_generator(g, tmp_path / "g.safetensors"))
    assert (meta["format"], meta["arch"], meta["size"], meta["in_channels"]) == ("colorize-generator/2", "resnet18", 32, 1)


# ------------------------------------------------------------------------------- untrusted checkpoints

GOOD_META = {"format": "colorize-generator/2", "arch": "resnet18", "size": "64", "in_channels": "1",
             "normalisation": '{"L": "L/50 - 1", "ab": "ab/110"}', "colorize_version": "0.1.0", "extra": "{}"}


@pytest.fixture
def builds(monkeypatch):
    """Every `build_generator` call made while loading, with the default device it was made on."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(str(torch.get_default_device()))
        return build_generator(*args, **kwargs)

    monkeypatch.setattr(models, "build_generator", spy)
    monkeypatch.setattr(models, "load_file", lambda *a, **k: pytest.fail("read the tensors of a refused file"))
    return calls


@pytest.mark.parametrize("field, value, message", [
    ("arch", "resnet1000", "unknown architecture 'resnet1000'"),
    ("size", "1000000000", "size '1000000000' is not a whole number of pixels from 32 to 4096"),
    ("size", "16", "size '16'"),
    ("size", "256.5", "size '256.5'"),
    ("size", "-256", "size '-256'"),
    ("size", "", "size ''"),
    ("in_channels", "3", "in_channels '3' is not one of 1, 4"),
    ("extra", "[1, 2]", "'extra' field is not a JSON object"),
    ("extra", "{not json", "'extra' field is not a JSON object"),
])
def test_metadata_that_claims_the_impossible_is_refused_before_any_build(tmp_path, builds, field, value, message):
    path = tmp_path / "g.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={**GOOD_META, field: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        load_generator(path)
    with pytest.raises(ValueError, match="not a usable generator checkpoint"):
        read_checkpoint_metadata(path)
    assert builds == []


def test_a_header_claiming_a_huge_size_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "g.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")  # safetensors' header length field: 1 TiB
    with pytest.raises(ValueError, match="not a safetensors file.*header too large"):
        load_generator(path)


def tampered(state: dict, kind: str) -> dict:
    state = dict(state)
    first = next(iter(state))  # the encoder's first conv: layers.0.0.weight (64,1,7,7)
    if kind == "shape":
        state[first] = torch.zeros(64, 1, 3, 3)
    elif kind == "dtype":
        state[first] = state[first].half()
    elif kind == "missing":
        del state[first]
    elif kind == "unexpected":
        state["backdoor.weight"] = torch.zeros(4)
    return state


@pytest.mark.parametrize("kind, message", [
    ("shape", "layers.0.0.weight is F32 [64, 1, 3, 3], expected F32 [64, 1, 7, 7]"),
    ("dtype", "layers.0.0.weight is F16 [64, 1, 7, 7], expected F32"),
    ("missing", "1 missing (e.g. layers.0.0.weight)"),
    ("unexpected", "1 unexpected (e.g. backdoor.weight)"),
])
def test_tensors_that_do_not_match_the_architecture_are_refused(generator, tmp_path, builds, kind, message):
    path = tmp_path / "g.safetensors"
    save_file(tampered(generator.state_dict(), kind), str(path), metadata=GOOD_META)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_generator(path)
    assert builds == ["meta"]  # the expected network was built for its shapes only, never for real


def test_a_resnet18_file_that_claims_to_be_resnet34_is_refused(generator, tmp_path, builds):
    path = tmp_path / "g.safetensors"
    save_file(generator.state_dict(), str(path), metadata={**GOOD_META, "arch": "resnet34"})
    with pytest.raises(ValueError, match="does not hold the resnet34 generator its metadata describes.*missing"):
        load_generator(path)
    assert builds == ["meta"]


def test_a_hint_generator_with_four_input_channels_loads(tmp_path):
    torch.manual_seed(0)
    hinted = build_generator("resnet18", size=32, pretrained=False, in_channels=4).eval()
    loaded = load_generator(save_generator(hinted, tmp_path / "g.safetensors"))
    x = torch.rand(1, 4, 32, 32) * 2 - 1  # (B,4,H,W): L and a hint map
    with torch.no_grad():
        assert torch.equal(loaded(x), hinted(x))
    assert loaded.spec.in_channels == 4


def test_takes_hints_is_read_from_the_spec_and_survives_the_checkpoint(tmp_path):
    from colorize.models import GeneratorSpec, checkpoint_spec

    assert not GeneratorSpec(in_channels=1).takes_hints and GeneratorSpec(in_channels=4).takes_hints
    path = save_generator(build_generator("resnet18", size=32, pretrained=False, in_channels=4), tmp_path / "h.safetensors")
    assert checkpoint_spec(path).takes_hints and load_generator(path).spec.takes_hints


def test_model_name_is_the_run_folder_and_stem():
    from colorize.models import model_name

    assert model_name("runs/places365-l1/best.safetensors") == "places365-l1/best"


def test_inference_device_is_the_one_asked_for_else_a_gpu_if_there_is_one(monkeypatch):
    """Asked for: that device; else the GPU where torch sees one, else Apple's MPS, else the CPU (faked both ways)."""
    import fastai.torch_core

    from colorize.device import inference_device

    assert inference_device("cpu") == torch.device("cpu") and inference_device(torch.device("cpu")).type == "cpu"
    assert inference_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(fastai.torch_core.defaults, "use_cuda", None)  # fastai's own default: use a GPU if any
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert inference_device() == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(fastai.torch_core, "_has_mps", lambda: True)
    assert inference_device() == torch.device("mps", 0)
    monkeypatch.setattr(fastai.torch_core, "_has_mps", lambda: False)
    assert inference_device() == torch.device("cpu")
