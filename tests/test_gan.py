"""Conditional-GAN fine-tuning: who steps what, the NaN guard, resume with optimiser state, run outputs, presets."""

import copy
import math
import shutil

import pytest
import matplotlib.pyplot as plt
import torch
from fastai.callback.core import Callback, CancelFitException
from PIL import Image

from colorize.config import GAN_PRESETS, GanConfig, field_value, flat_fields, get_preset, override
from colorize.gan import ConditionalGAN, gan_learner, step_decay
from colorize.learner import TrainingStopped
from colorize.models import load_generator, read_checkpoint_metadata
from colorize.run import load_state, plain
from colorize.stages import ensure_trained, train

# 5 training photos at bs 4: one batch per epoch; 32 px keeps the ResNet-18 U-Net quick on a CPU.
TINY = override(GAN_PRESETS["smoke"], repeats=1)
RUN = override(TINY, decay_steps=2.0, lr_d=1e-4)  # 2 epochs of 1 step: lr * 0.1^(1/2) for the second one
LOGGED = ("train_loss", "valid_loss", "psnr", "g_adv", "g_l1", "d_real", "d_fake", "d_acc_real", "d_acc_fake")


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module_or_tensors):
    now = module_or_tensors.parameters() if isinstance(module_or_tensors, torch.nn.Module) else module_or_tensors
    return [not torch.equal(b, p) for b, p in zip(before, now)]


class Killed(Exception):
    """Stands for a kill between two epochs."""


class KillBeforeEpoch(Callback):
    def __init__(self, epoch):
        self.kill_at = epoch

    def before_epoch(self):
        if self.epoch == self.kill_at:
            raise Killed("killed")


@pytest.fixture(scope="module")
def interrupted_run(photos, tmp_path_factory, tiny_checkpoint):
    """A 2-epoch run started from an L1 generator checkpoint and killed after its first epoch was saved."""
    root = tmp_path_factory.mktemp("gan")
    ckpt = tiny_checkpoint(root / "l1.safetensors")
    learn = gan_learner(photos, RUN, generator=ckpt)
    start = load_generator(ckpt).state_dict()
    assert all(torch.equal(v, start[k]) for k, v in learn.model.state_dict().items())  # starts from the checkpoint
    learn.add_cb(KillBeforeEpoch(1))
    with pytest.raises(Killed):
        train(photos, root / "run", RUN, generator=ckpt, learn=learn)
    return root / "run", ckpt


class CheckSteps(Callback):
    """Snapshots G and D around the critic step (in after_loss) and G's step, for one batch."""

    order = ConditionalGAN.order + 1  # after_loss runs right after the GAN callback's

    def __init__(self, critic):
        self.critic, self.seen = critic, {}

    def after_pred(self):
        self.g0, self.d0 = _params(self.model), _params(self.critic)

    def after_loss(self):
        self.seen["g_by_d_step"] = _changed(self.g0, self.model)
        self.seen["d_by_d_step"] = _changed(self.d0, self.critic)
        self.seen["g_grads_after_d_step"] = [p.grad for p in self.model.parameters() if p.grad is not None]
        gan = self.learn.gan  # one batch: its sums are this batch's terms
        self.seen["backpropagated"] = self.learn.loss_grad.item()
        self.seen["adv"], self.seen["l1"] = gan.sums["g_adv"], gan.sums["g_l1"]
        self.g1, self.d1 = _params(self.model), _params(self.critic)
        self.d_grads = [p.grad.clone() for p in self.critic.parameters()]

    def after_step(self):
        self.seen["g_by_g_step"] = _changed(self.g1, self.model)
        self.seen["d_by_g_step"] = _changed(self.d1, self.critic)
        self.seen["d_grads_by_g_backward"] = _changed(self.d_grads, [p.grad for p in self.critic.parameters()])
        self.seen["g_has_grad"] = [p.grad is not None and bool(p.grad.any()) for p in self.model.parameters()]

    def after_batch(self):
        raise CancelFitException


def test_critic_step_moves_only_d_and_generator_step_moves_only_g(photos):
    learn = gan_learner(photos, TINY)
    check = CheckSteps(learn.gan.critic)
    learn.fit(1, cbs=[check])
    seen = check.seen
    assert not any(seen["g_by_d_step"]) and not seen["g_grads_after_d_step"]  # D's step: G untouched, no grad
    assert all(seen["d_by_d_step"])  # every critic weight took its Adam step
    assert not any(seen["d_by_g_step"])  # G's step: the critic untouched ...
    assert not any(seen["d_grads_by_g_backward"])  # ... and G's backward left its gradients alone (D was frozen)
    assert seen["g_by_g_step"] == seen["g_has_grad"]  # G moved exactly where its loss has a gradient ...
    assert sum(seen["g_by_g_step"]) > 0.9 * len(seen["g_by_g_step"])  # ... which is nearly everywhere
    assert TINY.l1_mode == "additive"  # what fastai backpropagated is pix2pix's adv + lambda * L1
    assert seen["backpropagated"] == pytest.approx(seen["adv"] + TINY.l1_weight * seen["l1"], rel=1e-5)


