"""How a run uses its config: a preset fitted to what the run has (:func:`adapt_to_run`, shown at start-up) and a
checkpoint's config compared with the run's (:func:`config_differences`, named on resume)."""
from __future__ import annotations

import json
from dataclasses import replace

from copynce_fast.config import Config, from_dict, to_dict

__all__ = ["adapt_to_run", "config_differences", "RUN_CONTROL"]


def adapt_to_run(cfg: Config, pinned=frozenset()) -> tuple[Config, list[str]]:
    """A preset made to fit what the run has; the changed values and one line per change group, to show at
    start-up. Fields in ``pinned`` (``"section.field"``, the ones the user gave) are never changed.

    * A source other than "builtin": the preset's ``data.synthetic_images`` (procedural images that top up the
      bundled photos) -> 0.
    * No ``model.pretrained`` (from scratch): ``model.freeze_patch_embed`` -> false (a random patch embedding
      must learn) and ``data.hard_negatives`` -> false when there is no ``data.knn_path`` (no descriptor to mine
      neighbours with yet).
    """
    notes = []
    data, model = cfg.data, cfg.model
    if data.source != "builtin" and data.synthetic_images and "data.synthetic_images" not in pinned:
        data = replace(data, synthetic_images=0)
        notes.append(f"data.synthetic_images=0 (the preset's {cfg.data.synthetic_images} synthetic images only "
                     f"top up data.source=builtin)")
    if not model.pretrained:
        changed = []
        if model.freeze_patch_embed and "model.freeze_patch_embed" not in pinned:
            model = replace(model, freeze_patch_embed=False)
            changed.append(("model.freeze_patch_embed", "a random patch embedding must learn"))
        if data.hard_negatives and not data.knn_path and "data.hard_negatives" not in pinned:
            data = replace(data, hard_negatives=False)
            changed.append(("data.hard_negatives", "no k-NN table to mine neighbours from yet"))
        if changed:
            notes.append("from scratch (no --model.pretrained): "
                         + ", ".join(f"{k}=false ({why})" for k, why in changed)
                         + "; keep the recipe's with " + " / ".join(f"--{k}=true" for k, _ in changed))
    return replace(cfg, model=model, data=data), notes


# Fields that do not change what a run computes: resuming with other values is not a config change.
RUN_CONTROL = frozenset({("run", "max_steps"), ("run", "progress"), ("run", "eval_after"), ("run", "resume"),
                         ("run", "out_dir"), ("run", "log_every"), ("run", "ckpt_every"), ("data", "num_workers")})


def _plain(cfg) -> dict:
    """A config or its dict (as a checkpoint stores it: tuples) as plain JSON values (lists), to compare; a dict
    from before a field existed gets that field's default (which keeps the old behaviour)."""
    if not isinstance(cfg, Config):
        try:
            cfg = from_dict(cfg)
        except (ValueError, TypeError):  # not a config this version can read: compare what is there
            pass
    return json.loads(json.dumps(to_dict(cfg) if isinstance(cfg, Config) else cfg))


def config_differences(old, new, ignore=RUN_CONTROL) -> list[str]:
    """The fields where ``old`` and ``new`` (each a :class:`Config` or its :func:`to_dict`, e.g. a checkpoint's)
    differ, as ``"section.field: old -> new"`` in declaration order; ``ignore``: (section, field) pairs skipped."""
    a, b = _plain(old), _plain(new)
    out = []
    for section in dict.fromkeys([*a, *b]):
        sa, sb = a.get(section, {}), b.get(section, {})
        for name in dict.fromkeys([*sa, *sb]):
            if (section, name) in ignore:
                continue
            va, vb = sa.get(name, "(absent)"), sb.get(name, "(absent)")
            if va != vb:
                out.append(f"{section}.{name}: {va} -> {vb}")
    return out
