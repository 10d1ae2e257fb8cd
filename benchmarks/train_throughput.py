"""Training throughput side by side, in one run: model only, our data pipeline, our GAN step, the tutorial's pipeline.

    .venv/bin/python benchmarks/train_throughput.py [--device cuda] [--size 256] [--bs 64] [--steps 30] ...

Same device, batch size, image size and generator (ResNet-18 DynamicUnet, random init) throughout:
  model     L1 steps of the pretraining Learner on one batch already on the device: the ceiling
  pipeline  `colorize.pretrain.pretrain_learner` end to end with the places365 preset: the photos'
            uint8 cache (`colorize.loaders`, decoded once, before the timing; its build time is
            printed on a `cache:` line) -> workers -> batches -> crop, flip and Lab on the device
            -> L1 step. With --no-cache: JPEGs decoded, cropped and flipped by the workers instead
  gan       `colorize.gan.gan_learner`: the same pipeline, then a critic step and a generator step
  baseline  the reference tutorial's way: a torch Dataset doing PIL bicubic resize + skimage rgb2lab
            per photo in the workers, fp32, default memory format, a plain loop of Adam steps on L1
  loader, baseline_loader
            the two data paths alone, batches on the device and no step: the most images/s each can
            feed the model (above `model`, the data path is not what the device waits for). They
            also give worker_ms_per_photo: what one worker spends on a photo (read, decode, crop,
            flip; the baseline also Lab), timed in the main process. On a CPU `device` the batch
            transforms (Lab, and the cached path's crop and flip) run in the main process too and
            bound the loader; on a GPU they cost little, and workers / worker_ms_per_photo bounds it.
Each configuration prints one JSON line. images/s counts `--steps` training batches after `--warmup`
batches (the first one counted for FLOPs, then compilation/autotuning); data loading is inside the
timed window. FLOPs per image are counted by torch's FlopCounterMode on the real first step of each
configuration (fwd + bwd; for the GAN also the critic's). Model-FLOP utilisation divides the achieved
FLOP rate by the device's dense bf16 peak (null on the CPU and on GPUs not in PEAK_TFLOPS).

A summary line gives the ratios pipeline/model, pipeline/baseline, gan/pipeline (and loader/model,
baseline_loader/model) and the projected wall time of the Places365 tutorial (20 L1 + 20 GAN epochs
over the Kaggle subset's train split; training steps only, validation not included), its train count
from the index in data/places365 when that exists, else from --train-images, marked as assumed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import tempfile
import time
from itertools import repeat
from pathlib import Path

import fastai
import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.data.core import DataLoaders
from fastai.layers import ToTensorBase
from fastai.torch_core import to_device
from PIL import Image
from skimage.color import rgb2lab
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from colorize.config import GAN_PRESETS, PRETRAIN_PRESETS, override
from colorize.data import index_dataset
from colorize.download import DONE_MARKER, sample_photos
from colorize.files import default_workers
from colorize.gan import gan_learner
from colorize.loaders import CACHE_DIR, make_dataloaders
from colorize.lab import AB_SCALE, L_SCALE
from colorize.models import build_generator
from colorize.pretrain import pretrain_learner

ROOT = Path(__file__).resolve().parents[1]
PLACES365 = ROOT / "data" / "places365"
# Train photos of the Kaggle Places365 subset (its dataset page: about 22k training images); used
# only when data/places365 has not been downloaded and indexed here, and the output says so.
PLACES365_TRAIN_ASSUMED = 22_000
TUTORIAL_EPOCHS = {"pretrain": 20, "gan": 20}  # the tutorial: 20 L1 epochs, then 20 GAN epochs
# Dense (no sparsity) bf16 tensor-core peaks from the vendor data sheets, TFLOP/s; the first match wins.
# T4 has no bf16: its fp16 peak. A GPU not listed gets a null utilisation rather than a guess.
PEAK_TFLOPS = [
    (r"H100.*PCIe", 756.0),
    (r"H100|H200|GH200", 989.0),  # SXM
    (r"A100", 312.0),
    (r"\bL4\b", 121.0),
    (r"\bT4\b", 65.0),
]
# The four the summary compares, then the two data paths alone (no step): how fast each can feed the device.
SUMMARY_CONFIGS = ("model", "pipeline", "gan", "baseline")
CONFIGS = (*SUMMARY_CONFIGS, "loader", "baseline_loader")
NO_MODEL = {"precision": None, "memory_format": None}  # what a loader-only record says of the model


# ------------------------------------------------------------------------------------------ timing


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so the clock measures work done, not work launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Throughput(Callback):
    """Counts the FLOPs of training batch 0, times batches `warmup`..`warmup + steps - 1`, then stops the fit.

    The clock starts when warm-up batch `warmup - 1` has finished, so every timed batch includes
    fetching it from the loader. `compile` compiles the generator (and critic) after batch 0.
    """

    order = -10  # before MixedPrecision enters autocast, so batch 0 is counted whole

    def __init__(self, warmup: int, steps: int, compile: bool = False):
        self.warmup, self.steps, self.compile = warmup, steps, compile
        self.flops, self.seconds = None, None

    def before_batch(self):
        if self.iter == 0:
            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()

    def after_batch(self):
        if self.iter == 0:
            self.counter.__exit__(None, None, None)
            self.flops = self.counter.get_total_flops()
            if self.compile:
                compile_networks(self.learn)
        if self.iter == self.warmup - 1:
            sync(self.dls.device)
            self.start = time.perf_counter()
        if self.iter == self.warmup + self.steps - 1:
            sync(self.dls.device)
            self.seconds = time.perf_counter() - self.start
            raise CancelFitException()


class Compiled(nn.Module):
    """`torch.compile(module)` fed plain tensors: dynamo mis-traces fastai's tensor subclasses.

    With fastai 2.8.12 and torch 2.14 a compiled PatchGAN given TensorImages drops ab from cat(L, ab),
    and the generator's last layer, fastai's ToTensorBase cast, sends dynamo into endless recursion.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.compiled = torch.compile(module)

    def forward(self, *xs):
        return self.compiled(*(x.as_subclass(torch.Tensor) for x in xs))


