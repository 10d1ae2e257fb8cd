"""The generator (fastai DynamicUnet on an ImageNet ResNet body), its self-describing checkpoint, the critic."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from fastai.layers import ConvLayer
from fastai.torch_core import get_model
from fastai.vision.learner import create_body
from fastai.vision.models.unet import DynamicUnet
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from torchvision import models as tvm

from . import __version__
from .config import CriticConfig
from .files import atomic_path
from .hub import resolve_checkpoint
from .lab import AB_SCALE, HINT_CHANNELS, L_SCALE

# name -> (torchvision constructor, its ImageNet weights). A plain dict: the error lists the choices.
ARCHS = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1),
}

CHECKPOINT_FORMAT = "colorize-generator/2"  # /2 adds in_channels
READABLE_FORMATS = {"colorize-generator/1": 1, CHECKPOINT_FORMAT: 2}  # /1: every generator took L alone
# Bounds on a checkpoint's build size: the encoder halves the input 5 times, and building the U-Net runs
# a dummy input of that size through it, so an absurd size in a file would allocate absurd memory.
MIN_SIZE, MAX_SIZE = 32, 4096
IN_CHANNELS = (1, 1 + HINT_CHANNELS)  # L alone; L and a hint map
# safetensors' names of the dtypes a generator's state holds
DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


@dataclass(frozen=True)
class GeneratorSpec:
    """What rebuilds a generator: its encoder, the crop size it was built for, and its input channels."""

    arch: str = "resnet18"
    size: int = 256
    in_channels: int = 1  # 1: L alone; 4: L and a hint map (colorize.hints)

    @property
    def takes_hints(self) -> bool:
        """Whether the generator reads L and a hint map (`lab.generator_input`) rather than L alone."""
        return self.in_channels == 1 + HINT_CHANNELS


def build_generator(arch: str = "resnet18", size: int = 256, pretrained: bool = True,
                    in_channels: int = 1) -> DynamicUnet:
    """U-Net with a ResNet encoder: L (B,1,H,W) in [-1,1] (with `in_channels` 4: L and a hint map) -> ab
    (B,2,H,W) in (-1,1). The model carries its `GeneratorSpec` as `model.spec`.

    With `pretrained`, torchvision's ImageNet weights are loaded (downloaded once into TORCH_HOME)
    and fastai sums the first conv's RGB filters into one channel for the L input.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    make, weights = ARCHS[arch]
    resnet = make(weights=weights if pretrained else None)
    body = create_body(resnet, n_in=in_channels, pretrained=pretrained, cut=-2)  # drop avgpool and fc
    model = DynamicUnet(body, n_out=2, img_size=(size, size), y_range=(-1.0, 1.0), norm_type=None)
    model.spec = GeneratorSpec(arch, size, in_channels)
    return model


def widen_for_hints(model: nn.Module) -> nn.Module:
    """A copy of an automatic generator that also takes the hint map, giving exactly its output until trained.

    fastai's DynamicUnet sees its input twice: the encoder's first conv (`model[0][0]`, 1 -> 4 input
    channels) and, through its `last_cross`, the final ResBlock and 1x1 conv, which get the input
    concatenated after the decoder's features (97 -> 100 channels for a ResNet-18). Every weight
    tensor that grew keeps the old weights in its leading block and is zero elsewhere, so no hint
    reaches the output and the hint channels pass the final ResBlock's residual unchanged (as
    ReLU(hint)) to the 1x1 conv; with one exception: the new output channels of a conv followed by a
    ReLU keep the fresh 4-channel model's initialisation (ReLU(0) has no gradient, so at zero they
    would never train; nothing reads them yet). The copy is on the model's device, in the model's
    mode, with `spec.in_channels` = 4.
    """
    model = get_model(model)
    spec = model.spec
    if spec.in_channels != 1:
        raise ValueError(f"widen_for_hints takes an automatic generator (1 input channel, L); this one takes "
                         f"{spec.in_channels}")
    wide = build_generator(spec.arch, size=spec.size, pretrained=False, in_channels=1 + HINT_CHANNELS)
    activated = {f"{name}.0." for name, m in wide.named_modules()  # fastai ConvLayers: (conv, [norm], [act])
                 if isinstance(m, ConvLayer) and any(isinstance(c, nn.ReLU) for c in m)}
    old = model.state_dict()
    state = wide.state_dict()
    for name, w in state.items():
        o = old[name].to(w.device)
        if o.shape == w.shape:
            w.copy_(o)
            continue
        if o.dim() != w.dim() or any(a > b for a, b in zip(o.shape, w.shape)):
            raise RuntimeError(f"cannot widen {name}: {tuple(o.shape)} -> {tuple(w.shape)}")
        fresh = w.clone()
        w.zero_()
        w[tuple(slice(0, n) for n in o.shape)] = o
        if w.shape[0] > o.shape[0] and name.rsplit(".", 1)[0] + "." in activated:
            w[o.shape[0]:] = fresh[o.shape[0]:]  # new channels behind a ReLU: alive, and read by zero weights
            if w.dim() == 4:
                w[o.shape[0]:, o.shape[1]:] = 0  # ... that read no new input channel
    wide.load_state_dict(state)
    device = next(model.parameters()).device
    return wide.to(device).train(model.training)


