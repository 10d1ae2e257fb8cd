"""Colour from a reference photo: pairs made here from crops and warps of sample photos and from frames of a made-up
clip; guided beats automatic on the same scene, an unrelated reference changes nothing, saved hints reproduce the
output, a shot takes a still's colours, bad references are refused with nothing written."""

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import color, data

from colorize.apply import apply_paths, hints_source
from colorize.cli import main
from colorize.inference import colorize_image
from colorize.reference import (SAME, SIMILAR, BadReferenceError, ReferenceHints, colorize_with_reference,
                                draw_correspondence, merge_hints, reference_hints)
from colorize.inference import Rendering
from colorize.video import VideoOptions, pan_zoom_clip, read_frames

SIZE = 64  # render size: small and fast


@pytest.fixture(scope="module")
def model(tiny_generator):
    return tiny_generator(SIZE, seed=3).eval()


@pytest.fixture(scope="module")
def pair():
    """A photo's crop (the target, in colour: the truth) and a shifted, rotated, rescaled crop of the same photo."""
    photo = Image.fromarray(data.astronaut())  # 512x512
    target = photo.crop((40, 30, 440, 330))  # 400x300
    reference = photo.crop((110, 80, 500, 420)).rotate(7, resample=Image.Resampling.BICUBIC)
    reference = reference.resize((312, 272), Image.Resampling.BICUBIC)  # 0.8x
    return target, reference


def ab_error(image: Image.Image, truth: Image.Image) -> float:
    """Mean |ab| difference in CIE Lab units (skimage, an independent conversion)."""
    return float(np.abs(color.rgb2lab(np.asarray(image))[..., 1:] - color.rgb2lab(np.asarray(truth))[..., 1:]).mean())


def test_a_shifted_rotated_rescaled_crop_halves_the_colour_error(model, pair):
    target, reference = pair
    automatic = colorize_image(model, target, SIZE)
    guided, used, found = colorize_with_reference(model, target, reference, render_size=SIZE)
    assert found.kind == SAME and len(used) > 20 and len(found.matches) >= 20
    assert ab_error(guided, target) <= 0.5 * ab_error(automatic, target)
    diff = color.rgb2lab(np.asarray(guided))[..., 0] - color.rgb2lab(np.asarray(target))[..., 0]
    assert np.abs(diff).mean() < 1.0  # the target's own lightness is kept


def test_a_mirrored_photo_is_no_homography_but_a_similar_scene_for_the_encoder(model):
    """A mirror image defeats the keypoints' geometry (a homography cannot flip); the generator's own features still
    pair each cell with its mirror, and the colours follow."""
    target = Image.fromarray(data.chelsea())
    reference = target.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    guided, used, found = colorize_with_reference(model, target, reference, render_size=SIZE)
    assert found.kind == SIMILAR and len(used) >= 10, found.reason
    assert ab_error(guided, target) < 0.7 * ab_error(colorize_image(model, target, SIZE), target)


@pytest.mark.parametrize("unrelated", ["other photo", "noise"])
def test_an_unrelated_reference_leaves_the_automatic_colours(model, pair, unrelated):
    target, _ = pair
    reference = (Image.fromarray(data.coffee()) if unrelated == "other photo"
                 else Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)))
    automatic = colorize_image(model, target, SIZE)
    guided, used, found = colorize_with_reference(model, target, reference, render_size=SIZE)
    assert found.kind is None and used == [] and found.reason
    lab_a, lab_g = color.rgb2lab(np.asarray(automatic)), color.rgb2lab(np.asarray(guided))
    assert np.abs(lab_a[..., 1:] - lab_g[..., 1:]).mean() < 1.0


def test_a_persons_hints_win_where_they_disagree():
    derived = [{"x": 10, "y": 10, "color": "#ff0000", "size": 4}, {"x": 80, "y": 80, "color": "#ff0000", "size": 4}]
    person = [{"x": 12, "y": 11, "color": "#00ff00", "size": 6}]
    merged = merge_hints(derived, person)
    assert merged == [derived[1], person[0]]  # the clashing derived hint dropped, the person's last
    assert merge_hints(derived, None) == derived


