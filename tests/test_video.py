"""Video: frames in and out with PyAV, stabilisation along the flow, flicker measured, bad input refused.

Every clip is made here with PyAV from the photos bundled with scikit-image: a pan and zoom over a photo, a
cut between two photos, with a 440 Hz tone as the audio track. The colour clip is the known original.
"""

import threading
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import entropy
from skimage import color, data
from torch import nn

from colorize.cli import build_parser, main
from colorize.flicker import (ORIGINAL, js_divergence, measure_flicker, method_name, rgb_histograms,
                              write_flicker_report)
from colorize.inference import render_lightness
from colorize.keyframes import AUTO, AUTO_LONGEST, Item, check_keyframes, parse_keyframes, segments
from colorize.lab import pixels_to_rgb, rgb_to_lab_net, rgb_to_lightness
from colorize.models import build_generator
from colorize.temporal import (DEFAULT_TEMPORAL, FramePair, Stabiliser, carry_point, check_temporal, consistent,
                               new_flow, warp)
from colorize.inference import colorize_image
from colorize.video import (BadVideoError, VideoOptions, colorize_video, colorized_frames, frame_hints, frame_progress,
                            mux_tone, pan_zoom_frames, plan_videos, probe, read_frames, relate_frames)

SIZE = (96, 64)  # (W,H): small, even
RATE = 16000  # audio sample rate


def pan_zoom(photo: np.ndarray, n: int, size=SIZE) -> list[np.ndarray]:
    """n frames (H,W,3) uint8 of a camera panning right and zooming in over `photo` (the package's sample clip)."""
    return list(pan_zoom_frames(Image.fromarray(photo), n, size))


