"""The stages' shared shape: recipes checked before any work, one size rule for a start checkpoint, a run that
speaks (start, projection, end, rerun, changed recipe), the CPU guard, the inline gallery, ensure_trained."""

import logging

import pytest
from matplotlib.text import Text

import colorize.clock
import colorize.run
from colorize import config as cfg
from colorize.clock import CpuGuardStop, InlineFigure
from colorize.cli import main
from colorize.config import (GAN_PRESETS, HINTS_PRESETS, PRETRAIN_PRESETS, CriticConfig, DataConfig, GanConfig,
                             GeneratorConfig, HintsConfig, MachineConfig, is_smoke, override)
from colorize.data import index_dataset
from colorize.files import log_to_stdout
from colorize.gan import gan_learner
from colorize.hints import hints_learner
from colorize.loaders import train_subset
from colorize.models import build_generator, read_checkpoint_metadata, save_generator
from colorize.stages import ensure_trained, train

SMOKE = PRETRAIN_PRESETS["smoke"]


def test_the_choice_names_are_the_registries_keys():
    from colorize import device, losses, models

    assert tuple(models.ARCHS) == cfg.ARCHS
    assert tuple(models.CRITIC_NORMS) == cfg.CRITIC_NORMS
    assert tuple(losses.GAN_MODES) == cfg.GAN_MODES
    assert tuple(losses.L1_CONVENTIONS) == cfg.L1_CONVENTIONS
    assert {"auto", *device.DTYPES} == set(cfg.PRECISIONS)
    assert cfg.PROPAGATIONS == ("fast", "levin", "off")


