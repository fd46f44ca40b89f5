"""ReinMax for NumPyro: reparameterized one-hot categorical and Bernoulli distributions (JAX)."""

__version__ = "0.1.0"
