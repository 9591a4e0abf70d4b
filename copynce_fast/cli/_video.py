"""Video pieces shared by ``extract --video``, ``match-video`` and ``evaluate --protocol vsc-*``: sampling flags,
video extraction with warnings, reading video feature files and segment CSVs, candidate-generation, score
normalisation and alignment flags."""
from __future__ import annotations

import argparse
from pathlib import Path

from copynce_fast.cli._common import CliError, info, one_line, parse_key_values, positive_float, report_skipped

SCORE_NORM_PARAMS = {
    "copynce": {"start": int, "end": int, "alpha": float},
    "isc2021": {"n": int, "beta": float, "reduction": str},
    "sscd": {"first": int, "last": int, "beta": float},
}


def boolean(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise ValueError(f"expected true or false, got {text!r}")
    return value


TN_PARAMS = {"max_step": int, "top_k": int, "max_path": int, "min_sim": float, "min_length": int, "max_iou": float,
             "strict_start": boolean}


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """``--fps`` and ``--scene-threshold`` (video frame sampling)."""
    g = parser.add_argument_group("video sampling")
    g.add_argument("--fps", type=positive_float, default=1.0,
                   help="frames sampled per second (default 1, the VSC2022 baseline's rate)")
    g.add_argument("--scene-threshold", type=positive_float, default=None,
                   help="also sample scene cuts: frames whose grey-thumbnail difference to the previous frame "
                        "exceeds this fraction (0..1, e.g. 0.3); PyAV loader only")
    g.add_argument("--chunk-frames", type=int, default=64, help="frames handed from a decoder to the model at once")


def is_feature_input(path: Path) -> bool:
    """A video feature file (.npz) or shard directory, as opposed to videos."""
    return path.suffix == ".npz" or (path.is_dir() and (path / "index.json").is_file())


def read_video_features(flag: str, path: Path):
    """Load video descriptors (ours or an official VSC2022 .npz); errors name ``flag``."""
    from copynce_fast.video.features import load_video_features

    if not path.exists():
        raise CliError(f"{flag}: no such file or folder: {path}")
    try:
        feats = load_video_features(path)
    except (ValueError, OSError) as e:
        raise CliError(f"{flag}: {one_line(e)}") from None
    if len(feats) == 0:
        raise CliError(f"{flag} {path}: holds no frame descriptors")
    return feats


def list_video_items(flag: str, source: Path):
    from copynce_fast.video.extract import list_videos

    try:
        return list_videos(source)
    except ValueError as e:
        raise CliError(f"{flag}: {one_line(e)}") from None


def run_video_extraction(command: str, args, loaded, videos, out: Path, max_videos: int | None = None):
    """Extract ``videos`` into ``out`` with the flags of ``args``; each skipped video is named with its reason."""
    from copynce_fast.video.extract import extract_video_features

    if args.chunk_frames < 1:
        raise CliError(f"--chunk-frames: expected a positive integer, got {args.chunk_frames}")
    if args.scene_threshold is not None and not args.scene_threshold < 1:
        raise CliError(f"--scene-threshold: expected a fraction in (0, 1), got {args.scene_threshold}")
    if args.scene_threshold is not None and args.loader == "dali":
        raise CliError("--scene-threshold needs the PyAV decoder (--loader torch or auto)")
    result = extract_video_features(loaded, videos, out, fps=args.fps, scene_threshold=args.scene_threshold,
                                    batch_size=args.batch_size, num_workers=args.workers, amp=args.amp,
                                    dtype=args.dtype, shard_size=args.shard_size, chunk_frames=args.chunk_frames,
                                    max_videos=max_videos, progress=args.progress, loader=args.loader)
    report_skipped(command, result.skipped, out, noun="videos")  # each named, on stderr or in a skipped.txt
    return result


def add_candidate_args(parser, scope: str = "") -> None:
    """``--retrieve-per-query`` and ``--candidates-per-query``: the VSC2022 candidate generation's two numbers
    (``parser``: a parser or an argument group; ``scope`` prefixes the help, e.g. the protocol using them)."""
    parser.add_argument("--retrieve-per-query", type=float, default=1200.0,
                        help=f"{scope}frame pairs retrieved per query video for candidate generation (VSC2022: 1200)")
    parser.add_argument("--candidates-per-query", type=float, default=25.0,
                        help=f"{scope}video pairs kept per query video (VSC2022: 25)")


def read_segments(flag: str, path: Path, *, is_gt: bool = False):
    """The segments of a CSV (:func:`~copynce_fast.video.segments.read_matches_csv`); errors name ``flag``."""
    from copynce_fast.video.segments import read_matches_csv

    try:
        return read_matches_csv(path, is_gt=is_gt)
    except ValueError as e:
        raise CliError(f"{flag}: {one_line(e)}") from None


def add_score_norm_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("score normalisation (per query frame, folded into the descriptors)")
    g.add_argument("--score-norm", default=None, choices=tuple(SCORE_NORM_PARAMS),
                   help="normalise frame similarities against --aux descriptors of non-copies")
    g.add_argument("--aux", type=Path, default=None,
                   help="non-copy descriptors: a video feature file (frames of unrelated videos) or an image "
                        "feature file; never the references")
    g.add_argument("--sn-param", action="append", metavar="KEY=VALUE",
                   help="score-normalisation parameter (repeatable); the VSC2022 baseline's rule is "
                        "--score-norm isc2021 --sn-param n=1 --sn-param beta=1.2")


def apply_score_norm(args, queries, references):
    """(queries, references), score-normalised when ``--score-norm`` is given."""
    if args.score_norm is None:
        if args.aux is not None or args.sn_param:
            raise CliError("--aux / --sn-param need --score-norm")
        return queries, references
    if args.aux is None:
        raise CliError(f"--score-norm {args.score_norm} needs --aux FEATURES (descriptors of non-copies)")
    params = parse_key_values("--sn-param", args.sn_param, SCORE_NORM_PARAMS[args.score_norm])
    aux = _aux_matrix(args.aux)
    if aux.shape[1] != queries.dim:
        raise CliError(f"--aux has {aux.shape[1]}-d descriptors, the queries {queries.dim}-d")
    from copynce_fast.video.score_norm import normalize_video_features

    try:
        q, r = normalize_video_features(queries, references, aux, args.score_norm, **params)
    except ValueError as e:
        raise CliError(f"--score-norm {args.score_norm}: {one_line(e)}") from None
    info(f"score normalisation: {args.score_norm} {params or '(defaults)'} against {len(aux)} aux descriptors")
    return q, r


def _aux_matrix(path: Path):
    from copynce_fast.search.features import load_features
    from copynce_fast.video.features import load_video_features

    if not path.exists():
        raise CliError(f"--aux: no such file or folder: {path}")
    errors = []
    for load in (load_video_features, load_features):
        try:
            return load(path).features
        except (ValueError, OSError, KeyError) as e:
            errors.append(one_line(e))
    raise CliError(f"--aux {path}: neither video nor image features ({'; '.join(errors)})")


def add_alignment_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("localisation (temporal network, as the VSC2022 baseline)")
    g.add_argument("--tn-param", action="append", metavar="KEY=VALUE",
                   help="temporal-network setting (repeatable): max_step=5 top_k=5 max_path=10 min_sim=0.2 "
                        "min_length=4 max_iou=0.3 strict_start=true (the defaults)")
    g.add_argument("--similarity-bias", type=float, default=None,
                   help="added to similarities before the alignment (default: 0.5 with --score-norm, as the "
                        "baseline, else 0)")
    g.add_argument("--segment-score", default="max_sim", choices=("max_sim", "candidate"),
                   help="score of a segment: the highest frame similarity inside it, or its pair's score")
    g.add_argument("--localize-per-query", type=float, default=5.0,
                   help="align the best N x (number of query videos) candidate pairs (default 5; 0 = all)")


def tn_params(args):
    from copynce_fast.video.align import TNParams

    try:
        return TNParams(**parse_key_values("--tn-param", args.tn_param, TN_PARAMS))
    except ValueError as e:
        raise CliError(f"--tn-param: {one_line(e)}") from None


def similarity_bias(args) -> float:
    if args.similarity_bias is not None:
        return args.similarity_bias
    return 0.5 if args.score_norm is not None else 0.0