@pytest.mark.parametrize("make, match", [
    (lambda: GeneratorConfig(arch="resnet19"), "resnet18, resnet34"),
    (lambda: CriticConfig(norm="spectal"), "batch, instance, spectral, none"),
    (lambda: MachineConfig(precision="fp8"), "auto, bf16, fp16, fp32"),
    (lambda: GanConfig(gan_mode="wgan"), "bce, lsgan"),
    (lambda: GanConfig(l1_mode="mean"), "additive, convex"),
    (lambda: GanConfig(l1_mode="convex", l1_weight=100.0), r"outside \[0, 1\]"),
    (lambda: override(GAN_PRESETS["cifar-spectral"], l1_weight=1.5), r"outside \[0, 1\]"),
    (lambda: DataConfig(bs=0), "bs is 0"),
    (lambda: DataConfig(max_photos=0), "max_photos is 0"),
    (lambda: CriticConfig(layers=0), "layers is 0"),
    (lambda: HintsConfig(hint_min_side=5, hint_max_side=2), "hint_min_side"),
])
def test_each_recipe_part_refuses_a_bad_value_when_it_is_made(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_change_of_mode_and_weight_together_is_one_valid_recipe():
    """The flags apply to each part at once: convex with its weight is valid though convex with 100 is not."""
    config = override(GAN_PRESETS["pix2pix"], l1_mode="convex", l1_weight=0.99)
    assert (config.l1_mode, config.l1_weight) == ("convex", 0.99)


def test_every_preset_is_a_valid_recipe():
    for presets in (PRETRAIN_PRESETS, GAN_PRESETS, HINTS_PRESETS):
        for config in presets.values():
            assert type(config)(**{f: getattr(config, f) for f in config.__dataclass_fields__}) == config


def test_a_typo_in_a_choice_stops_in_argparse_before_anything_is_indexed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("colorize.loaders.index_dataset", lambda *a, **k: pytest.fail("indexed"))
    with pytest.raises(SystemExit) as stop:
        main(["gan", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--critic-norm", "spectal"])
    assert stop.value.code == 2
    assert "invalid choice: 'spectal'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "colba"])


@pytest.mark.parametrize("learner", [gan_learner, hints_learner])
def test_a_start_checkpoint_of_another_size_stops_before_the_photos_are_indexed(learner, tmp_path, photos):
    ckpt = save_generator(build_generator(size=64, pretrained=False), tmp_path / "g64.safetensors")
    config = {gan_learner: GAN_PRESETS, hints_learner: HINTS_PRESETS}[learner]["smoke"]  # 32 px
    with pytest.raises(ValueError, match="trained at 64 px but this recipe trains at 32 px.*resize"):
        learner(tmp_path / "no-photos", config, generator=ckpt)  # no photos there: the check came first
    learn = learner(photos, config, generator=ckpt, resize=True)
    saved = save_generator(learn.model, tmp_path / "trained.safetensors")
    assert read_checkpoint_metadata(saved)["size"] == 32  # the size it trains at, not the one it started from


def test_is_smoke():
    assert is_smoke(SMOKE) and is_smoke(override(SMOKE, epochs=3))
    assert not is_smoke(override(SMOKE, size=64)) and not is_smoke(PRETRAIN_PRESETS["places365"])
    assert not is_smoke(GAN_PRESETS["cifar-spectral"])  # 32 px, but 100 epochs


class FakeHandle:
    def __init__(self, shown):
        self.shown = shown

    def update(self, fig):
        self.shown.append(("update", " ".join(t.get_text() for t in fig.findobj(Text))))


def test_a_run_speaks_shows_its_gallery_in_place_and_names_what_to_change(photos, tmp_path, caplog, monkeypatch):
    shown = []

    def display(fig, display_id):
        shown.append(("display", display_id))
        return FakeHandle(shown)

    monkeypatch.setattr(colorize.run, "inline_figure", lambda: InlineFigure(display))
    caplog.set_level(logging.INFO, logger="colorize")
    run, config = tmp_path / "run", override(SMOKE, epochs=2)
    train(photos, run, config)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"training {run} on cpu (fp32): ") and "photos per epoch, 2 epochs" in line
               for line in lines), lines
    assert any(line.startswith(f"{run}: about ") and "for 2 epochs on this cpu (projected from" in line
               for line in lines), lines
    assert any(line.startswith(f"{run}: 2 epochs trained in ") for line in lines), lines
    assert [s[0] for s in shown] == ["display", "update"] and shown[0][1] is True  # one display, updated in place
    assert "after epoch 2" in shown[1][1]

    caplog.clear()
    train(photos, run, config)  # finished: says so, trains nothing
    assert f"{run} is complete (2/2 epochs): choose a new --out folder to train again" in caplog.messages
    monkeypatch.setattr(colorize.run, "in_notebook", lambda: True)
    with pytest.raises(ValueError) as refused:
        train(photos, run, override(config, lr=0.5))
    message = str(refused.value)
    assert "lr 0.001 -> 0.5 (saved -> now); choose a new RUN" in message
    assert "epochs" not in message and "bs" not in message  # only the fields that differ


def test_the_cpu_guard_stops_a_real_recipe_before_its_first_epoch_ends(photos, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(colorize.clock, "CPU_GUARD_FREE_S", 0)  # this tiny run is projected at seconds
    caplog.set_level(logging.INFO, logger="colorize")
    run, config = tmp_path / "run", override(SMOKE, size=64)  # not smoke: 64 px crops
    assert not is_smoke(config)
    with pytest.raises(CpuGuardStop, match="would take about .* set ALLOW_CPU = True"):
        train(photos, run, config, device="cpu", allow_cpu=False)
    assert any("(projected from" in m for m in caplog.messages)
    assert not (run / "state.pt").exists() and not list(run.glob("*.safetensors"))  # nothing checkpointed


def test_log_to_stdout_shows_info_lines_once(capsys):
    logger = logging.getLogger("colorize")
    before = list(logger.handlers)
    try:
        log_to_stdout()
        log_to_stdout()
        logging.getLogger("colorize.run").info("hello from a run")
        logging.getLogger("colorize.run").debug("a debug line")  # under the level: not shown
        out, err = capsys.readouterr()
        assert out == "hello from a run\n" and err == ""  # on stdout, once, the message alone
    finally:
        logger.handlers = before


def test_ensure_trained_names_the_notebook_and_the_command_with_its_preset(tmp_path):
    path = tmp_path / "gan-spectral" / "last.safetensors"
    with pytest.raises(FileNotFoundError, match="03_gan_finetune.ipynb.*--preset pix2pix-spectral"):
        ensure_trained(tmp_path, path, GAN_PRESETS["pix2pix-spectral"], generator=tmp_path / "l1.safetensors")
    with pytest.raises(FileNotFoundError, match="02_pretrain_generator.ipynb.*colorize pretrain .*--preset colab"):
        ensure_trained(tmp_path, tmp_path / "l1" / "best.safetensors", PRETRAIN_PRESETS["colab"])


def test_max_photos_trains_on_a_seeded_subset_of_the_training_photos(photos):
    index = index_dataset(photos)
    n = index.counts["train"]
    sub = train_subset(index, n - 2, seed=42)
    assert sub.counts["train"] == n - 2 and sub.files("valid") == index.files("valid")
    assert sub.files("test") == index.files("test")
    assert train_subset(index, n - 2, seed=42).items == sub.items  # the same photos on every run and resume
    assert train_subset(index, None, seed=42) is index and train_subset(index, n + 5, seed=42) is index
