"""Colour hints: the encoding, the widened generator's identity, the sampler against Zhang et al.'s distribution,
fixed validation hints, a user's hints file and colorizing with it."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from skimage import color, data

from colorize.cli import main
from colorize.config import DataConfig, MachineConfig
from colorize.hintmaps import (
    DEFAULT_HINT_FRACTION,
    HINT_P,
    check_hints,
    draw_hints,
    draw_hints_per_photo,
    hint_transforms,
    paint_hints,
    photo_seeds,
    read_hints_file,
    user_hint_map,
)
from colorize.archive import colorize_archive
from colorize.inference import colorize_image
from colorize.lab import encode_hints, generator_input, lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net
from colorize.loaders import make_dataloaders
from colorize.models import checkpoint_spec, load_generator, save_generator, widen_for_hints
from colorize.propagate import propagate

SIZE = 64  # the tiny generators' size


def photos(names=("astronaut", "coffee", "chelsea"), size=(SIZE, SIZE)):
    """Real photos resized to (W,H) -> L (B,1,H,W) and ab (B,2,H,W) in network scaling."""
    pixels = [np.asarray(Image.fromarray(getattr(data, n)()).convert("RGB").resize(size)) for n in names]
    return rgb_to_lab_net(pixels_to_rgb(np.stack(pixels)))


@pytest.fixture(scope="module")
def automatic(tiny_generator):
    return tiny_generator(SIZE).eval()


@pytest.fixture(scope="module")
def widened(automatic):
    return widen_for_hints(automatic)


# ---------------------------------------------------------------------------------------- encoding


def test_hint_map_is_ab_where_hinted_zero_elsewhere_and_a_mask():
    ab = torch.randn(2, 2, 5, 7)
    mask = torch.zeros(2, 1, 5, 7)
    mask[0, 0, 1:3, 2:4] = 1
    hints = encode_hints(ab, mask)
    assert hints.shape == (2, 3, 5, 7)
    assert torch.equal(hints[:, :2], ab * mask) and torch.equal(hints[:, 2:], mask)
    assert hints[1].abs().sum() == 0
    x = generator_input(torch.zeros(2, 1, 5, 7), hints)
    assert x.shape == (2, 4, 5, 7) and torch.equal(x[:, 1:], hints)
    assert torch.equal(generator_input(torch.ones(2, 1, 5, 7))[:, 1:], torch.zeros(2, 3, 5, 7))
    with pytest.raises(ValueError, match="does not fit"):
        generator_input(torch.zeros(2, 1, 5, 7), torch.zeros(2, 2, 5, 7))


# ------------------------------------------------------------------------------- the widened model


def test_widened_generator_gives_exactly_the_automatic_output_on_real_photos(automatic, widened):
    L, ab = photos()
    hints = paint_hints(ab, draw_hints_per_photo([1, 2, 3], SIZE, SIZE, count=20))
    assert hints[:, 2].sum() > 100  # real hints were given
    with torch.no_grad():
        expected = automatic(L)
        without, with_hints = widened(generator_input(L)), widened(generator_input(L, hints))
    assert expected.abs().mean() > 1e-3
    torch.testing.assert_close(without, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(with_hints, expected, rtol=0, atol=1e-6)  # no hint reaches the output yet


def test_widened_generator_records_four_channels_and_round_trips(widened, tmp_path):
    assert widened.spec.in_channels == 4 and widened.spec.takes_hints
    assert widened[0][0].in_channels == 4 and widened[0][0].weight[:, 1:].abs().sum() == 0
    ckpt = save_generator(widened, tmp_path / "hints.safetensors")
    assert checkpoint_spec(ckpt).in_channels == 4
    x = generator_input(*photos()[:1])
    with torch.no_grad():
        assert torch.equal(load_generator(ckpt)(x), widened(x))


def test_hints_can_be_learned_from_the_start(automatic):
    wide = widen_for_hints(automatic).train()
    L, ab = photos()
    hints = paint_hints(ab, draw_hints_per_photo([4, 5, 6], SIZE, SIZE, count=10))
    (wide(generator_input(L, hints)) - ab).abs().mean().backward()
    assert wide[0][0].weight.grad[:, 1:].abs().sum() > 0  # the first conv's hint weights get a gradient


def test_only_an_automatic_generator_is_widened(widened):
    with pytest.raises(ValueError, match="automatic generator"):
        widen_for_hints(widened)


# ----------------------------------------------------------------------------------------- sampler


@pytest.fixture(scope="module")
def many_draws():
    return draw_hints(torch.Generator().manual_seed(0), 40_000, 256, 256)


def test_hint_counts_are_geometric_with_p_one_eighth(many_draws):
    counts = many_draws.count.numpy()
    assert abs(counts.mean() - (1 - HINT_P) / HINT_P) < 0.25  # mean 7; standard error 0.037
    assert abs((counts == 0).mean() - HINT_P) < 0.01  # one image in eight gets none
    assert abs((counts == 1).mean() - HINT_P * (1 - HINT_P)) < 0.01
    k = np.arange(30)  # goodness of fit over 0..29 and a tail bin
    expected = np.append(HINT_P * (1 - HINT_P) ** k, (1 - HINT_P) ** 30) * len(counts)
    observed = np.append(np.bincount(np.minimum(counts, 30), minlength=31)[:30], (counts >= 30).sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_patch_sides_are_uniform_from_1_to_9(many_draws):
    live = torch.arange(many_draws.side.shape[1])[None] < many_draws.count[:, None]
    sides = many_draws.side[live].numpy()
    assert sides.min() == 1 and sides.max() == 9
    assert stats.chisquare(np.bincount(sides, minlength=10)[1:]).pvalue > 1e-3


def exact_corner_probabilities(extent, side):
    """P(corner = j) for int(clip(N((E-P+1)/2, ((E-P+1)/4)^2), 0, E-P)): the clipped mass lands on 0 and E-P."""
    span = extent - side + 1
    cdf = stats.norm(span / 2, span / 4).cdf
    edges = np.arange(0, extent - side + 1, dtype=float)  # corner j covers [j, j+1); the last one [E-P, inf)
    upper = np.append(cdf(edges[1:]), 1.0)
    lower = np.append(0.0, cdf(edges[1:]))
    return upper - lower


@pytest.mark.parametrize("side", [1, 6, 9])
def test_positions_follow_the_centre_biased_clipped_gaussian(side):
    H = W = 40
    d = draw_hints(torch.Generator().manual_seed(side), 8000, H, W, sides=(side, side), count=3)
    expected = exact_corner_probabilities(H, side)
    for corner in (d.top, d.left):
        observed = np.bincount(corner.flatten().numpy(), minlength=H - side + 1)
        assert len(observed) == H - side + 1  # never past the last corner that fits
        assert stats.chisquare(observed, expected * observed.sum()).pvalue > 1e-3
    j = np.arange(H - side + 1)
    mean, sd = (expected * j).sum(), np.sqrt((expected * j**2).sum() - (expected * j).sum() ** 2)
    assert abs(d.top.double().mean().item() - mean) < 0.2 and abs(d.top.double().std().item() - sd) < 0.2
    assert abs(mean - (H - side) / 2) < 0.6 and 0.8 < sd / ((H - side + 1) / 4) < 1.0  # centred; clipped at 2 sd
    # the test can fail: uniform corners do not pass it
    uniform = np.bincount(np.random.default_rng(0).integers(0, H - side + 1, 24000), minlength=H - side + 1)
    assert stats.chisquare(uniform, expected * uniform.sum()).pvalue < 1e-6


def test_each_patch_has_the_mean_true_ab_of_its_square():
    _, ab = photos()
    draws = draw_hints_per_photo([7, 8, 9], SIZE, SIZE, count=1, sides=(5, 5))
    hints = paint_hints(ab, draws)
    for i in range(3):
        t, l = draws.top[i, 0].item(), draws.left[i, 0].item()
        assert hints[i, 2].sum() == 25 and hints[i, 2, t:t + 5, l:l + 5].sum() == 25
        mean = ab[i, :, t:t + 5, l:l + 5].double().mean(dim=(1, 2))
        patch = hints[i, :2, t:t + 5, l:l + 5].double()
        torch.testing.assert_close(patch, mean[:, None, None].expand_as(patch), rtol=0, atol=1e-6)
        assert hints[i, :2].abs().sum().item() == pytest.approx(patch.abs().sum().item(), rel=1e-6)  # nothing outside


def test_a_later_patch_paints_over_an_earlier_one():
    ab = torch.zeros(1, 2, 10, 10)
    ab[0, 0, :, 5:] = 0.5  # right half: a = 0.5
    from colorize.hintmaps import HintDraws
    draws = HintDraws(torch.tensor([2]), torch.tensor([[4, 2]]), torch.tensor([[0, 1]]), torch.tensor([[4, 5]]))
    hints = paint_hints(ab, draws)
    assert hints[0, 0, 0, 4] == pytest.approx(0.375)  # first patch: columns 4..7, three of them at 0.5
    assert hints[0, 0, 1, 5] == pytest.approx(0.5)  # second patch on top: columns 5..6, all at 0.5
    assert hints[0, 2].sum() == 16


def test_per_photo_hints_do_not_depend_on_the_batch():
    L, ab = photos()
    both = paint_hints(ab, draw_hints_per_photo(photo_seeds(L, 0), SIZE, SIZE))
    alone = paint_hints(ab[1:2], draw_hints_per_photo(photo_seeds(L[1:2], 0), SIZE, SIZE))
    assert torch.equal(both[1:2], alone)
    assert photo_seeds(L, 0) != photo_seeds(L, 1) and len(set(photo_seeds(L, 0))) == 3


def test_dataloaders_get_fresh_training_hints_and_fixed_validation_hints(fresh_photos):
    dls = make_dataloaders(fresh_photos, DataConfig(size=32, bs=2, repeats=2),
                           MachineConfig(workers=0), device="cpu", progress=False)
    dls.add_tfms(hint_transforms(seed=3), "after_batch")
    valid = [[x.clone() for x, _ in dls.valid] for _ in range(2)]
    assert all(x.shape[1] == 4 for x in valid[0])
    assert all(torch.equal(a, b) for a, b in zip(*valid))  # the same hints every epoch
    assert sum(x[:, 3].sum() for x in valid[0]) > 0
    x1, ab1 = dls.train.one_batch()
    x2, _ = dls.train.one_batch()
    assert x1.shape == (2, 4, 32, 32) and ab1.shape == (2, 2, 32, 32)
    assert not torch.equal(x1[:, 1:], x2[:, 1:])  # new draws
    assert dls.train.decode((x1, ab1))[0].shape[1] == 3  # decodes back to RGB for show_batch


# -------------------------------------------------------------------------------------- user hints


def write(tmp_path, content, name="hints.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("content, message", [
    ("[{x: 1}]", "is not JSON"),
    ({"x": 1, "y": 2, "color": "red"}, "not a list"),
])
def test_a_file_that_is_not_a_json_list_is_refused(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        read_hints_file(write(tmp_path, content))


@pytest.mark.parametrize("entry, message", [
    ({"x": 100, "y": 20, "color": "red"}, r"hint 2 of 2 .*outside the photo, which is 80x60"),
    ({"x": 10, "y": -1, "color": "red"}, "outside the photo"),
    ({"x": 10, "y": 20, "color": "reddish"}, r'hint 2 of 2 .*colour "reddish" does not parse'),
    ({"x": 10, "y": 20, "color": 12}, "does not parse"),
    ({"x": 10, "y": 20}, "missing color"),
    ({"x": 10, "y": 20, "colour": "red"}, "unknown key colour"),
    ({"x": "10", "y": 20, "color": "red"}, "x must be a number"),
    ({"x": 10, "y": 20, "color": "red", "size": 0}, "must be > 0"),
    ([10, 20], "not an object"),
])
def test_a_bad_entry_is_named(entry, message):
    with pytest.raises(ValueError, match=message):
        check_hints([{"x": 1, "y": 2, "color": "#fff"}, entry], (80, 60))


def test_colours_parse_as_hex_and_css_names():
    points = check_hints([{"x": 0, "y": 0, "color": "#b03020"}, {"x": 79.5, "y": 59, "color": "#f00"},
                          {"x": 5, "y": 5, "color": "firebrick", "size": 12}], (80, 60))
    assert [p.rgb for p in points] == [(176, 48, 32), (255, 0, 0), (178, 34, 34)]
    a, b = points[0].ab().tolist()
    lab = color.rgb2lab(np.array([[[176, 48, 32]]], dtype=np.uint8))[0, 0]
    assert a * 110 == pytest.approx(lab[1], abs=0.05) and b * 110 == pytest.approx(lab[2], abs=0.05)


def test_user_hints_land_at_their_place_in_the_render_square():
    points = check_hints([{"x": 300, "y": 50, "color": "#2060c0", "size": 40}, {"x": 10, "y": 190, "color": "lime"}],
                         (400, 200))
    hints = user_hint_map(points, (400, 200), 64)  # x scaled by 64/400, y by 64/200
    mask = hints[0, 2]
    ys, xs = mask.nonzero(as_tuple=True)
    first = (xs > 32)
    assert xs[first].min() == 45 and xs[first].max() == 50  # 40 px wide -> 6 render px around x = 48.1
    assert ys[first].min() == 10 and ys[first].max() == 22  # 40 px tall -> 13 render px around y = 16.2
    side = round(DEFAULT_HINT_FRACTION * 400 * 64 / 200)  # default: 5/256 of the longer side
    assert (~first).sum() == round(DEFAULT_HINT_FRACTION * 400 * 64 / 400) * side
    assert torch.allclose(hints[0, :2, 16, 48], points[0].ab())
    assert hints[0, :2][:, mask == 0].abs().sum() == 0


# --------------------------------------------------------------------------------- colorizing with hints


def test_a_hint_model_without_hints_colorizes_as_the_automatic_one(automatic, widened):
    photo = Image.fromarray(data.astronaut()).resize((90, 70))
    assert np.array_equal(np.asarray(colorize_image(widened, photo, SIZE)), np.asarray(colorize_image(automatic, photo, SIZE)))


def test_hints_reach_a_hint_model_and_the_lightness_stays_the_photos(tiny_generator):
    model = tiny_generator(SIZE, in_channels=4, seed=1).eval()  # hint weights not zero
    photo = Image.fromarray(data.coffee()).resize((120, 80))
    plain = np.asarray(colorize_image(model, photo, SIZE), dtype=float)
    hinted = colorize_image(model, photo, SIZE, hints=[{"x": 60, "y": 40, "color": "#00ff00", "size": 30}])
    assert np.abs(np.asarray(hinted, dtype=float) - plain).mean() > 0.5
    L = color.rgb2lab(np.asarray(photo))[..., 0]
    assert np.abs(color.rgb2lab(np.asarray(hinted))[..., 0] - L).mean() < 1.0


@pytest.mark.parametrize("propagation", ["fast", "levin"])
def test_an_automatic_model_follows_hints_by_propagation_and_keeps_the_lightness(automatic, propagation):
    photo = Image.fromarray(data.coffee()).resize((120, 80))
    hint = {"x": 60, "y": 40, "color": "#20c020", "size": 12}
    plain = colorize_image(automatic, photo, SIZE)
    hinted = colorize_image(automatic, photo, SIZE, hints=[hint], propagation=propagation)
    lab_plain, lab_hinted = color.rgb2lab(np.asarray(plain)), color.rgb2lab(np.asarray(hinted))
    want = color.rgb2lab(np.array([[[0x20, 0xC0, 0x20]]], dtype=np.uint8))[0, 0, 1:]  # the hint's (a, b)
    at = lab_hinted[37:44, 57:64, 1:].reshape(-1, 2).mean(0)  # the middle of the hinted patch
    before = lab_plain[37:44, 57:64, 1:].reshape(-1, 2).mean(0)
    assert np.linalg.norm(at - want) < 0.5 * np.linalg.norm(before - want)  # far closer to the hint than without
    hue = np.arctan2(at[1], at[0]) - np.arctan2(want[1], want[0])  # the hint's hue; its chroma may exceed the gamut
    assert abs(np.angle(np.exp(1j * hue))) < 0.15
    L = color.rgb2lab(np.asarray(photo))[..., 0]
    assert np.abs(lab_hinted[..., 0] - L).mean() < 0.3
    off = colorize_image(automatic, photo, SIZE, hints=[hint], propagation="off")
    assert np.array_equal(np.asarray(off), np.asarray(plain))  # "off": an automatic model ignores the hints


def test_bad_hints_write_nothing(widened, tmp_path):
    Image.fromarray(data.chelsea()).save(tmp_path / "cat.png")
    with pytest.raises(ValueError, match="hint 1 of 1 .*outside"):
        colorize_archive(widened, [tmp_path / "cat.png"], tmp_path / "out", SIZE, hints=[{"x": 5000, "y": 1, "color": "red"}])
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    with pytest.raises(ValueError, match="one photo"):
        colorize_archive(widened, [tmp_path], tmp_path / "out", SIZE, hints=[{"x": 5, "y": 1, "color": "red"}])
    assert not (tmp_path / "out").exists()


def test_apply_with_a_hints_file(widened, tmp_path, caplog, tiny_checkpoint):
    ckpt = save_generator(widened, tmp_path / "hints.safetensors")
    Image.fromarray(data.chelsea()).save(tmp_path / "cat.png")  # 451 x 300
    good = write(tmp_path, [{"x": 410, "y": 220, "color": "#b03020"}, {"x": 95, "y": 40, "color": "#6090d0", "size": 12}])
    args = ["apply", str(tmp_path / "cat.png"), "--model", str(ckpt), "--render-size", str(SIZE), "--hints"]
    assert main(args + [str(good), "--out", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "cat.png").size == (451, 300)
    bad = write(tmp_path, [{"x": 410, "y": 220, "color": "#b03020"}, {"x": 95, "y": 400, "color": "blue"}], "bad.json")
    assert main(args + [str(bad), "--out", str(tmp_path / "out2")]) == 2
    assert "hint 2 of 2" in caplog.text and "outside the photo" in caplog.text
    assert not (tmp_path / "out2").exists()
    plain = tiny_checkpoint(tmp_path / "auto.safetensors", size=SIZE)
    assert main(["apply", str(tmp_path / "cat.png"), "--model", str(plain), "--render-size", str(SIZE), "--hints",
                 str(good), "--propagation", "levin", "--reach", "2", "--out", str(tmp_path / "out3")]) == 0
    assert Image.open(tmp_path / "out3" / "cat.png").size == (451, 300)  # an automatic model takes hints too


# -------------------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def curve_report(tmp_path_factory, tiny_checkpoint):
    """`evaluate --hints` on real photos: a random 4-channel generator (its hint weights are not zero) and an
    automatic one."""
    from colorize.evaluate import EvalOptions, evaluate

    tmp = tmp_path_factory.mktemp("curve")
    (tmp / "data" / "test").mkdir(parents=True)
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(data, name)()).convert("RGB").save(tmp / "data" / "test" / f"{name}.png")
    ckpts = [tiny_checkpoint(tmp / "random" / "best.safetensors", 2, size=SIZE, in_channels=4),
             tiny_checkpoint(tmp / "auto" / "best.safetensors", 3, size=SIZE)]
    report = evaluate(tmp / "data", ckpts, tmp / "report", EvalOptions(size=32, lpips_net=None, fid_feature=None,
                                                                       progress=False, hints=(20, 0, 5), bs=3))
    return report, ckpts, tmp


def test_hint_curve_scores_every_model_and_levin_from_gray(curve_report):
    from colorize.evaluate import BASELINE, LEVIN

    report, _, tmp = curve_report
    curve = json.loads((tmp / "report" / "results.json").read_text())["hint_curve"]
    assert curve["counts"] == [0, 5, 20]
    rows = curve["models"]
    assert list(rows) == ["random/best", "auto/best", LEVIN]
    assert rows["random/best"]["takes_hints"] and not rows["auto/best"]["takes_hints"]
    for name, start in (("random/best", "random/best"), ("auto/best", "auto/best"), (LEVIN, BASELINE)):
        # 0 hints is the automatic score of the main table (Levin et al. from gray: the grayscale baseline) ...
        assert rows[name]["psnr_rgb"][0] == pytest.approx(report.results["models"][start]["psnr_rgb"], abs=1e-4)
        # ... and every method, the automatic one included, gains from the true colours at 20 hints
        assert rows[name]["psnr_ab"][2] > rows[name]["psnr_ab"][0] + 0.5, name
    md = report.markdown
    assert "PSNR RGB (dB) against the number of colour hints" in md and "n/a" not in md and f"| {LEVIN} |" in md
    assert (tmp / "report" / "hint_curve.png").stat().st_size > 1000


def test_hint_curve_matches_an_independent_computation(curve_report):
    from skimage.metrics import peak_signal_noise_ratio

    from colorize.evaluate import hint_seeds, protocol_crop
    from colorize.hintmaps import eval_side

    report, ckpts, tmp = curve_report
    model = load_generator(ckpts[0])
    files = report.results["files"]
    psnrs = []
    for rel in files:
        crop = protocol_crop(Image.open(tmp / "data" / rel), 32)
        L, ab = rgb_to_lab_net(pixels_to_rgb(crop))
        side = eval_side(32)
        draws = draw_hints_per_photo(hint_seeds([rel], 5, 42), 32, 32, sides=(side, side), count=5)
        assert draws.count.tolist() == [5] and (draws.side == side).all()
        hints = paint_hints(ab, draws)
        with torch.no_grad():  # the hint model reads the hints, then what it misses there is spread (as apply does)
            pred_ab = propagate(L, model(generator_input(L, hints)), hints, "fast")
        L_oracle = torch.from_numpy(color.rgb2lab(crop)[..., 0]).float()[None, None] / 50 - 1
        pred = lab_net_to_rgb(L_oracle, pred_ab)[0].permute(1, 2, 0).double().numpy() * 255
        pred = pred.round()
        psnrs.append(peak_signal_noise_ratio(crop.astype(float), pred, data_range=255))
    assert report.results["hint_curve"]["models"]["random/best"]["psnr_rgb"][1] == pytest.approx(np.mean(psnrs), abs=0.05)


def test_evaluate_hints_flag_parses_counts(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--data", str(tmp_path), "--models", "m", "--out", str(tmp_path), "--hints", "0,x"])
    assert "whole numbers of hints" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- ONNX


def test_onnx_export_of_a_hint_model_matches_pytorch_on_real_photos(tmp_path, tiny_checkpoint):
    import onnx
    import onnxruntime as ort

    from colorize.export import export_onnx

    ckpt = tiny_checkpoint(tmp_path / "h.safetensors", 3, size=SIZE, in_channels=4)
    path = export_onnx(ckpt, tmp_path / "hints.onnx")
    proto = onnx.load(str(path))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*proto.graph.input, *proto.graph.output]}
    assert dims == {"L": ["batch", 1, "height", "width"], "hints": ["batch", 3, "height", "width"],
                    "ab": ["batch", 2, "height", "width"]}
    assert "hints (B,3,H,W)" in proto.doc_string
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = load_generator(ckpt)
    for names, size in [(("astronaut", "coffee"), (64, 64)), (("chelsea",), (50, 37))]:
        L, ab = photos(names, size)
        hints = paint_hints(ab, draw_hints_per_photo(range(len(names)), size[1], size[0], count=8))
        with torch.no_grad():
            expected = model(generator_input(L, hints)).numpy()
        (got,) = session.run(["ab"], {"L": L.numpy(), "hints": hints.numpy()})
        np.testing.assert_allclose(got, expected, atol=1e-3)
        (plain,) = session.run(["ab"], {"L": L.numpy(), "hints": np.zeros_like(hints.numpy())})
        assert np.abs(got - plain).mean() > 1e-4  # the hints input is really wired in


# ------------------------------------------------------------------------------------- the third stage


@pytest.fixture(scope="module")
def hint_run(tmp_path_factory, photos, tiny_checkpoint):
    """A smoke hint run from an automatic generator checkpoint, on the sample photos."""
    from colorize.config import HINTS_PRESETS
    from colorize.stages import train

    tmp = tmp_path_factory.mktemp("stage")
    ckpt = tiny_checkpoint(tmp / "l1" / "best.safetensors")
    learn = train(photos, tmp / "run", HINTS_PRESETS["smoke"], generator=ckpt, device="cpu")
    return learn, ckpt, photos, tmp


def test_stage_writes_a_hint_generator_run_folder(hint_run):
    learn, ckpt, _, tmp = hint_run
    run = tmp / "run"
    for name in ("best.safetensors", "last.safetensors", "state.pt", "history.csv", "config.json",
                 "gallery_epoch001.png"):
        assert (run / name).exists(), name
    assert checkpoint_spec(run / "best.safetensors").in_channels == 4
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["hint_p"] == HINT_P and config["recipe"]["hint_max_side"] == 9
    assert config["generator"].startswith("best.safetensors sha256:")
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss,valid_loss,psnr") and len(history) == 2
    assert learn.dls.train.one_batch()[0].shape[1] == 4  # the batches carry hints


def test_stage_resumes_and_refuses_another_generator(hint_run, tiny_checkpoint):
    from colorize.config import HINTS_PRESETS
    from colorize.stages import train

    _, ckpt, photos_dir, tmp = hint_run
    before = (tmp / "run" / "last.safetensors").read_bytes()
    train(photos_dir, tmp / "run", HINTS_PRESETS["smoke"], generator=ckpt, device="cpu")  # finished: no-op
    assert (tmp / "run" / "last.safetensors").read_bytes() == before
    other = tiny_checkpoint(tmp / "other" / "best.safetensors", 1)
    with pytest.raises(ValueError, match="different recipe"):
        train(photos_dir, tmp / "run", HINTS_PRESETS["smoke"], generator=other, device="cpu")


def test_hints_command_hands_the_stage_the_recipe_its_flags_say(monkeypatch, capsys):
    """The command's own part: flags parsed into the recipe the stage trains (the stage is tested above)."""
    from colorize import stages
    from colorize.config import HINTS_PRESETS, override

    calls = []
    monkeypatch.setattr(stages, "train", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["hints", "--data", "photos", "--generator", "l1/best.safetensors", "--out", "runs/h",
                 "--preset", "smoke", "--hint-max-side", "5", "--device", "cpu"]) == 0
    ((args, kwargs),) = calls
    assert args == ("photos", "runs/h", override(HINTS_PRESETS["smoke"], hint_max_side=5))
    assert kwargs["generator"] == "l1/best.safetensors" and kwargs["device"] == "cpu"
    assert "--hints hints.json" in capsys.readouterr().out
    monkeypatch.setattr("colorize.run.rank_distrib", lambda: 1)  # another process of a distributed job: silent
    assert main(["hints", "--data", "photos", "--generator", "l1/best.safetensors", "--out", "runs/h"]) == 0
    assert len(calls) == 2 and capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------- widgets


