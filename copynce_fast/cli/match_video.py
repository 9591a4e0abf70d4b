"""``copynce-fast match-video``: copied segments between query and reference videos -> CSV + similarity PNGs."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_model_args,
    add_subparser,
    info,
    load_model_from_args,
    one_line,
)
from copynce_fast.cli._video import (
    add_alignment_args,
    add_candidate_args,
    add_sampling_args,
    add_score_norm_args,
    apply_score_norm,
    is_feature_input,
    list_video_items,
    read_segments,
    read_video_features,
    run_video_extraction,
    similarity_bias,
    tn_params,
)
from copynce_fast.cli.extract import add_extract_args

DESCRIPTION = """\
Find the copied segments between query videos and reference videos, as the VSC2022 baseline does:
frame descriptors -> candidate video pairs -> per pair, the frame similarity matrix -> temporal-network
alignment -> segments (query_start, query_end, ref_start, ref_end in seconds) with a score.

QUERY and REFERENCE are each a video file, a folder of videos, or video features ('copynce-fast extract
--video' output, or an official VSC2022 .npz). Videos are first extracted into <out>/features/ (resumable)
with the model flags; feature files need no model.

Candidate pairs: --candidates CSV (query_id,ref_id,score: the batch form over given pairs), else one video
against one video is that pair, else the VSC2022 descriptor-track generation (the 1200 x #queries most
similar frame pairs overall, max-aggregated per video pair, 25 pairs per query kept). The best
--localize-per-query x #queries pairs are aligned.

Writes <out>/matches.csv (query_id,ref_id,query_start,query_end,ref_start,ref_end,score; the VSC2022
matching-track format), <out>/candidates.csv, and <out>/pairs/<query>__<ref>.png: the similarity matrix of
the --plots best pairs with the segments found (and the --gt segments dashed).

examples:
  copynce-fast match-video q.mp4 r.mp4 --weights ckpt.pt --out match/
  copynce-fast match-video queries/ refs/ --weights ckpt.pt --fps 1 --out match/
  copynce-fast match-video q.npz r.npz --candidates pairs.csv --out match/ --gt ground_truth.csv
  copynce-fast match-video q.npz r.npz --score-norm isc2021 --sn-param n=1 --sn-param beta=1.2 --aux noise.npz \\
      --out match_sn/
"""


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "match-video", "copied segments between videos -> segments CSV + PNGs",
                      DESCRIPTION)
    p.add_argument("query", type=Path, help="query video, folder of videos, or video features (.npz / shards)")
    p.add_argument("reference", type=Path, help="reference video, folder of videos, or video features")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--candidates", type=Path, default=None, help="pairs to align: CSV query_id,ref_id,score")
    add_candidate_args(p)
    p.add_argument("--plots", type=int, default=10, help="similarity PNGs of the best N pairs (default 10; 0 = none)")
    p.add_argument("--gt", type=Path, default=None, help="ground-truth segments CSV, drawn dashed in the PNGs")
    add_alignment_args(p)
    add_score_norm_args(p)
    add_sampling_args(p)
    add_extract_args(p)
    add_model_args(p)
    add_common_args(p)


def _features(flag: str, path: Path, args, state: dict):
    """Video features of ``path``: loaded, or extracted into <out>/features/<flag>.npz with the model flags."""
    if not path.exists():
        raise CliError(f"{flag}: no such file or folder: {path}")
    if is_feature_input(path):
        return read_video_features(flag, path)
    videos = list_video_items(flag, path)
    if "model" not in state:
        state["model"] = load_model_from_args(args, "descriptor")
    out = args.out / "features" / f"{flag}.npz"
    result = run_video_extraction("match-video", args, state["model"], videos, out)
    if result.extracted + result.already_done == 0:
        raise CliError(f"{flag} {path}: no video could be decoded")
    return read_video_features(flag, out)


def run(args) -> int:
    from copynce_fast.video.candidates import vsc_candidates
    from copynce_fast.video.localize import localize_candidates, similarity_matrix
    from copynce_fast.video.segments import (
        CandidatePair,
        read_candidates_csv,
        write_candidates_csv,
        write_matches_csv,
    )
    from copynce_fast.viz.video import plot_video_pair

    if args.plots < 0:
        raise CliError(f"--plots: expected a non-negative integer, got {args.plots}")
    if args.localize_per_query < 0:
        raise CliError(f"--localize-per-query: expected a non-negative number, got {args.localize_per_query}")
    params = tn_params(args)
    truth = [] if args.gt is None else read_segments("--gt", args.gt, is_gt=True)
    state: dict = {}
    queries = _features("query", args.query, args, state)
    refs = _features("reference", args.reference, args, state)
    if queries.dim != refs.dim:
        raise CliError(f"query descriptors are {queries.dim}-d, reference descriptors {refs.dim}-d")
    queries, refs = apply_score_norm(args, queries, refs)

    q_videos, r_videos = queries.videos(), refs.videos()
    if args.candidates is not None:
        try:
            candidates = read_candidates_csv(args.candidates)
        except ValueError as e:
            raise CliError(f"--candidates: {one_line(e)}") from None
        q_ids, r_ids = {v for v, _ in q_videos}, {v for v, _ in r_videos}
        unknown = [c for c in candidates if c.query_id not in q_ids or c.ref_id not in r_ids]
        if unknown:
            raise CliError(f"--candidates: {len(unknown)} pair(s) name videos without features, e.g. "
                           f"({unknown[0].query_id}, {unknown[0].ref_id})")
    elif len(q_videos) == 1 and len(r_videos) == 1:
        sim = similarity_matrix(queries.features, refs.features)
        candidates = [CandidatePair(q_videos[0][0], r_videos[0][0], float(sim.max()))]
    else:
        try:
            candidates = vsc_candidates(queries, refs, retrieve_per_query=args.retrieve_per_query,
                                        candidates_per_query=args.candidates_per_query)
        except ValueError as e:
            raise CliError(one_line(e)) from None
    candidates = sorted(candidates, key=lambda c: c.score, reverse=True)
    per_query = args.localize_per_query or None
    bias = similarity_bias(args)
    matches = localize_candidates(queries, refs, candidates, localize_per_query=per_query, params=params,
                                  similarity_bias=bias, scoring=args.segment_score)
    args.out.mkdir(parents=True, exist_ok=True)
    write_candidates_csv(args.out / "candidates.csv", candidates)
    write_matches_csv(args.out / "matches.csv", matches)

    q_rows, r_rows = dict(q_videos), dict(r_videos)
    for c in candidates[:args.plots]:
        q, r = queries.select(q_rows[c.query_id]), refs.select(r_rows[c.ref_id])
        found = [m for m in matches if m.pair() == (c.query_id, c.ref_id)]
        true = [m for m in truth if m.pair() == (c.query_id, c.ref_id)]
        plot_video_pair(args.out / "pairs" / f"{c.query_id}__{c.ref_id}.png",
                        similarity_matrix(q.features, r.features), q.timestamps, r.timestamps, found, truth=true,
                        title=f"{c.query_id} vs {c.ref_id}: pair score {c.score:.3f}, {len(found)} segment(s)")
    for m in sorted(matches, key=lambda m: m.score, reverse=True)[:10]:
        print(f"{m.query_id} [{m.query_start:8.2f}, {m.query_end:8.2f}] s  ~  {m.ref_id} [{m.ref_start:8.2f}, "
              f"{m.ref_end:8.2f}] s  score {m.score:.3f}")
    info(f"{len(q_videos)} query and {len(r_videos)} reference videos, {len(candidates)} candidate pairs, "
         f"{len(matches)} segments -> {args.out / 'matches.csv'}; {min(args.plots, len(candidates))} PNG(s) in "
         f"{args.out / 'pairs'}")
    return 0

