"""`colorize export`: a generator checkpoint as an ONNX model with dynamic batch and spatial size.

The exported graph (its contract is also stored in the file's doc string and metadata):
    input  "L":  (B,1,H,W) float32, CIE lightness as L/50 - 1, in [-1,1]
    output "ab": (B,2,H,W) float32, CIE a and b divided by 110, in (-1,1)
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

from .files import atomic_path
from .lab import AB_SCALE, L_SCALE
from .models import load_generator, read_checkpoint_metadata

# fastai's DynamicUnet resizes a decoder feature map only when its size differs from the skip
# connection's, a Python `if` that tracing freezes. At 33 = 2**5 + 1 every one of the ResNet's five
# stride-2 stages halves an odd size (33, 17, 9, 5, 3), so every resize is taken and recorded; where
# sizes already match, the recorded resize is the identity. So one trace serves every H and W.
TRACE_SIZE = 33
DYNAMIC_AXES = {"L": {0: "batch", 2: "height", 3: "width"}, "ab": {0: "batch", 2: "height", 3: "width"}}


def export_onnx(ckpt: str | os.PathLike, out_path: str | os.PathLike, opset: int = 17) -> Path:
    """Write the generator in `ckpt` as ONNX to `out_path`: "L" (B,1,H,W) in [-1,1] -> "ab" (B,2,H,W) = ab/110.

    Uses torch's TorchScript exporter (`dynamo=False`): the torch.export-based one cannot trace
    fastai's tensor subclasses. The file is written atomically and checked with `onnx.checker`.
    """
    try:
        import onnx
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("ONNX export needs the onnx package: pip install onnx onnxruntime") from e
    meta = read_checkpoint_metadata(ckpt)
    model = load_generator(ckpt, device="cpu")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    exported = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the size `if`s: see TRACE_SIZE
        torch.onnx.export(model, (torch.zeros(2, 1, TRACE_SIZE, TRACE_SIZE),), exported, dynamo=False,
                          input_names=["L"], output_names=["ab"], dynamic_axes=DYNAMIC_AXES, opset_version=opset)
    proto = onnx.load_from_string(exported.getvalue())  # properties added in memory: the file is written once
    proto.doc_string = (f"colorize generator ({meta['arch']} U-Net, trained at {meta['size']} px). Input L (B,1,H,W) "
                        f"float32 = CIE L/{L_SCALE:g} - 1 in [-1,1]; output ab (B,2,H,W) = CIE a,b / {AB_SCALE:g} "
                        "in (-1,1); any B, H, W.")
    onnx.helper.set_model_props(proto, {
        "normalisation": meta["normalisation"], "arch": meta["arch"], "train_size": str(meta["size"]),
        "colorize_version": meta["colorize_version"], "checkpoint_extra": json.dumps(meta["extra"]),
    })
    onnx.checker.check_model(proto)
    with atomic_path(out_path) as tmp:
        onnx.save(proto, str(tmp))
    return out_path