def write_clip(path, frames, fps=24, audio="aac", codec="libx264", pix_fmt="yuv420p"):
    """A clip of `frames` with a tone as its audio track (`audio` codec, or None for none)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=fps)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = pix_fmt
        a = c.add_stream(audio, rate=RATE) if audio else None
        for f in frames:
            c.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(v.encode(None))
        if a:
            mux_tone(c, a, seconds=len(frames) / fps, amplitude=0.3)
    return path


class Flickering(nn.Module):
    """A stand-in generator that flickers: ab from L by a fixed random conv, plus a random colour cast drawn per
    frame (what per-frame colorizers do to a clip, exaggerated)."""

    spec = SimpleNamespace(in_channels=1, takes_hints=False)  # takes no hints

    def __init__(self, cast: float = 0.08):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.cast = nn.Conv2d(1, 2, 3, padding=1), cast
        self.noise = torch.Generator().manual_seed(1)

    def forward(self, L):  # (B,1,S,S) -> (B,2,S,S) ab/110
        return 0.3 * torch.tanh(self.conv(L)) + self.cast * torch.randn(L.shape[0], 2, 1, 1, generator=self.noise)


class Oracle(nn.Module):
    """A stand-in generator that knows the clip's colour and flickers: for each L it finds the clip's frame
    with that lightness and gives its true ab (at the render size) plus a random colour cast per call."""

    spec = SimpleNamespace(in_channels=1, takes_hints=False)

    def __init__(self, frames: list[np.ndarray], size: int = 32, cast: float = 0.03, seed: int = 1):
        super().__init__()
        self.L = render_lightness(frames, size, torch.device("cpu"))  # (T,1,S,S)
        ab = torch.cat([rgb_to_lab_net(pixels_to_rgb(f))[1] for f in frames])  # (T,2,H,W) ab/110
        self.ab = torch.nn.functional.interpolate(ab, size=(size, size), mode="area")
        self.cast, self.noise = cast, torch.Generator().manual_seed(seed)
        self.calls = nn.Parameter(torch.zeros(()), requires_grad=False)  # frames seen; also gives a device

    def forward(self, L):  # (B,1,S,S) -> (B,2,S,S) ab/110
        self.calls += L.shape[0]
        nearest = ((L[:, None] - self.L[None]) ** 2).flatten(2).mean(-1).argmin(1)  # (B,)
        return self.ab[nearest] + self.cast * torch.randn(L.shape[0], 2, 1, 1, generator=self.noise)


class Counting(Flickering):
    """Flickering, counting the frames it colorizes."""

    def __init__(self):
        super().__init__()
        self.frames = 0

    def forward(self, L):
        self.frames += L.shape[0]
        return super().forward(L)


@pytest.fixture(scope="module")
def pan():
    return pan_zoom(data.chelsea(), 16)


@pytest.fixture(scope="module")
def cut():
    return pan_zoom(data.astronaut(), 10) + pan_zoom(data.coffee(), 10)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, pan, cut):
    d = tmp_path_factory.mktemp("clips")
    return {"pan": write_clip(d / "pan.mp4", pan), "cut": write_clip(d / "cut.mp4", cut),
            "mkv": write_clip(d / "pan.mkv", pan, audio="libopus")}


def test_colorized_video_keeps_frames_size_rate_lightness_and_audio(clips, tmp_path, pan):
    out = colorize_video(Flickering().eval(), clips["pan"], tmp_path / "pan.mp4", render_size=32, progress=False)
    assert out.path == tmp_path / "pan.mp4" and out.frames == len(pan)
    info = probe(out.path)
    assert (info.width, info.height, info.fps, info.frames, info.audio) == (*SIZE, 24, len(pan), "aac")
    with av.open(str(out.path)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].format.name == "yuv420p"
        audio_in, audio_out = (sum(p.size for p in av.open(str(f)).demux(audio=0)) for f in (clips["pan"], out.path))
    assert audio_out == audio_in  # AAC fits an MP4: copied, not re-encoded
    source = np.stack(list(read_frames(clips["pan"])))
    result = np.stack(list(read_frames(out.path)))
    L_in, L_out = (rgb_to_lightness(pixels_to_rgb(x)) * 50 for x in (source, result))  # CIE L
    assert (L_in - L_out).abs().mean() < 1.5  # the frames' own lightness, up to H.264 and chroma subsampling
    assert not list(tmp_path.glob("*.part"))


def test_a_frame_colorized_with_temporal_0_is_that_frame_colorized_as_a_photo(pan, tiny_generator):
    """One engine: the frames pipeline (frames in batches, before encoding) gives each frame what `colorize_image`
    gives it as a photo, to 1 level; with hints too."""
    model = tiny_generator(32).eval()
    frames = list(colorized_frames(model, pan[:5], render_size=32, temporal=0, batch=3))
    assert len(frames) == 5
    for frame, out in zip(pan[:5], frames):
        photo = np.asarray(colorize_image(model, Image.fromarray(frame), 32), dtype=int)
        assert np.abs(out.astype(int) - photo).max() <= 1
    hints = [{"x": 40, "y": 30, "color": "#d02020", "size": 8}]  # placed on frame 0
    (hinted,) = colorized_frames(model, pan[:1], render_size=32, temporal=0, hints=hints)
    photo = np.asarray(colorize_image(model, Image.fromarray(pan[0]), 32, hints=hints), dtype=int)
    assert np.abs(hinted.astype(int) - photo).max() <= 1
    assert np.abs(hinted.astype(int) - frames[0]).max() > 20  # and the hint counted


def test_audio_that_mp4_cannot_hold_is_reencoded_to_aac(tmp_path, pan):
    src = write_clip(tmp_path / "pcm.mkv", pan[:6], audio="pcm_s16le")
    out = colorize_video(Flickering().eval(), src, tmp_path / "out" / "pcm.mp4", render_size=32, temporal=0,
                         progress=False)
    assert probe(out.path).audio == "aac"


def test_warp_and_occlusion_follow_a_known_shift():
    img = np.asarray(Image.fromarray(data.camera()).resize((128, 96)))
    shifted = np.roll(img, 3, axis=1)  # content moves 3 px right
    flow = new_flow().calc(shifted, img, None)  # (H,W,2) shifted -> img: about -3 px in x
    back = new_flow().calc(img, shifted, None)
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(flow[inner][..., 0]) == pytest.approx(-3, abs=0.3)
    assert np.abs(warp(img.astype(np.float32), flow)[inner] - shifted[inner]).mean() < 6
    ok = consistent(flow, back)
    assert ok[inner].mean() > 0.9 and ok[:, :3].mean() < 0.5  # the 3 columns that came in from the left: occluded


def test_a_hint_is_carried_along_the_flow():
    img = np.asarray(Image.fromarray(data.camera()).resize((128, 96)))
    L = img.astype(np.float32) / 127.5 - 1
    stab = Stabiliser(128, 96)
    assert stab.relate(L) is None
    pair = stab.relate(np.roll(L, 4, axis=1))
    assert carry_point(pair, 60.0, 50.0, (1.0, 1.0)) == pytest.approx((64.0, 50.0), abs=0.6)
    assert carry_point(pair, 126.0, 50.0, (1.0, 1.0)) is None  # carried out of the frame


@pytest.mark.slow
def test_hints_with_frame_numbers_reach_a_hint_model(pan):
    hints = [{"x": 20, "y": 20, "color": "#d02020"}, {"x": 50, "y": 30, "color": "#2040d0", "frame": 2}]
    assert sorted(frame_hints(hints, SIZE)) == [0, 2]
    with pytest.raises(ValueError, match="frame"):
        frame_hints([{"x": 1, "y": 1, "color": "red", "frame": -1}], SIZE)
    torch.manual_seed(0)
    model = build_generator("resnet18", size=32, pretrained=False, in_channels=4).eval()  # untrained: hints count
    plain = list(colorized_frames(model, pan[:4], render_size=32, temporal=0))
    hinted = list(colorized_frames(model, pan[:4], render_size=32, temporal=0, hints=hints))
    assert all(not np.array_equal(a, b) for a, b in zip(plain, hinted))  # the first hint is carried through


def test_an_automatic_model_takes_hints_in_a_video_spread_along_lightness(pan):
    """As for a photo: the hint's colour replaces the prediction where it is placed, and a bad setting is refused."""
    hints = [{"x": 40, "y": 30, "color": "#d02020", "size": 8}]
    plain = list(colorized_frames(Flickering().eval(), pan[:3], render_size=32, temporal=0))
    hinted = list(colorized_frames(Flickering().eval(), pan[:3], render_size=32, temporal=0, hints=hints))
    redness = lambda frame: color.rgb2lab(frame[27:34, 37:44])[..., 1].mean()  # Lab a around the hint
    assert redness(hinted[0]) > redness(plain[0]) + 15
    gray = [rgb_to_lightness(pixels_to_rgb(f)) for f in (plain[0], hinted[0])]  # the frame's lightness is kept
    assert (gray[0] - gray[1]).abs().max() < 0.02
    with pytest.raises(ValueError, match="propagation"):
        list(colorized_frames(Flickering().eval(), pan[:1], render_size=32, hints=hints, propagation="levn"))