def compile_networks(learn) -> None:
    """Swap the generator (without its ToTensorBase cast) and the critic, if any, for `Compiled` wrappers.

    The parameters stay the same objects, so the optimisers keep stepping them.
    """
    generator = learn.model
    generator.layers = nn.ModuleList([m for m in generator.layers if not isinstance(m, ToTensorBase)])
    learn.model = Compiled(generator)
    if hasattr(learn, "gan"):
        learn.gan.critic = Compiled(learn.gan.critic)


class RepeatBatch:
    """A stand-in train loader: the same on-device batch `n` times, so a step never waits for data."""

    def __init__(self, batch, n: int):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __iter__(self):
        return repeat(self.batch, self.n)

    def to(self, device):
        self.batch = to_device(self.batch, device)
        return self


def time_learner(learn, warmup: int, steps: int, compile: bool, gan: bool = False) -> tuple[float, float]:
    """(seconds for `steps` training batches, FLOPs of one batch) of `learn`, without bars, logs or validation."""
    timer = Throughput(warmup, steps, compile)
    with learn.no_bar(), learn.no_logging():
        if gan:
            learn.fit(1, cbs=[timer])  # as the GAN stage without its step decay: constant learning rates
        else:
            learn.fit_one_cycle(1, learn.lr, cbs=[timer])  # as the L1 stage (colorize.pretrain) fits: one cycle
    if timer.seconds is None:
        raise RuntimeError(f"the loader ran out after {learn.iter + 1} batches; raise the number of training crops")
    return timer.seconds, timer.flops


# ---------------------------------------------------------------------------------------- baseline


