"""Essential dynamics (paper §3.2, App. B): the geometry of a trajectory in function space.

- :mod:`~devbook.ed.pca`: :func:`trajectory_pca` of a functional proxy over checkpoints;
- :mod:`~devbook.ed.smoothing`: Gaussian smoothing with a σ that varies along the trajectory,
  and Gaussian-derivative filters for the first three derivatives;
- :mod:`~devbook.ed.geometry`: osculating circles, evolutes, automatic vertices and cusps;
- :mod:`~devbook.ed.forms`: :func:`find_forms` (grouping across PC planes, lifting, B.6 check,
  influence range, null test) and :func:`form_potential`;
- :mod:`~devbook.ed.null`: surrogate trajectories (random walks, phase randomisation);
- :mod:`~devbook.ed.synthetic`: analytic curves, Brownian motion and the toy model of B.4.

Numpy in, numpy out; randomness only through explicit seeds or ``np.random.Generator``.
"""

from devbook.ed.forms import (
    Form,
    FormSearch,
    b6_check,
    detect,
    find_forms,
    form_potential,
    influence_range,
    lift,
)
from devbook.ed.geometry import Circles, Features, cusps, osculating_circles, vertices
from devbook.ed.null import phase_surrogate, step_lengths, walk_surrogate
from devbook.ed.pca import TrajectoryPCA, trajectory_pca
from devbook.ed.smoothing import Smoothed, sigma_schedule, smooth

__all__ = [
    "Circles",
    "Features",
    "Form",
    "FormSearch",
    "Smoothed",
    "TrajectoryPCA",
    "b6_check",
    "cusps",
    "detect",
    "find_forms",
    "form_potential",
    "influence_range",
    "lift",
    "osculating_circles",
    "phase_surrogate",
    "sigma_schedule",
    "smooth",
    "step_lengths",
    "trajectory_pca",
    "vertices",
    "walk_surrogate",
]