def test_a_scene_cut_restarts_the_blend(clips):
    out = colorize_video(Flickering().eval(), clips["cut"], clips["cut"].parent / "out" / "cut.mp4", render_size=32,
                         progress=False)
    assert out.cuts == [10]


@pytest.mark.slow
def test_stabilised_video_flickers_less_without_losing_colour_or_accuracy(clips, pan, cut):
    """Done means: warping error at most half-way from the original's to per frame's; PSNR within 0.3 dB of per
    frame's; colourfulness at least 90% of per frame's. Both from one model pass (the Oracle counts it)."""
    for name, frames in (("pan", pan), ("cut", cut)):
        oracle = Oracle(frames, cast=0.08).eval()
        r = measure_flicker(clips[name], {"m": oracle}, render_size=32, strip=0).figures
        assert oracle.calls == len(frames)  # per frame and stabilised from one model pass
        per, steady, floor = r[method_name("m", 0)], r[method_name("m", DEFAULT_TEMPORAL)], r[ORIGINAL]
        assert steady["warp_error"] <= (floor["warp_error"] + per["warp_error"]) / 2, (name, r)
        assert steady["psnr_rgb"] >= per["psnr_rgb"] - 0.3, (name, r)
        assert steady["colourfulness"] >= 0.9 * per["colourfulness"], (name, r)
        assert steady["cdc"] < per["cdc"], (name, r)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pan", "cut"])
