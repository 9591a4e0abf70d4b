"""Extraction on N ranks: 2 gloo processes under torchrun each extract a slice into their own shard directory,
rank 0 merges the manifest; the merged features equal a single-process extraction; resumable per rank and with
another number of ranks; bad files gathered from every rank; the CLI under torchrun (same launch: each launch
costs a torch import per process)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from copynce_fast.inference.extract import extract_features
from copynce_fast.inference.extract_dist import extract_features_distributed, rank_slice
from copynce_fast.inference.images import ImageItem
from copynce_fast.models.loading import load_model
from copynce_fast.search.features import FeatureWriter, load_features, merge_part_directories, stored_ids

MODEL = dict(random_init=True, arch="vit_tiny", img_size=32, dim=8, seed=0)


def make_images(folder, n, bad=()):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"im{i:02d}.png"
        if i in bad:
            path.write_bytes(b"not an image")
        else:
            Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(path)
    return sorted(folder.glob("*.png"))


WORKER = textwrap.dedent("""
    import json, sys
    from copynce_fast import CopyDetector
    folder, out, max_images, report = sys.argv[1:5]
    det = CopyDetector.random_init(arch="vit_tiny", img_size=32, dim=8, seed=0, num_workers=0, batch_size=3)
    result = det.extract(folder, out, progress=False, shard_size=2,
                         max_images=None if max_images == "none" else int(max_images))
    import torch.distributed as dist
    with open(f"{report}.{dist.get_rank()}.json", "w") as f:
        json.dump({"extracted": result.extracted, "already": result.already_done, "complete": result.complete,
                   "skipped": [p for p, _ in result.skipped], "world": dist.get_world_size()}, f)
    if len(sys.argv) > 5:  # the CLI in the same process group (it joins the group torchrun set up)
        from copynce_fast.cli import main
        sys.exit(main(["extract", folder, "--out", sys.argv[5], "--random-init", "--arch", "vit_tiny",
                       "--img-size", "32", "--dim", "8", "--workers", "0", "--no-progress", "--device", "cpu"]))
""")


def torchrun(args, tmp_path, script=None, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    if script is not None:
        (tmp_path / "worker.py").write_text(script)
        cmd.append(str(tmp_path / "worker.py"))
    proc = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def reports(prefix):
    return [json.loads(open(f"{prefix}.{r}.json").read()) for r in (0, 1)]


def test_two_ranks_extract_merge_and_resume(tmp_path):
    paths = make_images(tmp_path / "imgs", 11, bad=(4,))
    out = tmp_path / "feats"
    # first run: each rank stops after 2 new images (a clean interruption)
    torchrun([tmp_path / "imgs", out, 2, tmp_path / "r1"], tmp_path, WORKER)
    first = reports(tmp_path / "r1")
    assert all(r["world"] == 2 and not r["complete"] for r in first)
    assert sorted(p.name for p in out.glob("rank_*")) == ["rank_00000", "rank_00001"]
    partial = stored_ids(out)  # the manifest rank 0 merged lists both ranks' shards
    assert len(partial) == first[0]["extracted"] and len(partial) >= 3
    # second run: what any rank stored is skipped, the rest is split again
    proc = torchrun([tmp_path / "imgs", out, "none", tmp_path / "r2", tmp_path / "cli_feats"], tmp_path, WORKER)
    second = reports(tmp_path / "r2")
    assert all(r["complete"] and r["already"] == len(partial) for r in second)
    assert second[0]["extracted"] == 11 - 1 - len(partial)  # nothing extracted twice
    assert second[0]["skipped"] == second[1]["skipped"] == [str(paths[4])]  # gathered from the rank that met it
    merged = load_features(out)
    assert sorted(merged.ids) == sorted(f"im{i:02d}" for i in range(11) if i != 4)

    # the merged features equal one process extracting everything
    single = tmp_path / "single.npz"
    extract_features(load_model("descriptor", **MODEL), [ImageItem(p.stem, p) for p in paths], single,
                     num_workers=0, progress=False)
    ref = load_features(single)
    order = {i: n for n, i in enumerate(ref.ids)}
    np.testing.assert_allclose(merged.features, ref.features[[order[i] for i in merged.ids]], atol=1e-5)
    assert merged.norms is None or len(merged.norms) == len(merged.ids)

    # the CLI under the same torchrun: rank 0 reports once for both, the same rows
    assert proc.stderr.count("11 images:") == 1 and proc.stderr.count(f"warning: skipped {paths[4]}: ") == 1
    cli = load_features(tmp_path / "cli_feats")
    assert len(list((tmp_path / "cli_feats").glob("rank_*"))) == 2 and sorted(cli.ids) == sorted(merged.ids)

    # resuming in one process (another world size) after the ranks: nothing left but the bad file
    again = extract_features_distributed(load_model("descriptor", **MODEL), [ImageItem(p.stem, p) for p in paths],
                                         out, num_workers=0, progress=False)
    assert again.extracted == 0 and again.already_done == 10 and again.complete


def test_single_process_resume_then_ranks_keep_top_level_shards(tmp_path):
    """A plain extraction into the folder first (top-level shards), then the distributed path adds the rest:
    the merged manifest keeps both; a .npz output is refused."""
    paths = make_images(tmp_path / "imgs", 5)
    items = [ImageItem(p.stem, p) for p in paths]
    loaded = load_model("descriptor", **MODEL)
    out = tmp_path / "f"
    extract_features(loaded, items[:2], out, num_workers=0, progress=False)
    result = extract_features_distributed(loaded, items, out, num_workers=0, progress=False)
    assert result.already_done == 2 and result.extracted == 3
    assert sorted(stored_ids(out)) == [it.id for it in items]
    with pytest.raises(ValueError, match="shard directory"):
        extract_features_distributed(loaded, items, tmp_path / "x.npz")


def test_rank_slices_cover_everything_once():
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3, 4):
            got = [list(range(n))[rank_slice(n, r, world)] for r in range(world)]
            assert sum(got, []) == list(range(n))
            assert max(map(len, got)) - min(map(len, got)) <= 1
    with pytest.raises(ValueError, match="rank"):
        rank_slice(3, 2, 2)


def test_merge_refuses_duplicates_and_foreign_parts(tmp_path):
    for part, ids in (("rank_00000", ["a", "b"]), ("rank_00001", ["b", "c"])):
        with FeatureWriter(tmp_path / part, model="m", dim=2, img_size=8) as w:
            w.append(ids, np.eye(2, dtype=np.float32))
    with pytest.raises(ValueError, match="repeats ids"):
        merge_part_directories(tmp_path, [tmp_path / "rank_00000", tmp_path / "rank_00001"])
    with pytest.raises(ValueError, match="not a subdirectory"):
        merge_part_directories(tmp_path / "rank_00000", [tmp_path / "rank_00001"])
    index = merge_part_directories(tmp_path, [tmp_path / "rank_00000"])
    assert index["count"] == 2 and stored_ids(tmp_path) == ["a", "b"]
