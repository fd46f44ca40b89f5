"""NumPyro SVI sharded over two host devices under jit: one sharded step equals the step on one
device (the LDA tokens padded to split evenly, the padding masked), the per-token logits are
partitioned over the devices, and ``reinmax-compare --devices 2`` reaches the single-device
metric. The checks run in a fresh process (``tests_sharding_helpers.py``): JAX fixes its number of
host devices when it starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_reinmax.infer.data_parallel import data_mesh, shard_data

HELPERS = Path(__file__).parents[1] / "tests_sharding_helpers.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding") / "report.json"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS.parent), *sys.path])}
    subprocess.run(
        [sys.executable, str(HELPERS), str(out)],
        check=True,
        env=environment,
        cwd=out.parent,
        capture_output=True,
    )
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vae", "lda"])
def test_one_sharded_step_equals_the_step_on_one_device(report, model):
    assert report["devices"] == 2
    check = report[model]
    assert check["equal"], check
    assert check["moved"] > 1e-4  # every parameter moves in the step
    single, sharded = check["loss"]
    if model == "vae":
        np.testing.assert_allclose(sharded, single, rtol=1e-5)
    else:  # the padded token's guide entropy (its site is not masked in the guide) enters the loss
        assert 0 < single - sharded <= np.log(3)


@pytest.mark.slow
def test_the_per_token_logits_and_their_state_are_split_over_the_devices(report):
    """Every state leaf with the (padded) token axis, 16 rows, holds 8 on each device."""
    shards = report["lda"]["token_rows_per_device"]
    assert shards and all(rows == [8, 8] for rows in shards)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "tolerance"), [("vae", 0.5), ("lda", 0.15)])
def test_training_on_two_devices_reaches_the_single_device_metric(report, model, tolerance):
    """Tolerances as in the Pyro test (the model's tie; the seeds' spread at 150 steps)."""
    one, two = report["training"][f"{model}-1"], report["training"][f"{model}-2"]
    assert one["code"] == two["code"] == 0 and (one["devices"], two["devices"]) == (1, 2)
    assert abs(one["metric"] - two["metric"]) < tolerance


def test_more_devices_than_jax_sees_and_uneven_data_are_clear_errors():
    with pytest.raises(ValueError, match="set_host_device_count"):
        data_mesh(100_000)
    mesh = data_mesh(1)
    (x,) = shard_data((jnp.ones(5),), mesh)
    assert x.shape == (5,)
    with pytest.raises(ValueError, match="pad the data"):
        shard_data((jnp.ones(5),), data_mesh([mesh.devices[0]] * 2))