def test_keyframes_4_flicker_no_more_and_lose_no_accuracy_against_the_stabilised_frames(clips, pan, cut, name):
    """Keyframes must not cost accuracy or stability: on a clip with a known colour original, keyframes 4 gives PSNR
    within 0.3 dB of the stabilised per-frame output and a warping error no higher, over the stand-in's seeds; the
    network sees fewer frames (a quarter, and those the flow cannot fill). The mean, because one seed's figure is a
    handful of random casts (the keyframes' against every frame's): it spreads +-2 dB either way for both methods."""
    frames = {"pan": pan, "cut": cut}[name]
    gaps, warps = [], []
    for seed in range(8):
        model = Oracle(frames, seed=seed).eval()
        r = measure_flicker(clips[name], {"m": model}, render_size=32, strip=0, keyframes=(4,)).figures
        steady, key = r[method_name("m", DEFAULT_TEMPORAL)], r[method_name("m", keyframes=4)]
        gaps.append(key["psnr_rgb"] - steady["psnr_rgb"])
        warps.append(key["warp_error"] / steady["warp_error"])
        assert len(frames) / 4 <= model.calls - len(frames) < len(frames)  # keyframes, and frames the flow can't fill
    assert np.mean(gaps) >= -0.3, gaps
    assert np.mean(warps) <= 1, warps


def test_keyframes_fall_every_k_frames_at_cuts_and_on_the_last_frame():
    def items(n, cuts=()):
        frame = np.zeros((4, 4, 3), np.uint8)
        pair = lambda t: FramePair(*(np.zeros((2, 2, 2)),) * 2, np.ones((2, 2), bool), t in cuts)
        return [Item(t, frame, None if t == 0 else pair(t)) for t in range(n)]

    ends = lambda segs: [[item.t for item in seg] for seg in segs]
    assert ends(segments(items(10), 4)) == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8], [8, 9]]
    assert ends(segments(items(10, cuts={6}), 4)) == [[0, 1, 2, 3, 4], [4, 5], [6, 7, 8, 9]]
    assert ends(segments(items(6, cuts={5}), 4)) == [[0, 1, 2, 3, 4], [5]]  # a scene of one frame
    assert ends(segments(items(1), 4)) == [[0]]
    assert check_keyframes(0) == 0 and VideoOptions(keyframes=8).keyframes == 8
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="every K-th frame"):
            VideoOptions(keyframes=bad)


def test_automatic_keyframes_follow_the_motion(pan):
    """--keyframes auto: a keyframe once a fifth of the frame is out of the last one's reach along the flow, so the
    same camera move over fewer frames (faster) gets keyframes more often, a still shot every AUTO_LONGEST frames."""
    def ends(frames):
        items = [Item(t, f, None if t == 0 else relate_frames(frames[t - 1], f)) for t, f in enumerate(frames)]
        return [seg[-1].t for seg in segments(items, AUTO)]

    slow = pan_zoom(data.chelsea(), 48)
    fast, calm = ends(pan), ends(slow)
    assert fast[-1] == len(pan) - 1 and calm[-1] == len(slow) - 1  # the last frame is a keyframe
    assert len(fast) / len(pan) > 1.5 * len(calm) / len(slow)
    assert 2 <= min(np.diff([0] + fast)) and max(np.diff([0] + calm)) <= AUTO_LONGEST
    assert ends([pan[0]] * 20) == [AUTO_LONGEST, 19]
    model = Counting().eval()
    assert len(list(colorized_frames(model, slow, render_size=32, keyframes=AUTO))) == len(slow)
    assert model.frames < len(slow) / 3
    assert VideoOptions(keyframes=parse_keyframes("auto")).keyframes == AUTO
    flags = build_parser().parse_args(["apply", "clip.mp4", "--model", "g", "--out", "o", "--keyframes", "auto"])
    assert flags.keyframes == AUTO
    with pytest.raises(ValueError, match="every K-th frame"):
        VideoOptions(keyframes="fast")


def test_the_flicker_report_compares_automatic_keyframes_too(clips, pan):
    model = Counting().eval()
    r = measure_flicker(clips["pan"], {"m": model}, render_size=32, strip=0, keyframes=(AUTO,)).figures
    assert method_name("m", keyframes=AUTO) == "m, keyframes auto"
    assert r["m, keyframes auto"]["psnr_rgb"] > 0 and r["m, keyframes auto"]["warp_error"] > 0
    assert model.frames < 2 * len(pan)  # one pass per frame for per frame and stabilised, keyframes alone for auto
    flags = build_parser().parse_args(["flicker", "clip.mp4", "--models", "g", "--out", "o", "--keyframes", "4", "auto"])
    assert list(flags.keyframes) == [4, AUTO]
    with pytest.raises(ValueError, match="every K-th frame"):
        measure_flicker(clips["pan"], {"m": model}, render_size=32, strip=0, keyframes=("fast",))


