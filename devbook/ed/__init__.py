"""Essential dynamics (paper §3.2, App. B): the geometry of a trajectory in function space.

- :mod:`~devbook.ed.pca`: :func:`trajectory_pca` of a functional proxy over checkpoints;
- :mod:`~devbook.ed.smoothing`: Gaussian smoothing with a σ that varies along the trajectory,
  and Gaussian-derivative filters for the first three derivatives;
- :mod:`~devbook.ed.geometry`: osculating circles, evolutes, automatic vertices and cusps;
- :mod:`~devbook.ed.forms`: :func:`find_forms` (grouping across PC planes, lifting, null
  test) and :func:`form_potential`;
- :mod:`~devbook.ed.evidence`: the flatness of a form potential (the test statistic of vertex
  forms), the influence range and the B.6 check;
- :mod:`~devbook.ed.null`: surrogate trajectories (random walks, phase randomisation);
- :mod:`~devbook.ed.synthetic`: analytic curves, Brownian motion and the toy model of B.4.

Numpy in, numpy out; randomness only through explicit seeds or ``np.random.Generator``.
"""

from devbook.ed.evidence import b6_check, flatness, influence_range, sphere_fit
from devbook.ed.forms import Form, FormSearch, detect, find_forms, form_potential, lift
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
    "flatness",
    "form_potential",
    "influence_range",
    "lift",
    "osculating_circles",
    "phase_surrogate",
    "sigma_schedule",
    "smooth",
    "sphere_fit",
    "step_lengths",
    "trajectory_pca",
    "vertices",
    "walk_surrogate",
]
