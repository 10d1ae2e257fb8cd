"""Stage 2: the generator fine-tuned as a conditional GAN (pix2pix) against a PatchGAN critic, in a fastai Learner.

The Learner's model is the generator and its loss_func is L1, so validation reports L1 and PSNR as in
stage 1. The `ConditionalGAN` callback does the adversarial part of every training batch, in pix2pix's
order: after fastai has computed G(L) and its L1 loss,
    1. critic step: D(L, ab) against D(L, G(L).detach()) with its own Adam; G gets no gradient;
    2. generator loss: the adversarial term D(L, G(L)) -> "real" (D frozen, so it gets no gradient),
       joined with the L1 term by `losses.generator_loss`; it replaces `learn.loss_grad`, which fastai
       then backpropagates and steps with G's optimiser (which holds only G's parameters).
The critic always sees the grayscale input with the colours, cat(L, ab): it judges colours given L.

The run folder is the one of stage 1 (see train.py) plus the critic inside state.pt and a gallery of a
fixed validation batch after every epoch:
    state.pt                 G + G's optimiser + critic + critic's optimiser + epoch (weights only, no code)
    last.safetensors         the generator after the last completed epoch (same format as stage 1)
    best.safetensors         the generator with the lowest validation L1 (for a GAN, not the most colourful)
    history.csv              per epoch: train_loss (G's total objective, smoothed), valid_loss (L1), psnr,
                             g_adv, g_l1, d_real, d_fake, d_acc_real, d_acc_fake (means over the epoch)
    gallery_epoch{N:03d}.png grayscale | generated | original after N epochs
    config.json              the recipe, and the generator checkpoint it started from
"""

from __future__ import annotations

import hashlib
import logging
import math
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import AMPMode
from fastai.callback.schedule import ParamScheduler, SchedExp
from fastai.learner import Learner, ValueMetric
from fastai.torch_core import set_seed
from torch import nn
from torch.amp import GradScaler

from .config import GanConfig
from .loaders import make_dataloaders
from .losses import GANLoss, generator_loss
from .models import build_critic, build_generator, load_generator, read_checkpoint_metadata
from .plots import batch_gallery, save_figure
from .train import (HISTORY_NAME, LAST_NAME, ColorPSNR, ResumableCSVLogger, RunCheckpoint, adam, fit_with_progress,
                    resume_state, tune_for_device)

log = logging.getLogger(__name__)

DECAY_RATE = 0.1  # CIFAR study (karoly-hars/GAN_image_colorizing): lr * 0.1^(step / decay_steps)
GALLERY_NAME = "gallery_epoch{:03d}.png"  # N = epochs completed


def step_decay(lr: float, decay_steps: float | None, n_steps: int, min_lr: float = 0.0):
    """A fastai schedule (fraction of training in [0,1] -> lr): lr * 0.1^(step / decay_steps), at least `min_lr`.

    `n_steps` is the number of training batches of the whole run, so step = fraction * n_steps. The
    decay is continuous, as the CIFAR study's `adjust_learning_rate`; no `decay_steps`: constant lr.
    """
    if not decay_steps:
        return SchedExp(lr, lr)
    return partial(_floored, SchedExp(lr, lr * DECAY_RATE ** (n_steps / decay_steps)), min_lr)


def _floored(sched, floor: float, pos: float) -> float:
    return max(floor, sched(pos))


