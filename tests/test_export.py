"""ONNX export: the graph runs in onnxruntime at any batch and spatial size and matches PyTorch on real photos."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from skimage import data

from colorize.export import export_onnx
from colorize.lab import rgb_to_lightness
from colorize.models import load_generator

SIZE = 64  # the tiny generator's training size


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_checkpoint):
    """A tiny random generator checkpoint: its reloaded PyTorch model and an onnxruntime session of its export."""
    tmp = tmp_path_factory.mktemp("export")
    ckpt = tiny_checkpoint(tmp / "run" / "best.safetensors", size=SIZE, epoch=3)
    path = export_onnx(ckpt, tmp / "out" / "generator.onnx")
    return load_generator(ckpt), path, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def photo_lightness(names: list[str], size: tuple[int, int]) -> torch.Tensor:
    """Real photos resized to (W,H) -> L (B,1,H,W) in [-1,1], the network's input."""
    photos = [np.asarray(Image.fromarray(getattr(data, n)()).convert("RGB").resize(size)) for n in names]
    rgb = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255  # (B,3,H,W)
    return rgb_to_lightness(rgb)


@pytest.mark.parametrize("names, size", [
    (["astronaut", "coffee", "chelsea"], (64, 64)),  # batch 3 at the training size
    (["rocket", "coffee"], (96, 128)),  # batch 2, another size, not square
    (["chelsea"], (50, 37)),  # batch 1, odd sizes that are not multiples of the encoder's stride
])
def test_onnxruntime_matches_pytorch_on_real_photos(exported, names, size):
    model, _, session = exported
    L = photo_lightness(names, size)
    with torch.no_grad():
        expected = model(L).numpy()  # (B,2,H,W)
    (ab,) = session.run(["ab"], {"L": L.numpy()})
    assert ab.shape == (len(names), 2, size[1], size[0])
    np.testing.assert_allclose(ab, expected, atol=1e-3)
    assert np.abs(expected).mean() > 1e-3  # a real comparison, not two arrays of zeros


def test_graph_declares_its_contract(exported):
    _, path, _ = exported
    proto = onnx.load(str(path))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*proto.graph.input, *proto.graph.output]}
    assert dims == {"L": ["batch", 1, "height", "width"], "ab": ["batch", 2, "height", "width"]}
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["arch"] == "resnet18" and props["train_size"] == str(SIZE)
    assert "L/50 - 1" in props["normalisation"] and "ab/110" in props["normalisation"]
    assert "[-1,1]" in proto.doc_string
    assert not list(path.parent.glob("*.tmp"))


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "model.safetensors"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a colorize generator checkpoint"):
        export_onnx(bogus, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
