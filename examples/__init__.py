"""Example models fitted by ReinMax, its baselines and exact enumeration, for both backends.

Installed as ``reinmax_examples``; ``reinmax-compare`` (``compare.py``) runs them. Each model file
(``gmm_*.py``, ``lda_*.py``, ``vae_*.py``) is readable on its own and runs as a script.
"""
