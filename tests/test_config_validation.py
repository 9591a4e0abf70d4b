"""Every config field is validated when its section is built: ranges and arity, the message naming
``--section.field``, the allowed range and the value; a resumed run compares configs like with like."""
import dataclasses
import json
import logging
import typing

import pytest

from copynce_fast.cli import main
from copynce_fast.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    apply_overrides,
    from_dict,
    get_preset,
    load_json,
    save_json,
    to_dict,
)
from copynce_fast.train.run_config import config_differences

BAD = [  # (override, what the message must say)
    ("--optim.epochs=-1", "--optim.epochs: must be >= 1, got -1"),
    ("--optim.epochs=0", "--optim.epochs: must be >= 1, got 0"),
    ("--run.max_steps=-1", "--run.max_steps: must be >= 0"),
    ("--run.ckpt_every=0", "--run.ckpt_every: must be >= 1, got 0"),
    ("--run.log_every=0", "--run.log_every: must be >= 1, got 0"),
    ("--optim.betas=0.9", "--optim.betas: expected 2 values (e.g. 0.9,0.999), got '0.9'"),
    ("--optim.betas=0.9,0.99,0.1", "--optim.betas: expected 2 values"),
    ("--optim.betas=0.9,1.0", "--optim.betas: each must be in [0, 1), got (0.9, 1.0)"),
    ("--optim.betas=-0.1,0.9", "--optim.betas: each must be in [0, 1)"),
    ("--optim.base_lr=-1", "--optim.base_lr: must be > 0, got -1.0"),
    ("--optim.base_lr=0", "--optim.base_lr: must be > 0"),
    ("--optim.base_lr=nan", "--optim.base_lr: must be > 0, got nan"),
    ("--optim.min_lr=-1e-6", "--optim.min_lr: must be >= 0"),
    ("--optim.weight_decay=-0.1", "--optim.weight_decay: must be >= 0"),
    ("--optim.warmup_epochs=-1", "--optim.warmup_epochs: must be >= 0"),
    ("--optim.clip_grad=inf", "--optim.clip_grad: must be >= 0"),
    ("--optim.steps_per_epoch=-2", "--optim.steps_per_epoch: must be >= 0"),
    ("--optim.lr_scaling_batch=-96", "--optim.lr_scaling_batch: must be >= 0"),
    ("--model.img_size=100", "--model.img_size: must be a multiple of 16 and >= 16, got 100"),
    ("--model.img_size=0", "--model.img_size: must be a multiple of 16 and >= 16"),
    ("--model.dim=0", "--model.dim: must be >= 1"),
    ("--model.ln_eps=0", "--model.ln_eps: must be > 0"),
    ("--model.encoder_depth=0", "--model.encoder_depth: must be >= 1"),
    ("--data.batch_size=1", "--data.batch_size: must be >= 2, got 1"),
    ("--data.num_workers=-1", "--data.num_workers: must be >= 0"),
    ("--data.synthetic_images=-5", "--data.synthetic_images: must be >= 0"),
    ("--data.positive_rate=1.5", "--data.positive_rate: must be in [0, 1], got 1.5"),
    ("--data.sibling_rate=-0.1", "--data.sibling_rate: must be in [0, 1]"),
    ("--data.knn_k=0", "--data.knn_k: must be >= 1"),
    ("--data.source=", "--data.source: must not be empty"),
    ("--loss.copynce_scale=0", "--loss.copynce_scale: must be > 0"),
    ("--loss.copynce_gamma=-1", "--loss.copynce_gamma: must be > 0"),
    ("--loss.copynce_lamb=2", "--loss.copynce_lamb: must be in [0, 1]"),
    ("--loss.koleo_weight=-5", "--loss.koleo_weight: must be >= 0"),
    ("--loss.infonce_log_scale=inf", "--loss.infonce_log_scale: must be finite"),
    ("--run.seed=-1", "--run.seed: must be >= 0"),
    ("--run.device=gpu", "--run.device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("--run.out_dir=", "--run.out_dir: must not be empty"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[b for b, _ in BAD])
def test_bad_values_are_refused_naming_the_flag_and_the_range(override, message):
    with pytest.raises(ValueError) as e:
        apply_overrides(get_preset("demo"), [override])
    assert message in str(e.value)


def test_matcher_encoder_depth_must_leave_fusion_blocks():
    with pytest.raises(ValueError, match=r"--model.encoder_depth: must be in \[1, 3\] for a vit_tiny matcher"):
        apply_overrides(get_preset("matcher_vits_224"), ["--model.arch=vit_tiny"])
    cfg = apply_overrides(get_preset("matcher_vits_224"), ["--model.arch=vit_tiny", "--model.encoder_depth=2"])
    assert cfg.model.encoder_depth == 2


def test_sections_are_validated_when_built_not_only_through_overrides():
    with pytest.raises(ValueError, match="--optim.epochs: must be >= 1"):
        OptimConfig(epochs=0)
    with pytest.raises(ValueError, match="--run.ckpt_every: must be >= 1"):
        dataclasses.replace(RunConfig(), ckpt_every=0)
    with pytest.raises(ValueError, match="--data.batch_size: expected an integer, got 'ten'"):
        DataConfig(batch_size="ten")
    with pytest.raises(ValueError, match="--model.kind: must be one of descriptor, matcher, got 'retriever'"):
        ModelConfig(kind="retriever")


def test_a_config_file_with_bad_values_is_refused_naming_the_field(tmp_path):
    d = to_dict(get_preset("demo"))
    d["run"]["log_every"] = 0
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="--run.log_every: must be >= 1, got 0"):
        load_json(tmp_path / "c.json")


def test_types_are_normalised_so_json_round_trips_compare_equal(tmp_path):
    cfg = get_preset("descriptor_vits_224")
    d = json.loads(json.dumps(to_dict(cfg)))  # tuples come back as lists, floats as ints when whole
    assert isinstance(d["optim"]["betas"], list)
    assert from_dict(d) == cfg
    assert OptimConfig(base_lr=1).base_lr == 1.0 and isinstance(OptimConfig(base_lr=1).base_lr, float)
    assert OptimConfig(betas=[0.5, 0.6]).betas == (0.5, 0.6)


def _numeric_fields():
    for section in dataclasses.fields(Config):
        cls = section.type if isinstance(section.type, type) else typing.get_type_hints(Config)[section.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if tp in (int, float) or typing.get_origin(tp) is tuple:
                yield section.name, f.name


@pytest.mark.parametrize("section, name", list(_numeric_fields()))
def test_every_numeric_field_has_a_range(section, name):
    """A field added later without a rule fails here: each number has a range the config checks."""
    from copynce_fast.config import FIELD_RULES
    assert name in FIELD_RULES[section], f"{section}.{name} has no validation rule"


def test_config_differences_name_the_fields():
    a = get_preset("demo")
    b = apply_overrides(a, ["--loss.copynce_weight=0", "--optim.base_lr=0.01"])
    assert config_differences(a, a) == []
    assert config_differences(to_dict(a), a) == []  # a checkpoint's dict (tuples or lists) against the config
    diff = config_differences(to_dict(a), b)
    assert [d.split(":")[0] for d in diff] == ["loss.copynce_weight", "optim.base_lr"]
    assert "1.0 -> 0.0" in diff[0]
    older = to_dict(a)
    del older["optim"]["total_steps"]  # a checkpoint from before the field existed: its default is the old way
    assert config_differences(older, a) == []


def _cli_train(tmp_path, *extra):
    return ["train", "--preset", "demo", "--run.out_dir", str(tmp_path / "run"), "--data.synthetic_images=0",
            "--model.img_size=32", "--model.dim=16", "--data.batch_size=4", "--run.eval_after=false",
            "--run.max_steps=1", "--no-progress", *extra]


def test_cli_train_refuses_a_bad_value_before_any_work(tmp_path, capsys):
    assert main(_cli_train(tmp_path, "--optim.epochs", "-1")) == 1
    err = capsys.readouterr().err.strip()
    assert err == "copynce-fast train: error: --optim.epochs: must be >= 1, got -1"
    assert not (tmp_path / "run").exists()


def test_resume_with_the_same_command_does_not_warn_and_a_changed_one_names_fields(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="copynce_fast.train")
    assert main(_cli_train(tmp_path)) == 0
    assert main(_cli_train(tmp_path, "--run.max_steps=2")) == 0  # extending a run is not a config change
    assert not [r for r in caplog.records if "config" in r.getMessage()], caplog.text
    assert main(_cli_train(tmp_path, "--run.max_steps=3", "--optim.base_lr=0.01")) == 0
    warnings = [r.getMessage() for r in caplog.records if "config" in r.getMessage()]
    assert len(warnings) == 1 and "optim.base_lr" in warnings[0] and "max_steps" not in warnings[0]