class TutorialDataset(Dataset):
    """The reference tutorial's data path: per photo, PIL bicubic resize and flip, then skimage rgb2lab, in a worker."""

    def __init__(self, paths: list[Path], size: int):
        self.paths = paths
        self.tfms = transforms.Compose([transforms.Resize((size, size), transforms.InterpolationMode.BICUBIC),
                                        transforms.RandomHorizontalFlip()])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = self.tfms(Image.open(self.paths[i]).convert("RGB"))
        lab = transforms.ToTensor()(rgb2lab(np.array(img)).astype("float32"))  # (3,H,W), L in [0,100]
        return {"L": lab[[0]] / L_SCALE - 1.0, "ab": lab[[1, 2]] / AB_SCALE}


def tutorial_batches(paths, size, bs, workers, device):
    """The tutorial's loader: its Dataset in `workers` processes, batches of (L, ab) copied to `device`."""
    loader = DataLoader(TutorialDataset(paths, size), batch_size=bs, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=device.type == "cuda")
    return ((b["L"].to(device), b["ab"].to(device)) for b in loader)  # (B,1,H,W), (B,2,H,W)


def tutorial_step(size: int, device: torch.device):
    """The tutorial's pretraining step on the same generator: fp32, NCHW, Adam 1e-4 on L1, the loss read every step."""
    model = build_generator("resnet18", size=size, pretrained=False).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_func = nn.L1Loss()

    def step(batch):
        L, ab = batch
        loss = loss_func(model(L), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # the tutorial's loss meter

    return step


def worker_ms(get_item, n: int) -> float:
    """Milliseconds one worker spends on a photo: `get_item(i)` for `n` photos, in this process, after one untimed."""
    get_item(0)
    start = time.perf_counter()
    for i in range(n):
        get_item(i)
    return 1000 * (time.perf_counter() - start) / n


def time_loop(batches, device, warmup: int, steps: int, step=None) -> tuple[float, float | None]:
    """(seconds for batches `warmup`..`warmup + steps - 1`, FLOPs of `step` on batch 0) of a plain loop.

    Without a `step` it times the loader alone: how many images/s the data path can deliver.
    """
    flops, start = None, None
    for i, batch in enumerate(batches):
        if step is not None and i == 0:
            with FlopCounterMode(display=False) as counter:
                step(batch)
            flops = counter.get_total_flops()
        elif step is not None:
            step(batch)
        if i == warmup - 1:
            sync(device)
            start = time.perf_counter()
        if i == warmup + steps - 1:
            sync(device)
            return time.perf_counter() - start, flops
    raise RuntimeError(f"the loader ran out after {i + 1} batches; raise the number of training crops")


# ------------------------------------------------------------------------------------------ set-up


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model as /proc/cpuinfo gives it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak FLOP/s of a known GPU; None for the CPU or an unlisted GPU."""
    if device.type != "cuda":
        return None
    name = device_name(device)
    return next((tf * 1e12 for pattern, tf in PEAK_TFLOPS if re.search(pattern, name)), None)


def set_memory_format(modules, channels_last: bool | None) -> None:
    """channels_last or contiguous weights for `modules`; None keeps what the package chose."""
    if channels_last is not None:
        for m in modules:
            m.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def memory_format(model: nn.Module) -> str:
    """'channels_last' or 'contiguous', read from the first conv weight with several input channels."""
    w = next(p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1)
    return "channels_last" if w.is_contiguous(memory_format=torch.channels_last) else "contiguous"


def stage_photos(data: str | None, tmp: Path) -> tuple[Path, str]:
    """The folder to train on (`--data`, else the sample photos written into `tmp`) and how to name it."""
    if data is not None:
        return Path(data), data
    return sample_photos(tmp / "samples"), "scikit-image/scikit-learn sample photos"


def places365_train_count(assumed: int) -> tuple[int, str]:
    """Train photos of the Places365 subset: from its index in data/places365 if downloaded, else `assumed`."""
    marker = PLACES365 / DONE_MARKER
    if marker.exists():
        return json.loads(marker.read_text())["counts"]["train"], f"index of {PLACES365}"
    return assumed, "assumed (--train-images; data/places365 not downloaded here)"


# -------------------------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=256, help="training crop size (default 256, Places365's)")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed training batches per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first (>= 1; batch 0 counts the FLOPs)")
    p.add_argument("--workers", type=int,
                   help="DataLoader workers (default: colorize.files.default_workers, all cores up to 8)")
    p.add_argument("--threads", type=int, help="torch CPU threads in the main process (default: torch's)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                   help="auto: colorize.device.choose_precision's choice (bf16 on GPUs that have it natively, fp16 on "
                        "older GPUs, fp32 on the CPU); bf16/fp16 on the CPU run under CPU autocast")
    p.add_argument("--data", help="folder of photos (default: the sample photos shipped with scikit-image/-learn); "
                   "its index and cache go to a temporary work folder, never into it")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="force the memory format of our configurations (default: the package's choice)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks of our configurations after batch 0 (see compile_networks)")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="pipeline, gan and loader read the uint8 photo cache, as the places365 preset does (default)")
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS),
                   help="run only some configurations (the summary needs the first four)")
    p.add_argument("--train-images", type=int, default=PLACES365_TRAIN_ASSUMED,
                   help="Places365 train photos for the projection when data/places365 is not indexed here")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1")
    return args


def measure(name: str, index, args, device, pretrain, gan, n_batches: int) -> tuple[float, float | None, dict]:
    """(seconds for `args.steps` batches, FLOPs of one batch, settings to report) of one configuration."""
    if name in ("baseline", "baseline_loader"):
        workers = pretrain.machine.workers if pretrain.machine.workers is not None else default_workers()
        batches = tutorial_batches(index.files("train") * pretrain.data.repeats, args.size, args.bs, workers, device)
        step = tutorial_step(args.size, device) if name == "baseline" else None
        seconds, flops = time_loop(batches, device, args.warmup, args.steps, step)
        model_settings = {"precision": "fp32", "memory_format": "contiguous"} if step else NO_MODEL
        settings = {**model_settings, "compile": False, "workers": workers, "cache": False}
        if name == "baseline_loader":
            dataset = TutorialDataset(index.files("train") * pretrain.data.repeats, args.size)
            settings["worker_ms_per_photo"] = round(worker_ms(dataset.__getitem__, args.bs), 3)
        return seconds, flops, settings
    if name == "gan":
        learn = gan_learner(index, gan, device=device)
    else:
        learn = pretrain_learner(index, pretrain, device=device)
    workers = learn.dls.train.fake_l.num_workers
    if name == "loader":
        seconds, _ = time_loop(learn.dls.train, device, args.warmup, args.steps)
        return seconds, None, {**NO_MODEL, "compile": False, "workers": workers, "cache": args.cache,
                               "worker_ms_per_photo": round(worker_ms(learn.dls.train.do_item, args.bs), 3)}
    if name == "model":
        batch = learn.dls.train.one_batch()  # (L, ab) on the device
        learn.dls = DataLoaders(RepeatBatch(batch, n_batches), learn.dls.valid, device=device)
        workers = 0
    set_memory_format([learn.model] + ([learn.gan.critic] if name == "gan" else []), args.channels_last)
    settings = {"precision": learn.precision, "memory_format": memory_format(learn.model),
                "compile": args.compile, "workers": workers, "cache": args.cache if name != "model" else None}
    seconds, flops = time_learner(learn, args.warmup, args.steps, args.compile, gan=name == "gan")
    return seconds, flops, settings


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    peak = peak_flops(device)
    base = {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "fastai": fastai.__version__, "size": args.size, "batch": args.bs, "threads": torch.get_num_threads()}
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder, data_name = stage_photos(args.data, Path(tmp))
        index = index_dataset(folder, progress=False, work_dir=Path(tmp) / "work")
        n_batches = args.warmup + args.steps + 1
        repeats = math.ceil(n_batches * args.bs / len(index.files("train")))  # crops per photo: one epoch is enough
        base["data"] = f"{data_name}: {len(index.files('train'))} train photos x {repeats} crops"
        machine = dict(workers=args.workers, cache=args.cache, precision=args.precision)
        pretrain = override(PRETRAIN_PRESETS["places365"], size=args.size, bs=args.bs, pretrained=False,
                            repeats=repeats, **machine)
        gan = override(GAN_PRESETS["pix2pix"], size=args.size, bs=args.bs, repeats=repeats, **machine)
        if args.cache and {"pipeline", "gan", "loader"} & set(args.configs):
            print("cache: " + json.dumps(build_cache(index, pretrain)), flush=True)
        for name in args.configs:
            load_before = os.getloadavg()[0]
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            seconds, flops, settings = measure(name, index, args, device, pretrain, gan, n_batches)
            rates[name] = rate = args.steps * args.bs / seconds
            flops_per_image = flops / args.bs if flops is not None else None
            memory_peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
            print(json.dumps({
                "config": name, **base, **settings, "steps": args.steps, "warmup": args.warmup,
                "images_per_s": round(rate, 2), "step_ms": round(1000 * seconds / args.steps, 1),
                "gpu_mem_peak_gb": round(memory_peak, 2) if memory_peak is not None else None,
                "gflops_per_image": round(flops_per_image / 1e9, 2) if flops_per_image else None,
                "mfu": round(flops_per_image * rate / peak, 4) if peak and flops_per_image else None,
                "load_avg_1m": [load_before, os.getloadavg()[0]],
            }), flush=True)
    if set(SUMMARY_CONFIGS) <= set(rates):
        print("summary: " + json.dumps(summary(rates, args.train_images, args.size)), flush=True)


def build_cache(index, config) -> dict:
    """Build the photo cache the cached configurations read (once, untimed by them); what it took.

    `built` is False when the cache was already there: then `seconds` is only the time to find it.
    """
    folder = index.work_dir / CACHE_DIR
    finished_before = set(folder.glob("*.json"))
    start = time.perf_counter()
    dls = make_dataloaders(index, config.data, config.machine.replace(cache=True), progress=False)
    seconds = time.perf_counter() - start
    n = len(index.files("train")) + len(index.files("valid"))
    return {"photos": n, "size": config.data.size, "built": set(folder.glob("*.json")) != finished_before,
            "workers": dls.train.fake_l.num_workers, "seconds": round(seconds, 2),
            "photos_per_s": round(n / seconds, 1), "gib": round(n * config.data.size**2 * 3 / 2**30, 3)}


def summary(rates: dict[str, float], assumed_train: int, size: int) -> dict:
    """The three ratios and the projected wall time of the Places365 tutorial from the rates measured at `size` px."""
    n_train, source = places365_train_count(assumed_train)
    seconds = (TUTORIAL_EPOCHS["pretrain"] * n_train / rates["pipeline"]
               + TUTORIAL_EPOCHS["gan"] * n_train / rates["gan"])
    return {
        "pipeline/model": round(rates["pipeline"] / rates["model"], 3),
        "pipeline/baseline": round(rates["pipeline"] / rates["baseline"], 3),
        "gan/pipeline": round(rates["gan"] / rates["pipeline"], 3),
        **{f"{k}/model": round(rates[k] / rates["model"], 3) for k in ("loader", "baseline_loader") if k in rates},
        "places365_tutorial": f"{TUTORIAL_EPOCHS['pretrain']} L1 + {TUTORIAL_EPOCHS['gan']} GAN epochs of training "
                              f"steps at the rates measured at {size} px (the tutorial trains at 256), "
                              "validation not included",
        "places365_train_images": n_train,
        "places365_train_images_from": source,
        "projected_hours": round(seconds / 3600, 3),
    }


if __name__ == "__main__":
    main()
