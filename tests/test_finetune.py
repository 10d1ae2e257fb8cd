"""Fine-tuning a trained generator on a folder of your own photos: `colorize pretrain --data DIR --generator CKPT`."""

import json

import pytest
import torch

from colorize.cli import main
from colorize.config import PRETRAIN_PRESETS, is_smoke
from colorize.models import checkpoint_identity, load_generator
from colorize.pretrain import pretrain_learner


def test_the_finetune_preset_is_a_real_recipe_on_a_few_photos():
    finetune = PRETRAIN_PRESETS["finetune"]
    assert not is_smoke(finetune) and finetune.lr < PRETRAIN_PRESETS["places365"].lr and finetune.data.repeats > 1


def test_an_l1_learner_starts_from_the_checkpoint_it_is_given(write_photos, tmp_path, tiny_checkpoint):
    ckpt = tiny_checkpoint(tmp_path / "start.safetensors", seed=3)
    write_photos(tmp_path / "mine", 10)
    learn = pretrain_learner(tmp_path / "mine", PRETRAIN_PRESETS["smoke"], generator=ckpt, device="cpu")
    start = load_generator(ckpt).state_dict()
    assert all(torch.equal(v.cpu(), start[k]) for k, v in learn.model.state_dict().items())
    with pytest.raises(ValueError, match="trained at 48 px but this recipe trains at 32 px"):
        pretrain_learner(tmp_path / "mine", PRETRAIN_PRESETS["smoke"],
                         generator=tiny_checkpoint(tmp_path / "big.safetensors", size=48))


@pytest.mark.slow
def test_fine_tuning_on_a_folder_from_the_command_line_records_its_start(write_photos, tmp_path, tiny_checkpoint,
                                                                          caplog):
    ckpt = tiny_checkpoint(tmp_path / "start.safetensors")
    write_photos(tmp_path / "mine", 12)  # a plain folder: no train/valid/test sub-folders
    run = tmp_path / "mine-finetuned"
    main(["pretrain", "--data", str(tmp_path / "mine"), "--generator", str(ckpt), "--preset", "smoke",
          "--out", str(run), "--device", "cpu"])
    assert (run / "best.safetensors").exists()
    assert json.loads((run / "config.json").read_text())["generator"] == checkpoint_identity(ckpt)
    other = tiny_checkpoint(tmp_path / "other.safetensors", seed=1)
    assert main(["pretrain", "--data", str(tmp_path / "mine"), "--generator", str(other), "--preset", "smoke",
                 "--out", str(run), "--device", "cpu"]) == 2  # resuming from another start is refused
    assert "different recipe: generator 'start.safetensors sha256:" in caplog.text
