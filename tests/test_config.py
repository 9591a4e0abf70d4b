"""Config presets round-trip through JSON; CLI overrides are typed and reject unknown keys."""
import pytest

from copynce_fast.config import PRESETS, apply_overrides, get_preset, load_json, save_json, scaled_lr


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name, tmp_path):
    cfg = get_preset(name)
    save_json(cfg, tmp_path / "c.json")
    assert load_json(tmp_path / "c.json") == cfg


def test_reference_learning_rates():
    # REFERENCE.md §6: descriptor 5.196e-4 (scaled by 96 items on 8 GPUs), matcher 5e-4 (32 on 8 GPUs)
    assert abs(scaled_lr(get_preset("descriptor_vits_224"), 8) - 5.196e-4) < 1e-7
    assert abs(scaled_lr(get_preset("matcher_vits_224"), 8) - 5e-4) < 1e-9


def test_overrides_are_typed():
    cfg = apply_overrides(get_preset("demo"), ["--loss.copynce_weight=0", "optim.betas=0.9,0.95",
                                               "--run.compile=false", "--model.attn_impl=math"])
    assert cfg.loss.copynce_weight == 0.0 and cfg.optim.betas == (0.9, 0.95)
    assert cfg.run.compile is False and cfg.model.attn_impl == "math"


@pytest.mark.parametrize("bad, msg", [
    ("--loss.nope=1", "loss.nope"), ("--x.y=1", "x.y"), ("--model.attn_impl=foo", "model.attn_impl"),
    ("--run.compile=maybe", "run.compile"), ("--optim.epochs=ten", "optim.epochs"), ("loss", "override"),
])
def test_bad_overrides_name_the_key(bad, msg):
    with pytest.raises(ValueError, match=msg):
        apply_overrides(get_preset("demo"), [bad])


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset"):
        get_preset("nope")