def test_saved_hints_reproduce_the_guided_output(tiny_checkpoint, pair, tmp_path):
    target, reference = pair
    target.save(tmp_path / "target.png")
    reference.save(tmp_path / "ref.jpg", quality=95)
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors", seed=3, size=SIZE)
    common = ["--model", str(ckpt), "--render-size", str(SIZE)]
    person = [{"x": 200, "y": 150, "color": "#2040c0", "size": 10}]
    (tmp_path / "mine.json").write_text(json.dumps(person))
    assert main(["apply", str(tmp_path / "target.png"), *common, "--reference", str(tmp_path / "ref.jpg"),
                 "--hints", str(tmp_path / "mine.json"), "--save-hints", str(tmp_path / "saved.json"),
                 "--out", str(tmp_path / "guided")]) == 0
    saved = json.loads((tmp_path / "saved.json").read_text())
    assert len(saved) > 20 and saved[-1] == person[0]  # derived hints, then the person's
    assert main(["apply", str(tmp_path / "target.png"), *common, "--hints", str(tmp_path / "saved.json"),
                 "--out", str(tmp_path / "again")]) == 0
    guided = np.asarray(Image.open(tmp_path / "guided" / "target.png"))
    assert np.array_equal(guided, np.asarray(Image.open(tmp_path / "again" / "target.png")))


