"""Every config field has a `train` flag derived from it, and every flag the README and docs/ show exists."""

import dataclasses
import re
from pathlib import Path

from imgcls.cli import build_parser, main, subcommands
from imgcls.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = "".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def train_flags():
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    return {o for a in subcommands["train"]._actions for o in a.option_strings}


def test_every_config_field_has_a_flag_with_its_help():
    flags = train_flags()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        assert flag in flags, flag
    assert "--no-tta" in flags  # booleans can be switched both ways


def test_flags_reach_the_config(monkeypatch):
    seen = {}

    def stop_before_training(config, **options):
        seen["config"] = config
        raise KeyboardInterrupt

    monkeypatch.setattr("imgcls.train.train", stop_before_training)
    assert main(["train", "--weight-decay", "0.001", "--label-smoothing", "0.1", "--tta", "--augment",
                 "--steps-per-execution", "2", "--optimizer", "sgd", "--warmup", "0.3"]) == 130
    config = seen["config"]
    assert (config.weight_decay, config.label_smoothing, config.tta, config.augment, config.steps_per_execution,
            config.optimizer, config.warmup) == (0.001, 0.1, True, "auto", 2, "sgd", 0.3)


def test_every_flag_in_the_docs_exists():
    parser = build_parser()
    known = {o for p in [parser, *subcommands(parser)] for a in p._actions for o in a.option_strings}
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", DOCS))
    assert mentioned - known == set()