def save_generator(model: nn.Module, path: str | os.PathLike, **extra) -> Path:
    """Write the generator's weights and its spec (what rebuilds it) into ONE safetensors file, atomically.

    `model` is one `build_generator` made (or that wrapped in DistributedDataParallel); `extra` (e.g.
    epoch, stage, valid_loss) is stored in the metadata as JSON.
    """
    model = get_model(model)
    spec: GeneratorSpec = model.spec
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "arch": spec.arch,
        "size": str(spec.size),
        "in_channels": str(spec.in_channels),
        "normalisation": json.dumps({"L": f"L/{L_SCALE:g} - 1", "ab": f"ab/{AB_SCALE:g}"}),
        "colorize_version": __version__,
        "extra": json.dumps(extra),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:  # a kill never leaves a half-written checkpoint under the real name
        tmp.write_bytes(save(state, metadata=meta))  # Python's open: the user's umask (save_file writes 0600)
    return path


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a generator checkpoint (a file or an `hf://` path), each field checked; a clear error if
    the file is not one.

    Only the file's header is read (safetensors refuses headers over 100 MB). The architecture must
    be one of `ARCHS`, the size a whole number in [MIN_SIZE, MAX_SIZE], `in_channels` (1 if absent)
    one of `IN_CHANNELS`: a file from elsewhere can't make the loader build an arbitrary network.
    """
    path = Path(resolve_checkpoint(path))
    if not path.is_file():
        raise FileNotFoundError(f"no generator checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{path} is not a colorize generator checkpoint (not a safetensors file: {e}); "
            "pass the .safetensors file written by `colorize pretrain` or `colorize gan`"
        ) from None
    if meta.get("format") not in READABLE_FORMATS:
        raise ValueError(
            f"{path} is a safetensors file but not a colorize generator checkpoint "
            f"(format {meta.get('format')!r}, expected one of {', '.join(READABLE_FORMATS)})"
        )

    def refuse(what: str):
        raise ValueError(f"{path} is not a usable generator checkpoint: {what}; it was not written by colorize "
                         "or was altered since: use a checkpoint written by `colorize pretrain` or `colorize gan`")

    if meta.get("arch") not in ARCHS:
        refuse(f"unknown architecture {meta.get('arch')!r} (known: {', '.join(ARCHS)})")
    size, channels = meta.get("size", ""), meta.get("in_channels", "1")
    if not (size.isascii() and size.isdigit() and MIN_SIZE <= int(size) <= MAX_SIZE):
        refuse(f"size {size[:40]!r} is not a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}")
    if channels not in {str(c) for c in IN_CHANNELS}:
        refuse(f"in_channels {channels[:40]!r} is not one of {', '.join(map(str, IN_CHANNELS))}")
    try:
        extra = json.loads(meta.get("extra", "{}"))
    except (ValueError, RecursionError):
        extra = None
    if not isinstance(extra, dict):
        refuse("its 'extra' field is not a JSON object")
    return {**meta, "size": int(size), "in_channels": int(channels), "extra": extra}


def check_checkpoint_tensors(path: str | os.PathLike, meta: dict) -> None:
    """Refuse a checkpoint whose tensors (names, shapes, dtypes) are not those of the network its metadata names.

    The expected network is built on the meta device (shapes only, no memory) and compared with the
    file's header; no tensor is read.
    """
    with torch.device("meta"):
        expected = build_generator(meta["arch"], size=meta["size"], pretrained=False,
                                   in_channels=meta["in_channels"]).state_dict()
    problems = []
    with safe_open(str(path), framework="pt") as f:
        found = set(f.keys())
        for name in sorted(found & expected.keys()):
            tensor, want = f.get_slice(name), expected[name]
            shape, dtype = tuple(tensor.get_shape()), tensor.get_dtype()
            if shape != tuple(want.shape) or dtype != DTYPE_NAMES.get(want.dtype):
                problems.append(f"{name} is {dtype} {list(shape)}, expected {DTYPE_NAMES.get(want.dtype)} "
                                f"{list(want.shape)}")
    missing, unexpected = sorted(expected.keys() - found), sorted(found - expected.keys())
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(u[:60] for u in unexpected[:3])})")
    if problems:
        raise ValueError(f"{path} does not hold the {meta['arch']} generator its metadata describes: tensors "
                         + "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
                         + ". Use a checkpoint written by `colorize pretrain` or `colorize gan`")


def checkpoint_spec(path: str | os.PathLike) -> GeneratorSpec:
    """The `GeneratorSpec` a checkpoint was saved with."""
    meta = read_checkpoint_metadata(path)
    return GeneratorSpec(meta["arch"], meta["size"], meta["in_channels"])


def checkpoint_identity(generator) -> str | None:
    """What a run records of the checkpoint it started from: its file name and a hash of its contents."""
    if generator is None:
        return None
    digest = hashlib.sha256()
    with open(resolve_checkpoint(generator), "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return f"{Path(generator).name} sha256:{digest.hexdigest()[:16]}"


def model_name(ckpt: str | os.PathLike) -> str:
    """Display name of a checkpoint (tables, the app's menu): its run folder and file stem, e.g. `places365-l1/best`."""
    p = Path(ckpt)
    return f"{p.parent.name}/{p.stem}"


def load_generator(path: str | os.PathLike, device: str | torch.device | None = None) -> DynamicUnet:
    """Rebuild a generator from its checkpoint (file or `hf://` path) via `build_generator`, in eval mode; no pickle.

    The metadata and the tensors' names, shapes and dtypes are checked before anything is built.
    """
    path = resolve_checkpoint(path)
    meta = read_checkpoint_metadata(path)
    check_checkpoint_tensors(path, meta)
    # Built on the meta device: the random initialisation the checkpoint would overwrite at once is skipped (a load
    # takes a fifth of the time); the strict load then fills every parameter and buffer the generator has.
    with torch.device("meta"):
        model = build_generator(meta["arch"], size=meta["size"], pretrained=False, in_channels=meta["in_channels"])
    model = model.to_empty(device=device or "cpu")
    model.load_state_dict(load_file(str(path), device=str(torch.device(device or "cpu"))), strict=True)
    return model.eval()


# Critic normalisation -> the layer after each inner conv (pix2pix `get_norm_layer`). 'spectral' adds no
# layer: it wraps every conv in torch's spectral_norm parametrization instead. The error lists the choices.
CRITIC_NORMS = {
    "batch": nn.BatchNorm2d,
    "instance": nn.InstanceNorm2d,  # affine=False, no running stats: as pix2pix
    "spectral": None,
    "none": None,
}


class PatchGAN(nn.Module):
    """Conditional pix2pix PatchGAN: (L, ab) -> a map of real/fake logits, one per overlapping input patch.

    pix2pix's NLayerDiscriminator (Isola et al. 2017) fed cat(L, ab), so it judges the colours *given*
    the grayscale input: a 4x4 stride-2 conv (no norm), `n_layers - 1` more 4x4 stride-2 convs, a 4x4
    stride-1 conv, each with norm and LeakyReLU(0.2), widths ndf * (1, 2, 4, 8, 8, ...), then a 4x4
    stride-1 conv to one channel. An H x W input gives an (H/2^n - 2) x (W/2^n - 2) map: 30x30 for 256.

    "70x70" is the receptive field of each logit for n_layers=3: going back from one output pixel
    each 4x4 stride-1 conv adds 3 pixels and each stride-2 one maps r to 2r + 2, so 1 -> 4 -> 7 ->
    16 -> 34 -> 70 (16, 34, 70 px for n_layers 1, 2, 3). Why a patch: the L1 term already gets the
    low frequencies right, so the critic only has to judge local colour and texture; pix2pix found
    70x70 patches as sharp as a full-image critic with fewer parameters, and the map is averaged
    over the image, which may be any size. At CIFAR's 32x32, n_layers 1 or 2 (16 or 34 px) suits.

    Convs before a batch norm have no bias (its mean subtraction cancels one); all others have one.
    `init` draws pix2pix's N(0, 0.02) weights before any spectral norm is applied.
    """

    def __init__(self, n_layers: int = 3, norm: str = "batch", ndf: int = 64, init: bool = True):
        super().__init__()
        if norm not in CRITIC_NORMS:
            raise ValueError(f"unknown critic norm {norm!r}; choose one of: {', '.join(CRITIC_NORMS)}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1 (got {n_layers}); 3 gives pix2pix's 70x70 PatchGAN")
        norm_layer, bias = CRITIC_NORMS[norm], norm != "batch"
        widths = [ndf * min(2**i, 8) for i in range(n_layers + 1)]  # 64, 128, 256, 512 for n_layers=3
        layers = [nn.Conv2d(3, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]  # in: L (1) + ab (2)
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            layers.append(nn.Conv2d(widths[i - 1], widths[i], 4, stride=stride, padding=1, bias=bias))
            if norm_layer is not None:
                layers.append(norm_layer(widths[i]))
            layers.append(nn.LeakyReLU(0.2, True))
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1))  # one logit per patch
        self.model = nn.Sequential(*layers)
        if init:
            _init_normal(self.model)
        if norm == "spectral":
            for m in self.model:
                if isinstance(m, nn.Conv2d):
                    spectral_norm(m)  # W / sigma(W), sigma by one power iteration per training forward

    def forward(self, L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """L (B,1,H,W) in [-1,1], ab (B,2,H,W) -> logits (B,1,h,w); h = H/2^n_layers - 2."""
        return self.model(torch.cat([L, ab], dim=1))  # (B,3,H,W)


def _init_normal(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix `init_weights('normal')`: conv weights N(0, std), batch-norm weights N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def build_critic(config: CriticConfig = CriticConfig()) -> PatchGAN:
    """The conditional PatchGAN critic of a recipe (pix2pix's by default: 70x70 patches, a 30x30 map at 256 px)."""
    return PatchGAN(n_layers=config.layers, norm=config.norm, ndf=config.ndf, init=config.init)
