import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_and_validated():
    """Every test starts from the same seed, with validation on and an empty param store."""
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.enable_validation(True)
    torch.distributions.Distribution.set_default_validate_args(True)
