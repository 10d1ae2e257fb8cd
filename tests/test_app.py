"""The web app, served on a free local port: driven through its API with gradio_client, and in headless Chromium.

Every socket connection the tests' process makes is checked: only loopback addresses are allowed, so the
app (and Gradio under it) is shown to reach nothing outside this machine.
"""

import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color, data

gr = pytest.importorskip("gradio", reason="the app needs gradio: pip install -e '.[dev]'")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from colorize import app as colorize_app  # noqa: E402
from colorize import guide  # noqa: E402
from colorize import cli  # noqa: E402
from colorize.hintmaps import check_hints, read_hints_file  # noqa: E402
from colorize.inference import colorize_image  # noqa: E402
from colorize.swatches import CELL, GRID  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")  # Debian, Ubuntu, Google's build
# a path: the slider test saves its screenshot there and the Guide test its own beside it (guide.png), e.g.
# COLORIZE_SCREENSHOT=docs/app.png: the README's pictures
SCREENSHOT = "COLORIZE_SCREENSHOT"


def ab(image):
    """CIE ab (H,W,2) of a PIL image, by scikit-image."""
    return color.rgb2lab(np.asarray(image.convert("RGB")) / 255.0)[..., 1:]


def photo(path, size=None, mode="RGB"):
    """scikit-image's cat photo (451x300) saved at `path`, optionally resized and converted (e.g. to gray L)."""
    im = Image.fromarray(data.chelsea()).convert(mode)
    (im.resize(size) if size else im).save(path)
    return path


def lightness(image):
    """CIE L (H,W) of an RGB PIL image, by scikit-image."""
    return color.rgb2lab(np.asarray(image.convert("RGB")) / 255.0)[..., 0]


class LoopbackOnly:
    """Refuses, and records, any socket connection to an address outside 127.0.0.0/8 and ::1."""

    def __init__(self):
        self.refused = []
        self.real_connect, self.real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(self, sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host != "localhost" and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
                self.refused.append(address)
                raise OSError(f"test refused a connection to {address}: the app must stay on this machine")

    def install(self, mp):
        def connect(sock, address):
            self.check(sock, address)
            return self.real_connect(sock, address)

        def connect_ex(sock, address):
            self.check(sock, address)
            return self.real_connect_ex(sock, address)

        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(scope="module")
def network():
    guard = LoopbackOnly()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")  # gradio_client reads this even when told analytics_enabled=False
        mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        guard.install(mp)
        yield guard
    assert not guard.refused, f"something tried to reach the internet: {guard.refused}"


@pytest.fixture(scope="module")
def server(network, tmp_path_factory, tiny_checkpoint, free_port):
    """The app on a free port with two tiny automatic generators and a hint one; (url, client, folder of test files)."""
    tmp = tmp_path_factory.mktemp("app")
    checkpoints = [tiny_checkpoint(tmp / "run-a" / "best.safetensors", 0),
                   tiny_checkpoint(tmp / "run-b" / "last.safetensors", 1),
                   tiny_checkpoint(tmp / "run-h" / "best.safetensors", 2, in_channels=4)]  # hint weights random, not 0
    app = colorize_app.build_app(checkpoints, device="cpu")
    url, share_url = colorize_app.launch(app, port=free_port())
    assert url.startswith("http://127.0.0.1:") and share_url is None
    yield url, Client(url, verbose=False, analytics_enabled=False), tmp
    app.close()


def test_colorize_endpoint_keeps_size_and_lightness(server):
    url, client, tmp = server
    src = photo(tmp / "cat.jpg", size=(333, 250))
    out = Image.open(client.predict(handle_file(src), api_name="/colorize"))  # model and render size: defaults
    assert out.format == "PNG" and out.size == (333, 250)
    dL = np.abs(lightness(out) - lightness(Image.open(src)))
    assert dL.mean() < 1.0, f"mean |dL| {dL.mean():.3f}"


def test_model_and_render_size_are_chosen_and_checked(server):
    url, client, tmp = server
    src = photo(tmp / "cat.png")
    a = np.asarray(Image.open(client.predict(handle_file(src), "run-a/best", 64, api_name="/colorize")))
    b = np.asarray(Image.open(client.predict(handle_file(src), "run-b/last", 64, api_name="/colorize")))
    assert a.shape == b.shape == (300, 451, 3) and not np.array_equal(a, b)  # two generators, two results
    with pytest.raises(AppError, match=r"nope is not in the list of choices: \['run-a/best', 'run-b/last', 'run-h/best'\]"):
        client.predict(handle_file(src), "nope", 64, api_name="/colorize")
    with pytest.raises(AppError, match="render size 40: choose a multiple of 32"):
        client.predict(handle_file(src), "run-a/best", 40, api_name="/colorize")


def test_unreadable_files_get_a_clear_message_and_the_server_keeps_serving(server):
    url, client, tmp = server
    (tmp / "notes.txt").write_text("not a photo")
    (tmp / "notes.jpg").write_text("not a photo either")
    good = photo(tmp / "good.jpg")
    truncated = tmp / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AppError, match=r"Invalid file type.*'\.jpg'"):  # refused by the upload's file types
        client.predict(handle_file(tmp / "notes.txt"), api_name="/colorize")
    with pytest.raises(AppError, match=r"^notes\.jpg is not a photo this app can read \(cannot identify image "
                                       r"file 'notes\.jpg'\); upload a BMP, JPEG"):
        client.predict(handle_file(tmp / "notes.jpg"), api_name="/colorize")
    with pytest.raises(AppError, match=r"truncated\.jpg is not a photo this app can read \(image file is truncated"):
        client.predict(handle_file(truncated), api_name="/colorize")
    assert Image.open(client.predict(handle_file(good), api_name="/colorize")).size == (451, 300)


