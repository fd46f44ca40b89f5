"""The CPU kernels are an opt-in: a default install compiles nothing and needs no compiler. In a
fresh process with no compiler on the way (``CC`` and ``CXX`` that always fail) and an empty
cache, each backend's estimators, distributions and an SVI step run without a warning, and the
cache stays empty; ``REINMAX_NATIVE=1`` is what asks for a build."""

import os
import subprocess
import sys

import pytest

SCRIPTS = {
    "pyro_reinmax": (
        "import warnings; warnings.simplefilter('error')\n"
        "import torch, pyro, pyro_reinmax\n"
        "x = torch.randn(64, 16, requires_grad=True)\n"
        "for name in ('reinmax', 'gumbel_rao', 'gapped_straight_through'):\n"
        "    getattr(pyro_reinmax, name)(x, 1.3)[0].sum().backward()\n"
        "pyro_reinmax.ReinMaxOneHotCategorical(logits=x).rsample()\n"
        "print(pyro_reinmax.native_kernels_status())\n"
    ),
    "numpyro_reinmax": (
        "import warnings; warnings.simplefilter('error')\n"
        "import jax, numpyro_reinmax\n"
        "x = jax.random.normal(jax.random.PRNGKey(0), (64, 16))\n"
        "for name in ('reinmax', 'gumbel_rao', 'gapped_straight_through'):\n"
        "    f = getattr(numpyro_reinmax, name)\n"
        "    jax.jit(jax.grad(lambda y: f(jax.random.PRNGKey(1), y, 1.3)[0].sum()))(x)\n"
        "print(numpyro_reinmax.native_kernels_status())\n"
    ),
}


@pytest.mark.parametrize("package", list(SCRIPTS))
def test_a_default_install_compiles_nothing(package, tmp_path):
    cache = tmp_path / "cache"
    environment = {k: v for k, v in os.environ.items() if k != "REINMAX_NATIVE"}
    environment.update(CC="false", CXX="false", REINMAX_CACHE_DIR=str(cache))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPTS[package]],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("off: the ")
    assert "(the default;" in done.stdout
    assert not cache.exists() or not any(cache.iterdir())
