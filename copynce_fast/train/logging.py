"""What a user sees of a run: a tqdm bar, JSONL and TensorBoard scalars, and a loss-curve PNG at the end."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm.auto import tqdm

from copynce_fast.viz.curves import plot_lines

__all__ = ["RunLogger"]

log = logging.getLogger("copynce_fast.train")


class RunLogger:
    """Logs rows ``{"step": ..., "total": ..., ...}`` on the main rank; a no-op elsewhere."""

    def __init__(self, out_dir: Path, *, enabled: bool, total_steps: int, start_step: int = 0, progress: bool = True):
        self.out_dir, self.enabled = Path(out_dir), enabled
        self.history: list[dict] = []
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not (enabled and progress), unit="step",
                        dynamic_ncols=True, desc="train")
        self.tb = None
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / "log.jsonl"
            # A resumed run drops the rows logged after its checkpoint (they are logged again); a fresh run starts
            # a fresh log.
            kept = [line for line in open(path) if json.loads(line)["step"] <= start_step] \
                if start_step > 0 and path.is_file() else []
            self.jsonl = open(path, "w")
            self.jsonl.writelines(kept)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.out_dir / "tb"))
            except ImportError:  # tensorboard is optional ([dev] extra)
                self.tb = None

    def info(self, msg: str) -> None:
        if self.enabled:
            (self.bar.write if not self.bar.disable else print)(msg)
            log.info(msg)

    def advance(self) -> None:
        self.bar.update(1)

    def log(self, row: dict) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, row["step"])
        shown = {k: f"{row[k]:.4g}" for k in row if k not in ("step", "epoch", "lr", "images_per_s", "skipped_images")}
        self.bar.set_postfix(img_s=f"{row['images_per_s']:.0f}", **shown)
        if self.bar.disable:
            print(f"step {row['step']}: " + " ".join(f"{k}={v}" for k, v in shown.items())
                  + f" img/s={row['images_per_s']:.0f}", flush=True)

    def close(self) -> None:
        self.bar.close()
        if not self.enabled:
            return
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        rows = [json.loads(line) for line in open(self.out_dir / "log.jsonl")]  # includes resumed segments
        keys = [k for k in ("total", "infonce", "copynce", "koleo", "bce") if any(k in r for r in rows)]
        if rows and keys:
            series = {k: ([r["step"] for r in rows if k in r], [r[k] for r in rows if k in r]) for k in keys}
            plot_lines(self.out_dir / "loss_curves.png", series, title="training losses (weighted)", xlabel="step",
                       ylabel="loss")
