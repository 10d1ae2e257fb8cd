"""`colorize export`: a generator checkpoint as an ONNX model with dynamic batch and spatial size.

The exported graph (its contract is also stored in the file's doc string and metadata):
    input  "L":     (B,1,H,W) float32, CIE lightness as L/50 - 1, in [-1,1]
    input  "hints": (B,3,H,W) float32, only for a generator that takes colour hints: the hint's a/110 and
                    b/110 where a hint is and 0 elsewhere, then a mask (1 where a hint is, else 0);
                    all zeros for automatic colorization (see colorize.lab.encode_hints)
    output "ab":    (B,2,H,W) float32, CIE a and b divided by 110, in (-1,1)
B, H and W are free. To colorize: Lab = (50 * (L + 1), 110 * ab) -> RGB, e.g. with skimage.color.lab2rgb.
Needs the `onnx` package (onnxruntime runs the result).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import torch

from torch import nn

from .files import atomic_path
from .lab import AB_SCALE, HINT_CHANNELS, L_SCALE, generator_input
from .models import load_generator, read_checkpoint_metadata

# fastai's DynamicUnet resizes a decoder feature map only when its size differs from the skip
# connection's, a Python `if` that tracing freezes. At 33 = 2**5 + 1 every one of the ResNet's five
# stride-2 stages halves an odd size (33, 17, 9, 5, 3), so every resize is taken and recorded; where
# sizes already match, the recorded resize is the identity. So one trace serves every H and W.
TRACE_SIZE = 33
DYNAMIC = {0: "batch", 2: "height", 3: "width"}


class _WithHints(nn.Module):
    """A hint generator with L and the hint map as two graph inputs, joined by `lab.generator_input`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, L: torch.Tensor, hints: torch.Tensor) -> torch.Tensor:
        return self.model(generator_input(L, hints))


def export_onnx(ckpt: str | os.PathLike, out_path: str | os.PathLike, opset: int = 17) -> Path:
    """Write the generator in `ckpt` as ONNX to `out_path`: "L" (B,1,H,W) in [-1,1] -> "ab" (B,2,H,W) = ab/110;
    a generator that takes colour hints has a second input, "hints" (B,3,H,W) (see the module's doc).

    Uses torch's TorchScript exporter (`dynamo=False`): the torch.export-based one cannot trace
    fastai's tensor subclasses. The file is written atomically and checked with `onnx.checker`.
    """
    try:
        import onnx
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("ONNX export needs the onnx package: pip install onnx onnxruntime") from e
    meta = read_checkpoint_metadata(ckpt)
    model = load_generator(ckpt, device="cpu")
    hinted = meta["in_channels"] == 1 + HINT_CHANNELS
    inputs = ["L", "hints"] if hinted else ["L"]
    example = tuple(torch.zeros(2, c, TRACE_SIZE, TRACE_SIZE) for c in ((1, HINT_CHANNELS) if hinted else (1,)))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    exported = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the size `if`s: see TRACE_SIZE
        torch.onnx.export(_WithHints(model) if hinted else model, example, exported, dynamo=False,
                          input_names=inputs, output_names=["ab"], opset_version=opset,
                          dynamic_axes={name: DYNAMIC for name in [*inputs, "ab"]})
    proto = onnx.load_from_string(exported.getvalue())  # properties added in memory: the file is written once
    proto.doc_string = (f"colorize generator ({meta['arch']} U-Net, trained at {meta['size']} px). Input L (B,1,H,W) "
                        f"float32 = CIE L/{L_SCALE:g} - 1 in [-1,1]; "
                        + (f"input hints (B,3,H,W) float32 = hint a,b / {AB_SCALE:g} where a hint is and 0 elsewhere, "
                           "then a 0/1 mask of where hints are (all zeros: automatic); " if hinted else "")
                        + f"output ab (B,2,H,W) = CIE a,b / {AB_SCALE:g} in (-1,1); any B, H, W.")
    onnx.helper.set_model_props(proto, {
        "normalisation": meta["normalisation"], "arch": meta["arch"], "train_size": str(meta["size"]),
        "colorize_version": meta["colorize_version"], "checkpoint_extra": json.dumps(meta["extra"]),
        "in_channels": str(meta["in_channels"]),
    })
    onnx.checker.check_model(proto)
    with atomic_path(out_path) as tmp:
        onnx.save(proto, str(tmp))
    return out_path
