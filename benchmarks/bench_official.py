"""copynce-fast beside the official CopyNCE code, on the same inputs, in one run (issue 11).

    python benchmarks/bench_official.py --official-src DIR [--quick] [--out FILE.md]
    copynce-fast bench official -- --official-src DIR

1. loss parity and speed: the official CopyNCELoss on its own dense maps (from its own fetch_sample / MaskMapper
   on real lyakaap edit chains) vs ours fed the same maps vs ours from the exact geometry of the same edits;
2. correspondence parity: the same edit parameters traced by both, native sizes 256..1024 px;
3. pairs/s per core: the official fetch_sample path vs our torch loader vs DALI (CPU; GPU where present);
4. training step (GPU only): the official model + losses (fp32) vs ours (bf16, SDPA, compile);
5. accuracy at equal steps: both trainers on the same images from the same init, one evaluator.
Timings are interleaved run by run (every provider once per repetition) and reported as median [min-max].
The official code is imported from ``--official-src`` / ``$COPYNCE_OFFICIAL_SRC`` (official_harness.py); items
3 and 5 need its dependencies (``pip install -e '.[official]'`` or ``benchmarks/official_venv.sh``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from copynce_fast.utils import benchmarking as _bench

# the official_* helpers sit beside this script and stay out of the package (the official code is optional)
sys.path.insert(0, str(Path(__file__).parent))
import official_compare as C  # noqa: E402
import official_edits as E  # noqa: E402
import official_harness as H  # noqa: E402
from official_timing import CPU_MS, interleaved, spread  # noqa: E402

from copynce_fast import CopyNCELoss  # noqa: E402
from copynce_fast.pixtrace import pack_pairs  # noqa: E402


# --- 1. loss parity and speed -----------------------------------------------------------------------------------

def loss_inputs(off, args, size: int, batch: int, matcher: bool):
    """(que_to_ori, ref_to_ori, query views, reference views, where the edits came from) for ``batch`` pairs."""
    if off.full:
        import official_runs as R
        root = args.data_dir
        cfg = R.official_cfg(off, "matching" if matcher else "descriptor", size, root)
        data, configs, hws = R.official_pairs(R.official_dataset(off, cfg), batch, seed=args.seed)
        qo, ro = data["que_to_ori_mappings"], data["ref_to_ori_mappings"]
        origin = "official fetch_sample (lyakaap augmentation + MaskMapper)"
    else:
        import numpy as np
        rng = np.random.default_rng(args.seed)
        hws = [(375, 500)] * batch
        configs = [E.random_chain(off, rng, hw, size) for hw in hws]
        qo, ro = C.pair_maps(off, configs, hws, size)
        origin = "official MaskMapper on random lyakaap-shaped geometry (augmentation deps absent)"
    qv, rv = C.pair_views(configs, hws, size)
    return qo, ro, qv, rv, origin


def bench_loss(off, args, name: str, batch: int, size: int, channels: int, gamma: float, weight: float) -> list[dict]:
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    qo, ro, qv, rv, origin = loss_inputs(off, args, size, batch, matcher=name == "matcher")
    L = (size // 16) ** 2
    g = torch.Generator().manual_seed(args.seed)
    q0 = torch.randn(batch, L, channels, generator=g)
    r0 = q0 + torch.randn(batch, L, channels, generator=g)
    q0, r0, qo, ro = q0.to(dev), r0.to(dev), qo.to(dev), ro.to(dev)
    paths = tuple(p.to(dev) for p in pack_pairs(qv, rv))
    official = H.official_copynce(off, gamma=gamma, weight=weight).to(dev)
    ours = CopyNCELoss(scale=16.0, gamma=gamma, lamb=0.5, weight=weight)

    def run(which):
        q, r = q0.clone().requires_grad_(), r0.clone().requires_grad_()
        if which == "official":
            with H.cpu_cuda(threads=None):
                v = H.official_copynce_loss(official, q, r, qo, ro)
        elif which == "ours (official maps)":
            v = ours(q, r, que_to_ori=qo, ref_to_ori=ro)
        else:
            v = ours(q, r, geometry=paths)
        v.backward()
        return float(v.detach()), q.grad, r.grad

    with H.cpu_cuda(threads=1):  # parity: one thread makes the official scatters deterministic
        ref_v, ref_gq, ref_gr = run("official")
    rows = []
    fns = {k: (lambda k=k: run(k)) for k in ("official", "ours (official maps)", "ours (exact geometry)")}
    times = interleaved(fns, args.reps)
    cpu = dict(CPU_MS)
    for k in fns:
        v, gq, gr = run(k)
        grad_err = max(float((gq - ref_gq).abs().max() / ref_gq.abs().max()),
                       float((gr - ref_gr).abs().max() / ref_gr.abs().max()))
        s = spread(times[k])
        rows.append({"item": "1 loss", "case": name, "provider": k, "B": batch, "L": L, "C": channels,
                     "loss": v, "loss_rel_err": abs(v - ref_v) / abs(ref_v), "grad_rel_err": grad_err,
                     "ms": s["median"], "ms_min": s["min"], "ms_max": s["max"],
                     "speedup": statistics.median(times["official"]) / s["median"],
                     "cpu_ms": statistics.median(cpu[k]),
                     "cpu_speedup": statistics.median(cpu["official"]) / statistics.median(cpu[k]), "inputs": origin})
    return rows


# --- 2. correspondence parity -----------------------------------------------------------------------------------

def bench_correspondence(off, args) -> list[dict]:
    sides = (256, 512, 1024) if args.quick else (256, 384, 512, 768, 1024)
    rows = []
    for side in sides:
        hw = (side * 3 // 4, side)  # landscape 4:3
        for kind in E.EDIT_KINDS:
            configs = E.edit_configs(off, kind, hw, args.size)
            r = C.correspondence_parity(off, configs, hw, args.size)
            if off.full:  # ground truth from rendered coordinate pixels (needs torchvision)
                import official_truth as T
                qo, _ = C.pair_maps(off, [configs], [hw], args.size)
                r.update(T.truth_scores(configs, hw, args.size, qo[0], C.pair_views([configs], [hw], args.size)[0][0]))
            rows.append({"item": "2 correspondence", "edit": kind, **r})
    return rows


def correspondence_summary(rows: list[dict]) -> list[dict]:
    """Per native size, the mean over the edits."""
    keys = ["official_to_original", "ours_to_original", "orig_median_px", "official_to_reference",
            "ours_to_reference", "ref_agree_exact", "ref_agree_1px", "ref_max_px", "ori_to_ref_holes",
            "ref_to_que_holes", "collided_ref_px", "official_true_1px", "ours_true_1px"]
    keys = [k for k in keys if all(k in r for r in rows)]
    out = []
    for native in dict.fromkeys(r["native"] for r in rows):
        sel = [r for r in rows if r["native"] == native]
        agg = {k: (max if k == "ref_max_px" else statistics.fmean)([r[k] for r in sel]) for k in keys}
        out.append({"native": native, "edits": len(sel), **agg})
    return out


# --- 3. pairs per second per core -------------------------------------------------------------------------------

def _endless(make):
    """Batches from ``make()`` forever (a new epoch when one ends)."""
    while True:
        yield from make()


def bench_loaders(off, args, root: Path) -> list[dict]:
    from copynce_fast.data import PairLoader, descriptor_preset, folder_source

    n, b, w = args.loader_pairs, args.loader_batch, args.workers
    providers = {}  # name -> (cores, generator of batch sizes)
    if off.full:
        import official_runs as R
        ds = R.official_dataset(off, R.official_cfg(off, "descriptor", args.size, root))
        providers["official fetch_sample, 1 core"] = (1, _endless(lambda: (ds.fetch_sample(i) and 1
                                                                          for i in range(len(ds.paths)))))
        dl = torch.utils.data.DataLoader(ds, batch_size=b, shuffle=True, num_workers=w, drop_last=True,
                                         persistent_workers=True)
        providers[f"official DataLoader, {w} workers"] = (w, _endless(lambda: (len(x["cls_gt"]) for x in dl)))
    source, preset = folder_source(root), descriptor_preset(size=args.size)
    ours1 = PairLoader(source, preset, b, num_workers=0, seed=args.seed)
    oursw = PairLoader(source, preset, b, num_workers=w, seed=args.seed)
    providers["ours torch loader, 1 core"] = (1, _endless(lambda: (x["query"].shape[0] for x in ours1)))
    providers[f"ours torch loader, {w} workers"] = (w, _endless(lambda: (x["query"].shape[0] for x in oursw)))
    try:
        from copynce_fast.data.dali_loader import DaliPairLoader
        for t in sorted({1, w}):
            d = DaliPairLoader(source, preset, b, device_id=None, num_threads=t, seed=args.seed)
            providers[f"ours DALI CPU, {t} thread{'s' * (t > 1)}"] = (t, _endless(lambda d=d: (
                x["query"].shape[0] for x in d)))
        if torch.cuda.is_available():
            d = DaliPairLoader(source, preset, b, device_id=0, num_threads=w, seed=args.seed, normalize=True)
            providers[f"ours DALI GPU, {w} threads"] = (w, _endless(lambda: (x["query"].shape[0] for x in d)))
    except ImportError:
        print("DALI rows skipped: nvidia-dali is not installed")
    prev = torch.get_num_threads()
    fns = {}
    for name, (cores, gen) in providers.items():
        def take(gen=gen, single=cores == 1):
            torch.set_num_threads(1 if single else prev)
            got = 0
            while got < n:
                got += next(gen)
        fns[name] = take
    times = interleaved(fns, args.reps)
    cpu = dict(CPU_MS)
    torch.set_num_threads(prev)
    per_core = {name: spread([n / (t / 1e3) / cores for t in times[name]]) for name, (cores, _) in providers.items()}
    # each row against the official row with as many cores (1 core, or its DataLoader with the same workers)
    bases = {cores: per_core[name]["median"] for name, (cores, _) in providers.items() if name.startswith("official")}
    cpu_base = None
    rows = []
    for name, (cores, _) in providers.items():
        pps = [n / (t / 1e3) for t in times[name]]
        s = per_core[name]
        # pairs per CPU-second of this process: only for in-process providers (worker processes are not counted)
        in_process = cores == 1 and "workers" not in name  # a 1-worker DataLoader works in another process
        per_cpu_s = n / (statistics.median(cpu[name]) / 1e3) if in_process else None
        cpu_base = cpu_base or (per_cpu_s if name.startswith("official") else None)
        base = bases.get(cores)
        rows.append({"item": "3 loader", "provider": name, "cores": cores, "size": args.size,
                     "pairs_per_s": statistics.median(pps), "pairs_per_s_per_core": s["median"],
                     "per_core_min": s["min"], "per_core_max": s["max"],
                     "vs_official_per_core": s["median"] / base if base else None,
                     "pairs_per_cpu_s": per_cpu_s,
                     "vs_official_per_cpu_s": per_cpu_s / cpu_base if per_cpu_s and cpu_base else None})
    return rows


# --- output -----------------------------------------------------------------------------------------------------

def markdown(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
        return "–" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def header(off, args) -> str:
    env = _bench.env_header()
    vers = []
    for mod in ("torchvision", "timm", "albumentations", "nvidia.dali"):
        try:
            vers.append(f"{mod.split('.')[-1]} {__import__(mod, fromlist=['__version__']).__version__}")
        except ImportError:
            pass
    mode = "full (its own augmentation, model, losses)" if off.full else "light (torch + numpy only)"
    return (f"device: {env['device']} | torch {env['torch']} | {' | '.join(vers)} | git {env['git']} | "
            f"{env['date']}\nofficial code: {off.src} ({mode}); torch threads: {torch.get_num_threads()}; "
            f"command: {' '.join(sys.argv)}")


def ratio_rows(sections: dict) -> list[dict]:
    """The headline ratios for the chart: > 1 means ours is better (faster / more pixels traced)."""
    out = []
    for r in sections.get("1", []):
        if r["provider"] != "official":
            out.append({"what": f"loss {r['case']}: {r['provider']}", "ratio": r["speedup"]})
    for r in sections.get("3", []):
        if not r["provider"].startswith("official") and r["vs_official_per_core"]:
            out.append({"what": f"pairs/s/core vs official, same cores: {r['provider']}",
                        "ratio": r["vs_official_per_core"]})
    for r in sections.get("4", []):
        if r.get("speedup"):
            out.append({"what": f"train step: {r['provider']}", "ratio": r["speedup"]})
    return out


COLUMNS = {
    "1": ["case", "provider", "B", "L", "C", "loss", "loss_rel_err", "grad_rel_err", "ms", "ms_min", "ms_max",
          "speedup", "cpu_ms", "cpu_speedup"],
    "2": ["native", "edits", "official_to_original", "ours_to_original", "official_true_1px", "ours_true_1px",
          "orig_median_px", "official_to_reference", "ours_to_reference", "ref_agree_exact", "ref_agree_1px",
          "ref_max_px", "ori_to_ref_holes", "ref_to_que_holes", "collided_ref_px"],
    "2e": ["edit", "native", "official_to_reference", "ours_to_reference", "ref_agree_1px", "ref_max_px",
           "orig_median_px", "official_true", "ours_true", "official_true_1px", "ours_true_1px",
           "ref_to_que_holes", "collided_ref_px"],
    "3": ["provider", "cores", "size", "pairs_per_s", "pairs_per_s_per_core", "per_core_min", "per_core_max",
          "vs_official_per_core", "pairs_per_cpu_s", "vs_official_per_cpu_s"],
    "4": ["provider", "model", "B", "img_per_s", "ms", "ms_min", "ms_max", "peak_mem_gb", "speedup"],
    "5": ["side", "steps", "img_size", "model", "muAP", "RP90", "recall@1", "train_s"],
}
TITLES = {"1": "1. CopyNCE loss: parity and fwd+bwd time", "2": "2. correspondence parity (mean over the edits)",
          "2e": "2. correspondence parity per edit", "3": "3. training pairs per second per core",
          "4": "4. training step", "5": "5. accuracy at equal steps (held-out edited copies, our evaluator)"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official-src", default=None, help=f"official checkout (default: ${H.ENV_VAR}, then "
                                                        f"../shared/official-copynce beside the repository)")
    p.add_argument("--items", default="1,2,3,4,5", help="comma-separated items to run (1-5)")
    p.add_argument("--quick", action="store_true", help="small sizes (CPU smoke run, about a minute)")
    p.add_argument("--data", type=Path, help="folder of images for items 1, 3, 5 (default: 500x375 JPEGs "
                                             "generated into a temporary folder; item 5 adds the bundled photos)")
    p.add_argument("--size", type=int, default=224, help="input side for items 2 and 3")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions per timing")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--workers", type=int, default=2, help="loader workers / DALI threads for the N-core rows")
    p.add_argument("--loader-pairs", type=int, default=64, help="pairs per provider per repetition (item 3)")
    p.add_argument("--loader-batch", type=int, default=16)
    p.add_argument("--train-batch", type=int, default=192, help="pairs per training step (item 4)")
    p.add_argument("--smoke-train-step", action="store_true", help=argparse.SUPPRESS)  # item 4's code path on CPU
    p.add_argument("--steps", type=int, default=96, help="training steps per side (item 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the markdown tables here (JSONL and PNG beside it)")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.loader_pairs, args.loader_batch, args.steps = 2, 16, 8, 8
    if args.loader_pairs % args.loader_batch:
        p.error("--loader-pairs: must be a multiple of --loader-batch")
    if args.threads:
        torch.set_num_threads(args.threads)
    items = {s.strip() for s in args.items.split(",") if s.strip()}
    try:
        off = H.load_official(args.official_src)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except H.OfficialUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sections: dict[str, list[dict]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        args.data_dir = args.data or make_images(Path(tmp) / "images", 16 if args.quick else 64, args.seed)
        if "1" in items:
            # channels divisible by 6: the official loss keeps the first 6 * (C // 6) ("heads: 6:6")
            sizes = [("descriptor", 16, 224, 96, 3.0, 5.0), ("matcher", 4, 336, 96, 1.0, 3.0)] if args.quick else \
                [("descriptor", 192, 224, 384, 3.0, 5.0), ("matcher", 32, 336, 384, 1.0, 3.0)]
            sections["1"] = [r for s in sizes for r in bench_loss(off, args, *s)]
            notes.append(f"1: inputs from {sections['1'][0]['inputs']}")
        if "2" in items:
            sections["2e"] = bench_correspondence(off, args)
            sections["2"] = correspondence_summary(sections["2e"])
            sections["2e"] = [r for r in sections["2e"] if r["native"] == "512x384"]
            notes.append("2: shares of the query (or reference) grid at the input size; *_to_original / "
                         "*_to_reference: query pixels each side traces; ref_agree_*: same reference pixel / within "
                         "1 px where both trace one; orig_median_px: distance of the two traces in native pixels; "
                         "*_true(_1px): "
                         "shown query pixels whose traced native pixel is the one a rendered coordinate image "
                         "shows (exactly / within 1 native px; nearest sampling, so exact boundary ties go either "
                         "way); holes / collisions: the official inverse maps' artefacts")
        if "3" in items:
            if not off.full:
                notes.append(f"3: official rows skipped: needs {', '.join(H.missing_full_deps())}")
            sections["3"] = bench_loaders(off, args, args.data_dir)
        if "4" in items or "5" in items:
            import official_training as T
            if "4" in items:
                sections["4"], note = T.bench_train_step(off, args)
                notes.append(f"4: {note}")
            if "5" in items:
                sections["5"], note = T.bench_accuracy(off, args, Path(tmp))
                notes.append(f"5: {note}")
    report = [f"## copynce-fast vs the official CopyNCE code\n\n{header(off, args)}\n"]
    for key in ("1", "2", "2e", "3", "4", "5"):
        if sections.get(key):
            report.append(f"### {TITLES[key]}\n\n{markdown(sections[key], COLUMNS[key])}\n")
    report.append("\n".join(f"- {n}" for n in notes))
    text = "\n".join(report)
    print(text)
    write_outputs(args.out, text, sections, off, args)
    return 0


def make_images(root: Path, n: int, seed: int) -> Path:
    """``n`` procedural 500x375 JPEGs (quality 90), the size the orientation numbers were measured at."""
    from PIL import Image

    from copynce_fast.data import synthetic_images
    root.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(synthetic_images(n, (375, 500), seed)):
        Image.fromarray(img).save(root / f"img{k:05d}.jpg", quality=90)
    return root


def write_outputs(out: Path | None, text: str, sections: dict, off, args) -> None:
    base = out or (Path(__file__).resolve().parent / "results") / "official.md"
    base.parent.mkdir(parents=True, exist_ok=True)
    if out:
        out.write_text(text + "\n")
    env = {**_bench.env_header(), "official_mode": "full" if off.full else "light", "quick": args.quick}
    jsonl = base.with_suffix(".jsonl")
    with jsonl.open("a") as f:
        for key, rows in sections.items():
            for r in rows:
                f.write(json.dumps({**env, "section": key, **r}) + "\n")
    ratios = ratio_rows(sections)
    if ratios:
        from copynce_fast.viz import bar_chart
        png = bar_chart(base.with_suffix(".png"), ratios, category="what", value="ratio",
                        title=f"ours / official ({_bench.env_header()['device']})", ylabel="ratio (> 1: ours better)",
                        log_scale=True, size=(1000, 520))
        print(f"\nwrote {jsonl} and {png}" + (f" and {out}" if out else ""))


if __name__ == "__main__":
    sys.exit(main())
