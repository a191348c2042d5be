"""The picture of a cue: where the images that carry a value differ, and one image before and after.

A cue estimated from the data (:func:`~sparsecheck.analysis.cues.estimate_cue`) is evidence a
person must see before trusting a finding built on it: :func:`render_cue` draws, side by side,

* where the carriers differ from the other images of their class (the pooled per-pixel
  difference, brighter where it is stronger), with the estimated region's outline, or the
  estimated colour mapping's curves, or the texture's strength in words;
* one image of another class as it is, with the cue put on, and in the control (for a region:
  the same place copied from an image without the cue), each with the model's prediction.

Drawn with matplotlib's Agg canvas directly (the global backend is left alone), written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sparsecheck.outputs import atomic_write

__all__ = ["render_cue"]


def _show(ax: Any, image: np.ndarray, title: str) -> None:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def render_cue(path: str | Path, *, estimate: Any, cue_name: str, examples: Sequence[tuple[np.ndarray, str]],
               title: str, dpi: int = 90) -> Path:
    """Draw an estimated cue and an example image before/after (module docstring) to ``path`` (PNG).

    Parameters
    ----------
    path : path
    estimate : CueEstimate or None
        None for a declared cue (the example images say it all).
    cue_name : str
        How the cue is named in the finding.
    examples : list of (image uint8 H×W[×C], caption)
        The images to show after the estimate's panel: original, with the cue, control.
    title : str

    Examples
    --------
    >>> import tempfile, os
    >>> x = np.zeros((8, 8, 3), np.uint8); y = x.copy(); y[:2, :2] = 255
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = render_cue(os.path.join(d, "c.png"), estimate=None, cue_name="a mark",
    ...                    examples=[(x, "as it is: zero"), (y, "with the cue: one")], title="one on mark=yes")
    ...     p.stat().st_size > 1000
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = (1 if estimate is not None else 0) + len(examples)
    fig = Figure(figsize=(2.1 * max(panels, 1), 2.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(panels, 1), squeeze=False)[0]
    k = 0
    if estimate is not None:
        ax = axes[0]
        k = 1
        lut = getattr(estimate.put, "lut", None)
        if estimate.kind == "colour" and lut is not None:
            xs = np.arange(256)
            src = 255 - xs if getattr(estimate.put, "invert", False) else xs
            for ch, colour in zip(range(lut.shape[1]), ("tab:red", "tab:green", "tab:blue")):
                ax.plot(xs, lut[src, ch], color=colour if lut.shape[1] > 1 else "k", lw=1.2)
            ax.plot(xs, xs, color="0.7", lw=0.8, ls="--")
            ax.set_xlim(0, 255)
            ax.set_ylim(0, 255)
            ax.set_title("colour mapping\n(value without → with)", fontsize=8)
            ax.tick_params(labelsize=6)
        else:
            diff = np.sqrt(np.asarray(estimate.difference, np.float64))
            ax.imshow(diff / (diff.max() or 1.0), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            if estimate.mask is not None:
                m = np.asarray(estimate.mask)
                if m.shape != diff.shape:  # the difference map may be smaller than the images
                    ys = np.linspace(0, m.shape[0] - 1, diff.shape[0]).round().astype(int)
                    xs_ = np.linspace(0, m.shape[1] - 1, diff.shape[1]).round().astype(int)
                    m = m[np.ix_(ys, xs_)]
                ax.contour(m, levels=[0.5], colors="cyan", linewidths=1.0)
            label = "where carriers differ" + ("\n(cyan: the region)" if estimate.mask is not None
                                               else f"\n{estimate.kind}: {estimate.describe()}")
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    for image, caption in examples:
        _show(axes[k], image, caption)
        k += 1
    fig.suptitle(f"{title}\n{cue_name}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return path
