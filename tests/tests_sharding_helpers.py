"""Checks of NumPyro SVI sharded over two host devices, run in a fresh process (the number of host
devices is fixed when JAX starts): ``python tests/tests_sharding_helpers.py OUT.json``.

Two small models written as a NumPyro user writes them (a VAE with an amortised encoder; LDA with
per-document and per-token guide parameters, its tokens padded to split evenly and the padding
masked); one SGD step sharded over the devices against the same step on one device; then
``reinmax-compare lda --devices 2`` (20,624 tokens, 10,312 per device) against ``--devices 1``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpyro

numpyro.set_host_device_count(2)
numpyro.set_platform("cpu")

import jax  # noqa: E402

if os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the test suite's cache (tests/conftest.py)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro import handlers  # noqa: E402
from numpyro.infer import SVI  # noqa: E402
from numpyro.infer.autoguide import AutoDelta  # noqa: E402
from numpyro.infer.initialization import init_to_mean  # noqa: E402

import numpyro_reinmax as nr  # noqa: E402
from numpyro_reinmax.infer import AutoReinMax, TraceMeanField_ELBO  # noqa: E402
from numpyro_reinmax.infer.data_parallel import data_mesh, place_state, shard_data  # noqa: E402

LATENTS, CATEGORIES, PIXELS, DIGITS = 2, 3, 6, 8
TOPICS, VOCABULARY, DOCUMENTS = 3, 5, 5


def linear(name: str, x, fan_in: int, fan_out: int):
    weight = numpyro.param(
        f"{name}_weight", lambda key: jax.random.normal(key, (fan_in, fan_out)) * 0.5
    )
    bias = numpyro.param(f"{name}_bias", jnp.zeros(fan_out))
    return x @ weight + bias


def vae_model(x):
    with numpyro.plate("data", x.shape[0]):
        prior = nr.OneHotCategorical(logits=jnp.zeros((LATENTS, CATEGORIES))).to_event(1)
        z = numpyro.sample("z", prior)
        logits = linear("decoder", z.reshape(z.shape[:-2] + (-1,)), LATENTS * CATEGORIES, PIXELS)
        numpyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)


def vae_encoder(x):
    logits = linear("encoder", x, PIXELS, LATENTS * CATEGORIES)
    return logits.reshape(x.shape[:-1] + (LATENTS, CATEGORIES))


def lda_model(words, documents, padding):
    with numpyro.plate("topics", TOPICS):
        topic_words = numpyro.sample("topic_words", dist.Dirichlet(jnp.full(VOCABULARY, 0.5)))
    with numpyro.plate("documents", DOCUMENTS):
        doc_topics = numpyro.sample("doc_topics", dist.Dirichlet(jnp.full(TOPICS, 0.5)))
    with numpyro.plate("tokens", len(words)), handlers.mask(mask=~padding):
        z = numpyro.sample("z", nr.OneHotCategorical(probs=doc_topics[documents]))
        numpyro.sample("w", nr.OneHotMixture(z, dist.Categorical(topic_words)), obs=words)


def lda_arguments(pad_to: int):
    """Document d has d + 1 tokens (15 in all, odd), padded with masked tokens to ``pad_to``."""
    rng = np.random.default_rng(2)
    documents = np.repeat(np.arange(DOCUMENTS), np.arange(DOCUMENTS) + 1)
    words = rng.integers(VOCABULARY, size=len(documents))
    extra = pad_to - len(words)
    padding = np.arange(pad_to) >= len(words)
    words, documents = (np.pad(a, (0, extra)) for a in (words, documents))
    return tuple(jnp.asarray(a) for a in (words, documents, padding))


def one_step(model, guide, arguments, devices: int, start=None):
    """The parameters before and after one SGD step from a new guide ``guide``, the loss and the
    state after it, on one device or sharded over ``devices``."""
    svi = SVI(model, guide, numpyro.optim.SGD(0.05), TraceMeanField_ELBO())
    state = svi.init(jax.random.PRNGKey(0), *arguments)
    if start is not None:  # fixed starting guide logits, so that the tokens differ
        params = svi.optim.get_params(state.optim_state)
        for suffix, value in start.items():
            (name,) = (k for k in params if k.endswith(suffix))
            params = {**params, name: value[: len(params[name])]}
        state = state._replace(optim_state=svi.optim.init(params))
    before = svi.get_params(state)
    if devices > 1:
        mesh = data_mesh(devices)
        state = place_state(state, mesh, data_length=len(arguments[0]))
        arguments = shard_data(arguments, mesh)
    state, loss = jax.jit(svi.update)(state, *arguments)
    return before, svi.get_params(state), float(loss), state


def _close(a, b, rtol=1e-5, atol=1e-6) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol))


def vae_check() -> dict:
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(DIGITS, PIXELS)), dtype=jnp.float32)

    def guide():
        return AutoReinMax(
            vae_model,
            encoders={"z": vae_encoder},
            create_plates=lambda x: numpyro.plate("data", x.shape[0]),
        )

    before, single, single_loss, _ = one_step(vae_model, guide(), (x,), 1)
    _, sharded, sharded_loss, _ = one_step(vae_model, guide(), (x,), 2)
    return {
        "loss": [single_loss, sharded_loss],
        "moved": min(float(np.max(np.abs(single[k] - before[k]))) for k in single),
        "equal": all(_close(single[k], sharded[k]) for k in single),
        "names": sorted(single),
    }


def lda_check() -> dict:
    continuous = partial(AutoDelta, init_loc_fn=init_to_mean)
    start = {"z_logits": jnp.asarray(np.random.default_rng(3).normal(size=(16, TOPICS)))}
    unpadded = lda_arguments(15)
    before, single, single_loss, _ = one_step(
        lda_model, AutoReinMax(lda_model, continuous_guide=continuous), unpadded, 1, start
    )
    _, sharded, sharded_loss, state = one_step(
        lda_model, AutoReinMax(lda_model, continuous_guide=continuous), lda_arguments(16), 2, start
    )
    token_leaves = [leaf for leaf in jax.tree_util.tree_leaves(state) if leaf.shape[:1] == (16,)]
    shards = [[s.data.shape[0] for s in leaf.addressable_shards] for leaf in token_leaves]
    return {
        "loss": [single_loss, sharded_loss],
        "equal": all(_close(single[k], sharded[k][: len(single[k])]) for k in single),
        "names": sorted(single),
        "moved": min(float(np.max(np.abs(single[k] - before[k]))) for k in single),
        "token_rows_per_device": shards,
    }


def training_check() -> dict:
    from reinmax_examples import compare

    metrics = {}
    with tempfile.TemporaryDirectory() as folder:
        for devices in (1, 2):
            out = Path(folder) / f"lda-{devices}"
            argv = ["lda", "--backend", "numpyro", "--methods", "reinmax", "--checkpoints", "1"]
            argv += ["--topics", "4", "--steps", "20", "--out", str(out), "--devices", str(devices)]
            code = compare.main(argv)
            results = json.loads((out / "results.json").read_text())
            metrics[f"lda-{devices}"] = {
                "code": code,
                "devices": results["config"]["devices"],
                "metric": results["methods"]["reinmax"]["metric"],
            }
    return metrics


if __name__ == "__main__":
    report = {"devices": len(jax.devices()), "vae": vae_check(), "lda": lda_check()}
    report["training"] = training_check()
    Path(sys.argv[1]).write_text(json.dumps(report, indent=1))
