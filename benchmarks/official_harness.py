"""Run the official CopyNCE code (eddielyc/CopyNCE, Apache-2.0) beside copynce-fast, imported from a path at run time.

Nothing of the official code is copied here: it is imported from the folder the user gives (``--official-src DIR``
or ``COPYNCE_OFFICIAL_SRC``; benchmarks and tests fall back to ``../shared/official-copynce`` beside the
repository, where development machines and CI have it). What it hard-codes is stubbed *around* it:

- ``.cuda()``: the official batch dense-map functions call it unconditionally. ``cpu_cuda()`` makes
  ``Tensor.cuda`` return the tensor itself while CUDA is absent (only inside the ``with`` block).
- Modules it imports but the measured paths do not use, when they are not installed (``loguru``, ``kornia``'s
  meshgrid, ``timm``'s ``to_2tuple``, ``cv2``'s two matrix helpers): small stand-ins are put into ``sys.modules``
  while the official modules import, then taken out again, so nothing outside the harness sees them.
- Two import modes. ``light`` (any environment with torch + numpy) imports only ``core.loss.copynce_loss``,
  ``core.data.augmentation.mask_mapper`` and ``data_utils`` without running the package ``__init__`` files that
  pull in albumentations, augly, torchvision and the rest. ``full`` imports the packages as published (needs the
  ``[official]`` extra, or the separate virtualenv of ``benchmarks/official_venv.sh``) and gives the dataset,
  augmentation, models, losses and timm optimiser/scheduler.
- Library drift: Pillow 10 dropped ``FreeTypeFont.getsize`` (the official pins Pillow 9.3) and PyPI's torchvision
  for torch 2.13 fails to import beside the CPU build of torch; ``full`` mode bridges both (see the functions).
- DISC21 paths, kNN files and 8 GPUs: the harness builds its own OmegaConf config (``data_src: folder``, no hard
  negative mining, one process) instead of the shipped yaml paths.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ENV_VAR = "COPYNCE_OFFICIAL_SRC"
REPO_ROOT = Path(__file__).resolve().parent.parent
SIBLING_CHECKOUT = REPO_ROOT.parent / "shared" / "official-copynce"  # where development machines and CI have it

# What each part of the comparison needs beyond torch + numpy (module name -> pip name), for skip messages.
FULL_DEPS = {"torchvision": "torchvision", "timm": "timm==0.9.2", "albumentations": "albumentations==1.3.1",
             "augly": "augly==1.0.0", "cv2": "opencv-python-headless", "kornia": "kornia==0.6.12",
             "omegaconf": "omegaconf==2.3.0", "loguru": "loguru", "func_timeout": "func-timeout",
             "fontTools": "fonttools", "matplotlib": "matplotlib", "pandas": "pandas", "einops": "einops"}


class OfficialUnavailable(RuntimeError):
    """The official code, or a dependency a comparison needs, is not there (the message says which)."""


def find_official_src(explicit: str | os.PathLike | None = None, fallback: bool = True) -> Path | None:
    """The official checkout: ``explicit``, else ``$COPYNCE_OFFICIAL_SRC``, else ``../shared/official-copynce``.

    Raises ValueError naming the source when an explicitly given folder is not an official checkout; returns None
    when nothing was given and the fallback folder is absent.
    """
    given = explicit or os.environ.get(ENV_VAR)
    if given:
        path = Path(given).expanduser()
        name = "official-src" if explicit else ENV_VAR
        if not (path / "core" / "loss" / "copynce_loss.py").is_file():
            raise ValueError(f"{name}: {path} is not a checkout of the official CopyNCE code "
                             f"(no core/loss/copynce_loss.py)")
        return path.resolve()
    if fallback and (SIBLING_CHECKOUT / "core" / "loss" / "copynce_loss.py").is_file():
        return SIBLING_CHECKOUT.resolve()
    return None


def missing_full_deps() -> list[str]:
    """pip names of the ``full`` mode's dependencies that are not importable here."""
    return [pip for mod, pip in FULL_DEPS.items() if importlib.util.find_spec(mod) is None]


# --- stand-ins for modules the measured paths do not need -------------------------------------------------------

