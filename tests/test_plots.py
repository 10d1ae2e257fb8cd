"""Figures and images the notebooks show."""

import numpy as np
import pytest
import torch
from PIL import Image

from colorize.plots import batch_gallery, before_after


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
    assert titles == ["grayscale", "L1", "GAN", "original"] and len(fig.axes) == 12
