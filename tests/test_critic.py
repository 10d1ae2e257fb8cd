"""The conditional PatchGAN critic against an independently written pix2pix 70x70 PatchGAN."""

import pytest
import torch
from torch import nn

from colorize.config import CriticConfig
from colorize.models import CRITIC_NORMS, build_critic

NORMS = list(CRITIC_NORMS)


def pix2pix_patchgan(norm_layer=nn.BatchNorm2d, bias=False) -> nn.Sequential:
    """The 3-layer PatchGAN of pix2pix (Isola et al. 2017, appendix 6.1.2: C64-C128-C256-C512, then a
    conv to 1 channel; no norm on C64; LeakyReLU 0.2), written out layer by layer as in
    junyanz/pytorch-CycleGAN-and-pix2pix `NLayerDiscriminator(input_nc=3, ndf=64, n_layers=3)`.
    Its inner convs have a bias only without batch norm (`use_bias = norm_layer == InstanceNorm2d`)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=4, stride=2, padding=1),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(64, 128, kernel_size=4, stride=2, padding=1, bias=bias),
        norm_layer(128),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(128, 256, kernel_size=4, stride=2, padding=1, bias=bias),
        norm_layer(256),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(256, 512, kernel_size=4, stride=1, padding=1, bias=bias),
        norm_layer(512),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(512, 1, kernel_size=4, stride=1, padding=1),
    )


def lab_batch(b, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = torch.rand(b, 1, size, size, generator=g) * 2 - 1  # (B,1,H,W) in [-1,1]
    ab = (torch.rand(b, 2, size, size, generator=g) * 2 - 1) * 0.5  # (B,2,H,W)
    return L, ab


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("size", [256, 128])
def test_output_shape_matches_pix2pix_reference(size):
    L, ab = lab_batch(1, size)
    with torch.no_grad():
        ours = build_critic().eval()(L, ab)
        ref = pix2pix_patchgan().eval()(torch.cat([L, ab], 1))
    assert ours.shape == ref.shape
    assert ours.shape == (1, 1, size // 8 - 2, size // 8 - 2)  # 30x30 for 256


@pytest.mark.parametrize(
    "norm, ref_norm, ref_bias",
    [("batch", nn.BatchNorm2d, False), ("instance", nn.InstanceNorm2d, True)],
)
def test_reference_with_our_weights_gives_equal_outputs(norm, ref_norm, ref_bias):
    torch.manual_seed(0)
    ours = build_critic(CriticConfig(norm=norm))
    ref = pix2pix_patchgan(ref_norm, ref_bias)
    theirs = ref.state_dict()
    assert [v.shape for v in theirs.values()] == [v.shape for v in ours.state_dict().values()]
    ref.load_state_dict(dict(zip(theirs, ours.state_dict().values())))
    L, ab = lab_batch(2, 64)
    torch.testing.assert_close(ours.train()(L, ab), ref.train()(torch.cat([L, ab], 1)))  # batch statistics
    torch.testing.assert_close(ours.eval()(L, ab), ref.eval()(torch.cat([L, ab], 1)))  # running statistics


@pytest.mark.parametrize("n_layers, rf", [(1, 16), (2, 34), (3, 70)])
def test_each_logit_sees_exactly_its_receptive_field(n_layers, rf):
    torch.manual_seed(0)
    critic = build_critic(CriticConfig(layers=n_layers, norm="none", ndf=8)).double()
    L, ab = (t.double().requires_grad_() for t in lab_batch(1, 128))
    out = critic(L, ab)  # (1,1,h,w)
    h = out.shape[-1] // 2
    out[0, 0, h, h].backward()
    grad = L.grad[0, 0].abs() + ab.grad[0].abs().sum(0)  # (H,W): which input pixels this logit sees
    rows, cols = grad.sum(1).nonzero().flatten(), grad.sum(0).nonzero().flatten()
    assert len(rows) == len(cols) == rf
    assert rows[-1] - rows[0] + 1 == rf  # one contiguous rf x rf window


def test_critic_is_conditional_on_L():
    torch.manual_seed(0)
    critic = build_critic(CriticConfig(ndf=16)).eval()
    assert convs(critic)[0].in_channels == 3  # cat(L, ab)
    L, ab = lab_batch(2, 64)
    L2, _ = lab_batch(2, 64, seed=1)
    with torch.no_grad():
        base = critic(L, ab)
        assert (critic(L2, ab) - base).abs().max() > 1e-3  # same colours, other grayscale input
        assert (critic(L, -ab) - base).abs().max() > 1e-3


def test_spectral_norm_makes_every_conv_1_lipschitz():
    torch.manual_seed(0)
    critic = build_critic(CriticConfig(norm="spectral", ndf=16)).train()  # ndf=64's 512x4096 SVD takes seconds
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in critic.modules())
    assert all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs(critic))
    raw = [torch.linalg.matrix_norm(c.parametrizations.weight.original.flatten(1), ord=2) for c in convs(critic)]
    assert min(abs(s - 1) for s in raw) > 0.05  # so the check below is not vacuous
    L, ab = lab_batch(2, 32)
    with torch.no_grad():
        for _ in range(5):  # one power iteration per training-mode forward
            critic(L, ab)
    sigmas = torch.stack([torch.linalg.matrix_norm(c.weight.flatten(1), ord=2) for c in convs(critic)])
    torch.testing.assert_close(sigmas, torch.ones_like(sigmas), atol=0.03, rtol=0)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n_layers, side", [(1, 14), (2, 6), (3, 2)])
def test_32px_gradient_reaches_every_parameter_without_nan(norm, n_layers, side):
    torch.manual_seed(0)
    critic = build_critic(CriticConfig(layers=n_layers, norm=norm, ndf=16)).train()
    L, ab = lab_batch(4, 32)
    out = critic(L, ab)
    assert out.shape == (4, 1, side, side)  # CIFAR's 32x32 at depth 1 and 2 (and 3: a 2x2 map)
    assert torch.isfinite(out).all()
    out.mean().backward()
    for name, p in critic.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("norm", NORMS)
def test_bias_only_on_convs_without_batch_norm(norm):
    first, *inner, last = convs(build_critic(CriticConfig(norm=norm, ndf=8)))
    assert first.bias is not None and last.bias is not None
    assert all((c.bias is None) == (norm == "batch") for c in inner)


def test_normal_init_follows_pix2pix():
    torch.manual_seed(0)
    critic = build_critic(CriticConfig(init=True))
    big = convs(critic)[3].weight  # 512 x 256 x 4 x 4
    assert abs(big.mean()) < 1e-3 and abs(big.std() - 0.02) < 2e-4
    assert all(c.bias is None or (c.bias == 0).all() for c in convs(critic))
    bn = [m for m in critic.modules() if isinstance(m, nn.BatchNorm2d)]
    gamma = torch.cat([m.weight for m in bn])
    assert abs(gamma.mean() - 1) < 5e-3 and abs(gamma.std() - 0.02) < 5e-3
    assert all((m.bias == 0).all() for m in bn)
    default = convs(build_critic(CriticConfig(init=False)))[3].weight  # PyTorch's kaiming-uniform: std 1/sqrt(3 * 4096)
    assert abs(default.std() - 0.02) > 5e-3


def test_spectral_norm_is_applied_after_the_normal_init():
    torch.manual_seed(0)
    raw = convs(build_critic(CriticConfig(norm="spectral", init=True)))[3].parametrizations.weight.original
    assert abs(raw.std() - 0.02) < 2e-4


def test_bad_arguments_say_what_to_choose():
    with pytest.raises(ValueError, match="batch, instance, spectral, none"):
        build_critic(CriticConfig(norm="layer"))
    with pytest.raises(ValueError, match="layers is 0"):
        build_critic(CriticConfig(layers=0))