def test_a_folder_takes_one_look_and_says_which_photos_fell_back(model, pair, tmp_path, capsys, tiny_checkpoint):
    target, reference = pair
    (tmp_path / "album").mkdir()
    target.save(tmp_path / "album" / "match.png")
    Image.fromarray(data.coffee()).save(tmp_path / "album" / "coffee.png")
    reference.save(tmp_path / "ref.png")
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors", seed=3, size=SIZE)
    assert main(["apply", str(tmp_path / "album"), "--model", str(ckpt), "--render-size", str(SIZE), "--reference",
                 str(tmp_path / "ref.png"), "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "wrote 2 file(s)" in said
    fell = said.split("colorized automatically:")[1]
    assert "coffee.png" in fell and "match.png" not in fell
    rows = {Path(r["input"]).name: r for r in csv.DictReader(open(tmp_path / "out" / "colorize-apply.csv"))}
    assert rows["match.png"]["fell_back"] == "no" and int(rows["match.png"]["hints"]) > 20
    assert rows["match.png"]["note"].startswith("reference: same scene")
    assert rows["coffee.png"]["fell_back"] == "yes" and rows["coffee.png"]["hints"] == "0"
    assert "no confident match with the reference: automatic (not the same scene" in rows["coffee.png"]["note"]
    assert json.loads((tmp_path / "out" / "colorize-apply.json").read_text())["fell_back"] == 1


class Counted(ReferenceHints):
    """A reference source that counts the photos it matched."""

    def photo(self, src, image):
        self.matched.append(Path(src).name)
        return super().photo(src, image)


def test_a_killed_folder_run_with_a_reference_does_each_photo_once_and_a_new_reference_redoes_them(
        model, pair, tmp_path, monkeypatch):
    from colorize import archive
    from colorize.archive import ArchiveOptions

    target, reference = pair
    (tmp_path / "album").mkdir()
    for i in range(3):
        target.crop((10 * i, 0, 300 + 10 * i, 220)).save(tmp_path / "album" / f"t{i}.png")
    reference.save(tmp_path / "ref.png")
    out, writes, save = tmp_path / "out", Counter(), archive.save_output

    def killed_after_one(image, path, record):
        if writes:
            raise RuntimeError("killed")
        save(image, path, record)
        writes[path.name] += 1

    def run(ref):
        source = Counted(model, ref)
        source.matched = []
        result = apply_paths(model, [tmp_path / "album"], out, Rendering(SIZE), source, progress=False,
                             archive=ArchiveOptions(batch=1, workers=1))
        return result, source.matched

    monkeypatch.setattr(archive, "save_output", killed_after_one)
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "ref.png")
    monkeypatch.setattr(archive, "save_output", lambda image, path, record: (save(image, path, record),
                                                                           writes.update([path.name])))
    result, matched = run(tmp_path / "ref.png")
    assert set(writes) == {"t0.png", "t1.png", "t2.png"} and set(writes.values()) == {1}  # each written once
    assert sorted(matched) == ["t1.png", "t2.png"] and len(result.skipped) == 1  # the done one not matched again
    assert not result.fell_back and all(len(h.entries) > 20 for h in result.hints.values())
    (kept,) = [r for r in csv.DictReader(open(out / "colorize-apply.csv")) if r["status"] == "skipped"]
    assert kept["fell_back"] == "no" and int(kept["hints"]) > 20  # what the first run's output took, read back
    assert kept["note"].startswith("reference: same scene")
    assert run(tmp_path / "ref.png")[1] == []  # all done: nothing matched, nothing written
    reference.rotate(3).save(tmp_path / "ref.png")  # the same file name, another reference: redone
    result, matched = run(tmp_path / "ref.png")
    assert len(result.written) == 3 and sorted(matched) == ["t0.png", "t1.png", "t2.png"]


def test_hints_saved_for_a_folder_reproduce_each_guided_photo(model, pair, tmp_path):
    target, reference = pair
    (tmp_path / "album").mkdir()
    target.save(tmp_path / "album" / "match.png")
    Image.fromarray(data.coffee()).resize((300, 200)).save(tmp_path / "album" / "coffee.png")
    reference.save(tmp_path / "ref.png")
    guided = apply_paths(model, [tmp_path / "album"], tmp_path / "guided", Rendering(SIZE),
                         ReferenceHints(model, tmp_path / "ref.png"), progress=False, save_hints_to=tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["coffee.json", "match.json"]
    assert json.loads((tmp_path / "saved" / "coffee.json").read_text()) == []  # fell back: no hints
    assert len(json.loads((tmp_path / "saved" / "match.json").read_text())) > 20
    again = apply_paths(model, [tmp_path / "album"], tmp_path / "again", Rendering(SIZE),
                        hints_source(tmp_path / "saved"), progress=False)
    assert len(guided.written) == len(again.written) == 2
    for name in ("match.png", "coffee.png"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "guided" / name)),
                              np.asarray(Image.open(tmp_path / "again" / name)))
    automatic = np.asarray(colorize_image(model, target, SIZE))
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "again" / "match.png")), automatic)


@pytest.mark.slow
def test_a_shot_takes_the_colours_of_a_still_of_its_middle_frame(model, tmp_path):
    clip = pan_zoom_clip(Image.fromarray(data.astronaut()), tmp_path / "clip.mp4", frames=16, size=(192, 128))
    frames = list(read_frames(clip))
    still = Image.fromarray(frames[8])
    result = apply_paths(model, [clip], tmp_path / "out", Rendering(SIZE), ReferenceHints(model, _save(
        still, tmp_path / "still.png")), VideoOptions(temporal=0.7), progress=False)
    assert result.fell_back == [] and len(result.written) == 1
    guided = list(read_frames(result.written[0]))
    automatic = list(read_frames(apply_reference_free(model, clip, tmp_path / "auto")))
    err = [np.mean([ab_error(Image.fromarray(o[k]), Image.fromarray(frames[k])) for k in (0, 5, 10, 15)])
           for o in (guided, automatic)]
    assert err[0] < 0.7 * err[1]  # the whole shot, not only its first frame