def test_several_photos_give_a_gallery_and_one_zip(server):
    url, client, tmp = server
    a, b = photo(tmp / "a.jpg", size=(64, 48)), photo(tmp / "b.png", size=(40, 72))
    (tmp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    gallery, archive = client.predict([handle_file(a), handle_file(tmp / "broken.png"), handle_file(b)],
                                      api_name="/colorize_many")
    assert [item["caption"] for item in gallery] == ["a.png", "b.png"]
    assert [Image.open(item["image"]).size for item in gallery] == [(64, 48), (40, 72)]
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["a.png", "b.png"]
    with pytest.raises(AppError, match="none of the files could be read as a photo: broken.png"):
        client.predict([handle_file(tmp / "broken.png")], api_name="/colorize_many")


def test_a_hint_changes_the_colour_near_it_through_the_guide_endpoint(server):
    url, client, tmp = server
    src = photo(tmp / "guided-cat.png")  # 451x300
    plain = Image.open(client.predict(handle_file(src), "[]", "run-h/best", 64, api_name="/guide"))
    hinted = Image.open(client.predict(handle_file(src), '[{"x": 300, "y": 100, "color": "#00ff00"}]', "run-h/best",
                                       64, api_name="/guide"))
    assert hinted.size == plain.size == (451, 300)
    dab = np.abs(ab(hinted) - ab(plain)).sum(-1)  # (H,W) |da| + |db|
    near, far = dab[80:120, 280:320].mean(), dab[250:, :100].mean()  # around the hint; the far corner
    assert near > 1.5 and near > 3 * far, f"near the hint {near:.2f}, far from it {far:.2f}"
    dL = np.abs(lightness(hinted) - lightness(Image.open(src)))
    assert dL.mean() < 1.0
    with pytest.raises(AppError, match=r'hints: hint 1 of 1 \{"x": 500, "y": 1, "color": "red"\}: the point '
                                       r"\(500, 1\) is outside the photo, which is 451x300"):
        client.predict(handle_file(src), '[{"x": 500, "y": 1, "color": "red"}]', "run-h/best", 64, api_name="/guide")
    with pytest.raises(AppError, match="hints are not JSON"):
        client.predict(handle_file(src), "[{x: 1}", "run-h/best", 64, api_name="/guide")
    with pytest.raises(AppError, match=r"propagation 'levin' .* use propagation 'fast'"):
        client.predict(handle_file(src), "[]", "run-h/best", 512, "levin", 1.0, api_name="/guide")
    assert Image.open(client.predict(handle_file(src), "[]", "run-h/best", 64, api_name="/guide")).size == (451, 300)


def test_an_automatic_model_guides_through_the_endpoint_by_propagation(server):
    url, client, tmp = server
    src = photo(tmp / "auto-cat.png")  # 451x300
    plain = Image.open(client.predict(handle_file(src), "[]", "run-a/best", 64, api_name="/guide"))
    hint = '[{"x": 300, "y": 100, "color": "#00c000", "size": 12}]'
    fast = Image.open(client.predict(handle_file(src), hint, "run-a/best", 64, "fast", 1.0, api_name="/guide"))
    off = Image.open(client.predict(handle_file(src), hint, "run-a/best", 64, "off", 1.0, api_name="/guide"))
    assert np.array_equal(np.asarray(off), np.asarray(plain))  # the model alone ignores hints
    green = ab(Image.new("RGB", (1, 1), "#00c000"))[0, 0]
    at_hint = ab(fast)[95:105, 295:305].mean((0, 1))
    assert np.abs(at_hint - green).max() < 8, (at_hint, green)  # the hint's colour where it was placed
    dab = np.abs(ab(fast) - ab(plain)).sum(-1)
    assert dab[80:120, 280:320].mean() > 3 * dab[250:, :100].mean()  # and less far from it


@pytest.fixture(scope="module")
def guide_models(tiny_generator):
    """A hint generator whose hint weights are random (not zero), so hints change its output, and an automatic one."""
    return {"hints": tiny_generator(32, in_channels=4, seed=2).eval(), "auto": tiny_generator(32).eval()}


@pytest.mark.parametrize("name", ["hints", "auto"])
def test_guide_steps_place_recolour_undo_clear_and_download(guide_models, tmp_path, name):
    """The Guide tab's adapters, called as the page calls them: a click, a picked colour, undo, clear; any model."""
    models, src = guide_models, str(photo(tmp_path / "cat.png", size=(160, 120)))
    session = colorize_app.guide_start(models, src, name, 64)
    assert session.hints == () and session.palette() is None and session.size == (160, 120)
    assert np.array_equal(session.result, session.plain) and session.marked().shape == (120, 160, 3)
    current = session.colour_at(40, 30)

    session = colorize_app.guide_click(session, 40, 30, 4)
    colour = session.hints[-1]["color"]
    assert colour == current  # the picker starts at the model's colour there
    assert list(session.hints) == [{"x": 40, "y": 30, "color": colour, "size": 10}]  # 4 px at 64 -> 10 of 160
    palette = session.palette()
    assert palette.cells[0][0] == colour and palette.cells[0][2] == colour  # the model's colour; the one used
    assert not np.array_equal(session.marked(), session.result)  # the hint is marked

    session = colorize_app._step(guide.recolour, session, "#00ff00")
    session = colorize_app.guide_click(session, 120, 90, 4)
    assert [h["color"] for h in session.hints][0] == "#00ff00" and len(session.hints) == 2
    saved = read_hints_file(colorize_app.hints_download(session))  # the file `colorize apply --hints` reads
    assert saved == list(session.hints) and len(check_hints(saved, (160, 120))) == 2
    expected = colorize_image(models[name], Image.open(src), 64, hints=saved)
    assert np.array_equal(np.asarray(session.image()), np.asarray(expected))

    session = colorize_app._step(guide.undo, session)
    assert list(session.hints) == saved[:1]
    assert np.array_equal(np.asarray(session.image()),
                          np.asarray(colorize_image(models[name], Image.open(src), 64, hints=saved[:1])))
    session = colorize_app._step(guide.undo, colorize_app._step(guide.undo, session))  # nothing left: harmless
    assert session.hints == () and read_hints_file(colorize_app.hints_download(session)) == []
    assert np.array_equal(session.result, session.plain)
    (tmp_path / "hints.json").write_text(json.dumps(saved))
    session = colorize_app.guide_load(session, str(tmp_path / "hints.json"))
    assert list(session.hints) == saved  # a hints file uploaded is the list downloaded
    assert colorize_app._step(guide.clear, session).hints == ()
    with pytest.raises(gr.Error, match="no hint to colour yet"):
        colorize_app._step(guide.recolour, colorize_app._step(guide.clear, session), "#00ff00")
    with pytest.raises(gr.Error, match="upload a photo in the Colorize tab first"):
        colorize_app.guide_click(None, 1, 1, 4)


class Counted(torch.nn.Module):
    """A generator that counts its forward passes (and can be told to refuse any more)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.spec, self.calls, self.refuse = model, model.spec, 0, False

    def forward(self, x):
        if self.refuse:
            raise AssertionError("the network ran")
        self.calls += 1
        return self.model(x)


def test_a_guide_click_on_an_automatic_model_runs_no_network(tiny_generator, tmp_path):
    """The automatic model's prediction is kept in the session: clicks, colours, undo, another propagation or reach
    are propagation and composition alone; a hint model runs once per step; another render size runs it again."""
    src = str(photo(tmp_path / "cat.png", size=(160, 120)))
    auto = Counted(tiny_generator(32)).eval()
    session = colorize_app.guide_start({"auto": auto}, src, "auto", 64)
    assert auto.calls == 1
    auto.refuse = True
    session = colorize_app.guide_click(session, 40, 30, 4)
    session = colorize_app._step(guide.recolour, colorize_app.guide_click(session, 120, 90, 4), "#00ff00")
    session = colorize_app._step(guide.undo, colorize_app._step(guide.undo, session))  # the colour, the 2nd hint
    session = colorize_app.guide_settings({"auto": auto}, session, "auto", 64, "levin", 2.0)
    assert len(session.hints) == 1 and session.rendering.propagation == "levin"
    expected = colorize_image(tiny_generator(32).eval(), Image.open(src), session.rendering, hints=session.hints)
    assert np.array_equal(np.asarray(session.image()), np.asarray(expected))  # the same as colorizing afresh
    auto.refuse = False
    session = colorize_app.guide_settings({"auto": auto}, session, "auto", 96, "fast", 1.0)
    assert auto.calls == 2  # another render size: the model sees another picture

    hinted = Counted(tiny_generator(32, in_channels=4, seed=2)).eval()
    session = colorize_app.guide_start({"hints": hinted}, src, "hints", 64)
    session = colorize_app.guide_click(session, 40, 30, 4)
    assert hinted.calls == 2  # its own colours once, then once with the hint: it reads them


def test_a_hint_is_selected_moved_recoloured_and_deleted_on_its_own(guide_models, tmp_path):
    """The select-and-move mode's click (`guide_touch`) and *Delete selected*, as the page calls them: the moved
    hint's colour goes with it, the deleted one's goes away, the other hint stays, and each step can be undone."""
    models, src = guide_models, str(photo(tmp_path / "cat.png", size=(160, 120)))
    session = colorize_app.guide_start(models, src, "auto", 64)
    session = colorize_app._step(guide.place, session, 25, 25, 12, "#e00000")
    session = colorize_app._step(guide.place, session, 135, 95, 12, "#0000e0")
    red, blue = session.hints
    assert session.selected == 1  # the last placed

    def a_star(s, x, y):  # CIE a* around (x, y): red is high
        return float(ab(s.image())[y - 3:y + 4, x - 3:x + 4, 0].mean())

    red_there = a_star(session, 25, 25)
    on_ring = colorize_app.guide_touch(session, 29, 22)  # a click on the red hint's ring selects it, changes nothing
    assert on_ring.selected == 0 and on_ring.hints == session.hints and np.array_equal(on_ring.result, session.result)
    plain = colorize_app.guide_start(models, src, "auto", 64)
    moved = colorize_app.guide_touch(on_ring, 130, 25)  # a click elsewhere moves the selected hint there
    assert moved.hints == ({**red, "x": 130, "y": 25}, blue) and moved.selected == 0
    assert a_star(moved, 130, 25) > a_star(plain, 130, 25) + 15  # its colour is at the new place
    assert abs(a_star(moved, 25, 25) - a_star(plain, 25, 25)) < 0.25 * (red_there - a_star(plain, 25, 25))  # gone
    expected = colorize_image(models["auto"], Image.open(src), 64, hints=list(moved.hints))
    assert np.array_equal(np.asarray(moved.image()), np.asarray(expected))

    green = colorize_app._step(guide.recolour, moved, "#00c000")  # the selected hint, not the last
    assert green.hints == ({**red, "x": 130, "y": 25, "color": "#00c000"}, blue)
    gone = colorize_app._step(guide.delete, green)
    assert gone.hints == (blue,) and gone.selected == 0
    assert abs(a_star(gone, 130, 25) - a_star(plain, 130, 25)) < 1 and np.abs(
        ab(gone.image())[90:100, 130:140] - ab(plain.image())[90:100, 130:140]).mean() > 5  # red gone, blue kept
    back = colorize_app._step(guide.undo, gone)
    assert back.hints == green.hints and back.selected == 0  # each step undone in turn
    assert colorize_app._step(guide.undo, back).hints == moved.hints
    assert colorize_app._step(guide.undo, colorize_app._step(guide.undo, back)).hints == session.hints
    with pytest.raises(gr.Error, match="no hint there"):
        colorize_app._step(guide.select, session, 80, 60)
    with pytest.raises(gr.Error, match="no hint to move yet"):
        colorize_app.guide_touch(plain, 10, 10)


def test_a_suggested_colour_recolours_the_last_hint(guide_models, tmp_path):
    models, src = guide_models, str(photo(tmp_path / "cat.png", size=(160, 120)))
    session = colorize_app.guide_click(colorize_app.guide_start(models, src, "auto", 64), 80, 60, 6)
    palette = session.palette()
    row, col = next((i, j) for i, r in enumerate(palette.cells[1:], 1) for j, c in enumerate(r) if c is not None)
    y = row * CELL + CELL  # the middle of a gamut swatch (half a cell's gap under the first row)
    picked = colorize_app.guide_pick(session, col * CELL + CELL // 2, y)
    colour = palette.cells[row][col]
    assert picked.hints[-1]["color"] == colour and len(picked.hints) == 1
    with pytest.warns(UserWarning, match="no colour there"):  # a click between the swatches says so
        assert colorize_app.guide_pick(session, 5, CELL + 3) is None


def test_reach_and_propagation_change_how_far_a_hint_goes(guide_models, tmp_path):
    models, src = guide_models, str(photo(tmp_path / "cat.png", size=(160, 120)))
    hint = json.dumps([{"x": 20, "y": 20, "color": "#00c000", "size": 8}])
    plain = np.asarray(Image.open(colorize_app.guide(models, src, "[]", "auto", 64)))
    moved = {(p, r): np.abs(np.asarray(Image.open(colorize_app.guide(models, src, hint, "auto", 64, p, r)))
                            .astype(int) - plain).sum()
             for p, r in [("fast", 0.1), ("fast", 5.0), ("levin", 1.0), ("off", 1.0)]}
    assert moved[("off", 1.0)] == 0 and 0 < moved[("fast", 0.1)] < moved[("fast", 5.0)] and moved[("levin", 1.0)] > 0
    with pytest.raises(gr.Error, match="'fast'"):
        colorize_app.guide(models, src, hint, "auto", 512, "levin")


@pytest.mark.parametrize("content, message", [
    ("not json", r"hints file bad\.json is not JSON"),
    ('{"x": 1}', r"hints file bad\.json holds a JSON dict, not a list of points"),
    ('[{"x": 5, "y": 5, "color": "#zzz"}]', r'hint 1 of 1 .*colour "#zzz" does not parse'),
    ('[{"x": 5, "y": 500, "color": "red"}]', r"hint 1 of 1 .*outside the photo, which is 160x120"),
])
def test_a_bad_hints_file_gets_a_clear_message(guide_models, tmp_path, content, message):
    src = str(photo(tmp_path / "cat.png", size=(160, 120)))
    (tmp_path / "bad.json").write_text(content)
    session = colorize_app.guide_start(guide_models, src, "hints", 64)
    with pytest.raises(gr.Error, match=message):
        colorize_app.guide_load(session, str(tmp_path / "bad.json"))


def test_the_guide_note_says_how_each_model_uses_hints(guide_models):
    assert "trained on lightness alone: your hints are spread along lightness" in colorize_app.guide_note(guide_models,
                                                                                                         "auto")
    assert "reads your hints" in colorize_app.guide_note(guide_models, "hints")
    assert "Colorize* tab" in colorize_app.guide_note(guide_models, None)


def test_checkpoints_named_alike_are_refused(tmp_path, tiny_checkpoint):
    ckpts = [tiny_checkpoint(tmp_path / d / "run" / "best.safetensors") for d in ("x", "y")]
    with pytest.raises(ValueError, match=r"two checkpoints share a name \(run/best, run/best\)"):
        colorize_app.build_app(ckpts, device="cpu")


def test_theme_loads_no_font_file():
    css = colorize_app.offline_theme()._get_theme_css()
    assert "@font-face" not in css and "ui-sans-serif" in css
    assert all(target.startswith("data:") for target in re.findall(r"url\(['\"]?([^'\")]*)", css))  # inline icons


def test_cli_serves_on_localhost_and_warns_before_sharing(tmp_path, monkeypatch, capsys, caplog, tiny_checkpoint):
    """The Gradio calls that would bind a port or open a tunnel are replaced; what the CLI passes them is checked."""
    calls = []

    def fake_launch(self, **kwargs):
        calls.append(kwargs)
        return None, "http://127.0.0.1:7860/", "https://example.gradio.live" if kwargs["share"] else None

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    ckpt = str(tiny_checkpoint(tmp_path / "run" / "best.safetensors"))
    assert cli.main(["app", "--model", ckpt]) == 0
    assert "colorize app on http://127.0.0.1:7860/ (Ctrl+C stops it)" in capsys.readouterr().out
    assert calls[0]["server_name"] == "127.0.0.1" and calls[0]["server_port"] == 7860 and calls[0]["share"] is False
    assert "ui-sans-serif" in calls[0]["theme"]._get_theme_css()
    assert "anyone with the link" not in caplog.text

    with caplog.at_level(logging.WARNING, logger="colorize"):
        assert cli.main(["app", "--model", ckpt, "--port", "8000", "--share"]) == 0
    assert calls[1]["share"] is True and calls[1]["server_port"] == 8000
    assert "anyone with the link can use the app" in caplog.text
    assert "and https://example.gradio.live" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- in a real browser


def _browser():
    found = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if found is None:
        pytest.skip("no Chromium to drive: install it with `sudo apt-get install chromium` (Debian/Ubuntu; "
                    ".ci/run does this) or `python -m playwright install chromium`")
    return found


@pytest.mark.slow
def test_page_in_headless_chromium_shows_the_slider_and_fetches_nothing_outside(server, tmp_path):
    """Upload a photo the way a person does; the before/after slider appears at the photo's full resolution."""
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright").sync_playwright
    executable = _browser()
    url, _, tmp = server
    src = photo(tmp / "old-cat.jpg", mode="L")  # a black-and-white photo, as people bring
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)  # not "networkidle": the page keeps a heartbeat stream open to the server
        page.set_input_files("#photo input[type=file]", str(src))  # the upload starts the colorization
        images = page.locator("#slider img")
        images.nth(1).wait_for(state="visible", timeout=30_000)
        page.wait_for_function("() => [...document.querySelectorAll('#slider img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        widths = images.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
        page.screenshot(path=tmp_path / "app.png")
        browser.close()
    assert widths == [[451, 300], [451, 300]]  # before and after, full resolution
    outside = [u for u in requests if not u.startswith((url.rstrip("/"), "data:", "blob:"))]
    assert not outside, f"the page fetched from outside the app: {outside}"
    assert Image.open(tmp_path / "app.png").size == (1280, 900)
    if os.environ.get(SCREENSHOT):  # asked for: the README's picture is this test's screenshot
        shutil.copyfile(tmp_path / "app.png", os.environ[SCREENSHOT])


@pytest.mark.slow
def test_guide_tab_in_headless_chromium_guides_an_automatic_model(server):
    """Upload a photo once (Colorize tab), open Guide with the automatic model, click the middle of the result: a
    hint lands there; click a suggested colour: the hint takes it and the result changes."""
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright").sync_playwright
    executable = _browser()
    url, _, tmp = server
    src = photo(tmp / "guide-cat.jpg")  # 451x300
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        assert page.locator("#model input").input_value() == "run-a/best"  # an automatic generator
        page.set_input_files("#photo input[type=file]", str(src))
        page.locator("#slider img").nth(1).wait_for(state="visible", timeout=30_000)
        page.get_by_role("tab", name="Guide").click()
        view = page.locator("#guide-view img")
        view.wait_for(state="visible", timeout=30_000)
        page.wait_for_function("() => { const i = document.querySelector('#guide-view img');"
                               " return i.complete && i.naturalWidth > 0 }", timeout=30_000)
        box = view.bounding_box()
        view.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
        page.wait_for_function("() => document.querySelector('#guide-hints').innerText.includes('color')",
                               timeout=30_000)
        placed = re.sub(r"\s", "", page.locator("#guide-hints").inner_text())
        before = view.get_attribute("src")
        swatches = page.locator("#guide-palette img")
        swatches.wait_for(state="visible", timeout=30_000)
        page.wait_for_function("() => { const i = document.querySelector('#guide-palette img');"
                               " return i.complete && i.naturalWidth > 0 }", timeout=30_000)
        shown = swatches.bounding_box()
        natural = swatches.evaluate("i => [i.naturalWidth, i.naturalHeight]")
        on_top = [page.evaluate("([x, y]) => document.elementFromPoint(x, y).closest('#guide-palette img') !== null",
                                [shown["x"] + (j + 0.5) * CELL * shown["width"] / natural[0],
                                 shown["y"] + CELL / 2 * shown["height"] / natural[1]]) for j in (0, 2)]
        assert on_top == [True, True]  # the model's colour and the one used: not hidden under a label or button
        row, col = 1 + GRID // 2, GRID // 2 + 2  # a gamut swatch: a = +2 steps, b = 0 (exists at mid lightness)
        x, y = (col + 0.5) * CELL, (row + 1) * CELL  # its middle in the palette's pixels
        swatches.click(position={"x": x * shown["width"] / natural[0], "y": y * shown["height"] / natural[1]})
        (first,) = re.findall(r'"color":"(#[0-9a-f]{6})"', placed)
        page.wait_for_function("(first) => { const t = document.querySelector('#guide-hints').innerText;"
                               " return t.includes('color') && !t.includes(first) }", arg=first, timeout=30_000)
        picked = re.sub(r"\s", "", page.locator("#guide-hints").inner_text())
        page.wait_for_function("(before) => document.querySelector('#guide-view img').src !== before", arg=before,
                               timeout=30_000)
        if os.environ.get(SCREENSHOT):
            page.screenshot(path=Path(os.environ[SCREENSHOT]).with_name("guide.png"))
        swatches.click(position={"x": 1.5 * CELL * shown["width"] / natural[0], "y": CELL / 2 * shown["height"]
                                 / natural[1]})  # the empty cell between the model's colour and those used
        page.get_by_text("no colour there").first.wait_for(state="visible", timeout=30_000)  # it says so
        after = view.get_attribute("src")
        page.wait_for_timeout(1000)  # the event has ended: the page shows what it showed, and no error
        assert view.get_attribute("src") == after and page.get_by_text("Error", exact=True).count() == 0
        page.get_by_role("button", name="Undo").click()  # the buttons take the same steps on the same session
        page.wait_for_function("(first) => document.querySelector('#guide-hints').innerText.includes(first)",
                               arg=first, timeout=30_000)  # the picked colour taken back
        page.get_by_label("select and move").check()
        box, (w, h) = view.bounding_box(), view.evaluate("i => [i.naturalWidth, i.naturalHeight]")
        scale = min(1.0, box["width"] / w, box["height"] / h)  # as drawn in the view (object-fit: scale-down)
        view.click(position={"x": (box["width"] - w * scale) / 2 + 115 * scale, "y": box["height"] / 2})  # away
        # from the hint, at x = 115 of the photo: the selected hint moves there
        page.wait_for_function("() => /\"x\"\\s*:\\s*11[0-9]/.test(document.querySelector('#guide-hints').innerText)",
                               timeout=30_000)
        moved = re.sub(r"\s", "", page.locator("#guide-hints").inner_text())
        page.get_by_role("button", name="Delete selected").click()
        page.wait_for_function("() => !document.querySelector('#guide-hints').innerText.includes('color')",
                               timeout=30_000)
        browser.close()
    assert re.findall(r'"color":"(#[0-9a-f]{6})"', moved) == [first]  # one hint, its colour kept where it moved
    x, y = map(int, re.search(r'"x":(\d+),"y":(\d+)', placed).groups())
    assert abs(x - 225) <= 2 and abs(y - 150) <= 2, placed  # the middle of the 451x300 photo, in its pixels
    (second,) = re.findall(r'"color":"(#[0-9a-f]{6})"', picked)
    r, g, b = (int(second[i:i + 2], 16) for i in (1, 3, 5))
    assert second != first and r > g and r > b - 10, (first, second)  # a = +24: towards red


def test_relaunch_closes_the_app_it_served_before():
    class FakeApp:
        def __init__(self, port):
            self.port, self.closed = port, False

        def launch(self, **kwargs):
            return None, f"http://127.0.0.1:{self.port}/", None

        def close(self):
            self.closed = True

    first, second = FakeApp(1), FakeApp(2)
    assert colorize_app.relaunch(first) == ("http://127.0.0.1:1/", None)
    assert not first.closed
    assert colorize_app.relaunch(second) == ("http://127.0.0.1:2/", None)
    assert first.closed and not second.closed
    colorize_app._relaunched.clear()
