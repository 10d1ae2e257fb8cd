"""colorize.metrics against independent references (skimage, numpy by hand), and LPIPS/FID offline."""

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from skimage import color, data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorize.metrics import (
    ColorMetrics,
    Skipped,
    colorfulness,
    delta_colorfulness,
    psnr_ab,
    psnr_rgb,
    ssim,
)

PHOTOS = ("astronaut", "coffee", "chelsea")


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """HWC float arrays in [0,1] -> (B,3,H,W) float32."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


@pytest.fixture(scope="module")
def photo_pair() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three real photos (128x128 crops, float64 in [0,1]) and a blurred, noisy 'prediction' of each."""
    rng = np.random.default_rng(0)
    targets = [centre_crop(getattr(data, name)(), 128) / 255.0 for name in PHOTOS]
    preds = [
        np.clip(filters.gaussian(t, sigma=1.0, channel_axis=-1) + rng.normal(0, 0.05, t.shape), 0, 1)
        for t in targets
    ]
    return preds, targets


@pytest.fixture
def offline(monkeypatch, tmp_path) -> list[str]:
    """An empty TORCH_HOME and a torch.hub download that raises; yields the URLs it was asked for."""
    urls = []

    def refuse(url, *args, **kwargs):
        urls.append(url)
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return urls


def test_psnr_rgb_matches_skimage(photo_pair):
    preds, targets = photo_pair
    ours = psnr_rgb(to_batch(preds), to_batch(targets))
    ref = [peak_signal_noise_ratio(t, p, data_range=1.0) for p, t in zip(preds, targets)]
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-3)  # dB; float32 vs float64


def test_psnr_ab_matches_skimage_lab(photo_pair):
    preds, targets = photo_pair
    ours = psnr_ab(to_batch(preds), to_batch(targets))
    ab = [(color.rgb2lab(p)[..., 1:] / 110, color.rgb2lab(t)[..., 1:] / 110) for p, t in zip(preds, targets)]
    ref = [peak_signal_noise_ratio(t, p, data_range=2.0) for p, t in ab]
    np.testing.assert_allclose(ours.numpy(), ref, atol=0.01)  # dB; kornia vs skimage Lab, float32


def test_ssim_matches_skimage(photo_pair):
    preds, targets = photo_pair
    ours = ssim(to_batch(preds), to_batch(targets))
    ref = [
        structural_similarity(
            t, p, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        for p, t in zip(preds, targets)
    ]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4)  # same interior; float32 vs float64
    assert ssim(to_batch(targets), to_batch(targets)) == pytest.approx([1.0] * 3, abs=1e-5)


def test_colorfulness_of_grayscale_photo_is_zero():
    gray = color.rgb2gray(data.astronaut()[::4, ::4])  # (128,128) in [0,1]
    rgb = to_batch([np.repeat(gray[..., None], 3, axis=-1)])
    assert colorfulness(rgb).item() == pytest.approx(0.0, abs=1e-6)


def test_colorfulness_matches_hand_computation():
    checker = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [128, 128, 128]]], dtype=np.float64)
    red = np.full((2, 2, 3), [255, 0, 0], dtype=np.float64)

    def hasler_suesstrunk(img):  # img (H,W,3) on 0-255
        R, G, B = img[..., 0], img[..., 1], img[..., 2]
        rg, yb = R - G, 0.5 * (R + G) - B
        return np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)

    ours = colorfulness(to_batch([checker / 255, red / 255])).numpy()
    np.testing.assert_allclose(ours, [hasler_suesstrunk(checker), hasler_suesstrunk(red)], rtol=1e-5)
    # By hand: checker rg = (255,-255,0,0), yb = (127.5,127.5,-255,0), both of mean 0, so CF =
    # sqrt(var_rg + var_yb) = sqrt(32512.5 + 24384.375); red has no spread: CF = 0.3*sqrt(255^2 + 127.5^2).
    np.testing.assert_allclose(ours, [np.sqrt(56896.875), 0.3 * np.hypot(255, 127.5)], rtol=1e-5)


def test_delta_colorfulness_is_negative_for_a_duller_prediction(photo_pair):
    _, targets = photo_pair
    target = to_batch(targets)
    gray = target.mean(dim=1, keepdim=True).expand_as(target)
    duller = 0.5 * target + 0.5 * gray  # half-way to gray: half the chroma
    delta = delta_colorfulness(duller, target)
    assert (delta < 0).all()
    torch.testing.assert_close(delta, colorfulness(duller) - colorfulness(target))


