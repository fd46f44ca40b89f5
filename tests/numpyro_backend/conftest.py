import jax
import numpyro
import pytest

# Exactness tests compare with float64 references; float32 behaviour is tested with float32 inputs.
jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True)
def _validated():
    numpyro.enable_validation(True)
    yield
    numpyro.enable_validation(True)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
