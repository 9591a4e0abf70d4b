"""Items 4 and 5 of ``bench_official.py``: the official training step and trainer beside ours.

4. Training step (GPU only): the official ViT-S/16 descriptor + its criterion (InfoNCE, CopyNCE γ3 w5, KoLeo) in
   its shipped configuration (fp32, explicit attention, its dense maps from ``fetch_sample``) vs ours (bf16
   autocast, SDPA, ``torch.compile``, counts from the exact geometry), same batch of pairs, img/s and peak memory.
5. Accuracy at equal steps (CPU-feasible): both trainers on one folder of images (the bundled photos + procedural
   ones) from one random init (the official model's, loaded into ours), the same number of steps at the same
   learning rate, then both models through our held-out evaluator (``train.heldout``): μAP / RP90 / recall@1.
   Sizes (documented in the README): ViT 96 wide, 4 blocks, 3 heads, 64 px, 64-d descriptor, 16 pairs a step.
   The official side is stepped by ``official_runs.OfficialTrainer`` (what it replaces is listed there).
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

import official_harness as H
from official_timing import interleaved, spread

PATCH = 16


def _ours_descriptor_step(args, root: Path, batch_pairs: int, arch: str, size: int, device, compile_model: bool):
    """Our descriptor step (the trainer's own ``train_step``) on one batch of our loader."""
    from copynce_fast.config import LossConfig, ModelConfig
    from copynce_fast.data import PairLoader, descriptor_preset, folder_source, to_device
    from copynce_fast.models import build_model
    from copynce_fast.train.loop import param_groups, train_step
    from copynce_fast.train.objective import DescriptorObjective

    model = build_model(ModelConfig(arch=arch, img_size=size, dim=512, attn_impl="sdpa", ln_eps=1e-4)).to(device)
    objective = DescriptorObjective(LossConfig(), PATCH).to(device)
    groups = param_groups(model, objective, 0.04)
    opt = torch.optim.AdamW(groups, lr=5e-4, fused=device.type == "cuda")
    params = [p for g in groups for p in g["params"]]
    loader = PairLoader(folder_source(root), descriptor_preset(size=size), batch_pairs, num_workers=0, seed=args.seed)
    amp = device.type == "cuda"
    batch = to_device(next(iter(loader)), device, dtype=torch.bfloat16 if amp else torch.float32)
    net = torch.compile(model) if compile_model else model
    return lambda: train_step(net, objective, opt, params, batch, "descriptor", device, amp, 3.0)


def _official_descriptor_step(off, args, root: Path, batch_pairs: int, size: int, device, **model):
    import official_runs as R
    cfg = R.official_cfg(off, "descriptor", size, root, **model)
    if model:
        for loss in cfg.loss.auxiliary_loss:
            if loss.type == "copynce":
                loss.layer = cfg.model.encoder_depth - 1
    net, criterion = R.official_descriptor(off, cfg, seed=args.seed)
    trainer = R.OfficialTrainer(off, cfg, net, criterion, total_steps=1000, warmup_steps=10, lr=5e-4,
                                device=device)
    data, _, _ = R.official_pairs(R.official_dataset(off, cfg), batch_pairs, seed=args.seed)
    return lambda: trainer.step(data)


def _peak_gb(fn, device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def bench_train_step(off, args) -> tuple[list[dict], str]:
    """Item 4: rows and a note. GPU only (a CPU step time says nothing about the GPU); ``--smoke-train-step`` runs
    it on the CPU at toy size to check the code path, not to report."""
    smoke = getattr(args, "smoke_train_step", False)
    if not torch.cuda.is_available() and not smoke:
        return [], "training step skipped: GPU only (no CUDA device here; pending a GPU session)"
    if not off.full:
        return [], f"training step skipped: needs {', '.join(H.missing_full_deps())}"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = 8 if smoke else args.train_batch
    toy = dict(embed_dim=96, encoder_depth=4, num_heads=3) if smoke else {}
    steps = {
        "official (fp32, explicit attention, dense maps)": _official_descriptor_step(
            off, args, args.data_dir, n, 224, device, **toy),
        "ours (bf16, SDPA, compile, exact geometry)": _ours_descriptor_step(
            args, args.data_dir, n, "vit_tiny" if smoke else "vit_small", 224, device, compile_model=not smoke),
    }
    for fn in steps.values():  # compile / warm up outside the timed loop
        fn()
        fn()
    times = interleaved(steps, args.reps)
    base = spread(times["official (fp32, explicit attention, dense maps)"])["median"]
    rows = []
    for name, fn in steps.items():
        s = spread(times[name])
        rows.append({"item": "4 train step", "provider": name, "model": "toy ViT" if smoke else "ViT-S/16 @224",
                     "B": n, "img_per_s": 2 * n / (s["median"] / 1e3), "ms": s["median"], "ms_min": s["min"],
                     "ms_max": s["max"], "peak_mem_gb": _peak_gb(fn, device), "speedup": base / s["median"]})
    note = "CPU smoke run of the code path (toy sizes; not a measurement)" if smoke else \
        f"{n} pairs per step ({2 * n} images), same images for both; official step fp32 as shipped"
    return rows, note


# --- 5. accuracy at equal steps ---------------------------------------------------------------------------------

def _training_images(root: Path, n_procedural: int, seed: int) -> Path:
    """The bundled photos plus ``n_procedural`` procedural 500x375 JPEGs in one folder (both trainers read it)."""
    from PIL import Image

    import copynce_fast
    from copynce_fast.data import synthetic_images
    root.mkdir(parents=True, exist_ok=True)
    for p in sorted((Path(copynce_fast.__file__).parent / "assets" / "images").iterdir()):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
            shutil.copy(p, root / p.name)
    for k, img in enumerate(synthetic_images(n_procedural, (375, 500), seed + 1)):
        Image.fromarray(img).save(root / f"procedural{k:03d}.jpg", quality=90)
    return root


def bench_accuracy(off, args, tmp: Path) -> tuple[list[dict], str]:
    """Item 5: both trainers, same data / init / steps / lr, one evaluator."""
    if not off.full:
        return [], f"accuracy skipped: the official data path needs {', '.join(H.missing_full_deps())}"
    import official_runs as R
    from copynce_fast.train import train as ours_train
    from copynce_fast.config import get_preset
    from copynce_fast.train.heldout import heldout_eval

    size, batch, lr = 64, 16, 2e-3
    root = _training_images(tmp / "accuracy_images", 8 if args.quick else 51, args.seed)
    n_images = sum(1 for _ in root.iterdir())
    spe = n_images // batch
    epochs = math.ceil(args.steps / spe)
    total, warmup = spe * epochs, max(1, round(0.1 * spe * epochs))

    cfg = R.official_cfg(off, "descriptor", size, root, embed_dim=96, encoder_depth=4, num_heads=3,
                         freeze_patch=False)
    cfg.model.heads.linear_head.fc_dim = 64
    for loss in cfg.loss.auxiliary_loss:
        if loss.type == "copynce":
            loss.layer = 3  # the last of the 4 blocks (the shipped 11 is the last of 12)
    model, criterion = R.official_descriptor(off, cfg, seed=args.seed)
    init = tmp / "official_init.pth"
    torch.save({"model": model.state_dict()}, init)  # the same random init for both sides

    demo = get_preset("demo")
    ours_cfg = replace(
        demo,
        model=replace(demo.model, ln_eps=1e-4, pretrained=str(init)),
        data=replace(demo.data, source=str(root), synthetic_images=0, batch_size=batch, num_workers=0,
                     hard_negatives=False),
        loss=replace(demo.loss, copynce_weight=5.0, copynce_gamma=3.0, koleo_weight=5.0, infonce_weight=1.0),
        optim=replace(demo.optim, base_lr=lr, lr_scaling_batch=1024, epochs=epochs, warmup_epochs=warmup / spe,
                      weight_decay=0.04, clip_grad=3.0),
        run=replace(demo.run, out_dir=str(tmp / "ours_run"), max_steps=args.steps, seed=args.seed, resume=False,
                    progress=False, eval_after=True, compile=False, device="cpu"))
    t0 = time.perf_counter()
    result = ours_train(ours_cfg)
    ours_s = time.perf_counter() - t0

    ds = R.official_dataset(off, cfg)
    g = torch.Generator().manual_seed(args.seed)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, generator=g, drop_last=True,
                                     num_workers=args.workers, persistent_workers=args.workers > 0)
    trainer = R.OfficialTrainer(off, cfg, model, criterion, total_steps=total, warmup_steps=warmup, lr=lr)
    t0 = time.perf_counter()
    done = 0
    while done < args.steps:
        for data in dl:
            trainer.step(data)
            done += 1
            if done == args.steps:
                break
    off_s = time.perf_counter() - t0
    off_metrics = heldout_eval(R.OfficialFeatures(model), ours_cfg, torch.device("cpu"))

    rows = []
    for side, m, secs in (("official (its data path, model, losses; harness loop)", off_metrics, off_s),
                          ("ours (copynce_fast.train)", result.metrics, ours_s)):
        rows.append({"item": "5 accuracy", "side": side, "steps": args.steps, "img_size": size,
                     "model": "ViT 96w/4 blocks/3 heads, 64-d", "muAP": m.uap, "RP90": m.recall_at_p90,
                     "recall@1": m.recall_at_k.get(1), "train_s": secs})
    note = (f"{n_images} originals ({n_images - 51 if not args.quick else n_images - 8} bundled photos + "
            f"procedural), {batch} pairs/step, lr {lr} (warm-up {warmup} steps, cosine over {total}), "
            f"InfoNCE 1 + CopyNCE 5 (γ3) + KoLeo 5 on both sides, one random init (the official model's); "
            f"held-out copies drawn by our evaluator with a seed training never used. The official side is "
            f"stepped by a thin harness (official_runs.OfficialTrainer: no torchrun/DDP/SyncBN, plain shuffled "
            f"batches, no kNN hard negatives, no checkpoints); its augmentation, maps, model, losses, "
            f"optimiser and schedule are its own. One seed: differences below the demo's seed spread "
            f"(README) are noise.")
    return rows, note
