"""Every picture copynce-fast draws, with matplotlib in one style (:mod:`copynce_fast.viz.style`).

- :mod:`~copynce_fast.viz.curves`: loss curves, precision-recall curves, benchmark bar charts;
- :mod:`~copynce_fast.viz.pairs`: traced training pairs (query | reference with patch correspondences);
- :mod:`~copynce_fast.viz.compare`: the copied-region picture of ``copynce-fast compare``;
- :mod:`~copynce_fast.viz.video`: a video pair's frame similarity matrix with its copied segments
  (``copynce-fast match-video``).

Headless and polite: figures are ``matplotlib.figure.Figure`` objects with their own Agg canvas, so importing or
using this package never imports ``matplotlib.pyplot`` and never changes the user's matplotlib backend.
Layering: viz imports numpy, matplotlib, PIL, torch and lower layers only; eval, train and the CLI import viz.
"""
from copynce_fast.viz.compare import canvas_size, render_comparison
from copynce_fast.viz.curves import bar_chart, data_to_pixel, plot_lines, plot_pr_curve
from copynce_fast.viz.pairs import TracedPair, save_pairs

__all__ = ["plot_lines", "plot_pr_curve", "data_to_pixel", "bar_chart", "TracedPair", "save_pairs",
           "render_comparison", "canvas_size"]
