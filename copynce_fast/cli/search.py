"""``copynce-fast search``: top-k references of every query -> predictions CSV (query_id,reference_id,score)."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_model_args,
    add_subparser,
    info,
    load_model_from_args,
    parse_key_values,
    positive_int,
    read_features,
    warn,
)
from copynce_fast.cli.extract import add_extract_args, list_source, run_extraction

DESCRIPTION = """\
Search the top-k references of every query by inner product (cosine for our L2-normalised descriptors) and
write the pairs as CSV 'query_id,reference_id,score' (k rows per query, best first).

References come from a feature file (--references, exact search with faiss or torch) or a saved index
(--index, from 'copynce-fast index'). With --query-images/--reference-images the two folders are first
extracted (resumable, into --features-dir) with the model flags, then searched: one command.

Score normalisation (--score-norm, needs --aux: descriptors of images known not to be copies, e.g. the DISC21
training set) subtracts a per-query bias from the query's scores:
  copynce  mean of the query's 2nd-5th aux similarities, alpha 1  (params: start=1 end=5 alpha=1.0)
  isc2021  the n-th aux similarity                                (params: n=10 beta=1.0 reduction=min)
  sscd     mean of aux similarities first..last (inclusive)       (params: first=0 last=2 beta=1.0)

Asymmetric score (--score asymmetric; ASL, AAAI 2023): s(q -> r) = cos(q, r) - gamma * relu(log|q| - log|r|),
with |.| the descriptor's length before L2 normalisation (stored by 'extract' as the files' norms): a query
holding more content than a reference scores lower, so a whole image does not match its own crop as strongly
as the crop matches it. The --asl-candidates best cosine candidates of each query (default 4 x k) are rescored
and the best k kept; --asl-gamma inf drops every pair whose query norm is the larger (the ASL code's rule).

examples:
  copynce-fast search --queries q.npz --references r.npz --out preds.csv -k 10
  copynce-fast search --queries q.npz --index refs.index --out preds.csv --score-norm copynce --aux train.npz
  copynce-fast search --query-images q/ --reference-images r/ --weights ckpt.pt --out preds.csv
"""

SCORE_NORM_PARAMS = {
    "copynce": {"start": int, "end": int, "alpha": float},
    "isc2021": {"n": int, "beta": float, "reduction": str},
    "sscd": {"first": int, "last": int, "beta": float},
}


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "search", "search query descriptors against references -> predictions CSV",
                      DESCRIPTION)
    g = p.add_argument_group("inputs (features, or two image folders)")
    g.add_argument("--queries", type=Path, default=None, help="query feature file (.npz) or shard directory")
    g.add_argument("--references", type=Path, default=None, help="reference feature file (exact search)")
    g.add_argument("--index", type=Path, default=None, help="saved index directory ('copynce-fast index')")
    g.add_argument("--query-images", type=Path, default=None, help="query image folder / list (extracted first)")
    g.add_argument("--reference-images", type=Path, default=None, help="reference image folder / list")
    g.add_argument("--features-dir", type=Path, default=None,
                   help="where folder inputs are extracted (default: <out stem>_features next to --out)")
    p.add_argument("--out", type=Path, required=True, help="predictions CSV to write")
    p.add_argument("-k", "--topk", type=positive_int, default=10, help="references per query (default 10)")
    p.add_argument("--backend", default="auto", choices=("auto", "faiss", "torch"),
                   help="exact search backend for --references (auto: torch on CUDA, else faiss when installed)")
    p.add_argument("--nprobe", type=positive_int, default=None, help="IVF lists visited (--index ivf/ivfpq)")
    a = p.add_argument_group("asymmetric score (ASL)")
    a.add_argument("--score", default="cosine", choices=("cosine", "asymmetric"),
                   help="cosine (default) or the asymmetric ASL score (needs --references features with norms)")
    a.add_argument("--asl-gamma", type=float, default=1.0,
                   help="asymmetric: penalty per unit log norm ratio when the query is the larger (default 1; "
                        "inf = drop such pairs)")
    a.add_argument("--asl-candidates", type=positive_int, default=None,
                   help="asymmetric: cosine candidates rescored per query (default 4 x k)")
    s = p.add_argument_group("score normalisation")
    s.add_argument("--score-norm", default=None, choices=tuple(SCORE_NORM_PARAMS),
                   help="normalise scores against --aux descriptors")
    s.add_argument("--aux", type=Path, default=None, help="auxiliary feature file for --score-norm")
    s.add_argument("--sn-param", action="append", default=None, metavar="KEY=VALUE",
                   help="score-normalisation parameter (repeatable), e.g. --sn-param alpha=1 --sn-param end=5")
    add_extract_args(p)
    add_model_args(p)
    add_common_args(p)


def _features_from_folders(args) -> tuple[Path, Path]:
    if args.query_images is None or args.reference_images is None:
        raise CliError("--query-images and --reference-images go together")
    if args.queries is not None or args.references is not None or args.index is not None:
        raise CliError("give either image folders (--query-images/--reference-images) or features "
                       "(--queries with --references or --index), not both")
    q_items = list_source("--query-images", args.query_images)
    r_items = list_source("--reference-images", args.reference_images)
    loaded = load_model_from_args(args, "descriptor")
    work = args.features_dir or args.out.with_name(args.out.stem + "_features")
    outs = []
    args.skipped_images = 0  # for the final line
    for name, items in (("queries", q_items), ("references", r_items)):
        info(f"extracting {len(items)} {name} -> {work / name}")
        result = run_extraction("search", args, loaded, items, work / name)
        if result.extracted + result.already_done == 0:
            raise CliError(f"no readable {name} image")
        args.skipped_images += len(result.skipped)
        outs.append(work / name)
    return outs[0], outs[1]


def run(args) -> int:
    import numpy as np
    import torch

    from copynce_fast.utils.device import resolve_device
    from copynce_fast.search.knn import knn
    from copynce_fast.search.predictions import knn_to_predictions, write_predictions_csv

    if args.query_images is not None or args.reference_images is not None:
        args.queries, args.references = _features_from_folders(args)
    if args.queries is None:
        raise CliError("--queries is required (or --query-images with --reference-images)")
    if (args.references is None) == (args.index is None):
        raise CliError("give exactly one of --references (feature file) and --index (saved index)")
    if args.score_norm is None and (args.aux is not None or args.sn_param):
        raise CliError("--aux / --sn-param need --score-norm")
    if args.score_norm is not None and args.aux is None:
        raise CliError(f"--score-norm {args.score_norm} needs --aux FEATURES (non-copy descriptors)")
    asymmetric = args.score == "asymmetric"
    if asymmetric and args.index is not None:
        raise CliError("--score asymmetric needs --references features (a saved --index keeps no descriptor norms)")
    if not args.asl_gamma >= 0:
        raise CliError(f"--asl-gamma: must be >= 0 (or inf), got {args.asl_gamma}")
    sn_params = parse_key_values("--sn-param", args.sn_param, SCORE_NORM_PARAMS.get(args.score_norm, {}))

    device = resolve_device(args.device)
    # exact torch search on CUDA when there is one (faiss-cpu would search on the host); faiss when asked
    on_device = device.type == "cuda" and args.backend != "faiss"

    def as_input(features):
        x = np.asarray(features, dtype=np.float32)
        return torch.from_numpy(x).to(device) if on_device else x

    q = read_features("--queries", args.queries)
    xq = as_input(q.features)
    if args.index is not None:
        from copynce_fast.search.index import load_index

        if not args.index.exists():
            raise CliError(f"--index: no such folder: {args.index}")
        index = load_index(args.index)
        ref_ids, ref_model, n_ref = index.ids, index.meta.get("model", ""), len(index.ids)
        white = index.whitening
        # an index with a PCA-whitening whitens raw queries itself; queries whitened at extraction are used as is
        whitened = white is not None and q.meta.get("whitening") == white.digest
        if q.meta.get("whitening") and not whitened:
            raise CliError(f"--queries were whitened at extraction by a transform --index {args.index} does not hold")
        want = index.dim if whitened else index.query_dim
        if q.dim != want:
            raise CliError(f"--queries has {q.dim}-d descriptors, --index {args.index} takes {want}-d")
        if white is not None:  # score normalisation works in the index's space
            xq = as_input(index.prepare_queries(q.features, whitened))
    else:
        r = read_features("--references", args.references)
        ref_ids, ref_model, n_ref = r.ids, r.meta.get("model", ""), len(r.ids)
        if q.dim != r.dim:
            raise CliError(f"--queries has {q.dim}-d descriptors, --references has {r.dim}-d")
    if ref_model and q.meta.get("model") and ref_model != q.meta.get("model"):
        warn("search", f"queries and references come from different models ({q.meta.get('model')} vs {ref_model})")
    k = args.topk
    if k > n_ref:
        warn("search", f"-k {k} exceeds the {n_ref} references; using k={n_ref}")
        k = n_ref
    n_cand = k
    if asymmetric:
        for flag, feats in (("--queries", q), ("--references", r)):
            if feats.norms is None:
                raise CliError(f"{flag}: the feature file holds no descriptor norms (extracted by an older version); "
                               f"extract again for --score asymmetric")
        n_cand = min(n_ref, max(k, args.asl_candidates or 4 * k))

    if args.index is not None:
        scores, rows = index.search(np.asarray(q.features, dtype=np.float32), k, nprobe=args.nprobe,
                                    device=str(device), whitened=whitened)
        scores, rows = (torch.from_numpy(scores).to(device), torch.from_numpy(rows)) if on_device else (scores, rows)
    else:
        scores, rows = knn(xq, as_input(r.features), n_cand, metric="ip", backend=args.backend)
    if asymmetric:
        from copynce_fast.search.asymmetric import asymmetric_rescore, provably_exact

        lowest_candidate = scores[:, -1]
        scores, rows = asymmetric_rescore(scores, rows, q.norms, r.norms, k, args.asl_gamma)
        unsure = int((~provably_exact(scores, lowest_candidate)).sum()) if n_cand < n_ref else 0
        if unsure:
            warn("search", f"{unsure} queries may miss a reference beyond their {n_cand} cosine candidates; "
                           f"raise --asl-candidates for an exact asymmetric top-{k}")
    if args.score_norm is not None:
        from copynce_fast.search.score_norm import normalize_scores

        aux = read_features("--aux", args.aux)
        aux_x = aux.features
        if args.index is not None and white is not None and aux.meta.get("whitening") != white.digest:
            if aux.dim != white.dim_in:
                raise CliError(f"--aux has {aux.dim}-d descriptors, the --index whitening takes {white.dim_in}-d")
            aux_x = white.apply(np.asarray(aux_x, dtype=np.float32))
        elif aux.dim != q.dim:
            raise CliError(f"--aux has {aux.dim}-d descriptors, --queries has {q.dim}-d")
        try:
            scores = normalize_scores(scores, xq, as_input(aux_x), args.score_norm, **sn_params)
        except ValueError as e:
            raise CliError(f"--score-norm {args.score_norm}: {e}") from None
    preds = knn_to_predictions(scores, rows, q.ids, ref_ids)
    write_predictions_csv(args.out, preds)
    skipped = getattr(args, "skipped_images", None)  # images unusable when extracting --query/reference-images
    info(f"{len(q.ids)} queries × top-{k} of {n_ref} references -> {len(preds[0])} pairs -> {args.out}"
         + (f"; {skipped} images skipped" if skipped is not None else ""))
    return 0