class ConditionalGAN(Callback):
    """Each training batch: a critic step on (L, real ab) vs (L, generated ab), then G's loss = adv + L1 term.

    Keeps the epoch's running means of G's adversarial and L1 terms, D's loss on real and on fake
    pairs and D's accuracy on each (`metrics()` exposes them to fastai's Recorder). A NaN or Inf in any
    of them raises a RuntimeError before the step it would poison, so no checkpoint is written after it.
    """

    order, run_valid = 20, False  # after MixedPrecision (10) has computed L1 under autocast and left it
    STATS = ("g_adv", "g_l1", "d_real", "d_fake", "d_acc_real", "d_acc_fake")

    def __init__(self, critic: nn.Module, gan_loss: GANLoss, l1_mode: str, l1_weight: float,
                 critic_opt: torch.optim.Optimizer):
        self.critic, self.gan_loss, self.critic_opt = critic, gan_loss, critic_opt
        self.l1_mode, self.l1_weight = l1_mode, l1_weight
        self.sums, self.count = dict.fromkeys(self.STATS, 0.0), 0
        generator_loss(torch.zeros(()), torch.zeros(()), l1_mode, l1_weight)  # a bad mode or weight fails here

    def metrics(self) -> list[ValueMetric]:
        """fastai metrics reading this callback's means over the last training epoch, one per statistic."""
        return [ValueMetric(partial(self.mean, k), k) for k in self.STATS]

    def mean(self, name: str) -> float | None:
        """Mean of one statistic over the training batches of the current (or last) epoch."""
        return self.sums[name] / self.count if self.count else None

    def before_fit(self):
        mp = getattr(self.learn, "mixed_precision", None)
        self.autocast = mp.autocast if mp is not None else nullcontext()  # the same autocast as G's forward
        fp16 = mp is not None and mp.amp_mode == AMPMode.FP16
        self.critic_scaler = GradScaler("cuda", enabled=fp16)  # D's own loss scale; bf16 and fp32 need none
        self.critic.train()  # on the device already: gan_learner put it there before its optimiser was made

    def before_train(self):
        self.sums, self.count = dict.fromkeys(self.STATS, 0.0), 0

    def after_loss(self):
        L, ab, fake = self.xb[0], self.yb[0], self.pred  # (B,1,H,W) in [-1,1], (B,2,H,W) true, (B,2,H,W) G(L)
        self.critic_step(L, ab, fake.detach())
        self.critic.requires_grad_(False)  # G's backward must leave no gradient in D (pix2pix set_requires_grad)
        with self.autocast:
            adv = self.gan_loss(self.critic(L, fake), real=True)  # G wants its pairs judged real (target 1)
        self.critic.requires_grad_(True)
        l1 = self.learn.loss_grad
        self._record(g_adv=adv, g_l1=l1)
        self.learn.loss_grad = generator_loss(adv, l1, self.l1_mode, self.l1_weight)  # fastai backprops this
        self.learn.loss = self.learn.loss_grad.detach()  # what the Recorder logs as train_loss
        self.count += 1

    def critic_step(self, L: torch.Tensor, ab: torch.Tensor, fake: torch.Tensor) -> None:
        """One Adam step of the critic: real pairs (L, ab) toward `smoothing`, fake pairs (L, fake) toward 0."""
        with self.autocast:
            real_logits, fake_logits = self.critic(L, ab), self.critic(L, fake)  # (B,1,h,w) each
            loss = self.gan_loss.critic(real_logits, fake_logits)
        acc = self.gan_loss.accuracy(real_logits.detach(), fake_logits.detach())
        self._record(d_real=loss.real, d_fake=loss.fake, d_acc_real=acc.real, d_acc_fake=acc.fake)
        self.critic_opt.zero_grad(set_to_none=True)
        self.critic_scaler.scale(loss.mean).backward()
        self.critic_scaler.step(self.critic_opt)
        self.critic_scaler.update()

    def _record(self, **stats: torch.Tensor) -> None:
        """Add scalar statistics to the epoch sums (one device sync); stop the run if any is NaN or Inf."""
        values = dict(zip(stats, torch.stack([v.detach().float() for v in stats.values()]).tolist()))
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            last = Path(self.learn.path) / LAST_NAME
            kept = (f"the last good checkpoint is {last}, untouched; rerunning the same command resumes from it"
                    if last.exists() else "no epoch of this run had been saved yet")
            raise RuntimeError(
                f"non-finite GAN loss {bad} at epoch {self.epoch + 1} of {self.n_epoch}, batch {self.iter + 1} of "
                f"{self.n_iter}: training stopped before this step; {kept}. Lower lr_g/lr_d, or try the "
                "spectral-norm critic")
        for k, v in values.items():
            self.sums[k] += v

    def state_dict(self) -> dict:
        """The critic and its optimiser, for the resumable state."""
        return {"critic": self.critic.state_dict(), "critic_opt": self.critic_opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved."""
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])


class CriticSchedule(Callback):
    """Sets the critic's learning rate from a fastai schedule before each training batch, as ParamScheduler does G's."""

    order, run_valid = 60, False

    def __init__(self, critic_opt: torch.optim.Optimizer, sched):
        self.critic_opt, self.sched = critic_opt, sched

    def before_batch(self):
        for group in self.critic_opt.param_groups:
            group["lr"] = self.sched(self.pct_train)


class GanCheckpoint(RunCheckpoint):
    """`RunCheckpoint` that also keeps the critic and its optimiser in state.pt."""

    def __init__(self, gan: ConditionalGAN, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gan = gan

    def extra_state(self) -> dict:
        return self.gan.state_dict()


class EpochGallery(Callback):
    """After every epoch: the generator on one fixed validation batch, saved as gallery_epochNNN.png in `run_dir`."""

    order = RunCheckpoint.order + 1  # after the checkpoint

    def __init__(self, run_dir, start_epoch: int = 0, max_rows: int = 8):
        self.run_dir, self.start_epoch, self.max_rows = Path(run_dir), start_epoch, max_rows

    def before_fit(self):
        L, ab = self.dls.valid.one_batch()[:2]  # fixed: the valid loader is not shuffled and centre-crops
        self.fixed = L[: self.max_rows].as_subclass(torch.Tensor), ab[: self.max_rows].as_subclass(torch.Tensor)

    def after_epoch(self):
        if self.epoch < self.start_epoch:  # an epoch skipped while resuming
            return
        L, ab = self.fixed  # (k,1,H,W), (k,2,H,W)
        self.model.eval()
        with torch.no_grad():
            pred = self.model(L).float()  # (k,2,H,W)
        fig = batch_gallery(L.cpu(), {"generated": pred.cpu()}, ab.cpu(), max_rows=self.max_rows,
                            title=f"after epoch {self.epoch + 1}")
        save_figure(fig, self.run_dir / GALLERY_NAME.format(self.epoch + 1))  # and closes it


def generator_spec(config: GanConfig, generator=None) -> tuple[str, int]:
    """(arch, build size) of the generator: its checkpoint's when one is given, else the config's."""
    if generator is None:
        return config.arch, config.size
    meta = read_checkpoint_metadata(generator)
    return meta["arch"], meta["size"]


def generator_identity(generator) -> str | None:
    """What a run records of the checkpoint it started from: its file name and a hash of its contents."""
    if generator is None:
        return None
    digest = hashlib.sha256()
    with open(generator, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return f"{Path(generator).name} sha256:{digest.hexdigest()[:16]}"


def gan_learner(data, config: GanConfig, generator=None, run_dir=None, device=None) -> Learner:
    """A fastai Learner for conditional-GAN fine-tuning: model = generator, loss_func = L1, the GAN in a callback.

    `generator`: an L1-pretrained checkpoint (.safetensors) to start from; None builds a fresh one
    (`config.arch`, `config.size`, `config.pretrained`), as the CIFAR study trains from scratch.
    G and D each get Adam with the config's betas and eps 1e-8, no weight decay, constant learning
    rates `lr_g`/`lr_d` (`fit_gan` adds the decay). Device settings (channels_last, mixed precision and
    cuDNN autotuning on a GPU) from `train.tune_for_device`.
    """
    set_seed(config.seed)
    dls = make_dataloaders(data, size=config.size, bs=config.bs, repeats=config.repeats,
                           workers=config.workers, seed=config.seed, device=device, cache=config.cache)
    if generator is None:
        model = build_generator(config.arch, size=config.size, pretrained=config.pretrained)
    else:
        model = load_generator(generator, device=dls.device)
    critic = build_critic(config.critic_layers, config.critic_norm, config.critic_ndf, config.critic_init)
    critic = critic.to(dls.device)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2), eps=1e-8,
                                  fused=True)
    gan = ConditionalGAN(critic, GANLoss(config.gan_mode, config.smoothing), config.l1_mode, config.l1_weight,
                         critic_opt)
    learn = Learner(dls, model, loss_func=nn.L1Loss(), lr=config.lr_g, wd=0.0,
                    opt_func=adam(mom=config.beta1, sqr_mom=config.beta2, eps=1e-8),
                    metrics=[ColorPSNR(), *gan.metrics()], cbs=[gan], path=run_dir or ".", model_dir=".")
    return tune_for_device(learn, config.size, critic)


def fit_gan(learn: Learner, run_dir, config: GanConfig, generator=None) -> Learner:
    """Train `learn` (from `gan_learner`) for `config.epochs` into `run_dir`, resuming after its last saved epoch.

    Both learning rates follow `step_decay` (G through fastai's ParamScheduler). `generator` is the
    checkpoint the run started from: its arch and size label the run's generator checkpoints.
    """
    run_dir = Path(run_dir)
    gan = learn.conditional_gan
    state, start = resume_state(learn, run_dir, config, generator=generator_identity(generator))
    if state is not None:
        gan.load_state_dict(state)
    arch, size = generator_spec(config, generator)
    if state is None and generator is not None:
        log.info("starting from %s (%s, built at %d px)", generator, arch, size)
    if start >= config.epochs:
        return learn
    learn.path = run_dir
    n_steps = config.epochs * len(learn.dls.train)
    lr_g, lr_d = (step_decay(lr, config.decay_steps, n_steps, config.min_lr) for lr in (config.lr_g, config.lr_d))
    cbs = [ParamScheduler({"lr": lr_g}), CriticSchedule(gan.critic_opt, lr_d),
           GanCheckpoint(gan, run_dir, arch, size, "gan", start),
           ResumableCSVLogger(HISTORY_NAME, start), EpochGallery(run_dir, start)]
    fit_with_progress(learn, learn.fit, config.epochs, cbs=cbs, start_epoch=start)
    return learn


def finetune(data, run_dir, config: GanConfig, generator=None, device=None) -> Learner:
    """Stage 2 end to end: the GAN Learner on the photos under `data`, trained (or resumed) into `run_dir`."""
    learn = gan_learner(data, config, generator, run_dir, device=device)
    return fit_gan(learn, run_dir, config, generator)
