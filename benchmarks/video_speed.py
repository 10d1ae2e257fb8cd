"""Video speed: frames per second colorizing a 640x360 clip at render size 256: per frame, stabilised, keyframes 4 and 8.

    .venv/bin/python benchmarks/video_speed.py [--model CKPT] [--frames 48] [--render-size 256] [--device cpu]

The clip is the package's sample clip (`video.pan_zoom_clip`): a pan and zoom over scikit-image's chelsea, H.264
with a tone as audio. Each mode runs `colorize_video` end to end (decode, model, flow and blend, Lab to RGB, H.264 encode, audio
copy) after a warm-up on a 2-frame clip; wall and CPU frames per second are reported, because on a shared machine the
wall clock also counts time spent waiting for a core. Without --model an untrained ResNet-18 U-Net stands
in: speed does not depend on the weights. Targets: stabilisation adds at most 50% to the per-frame time;
keyframes 4 (stabilised keyframes, the frames between carried along the flow) runs at least 2.5 times the
per-frame rate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from colorize.models import build_generator, load_generator
from colorize.temporal import DEFAULT_TEMPORAL
from colorize.video import colorize_video, pan_zoom_clip

TARGET_OVERHEAD = 0.5  # stabilised time / per-frame time - 1
TARGET_KEYFRAMES = 2.5  # keyframes 4 frames/s / per-frame frames/s
KEYFRAMES = (4, 8)


def make_clip(path: Path, frames: int, size: tuple[int, int]) -> Path:
    """The package's sample clip (`video.pan_zoom_clip`) over chelsea, `frames` long at `size` (W,H)."""
    from skimage import data

    return pan_zoom_clip(Image.fromarray(data.chelsea()).resize((1200, 900)), path, frames=frames, size=size)


def timed(model, clip: Path, out: Path, render_size: int, temporal: float, keyframes: int = 1) -> dict:
    w, c = time.perf_counter(), time.process_time()
    result = colorize_video(model, clip, out, render_size=render_size, temporal=temporal, keyframes=keyframes,
                            progress=False)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    return {"temporal": temporal, "keyframes": keyframes, "frames": result.frames, "fps_wall": result.frames / wall,
            "fps_cpu": result.frames / cpu}


def label(run: dict) -> str:
    if run["keyframes"] > 1:
        return f"keyframes {run['keyframes']}"
    return "per frame" if run["temporal"] == 0 else f"temporal {run['temporal']:g}"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="generator checkpoint (default: an untrained ResNet-18 U-Net)")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="640x360", help="WxH of the clip (default 640x360)")
    p.add_argument("--render-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = tuple(int(x) for x in args.size.split("x"))
    model = (load_generator(args.model, device=args.device) if args.model
             else build_generator("resnet18", size=args.render_size, pretrained=False).to(args.device).eval())
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", args.frames, size)
        warm = make_clip(Path(tmp) / "warm.mp4", 2, size)  # first calls (allocator, DIS, x264) are not timed
        timed(model, warm, Path(tmp) / "warm-out.mp4", args.render_size, DEFAULT_TEMPORAL)
        runs = [timed(model, clip, Path(tmp) / f"out{t}.mp4", args.render_size, t) for t in (0.0, DEFAULT_TEMPORAL)]
        runs += [timed(model, clip, Path(tmp) / f"key{k}.mp4", args.render_size, DEFAULT_TEMPORAL, k) for k in KEYFRAMES]
    per, steady, key4 = runs[:3]
    summary = {"clip": args.size, "render_size": args.render_size, "device": args.device,
               "torch_threads": torch.get_num_threads(), "runs": runs,
               "overhead_cpu": per["fps_cpu"] / steady["fps_cpu"] - 1,
               "overhead_wall": per["fps_wall"] / steady["fps_wall"] - 1, "target_overhead": TARGET_OVERHEAD,
               "keyframes4_speedup_wall": key4["fps_wall"] / per["fps_wall"],
               "keyframes4_speedup_cpu": key4["fps_cpu"] / per["fps_cpu"], "target_keyframes4": TARGET_KEYFRAMES}
    for r in runs:
        print(f"{label(r)}: {r['fps_wall']:.2f} frames/s wall, {r['fps_cpu']:.2f} frames/s of CPU time "
              f"({r['frames']} frames {args.size}, render size {args.render_size}, {args.device})")
    print(f"stabilisation adds {summary['overhead_cpu']:.0%} CPU time ({summary['overhead_wall']:.0%} wall); "
          f"target <= {TARGET_OVERHEAD:.0%}")
    print(f"keyframes 4 runs {summary['keyframes4_speedup_wall']:.2f}x the per-frame rate wall "
          f"({summary['keyframes4_speedup_cpu']:.2f}x CPU); target >= {TARGET_KEYFRAMES:g}x")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
