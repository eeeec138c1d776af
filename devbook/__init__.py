"""devbook: helpers for an executable book on the developmental landscape of in-context learning.

Modules: ``llc`` (SGLD local learning coefficient), ``known`` (potentials with exact λ),
``stages`` (stage discovery), ``store`` (resumable run store), ``presets`` (named scales),
``chapters`` (execute a chapter with papermill), ``book`` (build the book), and one
sub-package per setting: ``regression``, ``language``, ``tms``.
"""

__version__ = "0.1.0"
