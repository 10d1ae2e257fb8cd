"""Training in several processes: fastai's distributed engine (accelerate underneath) on GPUs or CPUs, for any stage.

`run.fit_run` trains inside `distributed(learn)`: under torchrun, `accelerate launch` or `launch` (a
notebook), each process trains on its share of every epoch and keeps the same weights; a network
trained beside the model (a critic) is wrapped through `DistributedTrainer.wrap`. Alone, nothing changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from accelerate import notebook_launcher
from fastai.callback.progress import ProgressCallback
from fastai.distributed import DistributedDL as FastaiDistributedDL
from fastai.distributed import DistributedTrainer as FastaiDistributedTrainer
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib, set_seed
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .device import collective_device

log = logging.getLogger(__name__)



def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel (what a checkpoint holds), or `model` itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def weights_digest(*state_dicts: dict[str, torch.Tensor]) -> str:
    """A short sha256 of the names and bytes of the tensors in `state_dicts`: equal digests, equal weights."""
    h = hashlib.sha256()
    for state in state_dicts:
        for name, tensor in state.items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class DistributedDL(FastaiDistributedDL):
    """fastai's DistributedDL (each process trains on its share of every epoch's photos), whose order also travels over gloo.

    fastai 2.8 broadcasts rank 0's shuffled order as a CUDA tensor (`.cuda()`, as NCCL needs), which
    fails between processes on CPUs (gloo); here the tensor goes where the process group's backend wants it.
    """

    def _broadcast(self, t, rank):
        t = torch.tensor(t, dtype=torch.long, device=collective_device())
        dist.broadcast(t, rank)
        return t.cpu().tolist()


class DistributedTrainer(FastaiDistributedTrainer):
    """fastai's DistributedTrainer (the model in accelerate's DistributedDataParallel, the loaders sharded), on GPUs or CPUs.

    On CPUs accelerate joins gloo only when told `cpu=True`, and `nn.SyncBatchNorm` refuses CPU tensors:
    there each process normalises with its own share's batch statistics (GPUs share them, as fastai does).
    `wrap` treats a network trained beside the model (a critic) the same way. After every training
    phase each process takes rank 0's buffers (batch-norm statistics, spectral-norm vectors, which DDP
    sends only at the start of a forward), so validation, checkpoints and a resume see one state.
    """

    def __init__(self, device: torch.device):
        on_cpu = device.type == "cpu"
        # precision is colorize's own (learner.tune): accelerate's autocast, e.g. from `accelerate launch
        # --mixed_precision`, would wrap the model's forward a second time
        super().__init__(sync_bn=not on_cpu, cpu=on_cpu, mixed_precision="no")
        if device.type == "cuda" and self.accelerator.device != device:
            raise ValueError(f"the Learner's data is on {device} but this process trains on {self.accelerator.device}: "
                             "make its DataLoaders with colorize.loaders.make_dataloaders (colorize.device.process_device)")
        self.nets: list[nn.Module] = []

    def before_fit(self):
        super().before_fit()
        self.nets = [self.learn.model]
        # each process draws its own crops and flips (one seed everywhere would crop their k-th photos alike)
        set_seed(torch.initial_seed() + rank_distrib())

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` in DistributedDataParallel as the model is (SyncBatchNorm on GPUs), with the same parameters."""
        net = self.accelerator.prepare_model(nn.SyncBatchNorm.convert_sync_batchnorm(module) if self.sync_bn else module)
        self.nets.append(net)
        return net

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, FastaiDistributedDL) else DistributedDL(dl, device=self.learn.model.device)

    def after_train(self):
        for net in self.nets:
            for buffer in net.buffers():
                dist.broadcast(buffer, src=0)


@contextlib.contextmanager
def distributed(learn: Learner):
    """Train `learn` data-parallel while this process is one of several (torchrun, accelerate launch, `launch`).

    What fastai's `Learner.distrib_ctx` does, with `DistributedTrainer`: one progress bar and one
    log (rank 0's), each process a share of every epoch. Nothing in a single process.
    """
    if num_distrib() <= 1:
        yield
        return
    learn.add_cb(DistributedTrainer(learn.dls.device))
    if rank_distrib():
        learn.remove_cb(ProgressCallback)
    try:
        yield
    finally:
        learn.detach_distributed()


def launch(function: Callable, *args, processes: int = 2, port: int = 29500, **kwargs):
    """`function(*args, **kwargs)` (e.g. `stages.train(data, run_dir, config)`) in `processes` processes training
    together, one per GPU.

    For a notebook: accelerate's `notebook_launcher` forks the processes from the kernel, so no cell may
    have used the GPU before (restart the kernel and run only the cells this call needs). Each process
    trains on its GPU with its share of every batch; rank 0 alone writes the run folder and logs. The
    result stays there (`best.safetensors`, `history.csv`...) and None is returned. `processes=1`:
    `function(*args, **kwargs)` here, returning its result.
    """
    if processes == 1:
        return function(*args, **kwargs)
    notebook_launcher(_one_of_several, (partial(function, **kwargs), *args), num_processes=processes,
                      use_port=str(port))
    return None


def _one_of_several(function: Callable, *args) -> None:
    """One process of `launch`: rank 0 logs a line per epoch (a fork draws no bar in the notebook), the others
    only warnings. The result (a Learner) stays in the process."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # unless the notebook set logging up
    logging.getLogger("colorize").setLevel(logging.WARNING if rank_distrib() else logging.INFO)
    function(*args)


def agreed_start(start: int, run_dir: Path) -> int:
    """`start`, the epochs done, once every process of a distributed fit has found the same number."""
    if num_distrib() <= 1:
        return start
    starts = [None] * num_distrib()
    dist.all_gather_object(starts, start)
    if len(set(starts)) > 1:
        raise RuntimeError(f"the training processes found different states in {run_dir} (epochs done by rank: {starts}); "
                           "every process must read the same run folder, on a disk they share")
    return start


def compare_weights(nets: dict[str, nn.Module]) -> None:
    """After a distributed fit: log a digest of every process's weights, with a warning if they differ."""
    if num_distrib() <= 1:
        return
    digests = [None] * num_distrib()
    dist.all_gather_object(digests, weights_digest(*(unwrap(net).state_dict() for net in nets.values())))
    names = " + ".join(nets)
    if len(set(digests)) == 1:
        log.info("%s weights, sha256 by rank: %s", names, ", ".join(digests))
    else:  # DDP keeps them equal; GPUs of different kinds can round the same step differently
        log.warning("the training processes ended with different %s weights, sha256 by rank: %s; rank 0's were saved "
                    "and a resume starts every process from them", names, ", ".join(digests))