def test_keyframed_video_keeps_every_frame_and_its_lightness(clips, tmp_path, pan, cut):
    model = Counting().eval()
    assert len(list(colorized_frames(model, pan, render_size=32, keyframes=4))) == len(pan)
    assert 5 <= model.frames < len(pan) / 2  # keyframes 0 4 8 12 15, and a frame the flow leaves a hole in
    out = colorize_video(model, clips["cut"], tmp_path / "cut.mp4", render_size=32, keyframes=4, progress=False)
    assert out.frames == len(cut) and out.cuts == [10]
    result = np.stack(list(read_frames(out.path)))
    source = np.stack(list(read_frames(clips["cut"])))
    L_in, L_out = (rgb_to_lightness(pixels_to_rgb(x)) * 50 for x in (source, result))
    assert (L_in - L_out).abs().mean() < 1.5


def test_a_hint_the_flow_check_loses_once_is_found_again_by_matching():
    gray = np.asarray(Image.fromarray(data.camera()).resize((128, 96)).convert("L"))
    moved = np.roll(gray, 3, axis=1)
    zero = np.zeros((96, 128, 2), np.float32)
    pair = FramePair(zero, zero, np.zeros((96, 128), bool), False, moved, gray)  # flow says still, check fails
    assert carry_point(pair, 60.0, 40.0, (1.0, 1.0)) == pytest.approx((63.0, 40.0))
    flat = FramePair(zero, zero, np.zeros((96, 128), bool), False, np.full_like(gray, 90), np.full_like(gray, 90))
    assert carry_point(flat, 60.0, 40.0, (1.0, 1.0)) is None  # nothing to match: truly gone


def test_the_log_says_when_a_hint_is_dropped(cut, caplog):
    caplog.set_level("INFO", logger="colorize.video")
    list(colorized_frames(Flickering().eval(), cut, render_size=32, hints=[{"x": 85, "y": 30, "color": "#d02020"}]))
    assert "hint #d02020" in caplog.text and "dropped at frame 10: a scene cut" in caplog.text


def test_progress_without_a_bar_logs_frames_rate_and_time_left(monkeypatch, caplog):
    from colorize import video

    monkeypatch.setattr(video, "LOG_EVERY_S", 0.0)
    monkeypatch.setattr(video, "bars_can_draw", lambda: False)
    caplog.set_level("INFO", logger="colorize.video")
    assert list(frame_progress(iter(range(3)), 3, what="colorizing x.mp4")) == [0, 1, 2]
    assert "colorizing x.mp4: frame 1 of 3" in caplog.text and "frames/s, " in caplog.text and "s left" in caplog.text


def test_js_divergence_is_per_histogram_in_nats():
    """Row by row (the histograms of one frame's three channels), the divergence itself (not its square root),
    in nats: against its definition through Kullback-Leibler, 0.5 KL(p||m) + 0.5 KL(q||m) with m = (p+q)/2
    (scipy.stats.entropy), and against cases worked by hand."""
    rng = np.random.default_rng(0)
    p, q = rng.random((2, 3, 256))
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    m = (p + q) / 2
    by_definition = [0.5 * entropy(a, c) + 0.5 * entropy(b, c) for a, b, c in zip(p, q, m)]
    assert js_divergence(p, q) == pytest.approx(by_definition, rel=1e-9)
    assert js_divergence(p, p) == pytest.approx(0, abs=1e-12)
    # frames worked by hand: channel 0 all 0 vs half 0 / half 1: m = (3/4, 1/4), KL(p||m) = ln(4/3),
    # KL(q||m) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3), so JS = 3/4 ln(4/3);
    # channel 1 the same in both: 0; channel 2 all 0 vs all 255: no bin in common, ln 2
    a, b = np.zeros((2, 4, 3), np.uint8), np.zeros((2, 4, 3), np.uint8)
    b[1, :, 0], b[..., 2] = 1, 255
    expected = [0.75 * np.log(4 / 3), 0.0, np.log(2)]
    assert js_divergence(rgb_histograms(a), rgb_histograms(b)) == pytest.approx(expected, abs=1e-12)


