"""Drawing helpers for essential dynamics (matplotlib; no global rcParams).

- :func:`draw_plane`: a plane curve with a few osculating circles, its evolute and the marks
  of the detected vertices (circles of their centres) and cusps;
- :func:`draw_potential`: a form potential over training steps with its influence range.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Circle
from numpy.typing import ArrayLike

from devbook.ed.geometry import Circles, Features

VERTEX, CUSP, EVOLUTE = "#C44E52", "#4C72B0", "#8C8C8C"


def draw_plane(
    ax: Axes,
    curve: ArrayLike,
    circles: Circles | None = None,
    vertices: Features | None = None,
    cusps: Features | None = None,
    *,
    n_circles: int = 0,
    labels: tuple[str, str] | None = None,
    clip: float = 3.0,
    vertex_circles: bool = True,
) -> None:
    """Draw ``curve`` ``(T, 2)``; with ``circles``, its evolute (clipped to ``clip`` × the
    curve's extent around it) and ``n_circles`` evenly spaced osculating circles; vertices are
    marked on the curve, with their osculating circle and centre if ``vertex_circles``; cusps
    with a square."""
    c = np.asarray(curve, dtype=float)
    ax.plot(c[:, 0], c[:, 1], color="black", lw=1.2)
    if circles is not None:
        centre = circles.centre
        mid, size = c.mean(0), np.ptp(c, axis=0).max()
        inside = np.all(np.abs(centre - mid) < clip * size, axis=1)
        ax.plot(
            np.where(inside, centre[:, 0], np.nan),
            np.where(inside, centre[:, 1], np.nan),
            color=EVOLUTE,
            lw=0.8,
            ls="--",
        )
        for i in np.linspace(0, len(c) - 1, n_circles + 2)[1:-1].astype(int):
            if np.isfinite(circles.radius[i]) and inside[i]:
                ax.add_patch(
                    Circle(centre[i], circles.radius[i], fill=False, lw=0.4, color=EVOLUTE, alpha=0.6)
                )
    for pos, centre, radius in zip(
        *(vertices.position, vertices.centre, vertices.radius) if vertices is not None else ((), (), ())
    ):
        point = [np.interp(pos, np.arange(len(c)), c[:, j]) for j in range(2)]
        # hollow, so the curve shows through
        ax.plot(*point, "o", mfc="none", mec=VERTEX, ms=5, mew=0.8, alpha=0.8)
        if vertex_circles:
            ax.plot(*centre, "x", color=VERTEX, ms=6)
            ax.add_patch(Circle(centre, radius, fill=False, lw=1.0, color=VERTEX))
    if cusps is not None and len(cusps):
        ax.plot(cusps.centre[:, 0], cusps.centre[:, 1], "s", color=CUSP, ms=6, mfc="none")
    ax.set_aspect("equal", adjustable="datalim")
    if labels:
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])


def draw_potential(
    ax: Axes,
    steps: ArrayLike,
    potential: ArrayLike,
    *,
    start: float | None = None,
    end: float | None = None,
    step: float | None = None,
    label: str | None = None,
) -> None:
    """A form potential against training steps, the influence range shaded, the form's step
    as a dotted line."""
    ax.plot(steps, potential, lw=1.2, label=label)
    if start is not None and end is not None:
        ax.axvspan(start, end, color=VERTEX, alpha=0.12, lw=0)
    if step is not None:
        ax.axvline(step, color=VERTEX, ls=":", lw=1)
    ax.set_xlabel("training step")
    ax.set_ylabel(r"$|x_t - p|^2$")
