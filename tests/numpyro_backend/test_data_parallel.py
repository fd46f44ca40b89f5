"""NumPyro SVI sharded over two host devices under jit: one sharded step equals the step on one
device (the LDA tokens padded to split evenly, the padding masked), the per-token logits are
partitioned over the devices, and ``reinmax-compare lda --devices 2`` reaches the single-device
metric. The checks run in a fresh process (``tests_sharding_helpers.py``): JAX fixes its number of
host devices when it starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_reinmax.infer.data_parallel import data_mesh, shard_data

HELPERS = Path(__file__).parents[1] / "tests_sharding_helpers.py"


def _report(folder: Path) -> dict:
    out = folder / "report.json"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HELPERS.parent), *sys.path]),
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,  # the suite's
    }
    subprocess.run(
        [sys.executable, str(HELPERS), str(out)],
        check=True,
        env=environment,
        cwd=folder,
        capture_output=True,
    )
    return json.loads(out.read_text())


@pytest.mark.slow
def test_sharded_svi_on_two_host_devices(tmp_path):
    """One fresh process (a module fixture would run once per test worker) checks:

    * one sharded step equals the step on one device: the VAE's parameters and loss; the LDA's
      parameters on the real tokens, its loss up to the padded token's guide entropy (the guide's
      site is not masked), in (0, log 3];
    * every LDA state leaf with the (padded) token axis, 16 rows, holds 8 on each device;
    * ``reinmax-compare lda --devices 2`` reaches the metric of ``--devices 1`` to rounding:
      JAX's random numbers do not depend on the sharding, so the two runs draw the same values
      and differ only in the order of sums. (The VAE's command path is the same sharded step
      without padding.)
    """
    report = _report(tmp_path)
    assert report["devices"] == 2
    for model in ("vae", "lda"):
        check = report[model]
        assert check["equal"], (model, check)
        assert check["moved"] > 1e-4, model  # every parameter moves in the step
    np.testing.assert_allclose(*report["vae"]["loss"], rtol=1e-5)
    single, sharded = report["lda"]["loss"]
    assert 0 < single - sharded <= np.log(3)
    shards = report["lda"]["token_rows_per_device"]
    assert shards and all(rows == [8, 8] for rows in shards)
    one, two = report["training"]["lda-1"], report["training"]["lda-2"]
    assert one["code"] == two["code"] == 0 and (one["devices"], two["devices"]) == (1, 2)
    assert two["metric"] == pytest.approx(one["metric"], rel=1e-6), (one, two)


def test_more_devices_than_jax_sees_and_uneven_data_are_clear_errors():
    with pytest.raises(ValueError, match="set_host_device_count"):
        data_mesh(100_000)
    mesh = data_mesh(1)
    (x,) = shard_data((jnp.ones(5),), mesh)
    assert x.shape == (5,)
    with pytest.raises(ValueError, match="pad the data"):
        shard_data((jnp.ones(5),), data_mesh([mesh.devices[0]] * 2))
