"""Figures and images the notebooks show."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from colorize.lab import gray_rgb
from colorize.plots import batch_gallery, before_after, hint_curve, hint_gallery, hints_picture, history_curves, lab_split


def test_before_after_splits_at_the_position():
    before, after = Image.new("RGB", (10, 4), (0, 0, 0)), Image.new("RGB", (10, 4), (255, 0, 0))
    out = np.asarray(before_after(before, after, 0.5))
    assert out.shape == (4, 10, 3)
    assert (out[:, :4] == 0).all()  # before on the left
    assert (out[:, 6:] == (255, 0, 0)).all()  # after on the right
    assert np.asarray(after).sum() == 10 * 4 * 255  # the inputs are left alone
    with pytest.raises(ValueError):
        before_after(before, after, 1.5)
    with pytest.raises(ValueError):
        before_after(before, Image.new("RGB", (9, 4)), 0.5)


def test_batch_gallery_has_one_row_per_photo_and_a_column_per_version():
    L, ab = torch.rand(3, 1, 8, 8) * 2 - 1, torch.zeros(3, 2, 8, 8)
    fig = batch_gallery(L, {"L1": ab, "GAN": ab}, ab_true=ab)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["grayscale (input)", "L1", "GAN", "original"] and len(fig.axes) == 12


def panels(fig) -> dict:
    """{panel title: {legend label: y data}} of a figure's drawn axes."""
    return {ax.get_title(): {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
            for ax in fig.axes if ax.get_title()}


def test_pretrain_history_draws_train_and_valid_on_one_axis_with_whole_epoch_ticks():
    history = pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [0.2, 0.15, 0.12], "valid_loss": [0.21, 0.16, 0.14],
                            "psnr": [20.0, 21.0, 22.5], "time": ["00:01"] * 3})
    fig = history_curves(history)
    drawn = panels(fig)
    assert set(drawn) == {"L1 loss", "validation PSNR"}
    assert drawn["L1 loss"] == {"train": [0.2, 0.15, 0.12], "valid": [0.21, 0.16, 0.14]}
    ax = next(a for a in fig.axes if a.get_title() == "L1 loss")
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 3]  # epochs counted from 1
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert ax.get_ylabel() and ax.get_xlabel() == "epoch"


def test_gan_history_groups_the_critic_with_its_reference_lines():
    history = pd.DataFrame({"epoch": [0, 1], "train_loss": [9.0, 8.0], "valid_loss": [0.1, 0.11], "psnr": [22.0, 21.8],
                            "g_adv": [0.9, 1.0], "g_l1": [0.09, 0.08], "d_real": [0.690, 0.694],
                            "d_fake": [0.692, 0.689], "d_acc_real": [0.55, 0.6], "d_acc_fake": [0.5, 0.52]})
    fig = history_curves(history)
    drawn = panels(fig)
    axis = {ax.get_title(): ax for ax in fig.axes}
    assert axis["critic's loss"].get_ylim()[0] == 0 and axis["critic's loss"].get_ylim()[1] >= 1  # 0.004 looks small
    assert axis["critic's accuracy"].get_ylim() == pytest.approx((0, 1.02))
    assert drawn["L1 loss"] == {"train (G's L1 term)": [0.09, 0.08], "valid": [0.1, 0.11]}  # not G's objective
    assert drawn["generator's objective"] == {"train": [9.0, 8.0]}
    assert drawn["critic's loss"]["ln 2: guessing"] == pytest.approx([math.log(2)] * 2)
    assert set(drawn["critic's loss"]) == {"on real pairs", "on generated pairs", "ln 2: guessing"}
    assert drawn["critic's accuracy"]["0.5: guessing"] == [0.5, 0.5]
    assert set(drawn) == {"L1 loss", "generator's objective", "generator's adversarial loss", "critic's loss",
                          "critic's accuracy", "validation PSNR"}


def test_lab_split_draws_a_and_b_in_lab_units_neutral_at_zero():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (200, 40, 40)  # red: a > 0
    rgb[:, 8:] = (40, 80, 220)  # blue: b < 0
    fig = lab_split(Image.fromarray(rgb))
    images = {ax.get_title(): ax.images[0] for ax in fig.axes if ax.images and ax.get_title()}
    a, b = images["a: green (-) to red (+) (target)"], images["b: blue (-) to yellow (+) (target)"]
    lab = rgb2lab(rgb / 255.0)
    for shown, channel in ((a, 1), (b, 2)):
        np.testing.assert_allclose(shown.get_array(), lab[..., channel], atol=0.5)  # Lab units, as skimage says
        lo, hi = shown.get_clim()
        assert lo == -hi and hi >= np.abs(lab[..., channel]).max()  # one symmetric scale: 0 in the middle
        middle = np.array(shown.cmap(0.5)[:3])
        assert middle.max() - middle.min() < 0.02, f"0 is drawn as {middle}, not a neutral gray"
    assert np.subtract(*a.cmap(1.0)[:2]) > 0.2  # +a is red: more red than green
    assert a.cmap(0.0)[1] > a.cmap(0.0)[0]  # -a is green
    assert b.cmap(0.0)[2] > b.cmap(0.0)[0] and b.cmap(1.0)[0] > b.cmap(1.0)[2]  # -b blue, +b yellow
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 3  # L, a and b each have a colour bar


def test_every_gallery_has_one_column_order_and_shows_the_model_its_gray_input():
    L, ab = torch.rand(2, 1, 8, 8) * 2 - 1, torch.rand(2, 2, 8, 8) - 0.5
    hints = torch.zeros(2, 3, 8, 8)
    hints[:, :2, 2:4, 2:4], hints[:, 2, 2:4, 2:4] = ab[:, :, 2:4, 2:4], 1.0
    fig = batch_gallery(L, {"hints model": ab}, ab_true=ab, hints=hints)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["grayscale (input)", "hints (input)", "hints model", "original"]
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), gray_rgb(L)[0].permute(1, 2, 0).numpy(), atol=1e-6)
    drawn_hints = torch.from_numpy(np.asarray(fig.axes[1].images[0].get_array())).permute(2, 0, 1)
    torch.testing.assert_close(drawn_hints, hints_picture(L, hints)[0])
    outside = hints_picture(L, hints)[:, :, 5:, 5:]  # no hint there: the gray photo, dimmed
    torch.testing.assert_close(outside, gray_rgb(L)[:, :, 5:, 5:] * 0.6)
    fig = hint_gallery(L, hints, {"hints model": ab}, ab)
    assert [ax.get_title() for ax in fig.axes[:5]] == ["grayscale (input)", "hints (input)", "mask", "hints model",
                                                       "original"]


def test_hint_curve_draws_every_method_solid_for_a_hint_model_dashed_for_propagated_hints():
    curve = {"counts": [0, 1, 10], "models": {
        "hints": {"takes_hints": True, "psnr_rgb": [20.0, 21.0, 24.0], "psnr_ab": [23.0, 24.0, 27.0]},
        "L1": {"takes_hints": False, "psnr_rgb": [19.5, 20.0, 22.0], "psnr_ab": [22.5, 23.0, 25.0]}}}
    fig = hint_curve(curve)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["hints"].get_ydata()) == [20.0, 21.0, 24.0] and lines["hints"].get_linestyle() == "-"
    assert list(lines["L1"].get_ydata()) == [19.5, 20.0, 22.0] and lines["L1"].get_linestyle() == "--"
    assert list(fig.axes[1].get_lines()[1].get_ydata()) == [22.5, 23.0, 25.0]