def test_both_networks_train_channels_last_with_the_critic_optimiser_still_on_its_weights(photos):
    learn = gan_learner(photos, override(TINY, size=64))  # the CPU goes NHWC from 64 px (learner.on_device)
    gan = learn.gan
    for net in (learn.model, gan.critic):
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.ndim == 4)
    held = [p for group in gan.critic_opt.param_groups for p in group["params"]]
    assert len(held) == len(list(gan.critic.parameters()))
    assert all(a is b for a, b in zip(held, gan.critic.parameters()))  # converted in place: D's Adam steps D


def test_resume_restores_optimisers_and_logs_each_epoch_once(interrupted_run, photos, tmp_path, read_history):
    run = tmp_path / "run"
    shutil.copytree(interrupted_run[0], run)
    saved = load_state(run)
    assert saved["epoch"] == 1 and {"critic", "critic_opt"} <= set(saved["parts"])
    first_row = read_history(run)[0]

    learn = gan_learner(photos, RUN, generator=interrupted_run[1])
    gan, seen = learn.gan, {}

    class CheckRestored(Callback):
        order = -20  # the first batch of the resumed epoch, before anything is stepped

        def before_batch(self):
            if not seen and self.training:
                seen["epoch"] = self.epoch  # copies: the optimisers update their state in place afterwards
                seen["g_opt"] = copy.deepcopy(plain(self.opt.state_dict())["state"])
                seen["d_opt"] = copy.deepcopy(gan.critic_opt.state_dict())
                seen["critic"] = copy.deepcopy(gan.critic.state_dict())

        def after_step(self):
            seen["lr_g"], seen["lr_d"] = self.opt.hypers[0]["lr"], gan.critic_opt.param_groups[0]["lr"]

    learn.add_cb(CheckRestored())
    train(photos, run, RUN, generator=interrupted_run[1], learn=learn)

    assert seen["epoch"] == 1  # continued with the second epoch
    _assert_equal(seen["g_opt"], saved["opt"]["state"])
    _assert_equal(seen["d_opt"]["state"], saved["parts"]["critic_opt"]["state"])
    assert seen["d_opt"]["param_groups"][0]["betas"] == saved["parts"]["critic_opt"]["param_groups"][0]["betas"] == (0.5, 0.999)
    _assert_equal(seen["critic"], saved["parts"]["critic"])
    assert seen["lr_g"] == pytest.approx(RUN.lr_g * 0.1**0.5) and seen["lr_d"] == pytest.approx(RUN.lr_d * 0.1**0.5)

    rows = read_history(run)
    assert [r["epoch"] for r in rows] == ["0", "1"] and rows[0] == first_row  # each epoch once, epoch 0 not redone
    assert all(math.isfinite(float(r[c])) for r in rows for c in LOGGED)
    assert load_state(run)["epoch"] == 2
    meta = read_checkpoint_metadata(run / "last.safetensors")
    assert (meta["arch"], meta["size"], meta["extra"]["stage"], meta["extra"]["epoch"]) == ("resnet18", 32, "gan", 2)
    for n in (1, 2):
        with Image.open(run / f"gallery_epoch{n:03d}.png") as im:
            assert im.size[0] > 100 and im.size[1] > 100
    assert not plt.get_fignums()  # each gallery's figure was closed


def test_resume_refuses_another_starting_generator(interrupted_run, photos, tmp_path, tiny_checkpoint):
    run = tmp_path / "run"
    shutil.copytree(interrupted_run[0], run)
    other = tiny_checkpoint(tmp_path / "l1.safetensors", 1)  # same name, other weights
    for generator in (other, None):
        with pytest.raises(ValueError, match="different recipe.*generator"):
            train(photos, run, RUN, generator=generator)
    assert load_state(run)["epoch"] == 1  # nothing trained


def _assert_equal(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a.cpu(), b.cpu())
    else:
        assert a == b


def test_nan_in_the_critic_stops_the_run_and_keeps_the_last_good_checkpoint(interrupted_run, photos, tmp_path, read_history):
    run = tmp_path / "run"
    shutil.copytree(interrupted_run[0], run)
    before = {name: (run / name).read_bytes() for name in ("last.safetensors", "best.safetensors", "state.pt")}
    learn = gan_learner(photos, RUN, generator=interrupted_run[1])
    critic = learn.gan.critic
    critic.forward = lambda L, ab: torch.full_like(L[:, :, :6, :6], float("nan"))  # (B,1,6,6) logits
    with pytest.raises(TrainingStopped, match=r"non-finite GAN loss .*'d_real': nan.* at epoch 2 of 2, batch 1 of 1") as e:
        train(photos, run, RUN, generator=interrupted_run[1], learn=learn)
    assert f"last good checkpoint is {run / 'last.safetensors'}" in str(e.value)
    assert {name: (run / name).read_bytes() for name in before} == before  # the last good epoch, byte for byte
    assert len(read_history(run)) == 1 and not (run / "gallery_epoch002.png").exists()


