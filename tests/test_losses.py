"""GAN losses, label smoothing and both L1 conventions on fixed tensors with hand-computed values."""

import math

import pytest
import torch

from colorize.losses import GANLoss, generator_loss

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def logits(*values):
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)  # a (B,1,h,w) map


def test_bce_with_smoothing_on_hand_computed_logits():
    # BCE-with-logits of x against t is ln(1 + e^x) - t * x: at x = 0, ln 2 whatever t is.
    loss = GANLoss("bce", smoothing=0.9)
    d = loss.critic(logits(0.0, LN3), logits(0.0, LN3))
    assert d.real.item() == pytest.approx((math.log(2) + math.log(4) - 0.9 * LN3) / 2)
    assert d.fake.item() == pytest.approx((math.log(2) + math.log(4)) / 2)  # fake target stays 0
    assert d.mean.item() == pytest.approx((d.real.item() + d.fake.item()) / 2)
    # the generator's target is 1, unsmoothed: ln 4 - ln 3 at x = ln 3
    assert loss(logits(0.0, LN3), real=True).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    assert loss(logits(LN3), real=False).item() == pytest.approx(math.log(4))


def test_smoothed_real_target_is_where_the_critic_loss_is_flat():
    x = logits(math.log(9.0)).requires_grad_()  # sigmoid(ln 9) = 0.9
    GANLoss("bce", smoothing=0.9).critic(x, logits(-1.0)).real.backward()
    assert x.grad.item() == pytest.approx(0.0, abs=1e-12)
    x.grad = None
    GANLoss("bce", smoothing=1.0).critic(x, logits(-1.0)).real.backward()
    assert x.grad.item() == pytest.approx(0.9 - 1.0)  # d/dx = sigmoid(x) - t


def test_lsgan_is_mean_squared_error_to_the_targets():
    loss = GANLoss("lsgan", smoothing=0.9)
    d = loss.critic(logits(0.5, 2.0), logits(0.5, 2.0))
    assert d.real.item() == pytest.approx((0.4**2 + 1.1**2) / 2)  # 0.685
    assert d.fake.item() == pytest.approx((0.5**2 + 2.0**2) / 2)  # 2.125
    assert d.mean.item() == pytest.approx(1.405)
    assert loss(logits(0.5, 2.0), real=True).item() == pytest.approx((0.5**2 + 1.0**2) / 2)


def test_critic_accuracy_counts_logits_on_the_right_side():
    bce = GANLoss("bce", smoothing=0.9).accuracy(logits(2.0, -1.0, 0.5, 0.0), logits(-3.0, 1.0, 0.2, -0.1))
    assert (bce.real.item(), bce.fake.item(), bce.mean.item()) == (0.5, 0.5, 0.5)  # 0 is not "real"
    ls = GANLoss("lsgan").accuracy(logits(0.6, 0.4, 0.9, 1.2), logits(0.4, 0.6, -0.2, 0.1))
    assert (ls.real.item(), ls.fake.item(), ls.mean.item()) == (0.75, 0.75, 0.75)  # threshold 0.5


def test_both_l1_conventions_on_fixed_values():
    adv, l1 = torch.tensor(0.7), torch.tensor(0.05)
    assert generator_loss(adv, l1, "additive", 100.0).item() == pytest.approx(0.7 + 100 * 0.05)  # 5.7
    assert generator_loss(adv, l1, "convex", 0.99).item() == pytest.approx(0.01 * 0.7 + 0.99 * 0.05)  # 0.0565


@pytest.mark.parametrize("w", [0.99, 0.985, 0.5])
def test_convex_is_additive_with_lambda_w_over_1_minus_w_scaled_by_1_minus_w(w):
    adv, l1 = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64)
    convex = generator_loss(adv, l1, "convex", w)
    additive = generator_loss(adv, l1, "additive", w / (1 - w))
    assert convex.item() == pytest.approx((1 - w) * additive.item())


def test_under_adam_the_scale_acts_only_through_eps():
    """Adam on the convex loss (w = 0.99) == Adam on additive lambda = 99 with eps / 0.01."""
    torch.manual_seed(0)
    start = torch.randn(8, dtype=torch.float64)
    target = torch.randn(8, dtype=torch.float64)
    gan = GANLoss("bce")

    def run(mode, weight, eps):
        p = start.clone().requires_grad_()
        opt = torch.optim.Adam([p], lr=1e-2, betas=(0.5, 0.999), eps=eps)
        for _ in range(20):
            opt.zero_grad()
            adv = gan(p.view(1, 1, 1, -1), real=True)
            generator_loss(adv, (p - target).abs().mean(), mode, weight).backward()
            opt.step()
        return p.detach()

    w, eps = 0.99, 1e-4  # a large eps, so that its effect shows
    convex = run("convex", w, eps)
    torch.testing.assert_close(convex, run("additive", w / (1 - w), eps / (1 - w)))
    assert (convex - run("additive", w / (1 - w), eps)).abs().max() > 1e-3  # same eps: not the same steps
    assert (convex - start).abs().min() > 1e-3  # it did train


def test_bad_arguments_say_what_to_choose():
    with pytest.raises(ValueError, match="bce, lsgan"):
        GANLoss("wgan")
    with pytest.raises(ValueError, match="smoothing"):
        GANLoss(smoothing=0.0)
    with pytest.raises(ValueError, match="additive, convex"):
        generator_loss(torch.tensor(1.0), torch.tensor(1.0), "mult", 1.0)
    with pytest.raises(ValueError, match="'additive'"):
        generator_loss(torch.tensor(1.0), torch.tensor(1.0), "convex", 100.0)