def test_hint_picker_places_hints_and_recolorizes(tmp_path, tiny_generator):
    from colorize.widgets import HintPicker

    model = tiny_generator(SIZE, in_channels=4, seed=1).eval()
    photo = Image.fromarray(data.coffee()).resize((120, 80))
    picker = HintPicker(model, photo, render_size=SIZE)
    plain = np.asarray(picker.result)
    assert picker.view.value[:4] == b"\x89PNG"
    picker.x.value, picker.y.value, picker.colour.value, picker.size.value = 30, 60, "#00ff00", 20
    picker.add.click()
    assert picker.hints == [{"x": 30, "y": 60, "color": "#00ff00", "size": 20}]
    assert np.abs(np.asarray(picker.result, dtype=float) - plain).mean() > 0.5
    assert np.array_equal(np.asarray(colorize_image(model, photo, SIZE, hints=picker.hints)), np.asarray(picker.result))
    picker.undo.click()
    assert picker.hints == [] and np.array_equal(np.asarray(picker.result), plain)
    picker.place({"x": 10.4, "y": 5, "color": "navy"})  # as a hints-file entry: the default size
    assert picker.hints == [{"x": 10, "y": 5, "color": "navy", "size": 2}]
    automatic = HintPicker(tiny_generator(SIZE).eval(), photo, render_size=SIZE)
    automatic.place({"x": 60, "y": 40, "color": "#00ff00", "size": 20})  # any model: propagation alone
    assert np.abs(np.asarray(automatic.result, dtype=float) - np.asarray(colorize_image(
        automatic.model, photo, SIZE), dtype=float)).mean() > 0.5
    with pytest.raises(ValueError, match="render size 100"):
        HintPicker(model, photo, render_size=100)


def test_hints_from_photo_take_the_photos_own_colours():
    from colorize.hintmaps import hints_from_photo

    photo = Image.new("RGB", (200, 100), (30, 60, 200))
    photo.paste((220, 40, 20), (100, 0, 200, 100))  # right half red
    hints = hints_from_photo(photo, 12, seed=0)
    assert len(hints) == 12 and check_hints(hints, photo.size)
    for h in hints:
        if abs(h["x"] - 100) > h["size"]:  # away from the border between the halves
            assert h["color"] == ("#dc2814" if h["x"] > 100 else "#1e3cc8")