class NaNL1(Callback):
    """Makes G's L1 term NaN, after fastai computed it and before the GAN callback uses it."""

    order = ConditionalGAN.order - 1

    def after_loss(self):
        self.learn.loss_grad = self.loss_grad * float("nan")


def test_nan_in_the_generator_loss_stops_before_g_steps(photos, tmp_path):
    one = override(TINY, epochs=1)
    learn = gan_learner(photos, one)
    g, d = learn.model, learn.gan.critic
    g0 = _params(g)
    learn.add_cb(NaNL1())
    with pytest.raises(TrainingStopped, match=r"non-finite GAN loss \{'g_l1': nan\} at epoch 1 of 1, batch 1 of 1.*"
                                              r"no epoch of this run had been saved yet"):
        train(photos, tmp_path / "run", one, learn=learn)
    assert not any(_changed(g0, g))  # G never took the NaN step (the critic's finite step went ahead)
    assert all(torch.isfinite(p).all() for p in [*g.parameters(), *d.parameters()])


def test_step_decay_is_the_cifar_study_formula():
    n_steps = 120_000
    sched = step_decay(3e-4, 6e4, n_steps)
    for step in (0, 30_000, 60_000, 120_000):
        assert sched(step / n_steps) == pytest.approx(3e-4 * 0.1 ** (step / 6e4))
    assert step_decay(3e-4, 6e4, n_steps, min_lr=1e-5)(1.0) == 1e-5  # 3e-6 floored
    assert {step_decay(2e-4, None, n_steps)(p) for p in (0.0, 0.5, 1.0)} == {2e-4}  # pix2pix: constant


# The values each recipe's source gives (pix2pix; the CIFAR study's README commands).
SOURCE_PRESETS = {
    "pix2pix": dict(l1_mode="additive", l1_weight=100.0, lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999,
                    critic_norm="batch", critic_layers=3, gan_mode="bce", smoothing=1.0, size=256, bs=16, epochs=20),
    "cifar-batchnorm": dict(epochs=200, smoothing=0.9, l1_mode="convex", l1_weight=0.99, lr_g=3e-4, lr_d=6e-5,
                            decay_steps=6e4, critic_norm="batch", critic_init=True, size=32),
    "cifar-spectral": dict(epochs=100, smoothing=1.0, l1_mode="convex", l1_weight=0.985, lr_g=2e-4, lr_d=2e-4,
                           decay_steps=4e4, critic_norm="spectral", critic_init=False, size=32),
}


@pytest.mark.parametrize("name", SOURCE_PRESETS)
def test_presets_have_their_sources_values(name):
    preset, paths = get_preset(GAN_PRESETS, name), flat_fields(GanConfig)
    assert {k: field_value(preset, paths[k]) for k in SOURCE_PRESETS[name]} == SOURCE_PRESETS[name]


def test_the_spectral_pix2pix_preset_is_pix2pix_with_the_spectral_critic():
    spectral, pix2pix = GAN_PRESETS["pix2pix-spectral"], GAN_PRESETS["pix2pix"]
    assert (spectral.critic.norm, spectral.critic.init) == ("spectral", False)
    assert override(spectral, critic_norm="batch", critic_init=True) == pix2pix


def test_unknown_preset_lists_the_choices():
    with pytest.raises(KeyError, match="pix2pix, colab, pix2pix-spectral, cifar-batchnorm, cifar-spectral"):
        get_preset(GAN_PRESETS, "pix2pixhd")


def test_ensure_trained_trains_a_missing_gan_checkpoint_only_when_allowed(photos, tmp_path, tiny_checkpoint, read_history):
    """Missing: a FileNotFoundError that names notebook 3, nothing written; allowed: fine-tuned from the generator."""
    l1 = tiny_checkpoint(tmp_path / "l1.safetensors")
    path = tmp_path / "gan" / "last.safetensors"
    recipe = override(TINY, epochs=1)
    with pytest.raises(FileNotFoundError, match="03_gan_finetune"):
        ensure_trained(photos, path, recipe, generator=l1)
    assert not path.parent.exists()

    assert ensure_trained(photos, path, recipe, generator=l1, train_if_missing=True) == path
    assert read_checkpoint_metadata(path)["extra"]["stage"] == "gan"
    assert [r["epoch"] for r in read_history(path.parent)] == ["0"]
    assert ensure_trained(tmp_path / "no-photos", path, recipe, generator=l1) == path  # there now: left alone
