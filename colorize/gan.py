"""Stage 2: the generator fine-tuned as a conditional GAN (pix2pix) against a PatchGAN critic, in a fastai Learner.

The Learner's model is the generator and its loss_func is L1, so validation reports L1 and PSNR as in
stage 1. The `ConditionalGAN` callback does the adversarial part of every training batch, in pix2pix's
order: after fastai has computed G(L) and its L1 loss,
    1. critic step: D(L, ab) against D(L, G(L).detach()) with its own Adam; G gets no gradient;
    2. generator loss: the adversarial term D(L, G(L)) -> "real" (D frozen, so it gets no gradient),
       joined with the L1 term by `losses.generator_loss`; it replaces `learn.loss_grad`, which fastai
       then backpropagates and steps with G's optimiser (which holds only G's parameters).
The critic always sees the grayscale input with the colours, cat(L, ab): it judges colours given L.

The run folder is `colorize.run`'s, with the critic and its optimiser inside state.pt; history.csv
adds, per epoch: g_adv, g_l1, d_real, d_fake, d_acc_real, d_acc_fake (means over the epoch); train_loss
is G's total objective and valid_loss the L1, so best.safetensors has the lowest validation L1 (for a
GAN, not the most colourful: use last.safetensors). config.json records the generator it started from.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from functools import partial

import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import AMPMode
from fastai.callback.schedule import ParamScheduler, SchedExp
from fastai.learner import Learner, ValueMetric
from torch import nn
from torch.amp import GradScaler

from .config import GanConfig
from .device import sum_over_processes
from .learner import StagePlan, TrainingStopped, generator_maker, on_device, stage_learner
from .losses import GANLoss, generator_loss
from .models import build_critic

log = logging.getLogger(__name__)

DECAY_RATE = 0.1  # CIFAR study (karoly-hars/GAN_image_colorizing): lr * 0.1^(step / decay_steps)


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
    of them raises a `TrainingStopped` before the step it would poison, so no checkpoint is written after it.
    """

    order, run_valid = 20, False  # after MixedPrecision (10) has computed L1 under autocast and left it
    STATS = ("g_adv", "g_l1", "d_real", "d_fake", "d_acc_real", "d_acc_fake")

    def __init__(self, critic: nn.Module, gan_loss: GANLoss, l1_mode: str, l1_weight: float,
                 critic_opt: torch.optim.Optimizer):
        self.critic, self.gan_loss, self.critic_opt = critic, gan_loss, critic_opt
        self.l1_mode, self.l1_weight = l1_mode, l1_weight
        self.sums, self.count = dict.fromkeys(self.STATS, 0.0), 0

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
        self.critic_scaler = GradScaler(self.dls.device.type, enabled=fp16)  # D's own loss scale; bf16 and fp32 need none
        self.critic.train()  # on the device already: gan_learner put it there before its optimiser was made
        # D's own step runs it in DistributedDataParallel in a distributed fit (gradients averaged over the
        # processes); G's adversarial term runs the critic itself, which gets no gradient there
        trainer = getattr(self.learn, "distributed_trainer", None)  # parallel.DistributedTrainer, in a distributed fit
        self.parallel_critic = self.critic if trainer is None else trainer.wrap(self.critic)  # same parameters

    def before_train(self):
        self.sums, self.count = dict.fromkeys(self.STATS, 0.0), 0

    def after_train(self):
        *sums, count = sum_over_processes([*self.sums.values(), self.count])  # the epoch's means over every process
        self.sums, self.count = dict(zip(self.STATS, sums)), int(count)

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
            real_logits, fake_logits = self.parallel_critic(L, ab), self.parallel_critic(L, fake)  # (B,1,h,w) each
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
            raise TrainingStopped(f"non-finite GAN loss {bad} at epoch {self.epoch + 1} of {self.n_epoch}, batch "
                                  f"{self.iter + 1} of {self.n_iter}: training stopped before this step. Lower "
                                  "lr_g/lr_d, or try the spectral-norm critic")
        for k, v in values.items():
            self.sums[k] += v


class CriticSchedule(Callback):
    """Sets the critic's learning rate from a fastai schedule before each training batch, as ParamScheduler does G's."""

    order, run_valid = 60, False

    def __init__(self, critic_opt: torch.optim.Optimizer, sched):
        self.critic_opt, self.sched = critic_opt, sched

    def before_batch(self):
        for group in self.critic_opt.param_groups:
            group["lr"] = self.sched(self.pct_train)


def gan_learner(data, config: GanConfig, *, generator=None, device=None, resize: bool = False) -> Learner:
    """A fastai Learner for conditional-GAN fine-tuning: model = generator, loss_func = L1, the GAN in a callback
    (`learn.gan`, a `ConditionalGAN`).

    `generator`: an L1-pretrained checkpoint (.safetensors) to start from (one of another size than the
    recipe's stops here, before any photo is indexed, unless `resize`); None builds a fresh one
    (`config.generator`), as the CIFAR study trains from scratch. G and D each get Adam with the config's
    betas and eps 1e-8, no weight decay; both learning rates follow `step_decay` (G through fastai's
    ParamScheduler, D through `CriticSchedule`). Device settings from `learner.stage_learner`, for both networks.
    """
    make_model = generator_maker(generator, config, resize=resize)
    learn = stage_learner(data, config, make_model, stage="gan", lr=config.lr_g, mom=config.beta1, sqr_mom=config.beta2,
                          device=device)
    critic = on_device(learn, build_critic(config.critic), config)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2), eps=1e-8,
                                  fused=True)
    learn.gan = ConditionalGAN(critic, GANLoss(config.gan_mode, config.smoothing), config.l1_mode, config.l1_weight,
                               critic_opt)
    learn.add_cb(learn.gan)
    learn.metrics = [*learn.metrics, *learn.gan.metrics()]
    n_steps = config.data.epochs * len(learn.dls.train)
    lr_g, lr_d = (step_decay(lr, config.decay_steps, n_steps, config.min_lr) for lr in (config.lr_g, config.lr_d))
    schedules = [ParamScheduler({"lr": lr_g}), CriticSchedule(critic_opt, lr_d)]

    def fit(epochs: int, cbs, start_epoch: int = 0):
        return learn.fit(epochs, cbs=[*schedules, *cbs], start_epoch=start_epoch)

    learn.stage = StagePlan("gan", fit, parts={"critic": critic, "critic_opt": critic_opt})
    return learn

