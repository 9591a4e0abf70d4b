"""Video copy detection: frame sampling and decoding, per-frame descriptors in the VSC2022 layout, candidate
video pairs from frame-level kNN, copied-segment localisation (temporal network alignment), synthetic test
videos.

Modules (imported on demand; PyAV and DALI are optional and imported inside the functions that need them):

* :mod:`~copynce_fast.video.decode`: PyAV decoding, fixed-rate sampling (+ optional scene-cut frames);
* :mod:`~copynce_fast.video.decode_dali`: the same sampling decoded by DALI (GPU) when it is installed;
* :mod:`~copynce_fast.video.features`: the VSC2022 feature layout (``video_ids``, ``timestamps``,
  ``features``) on disk, single ``.npz`` or resumable shards;
* :mod:`~copynce_fast.video.extract`: descriptors for a folder of videos (resumable, bad videos skipped);
* :mod:`~copynce_fast.video.segments`: candidate pairs and matched segments, their CSV files;
* :mod:`~copynce_fast.video.candidates`: VSC2022 candidate generation (global frame kNN, max aggregation);
* :mod:`~copynce_fast.video.align`: temporal network alignment of a frame similarity matrix;
* :mod:`~copynce_fast.video.localize`: segments of candidate pairs, with timestamps and scores;
* :mod:`~copynce_fast.video.score_norm`: score normalisation folded into frame descriptors;
* :mod:`~copynce_fast.video.synthetic`: small generated videos with exactly known copied segments.
"""