def test_accumulator_over_batches_matches_per_image_functions(photo_pair, tiny_features):
    preds, targets = (to_batch(x) for x in photo_pair)
    metrics = ColorMetrics(lpips_net=None, fid_feature=tiny_features())
    metrics.update(preds[:2], targets[:2])
    metrics.update(preds[2:], targets[2:])
    per_image = metrics.per_image()
    torch.testing.assert_close(per_image["psnr_rgb"], psnr_rgb(preds, targets))
    torch.testing.assert_close(per_image["psnr_ab"], psnr_ab(preds, targets))
    torch.testing.assert_close(per_image["ssim"], ssim(preds, targets))
    torch.testing.assert_close(per_image["delta_colorfulness"], delta_colorfulness(preds, targets))
    result = metrics.compute()
    assert result["n_images"] == 3
    assert result["psnr_rgb"] == pytest.approx(psnr_rgb(preds, targets).mean().item())
    assert result["lpips"] == Skipped("disabled by the caller")
    assert isinstance(result["fid"], float)


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_perturbation(tiny_features):
    rng = np.random.default_rng(1)
    crops = []
    for name in PHOTOS:
        photo = getattr(data, name)() / 255.0
        for _ in range(6):
            top, left = rng.integers(0, photo.shape[0] - 48), rng.integers(0, photo.shape[1] - 48)
            crops.append(photo[top : top + 48, left : left + 48])
    real = to_batch(crops)  # (18,3,48,48)
    metrics = ColorMetrics(lpips_net=None, fid_feature=tiny_features())

    def fid(fake):
        metrics.reset()
        metrics.update(fake, real)
        return metrics.compute()["fid"]

    warm = real.clone()
    warm[:, 0] = (warm[:, 0] + 0.1).clamp(0, 1)  # a visible red cast
    hot = real.clone()
    hot[:, 0] = (hot[:, 0] + 0.3).clamp(0, 1)
    same, slight, strong = fid(real), fid(warm), fid(hot)
    assert abs(same) < 1e-3 * slight
    assert slight < strong


def test_fid_needs_two_images(tiny_features):
    metrics = ColorMetrics(lpips_net=None, fid_feature=tiny_features())
    metrics.update(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    assert isinstance(metrics.compute()["fid"], Skipped)


def test_lpips_and_fid_are_skipped_not_zero_offline(offline, photo_pair):
    preds, targets = (to_batch(x) for x in photo_pair)
    metrics = ColorMetrics()  # the real defaults: AlexNet LPIPS, Inception-v3 FID
    metrics.update(preds, targets)
    result = metrics.compute()
    assert offline, "the backbones should have asked torch.hub for their weights"
    assert isinstance(result["lpips"], Skipped) and "offline (test)" in result["lpips"].reason
    fid_reason = result["fid"].reason  # AttributeError if FID came back as a number
    assert "offline (test)" in fid_reason or "torch-fidelity" in fid_reason.lower()
    with pytest.raises(TypeError):
        float(result["lpips"])
    assert "lpips" not in metrics.per_image()
    assert result["psnr_rgb"] > 20  # the other metrics are still there


def test_lpips_with_cached_backbone_weights(offline, photo_pair):
    # Random SqueezeNet weights where torchvision caches its download: the LPIPS path runs offline.
    url = torchvision.models.SqueezeNet1_1_Weights.DEFAULT.url
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), checkpoints / url.split("/")[-1])
    preds, targets = (to_batch(x) for x in photo_pair)
    metrics = ColorMetrics(lpips_net="squeeze", fid_feature=None)
    metrics.update(targets, targets)
    metrics.update(preds, targets)
    lpips = metrics.per_image()["lpips"]
    assert lpips.shape == (6,)
    assert lpips[:3].abs().max() < 1e-6 and (lpips[3:] > 0).all()
    assert metrics.compute()["lpips"] == pytest.approx(lpips.mean().item())
    assert not offline


def test_mismatched_or_non_rgb_inputs_say_what_to_do():
    with pytest.raises(ValueError, match="lab_net_to_rgb"):
        psnr_rgb(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 8))
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        ColorMetrics(lpips_net=None, fid_feature=None).update(torch.rand(2, 2, 16, 16), torch.rand(2, 2, 16, 16))


@pytest.mark.gpu
def test_metrics_on_cuda_match_cpu(photo_pair, tiny_features):
    preds, targets = (to_batch(x) for x in photo_pair)
    results = {}
    for device in ("cpu", "cuda"):
        metrics = ColorMetrics(lpips_net=None, fid_feature=tiny_features())
        metrics.update(preds.to(device), targets.to(device))
        results[device] = metrics.compute()
    for name, value in results["cpu"].items():
        if not isinstance(value, Skipped):
            assert results["cuda"][name] == pytest.approx(value, rel=1e-3), name