def test_flicker_report_files(clips, tmp_path):
    report = measure_flicker(clips["pan"], {"m": Flickering().eval()}, temporals=(0.0,), render_size=32, strip=3)
    assert report.frames == 16 and report.strip_frames == [0, 8, 15] and report.ab[ORIGINAL].shape == (16, 2)
    paths = write_flicker_report(report, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert "m, per frame" in paths["markdown"].read_text()


def test_temporal_weight_is_checked():
    assert check_temporal(0) == 0.0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            check_temporal(bad)


BAD = {
    "truncated mp4": lambda clips, dst: dst.write_bytes(clips["pan"].read_bytes()[: clips["pan"].stat().st_size // 2]),
    "truncated mkv": lambda clips, dst: dst.write_bytes(clips["mkv"].read_bytes()[: clips["mkv"].stat().st_size // 2]),
    "not a video": lambda clips, dst: dst.write_bytes(b"\x00\x01 not a video at all" * 50),
}


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_video_is_refused_with_a_message_and_leaves_nothing(kind, clips, tmp_path):
    bad = tmp_path / "in" / "bad.mkv"
    bad.parent.mkdir()
    BAD[kind](clips, bad)
    with pytest.raises(BadVideoError, match=r"bad\.mkv.*(truncated|damaged)"):
        colorize_video(Flickering().eval(), bad, tmp_path / "out" / "bad.mp4", render_size=32, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_truncated_clip_is_refused_before_any_frame_is_colorized_and_leaves_nothing(clips, tmp_path):
    """An MP4 whose index comes first (as downloads are) cut short in its frames: the scan finds it."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(clips["pan"])) as src, av.open(str(whole), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    cut_short = tmp_path / "cut_short.mp4"
    cut_short.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.8)])
    model = Counting().eval()
    with pytest.raises(BadVideoError, match=r"cut_short\.mp4 holds \d+ of the 16 frames.*nothing was colorized"):
        colorize_video(model, cut_short, tmp_path / "out" / "deep" / "cut_short.mp4", render_size=32, progress=False)
    assert model.frames == 0 and not (tmp_path / "out").exists()


def test_apply_says_what_is_wrong_with_a_bad_video_without_a_traceback(clips, tmp_path, tiny_checkpoint, caplog):
    bad = tmp_path / "bad.mp4"
    BAD["truncated mp4"](clips, bad)
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors")
    assert main(["apply", str(bad), "--model", str(ckpt), "--out", str(tmp_path / "out"), "--render-size", "32"]) == 2
    assert "bad.mp4" in caplog.text and "Traceback" not in caplog.text and "damaged or cut short" in caplog.text
    assert not (tmp_path / "out").exists()


def test_no_video_stream_and_odd_size_are_refused(tmp_path, pan):
    audio_only = tmp_path / "tone.mp4"
    with av.open(str(audio_only), "w") as c:
        a = c.add_stream("aac", rate=RATE)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = RATE, 0
        c.mux(a.encode(frame))
        c.mux(a.encode(None))
    with pytest.raises(BadVideoError, match="no video stream"):
        colorize_video(Flickering().eval(), audio_only, tmp_path / "out" / "tone.mp4", progress=False)
    odd = write_clip(tmp_path / "odd.mkv", [f[:63, :95] for f in pan[:3]], audio=None, codec="ffv1", pix_fmt="yuv444p")
    with pytest.raises(BadVideoError, match=r"95x63.*even.*crop"):
        colorize_video(Flickering().eval(), odd, tmp_path / "out" / "odd.mp4", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_apply_colorizes_a_video_inside_a_folder_of_photos(clips, tmp_path, tiny_checkpoint, pan):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(pan[0]).save(folder / "photo.png")
    (folder / "sub" / "clip.mov").write_bytes(clips["pan"].read_bytes())
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors")
    out = tmp_path / "out"
    assert main(["apply", str(folder), "--model", str(ckpt), "--out", str(out), "--render-size", "32",
                 "--temporal", "0.5"]) == 0
    assert (out / "photo.png").is_file() and probe(out / "sub" / "clip.mp4").frames == len(pan)


def test_video_plan_refuses_to_overwrite_an_input(tmp_path, clips):
    (tmp_path / "clip.mp4").write_bytes(clips["pan"].read_bytes())
    with pytest.raises(ValueError, match="overwrite"):
        plan_videos([tmp_path / "clip.mp4"], tmp_path)
    assert plan_videos([tmp_path], tmp_path / "out") == [(tmp_path / "clip.mp4", tmp_path / "out" / "clip.mp4")]


def test_app_video_tab_colorizes_a_short_clip_and_refuses_a_long_one(clips, monkeypatch):
    from colorize import app

    models = {"m": Flickering().eval()}
    steps = []
    shown = list(app.colorize_video_upload(models, str(clips["pan"]), "m", 32, 0.5, 4,
                                           progress=lambda p, **kw: steps.append(p)))
    assert isinstance(shown[0][0], Image.Image) and shown[0][0].size == SIZE  # the first frame shown at once
    assert shown[0][1:] == (None, None) and steps[0] == (1, 16)
    _, player, download = shown[-1]
    assert player == download and probe(download).frames == 16 and steps[-1] == (16, 16)
    monkeypatch.setattr(app, "MAX_VIDEO_PIXELS", 10 * SIZE[0] * SIZE[1])
    with pytest.raises(app.gr.Error, match=r"pan.mp4 is 16 frames of 96x64.*colorize apply pan.mp4"):
        next(app.colorize_video_upload(models, str(clips["pan"]), "m", 32))
    with pytest.raises(app.gr.Error, match="upload a video"):
        next(app.colorize_video_upload(models, None))
    blocks = app.build_app(models)
    names = {fn.api_name for fn in blocks.fns.values()}
    assert "colorize_video" in names
    job = next(i for i, fn in blocks.fns.items() if fn.api_name == "colorize_video")
    assert any(job in fn.cancels for fn in blocks.fns.values())  # the Cancel button stops it


def test_app_video_cancel_stops_the_work_and_leaves_no_file(clips, monkeypatch, tmp_path):
    from colorize import app

    gate = threading.Event()

    class Gated(Counting):  # the second batch waits until the page has cancelled
        def forward(self, L):
            if self.frames:
                gate.wait(10)
            return super().forward(L)

    monkeypatch.setattr(app, "_results_dir", lambda: tmp_path)
    run = app.colorize_video_upload({"m": Gated().eval()}, str(clips["pan"]), "m", 32, 0.5,
                                    progress=lambda p, **kw: None)
    preview, player, _ = next(run)
    assert isinstance(preview, Image.Image) and player is None
    run.close()  # what Gradio's cancel does to a running generator
    gate.set()
    for worker in [t for t in threading.enumerate() if t.name == "colorize pan.mp4"]:
        worker.join(10)
    assert not list(tmp_path.iterdir())  # neither the MP4 nor its partial file


def test_benchmark_reports_frames_per_second_per_frame_and_stabilised(capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("video_speed", Path(__file__).parents[1] / "benchmarks" / "video_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = bench.main(["--frames", "3", "--size", "64x48", "--render-size", "32"])
    assert [(r["temporal"], r["keyframes"]) for r in summary["runs"]] == [(0.0, 1), (DEFAULT_TEMPORAL, 1),
                                                                          (DEFAULT_TEMPORAL, 4), (DEFAULT_TEMPORAL, 8)]
    assert all(r["frames"] == 3 and r["fps_wall"] > 0 for r in summary["runs"])
    assert "frames/s" in capsys.readouterr().out


@pytest.mark.slow
def test_flicker_command_writes_its_report(clips, tmp_path, tiny_checkpoint, capsys):
    ckpt = tiny_checkpoint(tmp_path / "run-a" / "best.safetensors")
    assert main(["flicker", str(clips["cut"]), "--models", str(ckpt), "--out", str(tmp_path / "report"),
                 "--render-size", "32", "--temporal", "0", "0.5"]) == 0
    table = (tmp_path / "report" / "flicker.md").read_text()
    assert "run-a/best, per frame" in table and "run-a/best, temporal 0.5" in table and ORIGINAL in table
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"flicker.md", "flicker.json", "strip.png",
                                                                 "ab_over_time.png"}
    assert "warping error" in capsys.readouterr().out