class _QuietLogger:
    """loguru's ``logger`` for code whose log lines we do not want: every method is a no-op."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def _meshgrid(height: int, width: int, normalized_coordinates: bool = True, device=None, dtype=torch.float32):
    """kornia.utils.create_meshgrid: [1, H, W, 2] with (x, y) per pixel (pixel indices when not normalised)."""
    xs = torch.arange(width, device=device, dtype=dtype)
    ys = torch.arange(height, device=device, dtype=dtype)
    if normalized_coordinates:
        xs = xs / max(width - 1, 1) * 2 - 1
        ys = ys / max(height - 1, 1) * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)[None]


def _to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _cv2_rotation_matrix(center, angle, scale):
    """cv2.getRotationMatrix2D: [2, 3] float64, positive angle = counter-clockwise on screen (OpenCV's docs)."""
    a = np.deg2rad(angle)
    al, be = scale * np.cos(a), scale * np.sin(a)
    cx, cy = center
    return np.array([[al, be, (1 - al) * cx - be * cy], [-be, al, be * cx + (1 - al) * cy]])


def _cv2_perspective(src, dst):
    """cv2.getPerspectiveTransform: the 3x3 homography taking 4 points to 4 points."""
    from copynce_fast.pixtrace.stages import perspective_matrix
    return perspective_matrix(np.asarray(src, np.float64), np.asarray(dst, np.float64))


def _stub_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for the modules that are not installed (only those)."""
    stubs: dict[str, types.ModuleType] = {}

    def add(name, **attrs):
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            return
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        mod.__copynce_stub__ = True
        stubs[name] = mod
        parent, _, child = name.rpartition(".")
        if parent and parent in stubs:
            setattr(stubs[parent], child, mod)

    add("loguru", logger=_QuietLogger())
    add("kornia")
    add("kornia.utils", create_meshgrid=_meshgrid)
    add("timm")
    add("timm.layers", to_2tuple=_to_2tuple)
    add("timm.models")
    add("timm.models.layers", to_2tuple=_to_2tuple)
    add("cv2", getRotationMatrix2D=_cv2_rotation_matrix, getPerspectiveTransform=_cv2_perspective)
    return stubs


@contextlib.contextmanager
def _stubs_installed():
    stubs = _stub_modules()
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        yield stubs
    finally:
        for k, v in saved.items():  # the official modules keep the references they bound at import time
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _torchvision_importable() -> None:
    """Make ``import torchvision`` work on a CPU-only torch beside a CUDA torchvision wheel.

    PyPI's torchvision for torch 2.13 links CUDA libraries; on the CPU build of torch its C extension does not
    load, and its meta registrations then fail on the two operators they register unconditionally ('operator
    torchvision::nms does not exist'). Declaring those two schemas first lets the pure-Python transforms the
    official augmentations use import; the C operators (nms, roi_align, ...) stay unavailable.
    """
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
        return
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[k]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARIES.append(lib)  # a Library drops its definitions when garbage-collected
    import torchvision  # noqa: F401,F811


_LIBRARIES: list = []


def _basic_text_layout(overlay: types.ModuleType) -> None:
    """The official text overlay draws random characters of random fonts; with Pillow's libraqm layout (bundled
    in current wheels) about 1% of them fail ('raqm_layout() failed'), which the official loader does not retry.
    Give that module a ``PIL.ImageFont`` whose ``truetype`` uses the basic layout (the one a Pillow 9.3 without
    FriBiDi uses); nothing outside the official module is changed."""
    from functools import partial

    from PIL import ImageFont
    proxy = types.ModuleType("PIL.ImageFont")
    proxy.__dict__.update(ImageFont.__dict__)
    proxy.truetype = partial(ImageFont.truetype, layout_engine=ImageFont.Layout.BASIC)
    overlay.ImageFont = proxy


def _pillow_compat() -> None:
    """Pillow 10 removed ``FreeTypeFont.getsize`` / ``getsize_multiline``, which the official text overlay and
    augly call (the official pins Pillow 9.3, which has no wheel for this Python). Put equivalents back from
    ``getbbox`` (Pillow 9's getsize was the bbox's right/bottom edge)."""
    from PIL import ImageDraw, ImageFont, Image
    cls = ImageFont.FreeTypeFont
    if not hasattr(cls, "getsize"):
        cls.getsize = lambda self, text, *a, **k: tuple(self.getbbox(text, *a, **k)[2:])
    if not hasattr(cls, "getsize_multiline"):
        def getsize_multiline(self, text, *a, **k):
            box = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox((0, 0), text, font=self)
            return box[2], box[3]
        cls.getsize_multiline = getsize_multiline


# --- loading ----------------------------------------------------------------------------------------------------

@dataclass
class Official:
    """Handles on the imported official modules. ``full`` says which mode loaded them."""

    src: Path
    full: bool
    mask_mapper: types.ModuleType
    copynce_loss: types.ModuleType
    data_utils: types.ModuleType
    extra: dict = field(default_factory=dict)

    def module(self, name: str) -> types.ModuleType:
        """Another official module (``full`` mode only), e.g. ``module("core.data.build")``."""
        if not self.full:
            raise OfficialUnavailable(f"{name}: needs the official dependencies (pip install -e '.[official]'); "
                                      f"loaded in light mode")
        return importlib.import_module(name)


_LOADED: dict[Path, Official] = {}


def _bare_package(name: str, folder: Path) -> None:
    """Register package ``name`` without running its __init__ (its submodules import from ``folder``)."""
    if name in sys.modules:
        return
    mod = types.ModuleType(name)
    mod.__path__ = [str(folder)]
    mod.__package__ = name
    mod.__file__ = str(folder / "__init__.py")
    sys.modules[name] = mod


def _check_core(src: Path) -> None:
    core = sys.modules.get("core")
    if core is not None and Path(getattr(core, "__file__", "") or "").resolve().parent != (src / "core").resolve():
        raise OfficialUnavailable(f"official-src: another module named 'core' is already imported "
                                  f"({getattr(core, '__file__', core)}); run the comparison in a fresh process")


def load_official(src: str | os.PathLike | None = None, full: bool | None = None) -> Official:
    """Import the official code from ``src`` (see ``find_official_src``).

    Args:
        src: the official checkout (None: ``$COPYNCE_OFFICIAL_SRC`` or the sibling checkout).
        full: True = import the packages as published (needs the ``[official]`` dependencies), False = light mode
            (torch + numpy only), None = full when every dependency is importable, else light.

    Raises:
        OfficialUnavailable: no checkout found, or ``full=True`` with dependencies missing (named).
        ValueError: ``src`` (or the environment variable) does not point at an official checkout.
    """
    path = find_official_src(src)
    if path is None:
        raise OfficialUnavailable(f"no official checkout: pass --official-src DIR or set {ENV_VAR} "
                                  f"(looked for {SIBLING_CHECKOUT})")
    missing = missing_full_deps()
    if full is None:
        full = not missing
    if full and missing:
        raise OfficialUnavailable(f"the official dependencies are missing: {', '.join(missing)} "
                                  f"(pip install -e '.[official]', or benchmarks/official_venv.sh)")
    if path in _LOADED:
        got = _LOADED[path]
        if full and not got.full:
            raise OfficialUnavailable("official code already loaded in light mode in this process; "
                                      "load it in full mode first (or in a fresh process)")
        return got
    _check_core(path)
    sys.path.insert(0, str(path))
    try:
        with _stubs_installed():
            if full:
                _torchvision_importable()
                _pillow_compat()
                for name in ("core", "core.data", "core.loss", "core.models", "core.configs"):
                    importlib.import_module(name)
            else:
                importlib.import_module("core")
                _bare_package("core.data", path / "core" / "data")
                _bare_package("core.data.augmentation", path / "core" / "data" / "augmentation")
                _bare_package("core.loss", path / "core" / "loss")
            mm = importlib.import_module("core.data.augmentation.mask_mapper")
            du = importlib.import_module("core.data.augmentation.data_utils")
            cl = importlib.import_module("core.loss.copynce_loss")
    finally:
        sys.path.remove(str(path))
    if full:  # its INFO lines (one per built object) would drown the tables; warnings still show
        from loguru import logger
        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    if full:
        _basic_text_layout(importlib.import_module("core.data.augmentation.overlay"))
    off = Official(path, full, mm, cl, du)
    _LOADED[path] = off
    return off


# --- running it on the CPU --------------------------------------------------------------------------------------

@contextlib.contextmanager
def cpu_cuda(threads: int | None = 1):
    """``Tensor.cuda()`` returns the tensor itself while CUDA is absent; torch runs on ``threads`` threads.

    One thread makes the official index scatters deterministic: the last writer in raster order wins (the rule
    ``copynce_fast.pixtrace.dense`` reproduces); with more threads, collided pixels vary from run to run.
    """
    patched = not torch.cuda.is_available()
    original, prev_threads = torch.Tensor.cuda, torch.get_num_threads()
    if patched:
        torch.Tensor.cuda = lambda self, *a, **k: self
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if patched:
            torch.Tensor.cuda = original
        torch.set_num_threads(prev_threads)


def copynce_cfg(scale=16.0, gamma=3.0, lamb=0.5, weight=5.0, patch_size=16, input_mode="fusion_head", layer=11):
    """The loss section of an official config, as the attribute bag ``CopyNCELoss(cfg, model)`` reads."""
    return SimpleNamespace(scale=scale, gamma=gamma, lamb=lamb, weight=weight, patch_size=patch_size,
                           input_mode=input_mode, layer=layer, heads="6:6")


def official_copynce(off: Official, **cfg) -> torch.nn.Module:
    """The official ``CopyNCELoss`` module (``fusion_head`` input mode: tokens come straight from ``outputs``)."""
    return off.copynce_loss.CopyNCELoss(copynce_cfg(**cfg), None)


def official_copynce_loss(loss: torch.nn.Module, query: torch.Tensor, reference: torch.Tensor,
                          que_to_ori: torch.Tensor, ref_to_ori: torch.Tensor, flags: torch.Tensor | None = None):
    """The official weighted CopyNCE value for tokens [B, L, C] and dense maps [B, 2, S, S] (its own chain)."""
    flags = torch.ones(query.shape[0], dtype=torch.bool) if flags is None else flags
    outputs = {"fusion_head_que_patch_tokens": query, "fusion_head_ref_patch_tokens": reference}
    inputs = {"que_to_ori_mappings": que_to_ori, "ref_to_ori_mappings": ref_to_ori, "copynce": flags}
    with cpu_cuda():
        (value,) = loss(outputs, inputs).values()
    return value


def official_correspondence(off: Official, que_to_ori: torch.Tensor, ref_to_ori: torch.Tensor):
    """The official chain of REFERENCE.md section 1.7: (ori_to_ref, que_to_ref, ref_to_que), [B, 2, S, S] int64."""
    MM = off.mask_mapper.MaskMapper
    with cpu_cuda():
        ori_to_ref = MM.generate_batch_inverse_mappings(ref_to_ori)
        que_to_ref = MM.generate_batch_transferred_mapping(que_to_ori, ori_to_ref)
        ref_to_que = MM.generate_batch_inverse_mappings(que_to_ref)
    return ori_to_ref, que_to_ref, ref_to_que


def official_map(off: Official, configs: list, native_wh: tuple[int, int], size_hw: tuple[int, int]) -> np.ndarray:
    """One view's dense map [2, H, W] as ``CopyDataset.fetch_sample`` builds it: the view's configs through
    ``MaskMapper`` at the native size, then rescaled into the frame of the original resized to ``size_hw``."""
    w0, h0 = native_wh
    mapper = off.mask_mapper.MaskMapper((w0, h0))
    mapper(configs)
    mapper.adapt_mapping_with_resized_src([size_hw[0] / h0, size_hw[1] / w0])
    return mapper.mapping


def official_patch_counts(off: Official, mapping: torch.Tensor, patch_size: int = 16) -> torch.Tensor:
    """The overlap counts [B, L, L + 1] the official loss derives from a correspondence map [B, 2, S, S] (its own
    ``PatchManager`` patch indices, then one count per (query patch, reference patch or dummy))."""
    pm = off.copynce_loss.PatchManager((patch_size, patch_size))
    idx = pm.convert_batch_mapping_to_patch_indices(mapping).long()  # [B, L, P*P]
    B, L, _ = idx.shape
    idx = torch.where(idx < 0, torch.full_like(idx, L), idx)
    counts = torch.zeros(B, L, L + 1, dtype=torch.int64)
    counts.scatter_add_(2, idx, torch.ones_like(idx))
    return counts