def test_each_shot_is_matched_again_after_a_cut(model, tmp_path):
    import av

    from colorize.reference import ShotMatcher
    from colorize.video import colorize_video

    photo, other = Image.fromarray(data.astronaut()), Image.fromarray(data.coffee())
    shots = [photo.crop((40 + 4 * i, 40, 360 + 4 * i, 280)) for i in range(6)] \
        + [other.crop((100, 60, 420, 300))] * 6 + [photo.crop((120 - 4 * i, 150, 440 - 4 * i, 390)) for i in range(6)]
    with av.open(str(tmp_path / "cuts.mp4"), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
        for frame in shots:
            c.mux(v.encode(av.VideoFrame.from_image(frame)))
        c.mux(v.encode(None))
    match = ShotMatcher(model, photo)  # the hook alone, on the clip's own decoding pass
    colorize_video(model, tmp_path / "cuts.mp4", tmp_path / "direct.mp4", Rendering(SIZE), VideoOptions(temporal=0.5),
                   progress=False, place=match)
    hints, placed = match.hints, match.placed
    assert placed == [0, 12]  # the first shot and the third (the same scene again); the coffee shot matches nothing
    assert {h["frame"] for h in hints} == {0, 12} and len(hints) > 20
    photo.save(tmp_path / "ref.png")
    source = ReferenceHints(model, tmp_path / "ref.png")
    result = apply_paths(model, [tmp_path / "cuts.mp4"], tmp_path / "out", Rendering(SIZE), source,
                         VideoOptions(temporal=0.5), progress=False, save_hints_to=tmp_path / "used.json")
    took = result.hints[tmp_path / "cuts.mp4"]
    assert not took.fell_back and took.note == "reference matched into frame(s) 0, 12"
    assert took.entries == hints  # `apply` routes the reference through the same hook: the same hints
    assert json.loads((tmp_path / "used.json").read_text()) == hints


def apply_reference_free(model, clip, out):
    from colorize.video import colorize_video

    return colorize_video(model, clip, out / "clip.mp4", SIZE, temporal=0.7, progress=False).path


def _save(image, path):
    image.save(path)
    return path


@pytest.mark.parametrize("bad, match", [
    ("unreadable", "cannot be read"),
    ("grayscale", "no colour to give"),
    ("tiny", "smaller than the target"),
    ("huge", "larger than the target"),
    ("video", "is a video"),
])
def test_a_bad_reference_is_refused_and_nothing_is_written(model, pair, tmp_path, bad, match):
    target, reference = pair
    if bad == "huge":  # more than 8x the target's size, without writing a huge file
        target = target.resize((80, 60))
    target.save(tmp_path / "target.png")
    path = tmp_path / ("ref.mp4" if bad == "video" else "ref.png")
    if bad == "unreadable":
        path.write_text("not a photo")
    elif bad == "grayscale":
        reference.convert("L").convert("RGB").save(path)
    elif bad == "tiny":
        reference.resize((40, 35)).save(path)
    elif bad == "huge":
        reference.resize((700, 610)).save(path)
    else:
        pan_zoom_clip(reference, path, frames=4, size=(64, 48))
    with pytest.raises(BadReferenceError, match=match):
        apply_paths(model, [tmp_path / "target.png"], tmp_path / "out", hints=ReferenceHints(model, path),
                    save_hints_to=tmp_path / "h.json")
    assert not (tmp_path / "out").exists() and not (tmp_path / "h.json").exists()


def test_the_correspondence_is_drawn_side_by_side(pair):
    target, reference = pair
    found = reference_hints(target, reference)
    picture = draw_correspondence(target, reference, found, height=120)
    assert picture.size == (round(312 * 120 / 272) + round(400 * 120 / 300), 120)
    assert np.asarray(picture).std(axis=(0, 1)).min() > 0  # the photos and lines are there


def test_evaluate_reference_reports_automatic_against_guided(tiny_checkpoint, pair, tmp_path, capsys):
    target, reference = pair
    target.save(tmp_path / "t.png")
    reference.save(tmp_path / "r.png")
    Image.fromarray(data.coffee()).save(tmp_path / "other.png")
    (tmp_path / "pairs.csv").write_text("t.png,r.png,same\nt.png,other.png,mismatched\n")
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors", seed=3, size=SIZE)
    assert main(["evaluate-reference", str(tmp_path / "pairs.csv"), "--model", str(ckpt), "--render-size", str(SIZE),
                 "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "reference.md").read_text()
    rows = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines()[2:]}
    assert set(rows) == {"same", "mismatched"}
    assert float(rows["same"][6]) > 2.0 and float(rows["mismatched"][6]) == 0.0  # gain: guided minus automatic
    assert rows["mismatched"][3].strip() == "1"  # its one pair fell back to automatic


@pytest.mark.slow  # Gradio's import
def test_the_guide_tab_turns_a_reference_into_editable_hints_and_draws_the_matches(model, pair, tmp_path):
    app = pytest.importorskip("colorize.app")
    target, reference = pair
    target.save(tmp_path / "t.png")
    reference.save(tmp_path / "r.png")
    mine = [{"x": 200, "y": 150, "color": "#2040c0", "size": 10}]
    session = app.guide_start({"m": model}, str(tmp_path / "t.png"), "m", SIZE, hints=mine)
    session, drawn = app.guide_reference(session, str(tmp_path / "r.png"))
    hints = list(session.hints)
    assert len(hints) > 20 and hints[-1] == mine[0]  # the person's hint kept, last
    assert json.loads(open(app.hints_download(session)).read()) == hints  # the hints file to edit and load back
    assert Image.open(drawn).size[0] > Image.open(drawn).size[1]  # side by side
    automatic = colorize_image(model, target, SIZE)
    assert ab_error(session.image().convert("RGB"), target) < ab_error(automatic, target)
    first = hints[0]  # a reference's hint is editable like any other: selected, moved, deleted, undone
    picked = app.guide_touch(session, first["x"], first["y"])
    assert picked.selected == 0 and picked.hints == session.hints
    moved = app._step(app.steps.move, picked, 5, 5)
    assert moved.hints[0] == {**first, "x": 5, "y": 5} and moved.hints[1:] == session.hints[1:]
    assert app._step(app.steps.delete, moved).hints == session.hints[1:]
    assert app.steps.undo(session).hints == tuple(mine)  # the reference's hints taken back in one step
    Image.fromarray(data.camera()).save(tmp_path / "gray.png")
    with pytest.raises(Exception, match="no colour to give"):
        app.guide_reference(session, str(tmp_path / "gray.png"))


@pytest.mark.slow
def test_the_reference_pairs_benchmark_runs_at_its_smallest(tiny_checkpoint, tmp_path, capsys):
    import runpy
    from pathlib import Path

    (tmp_path / "photos").mkdir()
    for name in ("astronaut", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(tmp_path / "photos" / f"{name}.png")
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors", seed=3, size=SIZE)
    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "reference_pairs.py"))
    bench["main"](["--photos", str(tmp_path / "photos"), "--model", str(ckpt), "--out", str(tmp_path / "out"),
                   "--clips", "0"])
    said = capsys.readouterr().out
    assert all(f"| {kind} | 2 |" in said for kind in ("same", "mismatched", "clip"))
    assert (tmp_path / "out" / "pairs.csv").read_text().count("\n") == 6


def test_a_persons_bad_hints_for_one_photo_are_refused_before_anything_is_written(model, pair, tmp_path):
    target, reference = pair
    target.save(tmp_path / "target.png")
    reference.save(tmp_path / "ref.png")
    bad = [{"x": 900, "y": 10, "color": "red"}]  # outside the 400x300 target
    with pytest.raises(ValueError, match="hint 1 of 1 .*outside"):
        apply_paths(model, [tmp_path / "target.png"], tmp_path / "out", Rendering(SIZE),
                    ReferenceHints(model, tmp_path / "ref.png", bad), progress=False)
    assert not (tmp_path / "out").exists()
