"""Independent NumPy references for the tests of both backends (no autodiff framework involved)."""

from __future__ import annotations

import itertools

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(-1, keepdims=True)


def jacobian(p: np.ndarray) -> np.ndarray:
    """J(p) = diag(p) - p p^T for every row of p: shape (..., K, K)."""
    return np.einsum("...i,ij->...ij", p, np.eye(p.shape[-1])) - p[..., :, None] * p[..., None, :]


def _apply(matrix: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("...ij,...j->...i", matrix, v)


def reinmax_grad(logits, sample, g, h, temperature):
    """2 J(pi1) g - 1/2 J(pi0) g + J(pi0) h with pi1 = (softmax(logits / tau) + sample) / 2."""
    pi0 = softmax(logits)
    pi1 = (softmax(np.asarray(logits) / temperature) + sample) / 2
    return 2 * _apply(jacobian(pi1), g) - 0.5 * _apply(jacobian(pi0), g) + _apply(jacobian(pi0), h)


def straight_through_grad(logits, sample, g, h, temperature):
    """J(softmax(logits / tau)) g / tau + J(pi0) h."""
    soft = softmax(np.asarray(logits) / temperature)
    return _apply(jacobian(soft), g) / temperature + _apply(jacobian(softmax(logits)), h)


def gumbel_straight_through_grad(soft, logits, g, h, temperature):
    """J(y) g / tau + J(pi0) h with y = softmax((logits + G) / tau) given."""
    return _apply(jacobian(soft), g) / temperature + _apply(jacobian(softmax(logits)), h)


def gumbel_given_argmax(logits, index, exponentials):
    """Gumbel-perturbed logits z = logits + G conditioned on argmax z = index (float64).

    The maximum of Gumbels with locations logits is Gumbel(logsumexp(logits)), independent of
    where it falls: b = logsumexp - log E. Given it, each other entry is a Gumbel(mu) truncated to
    (-inf, b], drawn by inverting its conditional CDF exp(-exp(mu - x) + exp(mu - b)) at exp(-E):
    x = mu - log(E + exp(mu - b)).
    """
    logits = np.asarray(logits, dtype=np.float64)
    exponentials = np.asarray(exponentials, dtype=np.float64)
    index = np.asarray(index)[..., None]
    shift = logits.max(-1, keepdims=True)
    log_total = shift + np.log(np.exp(logits - shift).sum(-1, keepdims=True))
    top = log_total - np.log(np.take_along_axis(exponentials, index, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        others = logits - np.log(exponentials + np.exp(logits - top))
    others[np.isneginf(logits)] = -np.inf
    np.put_along_axis(others, index, top, -1)
    return others


def gapped_logits(logits, index, gap):
    """GST's shift: the maximum at index, every other logit capped gap below the maximum."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(-1, keepdims=True)
    shifted = np.minimum(logits, top - gap)
    np.put_along_axis(shifted, np.asarray(index)[..., None], top, -1)
    return shifted


def gapped_straight_through_grad(logits, sample, g, h, temperature, gap):
    """J(softmax(gapped / tau)) g / tau + J(pi0) h."""
    soft = softmax(gapped_logits(logits, np.argmax(sample, -1), gap) / temperature)
    return _apply(jacobian(soft), g) / temperature + _apply(jacobian(softmax(logits)), h)


def _mean_conditional_vjp(logits, index, exponentials, g, temperature):
    """mean_s J(softmax(z_s / tau)) g with z_s = logits + G_s conditioned on argmax z_s = index."""
    terms = [
        _apply(jacobian(softmax(gumbel_given_argmax(logits, index, e) / temperature)), g)
        for e in exponentials
    ]
    return np.mean(terms, 0)


def _midpoint_logits(logits, sample):
    with np.errstate(divide="ignore"):
        return np.log((softmax(logits) + sample) / 2)


def gumbel_rao_grad(logits, sample, exponentials, g, h, temperature):
    """mean_s J(y_s) g / tau + J(pi0) h, y_s = softmax((logits + G_s) / tau), G_s | D."""
    index = np.argmax(sample, -1)
    averaged = _mean_conditional_vjp(logits, index, exponentials, g, temperature)
    return averaged / temperature + _apply(jacobian(softmax(logits)), h)


def reinmax_rao_grad(logits, sample, exponentials, g, h, temperature):
    """2 mean_s J(y_s) g / tau - J(pi0) g / 2 + J(pi0) h at theta_D = log((pi0 + D) / 2)."""
    index = np.argmax(sample, -1)
    midpoint = _midpoint_logits(logits, sample)
    averaged = _mean_conditional_vjp(midpoint, index, exponentials, g, temperature)
    pi0 = jacobian(softmax(logits))
    return 2 * averaged / temperature - 0.5 * _apply(pi0, g) + _apply(pi0, h)


def reinmax_cv_grad(logits, sample, exponentials, g, h, temperature, eta, cv_temperature):
    """ReinMax + eta / tau2 (mean_s J(y_s) - J(y_0)) g at theta_D: y_s conditional on D from
    exponentials[1:], y_0 = softmax((theta_D - log exponentials[0]) / tau2)."""
    index = np.argmax(sample, -1)
    midpoint = _midpoint_logits(logits, sample)
    averaged = _mean_conditional_vjp(midpoint, index, exponentials[1:], g, cv_temperature)
    unconditional = softmax((midpoint - np.log(exponentials[0])) / cv_temperature)
    variate = (averaged - _apply(jacobian(unconditional), g)) * eta / cv_temperature
    return reinmax_grad(logits, sample, g, h, temperature) + variate


FAMILY_OPTIONS = {  # non-default options, so that each is seen to reach the backward
    "gapped_straight_through": {"gap": 0.7},
    "gumbel_rao": {"samples": 3},
    "reinmax_rao": {"samples": 3},
    "reinmax_cv": {"samples": 3, "eta": 0.7, "cv_temperature": 0.6},
}


def noise_shape(rule, options: dict, shape) -> tuple | None:
    """The shape of the exponentials a rule's forward pass draws after the category, or None:
    ``samples`` sets (one for ST-Gumbel) plus ``noise_sets`` (``rule`` from either backend's
    table; ``options`` over its defaults)."""
    sets = rule.noise_count(tuple({**dict(rule.options), **options}.items()))
    return (sets, *shape) if sets else None


def family_grad(name, logits, sample, noise, g, h, temperature, options):
    """The published backward of rule ``name`` (GST, Gumbel-Rao, ReinMax-Rao, ReinMax-CV) on the
    drawn sample and the exponentials ``noise`` its forward pass drew, with ``options``."""
    args = (logits, sample, g, h, temperature)
    if name == "gapped_straight_through":
        return gapped_straight_through_grad(*args, options["gap"])
    if name == "gumbel_rao":
        return gumbel_rao_grad(logits, sample, noise, g, h, temperature)
    if name == "reinmax_rao":
        return reinmax_rao_grad(logits, sample, noise, g, h, temperature)
    return reinmax_cv_grad(
        logits, sample, noise, g, h, temperature, options["eta"], options["cv_temperature"]
    )


def exact_expected_gradient(logits: np.ndarray, f) -> np.ndarray:
    """d/dlogits of E[f(D)] for independent one-hot D_i ~ Cat(softmax(logits_i)), by enumeration.

    logits: (n, K). f maps an (n, K) one-hot array to a float. Uses
    d E f / d theta_i = J(p_i) F_i with F_i[k] = E[f(D) | D_i = k].
    """
    n, k = logits.shape
    p = softmax(logits)
    conditional = np.zeros((n, k))
    eye = np.eye(k)
    for combo in itertools.product(range(k), repeat=n):
        d = eye[list(combo)]
        value = f(d)
        weight = np.prod([p[i, c] for i, c in enumerate(combo)])
        for i, c in enumerate(combo):
            conditional[i, c] += value * weight / p[i, c]
    return _apply(jacobian(p), conditional)


def chain_posterior(initial, transition, locs, observations) -> np.ndarray:
    """p(z_0, ..., z_{T-1} | x) by brute force for a Markov chain with Normal(locs[z_t], 1)
    emissions: shape (K,) * T."""
    k, steps = len(initial), len(observations)
    posterior = np.zeros((k,) * steps)
    for states in itertools.product(range(k), repeat=steps):
        log_p = np.log(initial[states[0]])
        for previous, current in itertools.pairwise(states):
            log_p += np.log(transition[previous, current])
        for state, x in zip(states, observations, strict=True):
            log_p += -0.5 * (x - locs[state]) ** 2
        posterior[states] = np.exp(log_p)
    return posterior / posterior.sum()


def bernoulli_kl(p_log_pair, q_log_pair) -> float:
    """KL(p || q) for Bernoullis given as float64 pairs (log P(1), log P(0)); 0 log 0 = 0."""
    total = 0.0
    for log_a, log_b in zip(p_log_pair, q_log_pair, strict=True):
        if log_a > -np.inf:
            total += np.inf if log_b == -np.inf else np.exp(log_a) * (log_a - log_b)
    return total


def bernoulli_pair_from_logit(logit: float) -> tuple[float, float]:
    return (-np.log1p(np.exp(-logit)), -np.log1p(np.exp(logit)))


def bernoulli_pair_from_probability(probability: float) -> tuple[float, float]:
    with np.errstate(divide="ignore"):
        return (np.log(probability), np.log1p(-probability))


# (parameter, value, (log P(1), log P(0)) in float64) of stock Bernoulli priors
BERNOULLI_PRIORS = [
    ("logits", 50.0, bernoulli_pair_from_logit(50.0)),
    ("logits", -50.0, bernoulli_pair_from_logit(-50.0)),
    ("logits", 0.7, bernoulli_pair_from_logit(0.7)),
    ("probs", 1.0, bernoulli_pair_from_probability(1.0)),
    ("probs", 0.0, bernoulli_pair_from_probability(0.0)),
    ("probs", 0.3, bernoulli_pair_from_probability(0.3)),
]


def masked_mean_field_loss(logits, prior_probs, model_mask, guide_mask) -> float:
    """E_q[m_q log q(z) - m_p log p(z)] over rows of one-hot sites, by summing over each row's
    categories (float64): the mean-field loss of a masked latent site."""
    logits, prior_probs = np.asarray(logits, np.float64), np.asarray(prior_probs, np.float64)
    total = 0.0
    for row, (keep_p, keep_q) in enumerate(zip(model_mask, guide_mask, strict=True)):
        q = np.exp(logits[row] - np.logaddexp.reduce(logits[row]))
        for k in range(len(q)):
            log_p = np.log(prior_probs[row, k]) if keep_p else 0.0
            total += q[k] * ((np.log(q[k]) if keep_q else 0.0) - log_p)
    return total


def central_differences(function, point, step=1e-6) -> np.ndarray:
    """The gradient of a scalar ``function`` of an array at ``point``, by central differences."""
    point = np.asarray(point, np.float64)
    gradient = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        shift = np.zeros_like(point)
        shift[index] = step
        gradient[index] = (function(point + shift) - function(point - shift)) / (2 * step)
    return gradient


def assert_unbiased(estimates, expected, bound: float = 4.5) -> None:
    """The mean of ``estimates`` (replicates on the first axis) is within ``bound`` standard
    errors of ``expected`` in every coordinate."""
    estimates = np.asarray(estimates, dtype=np.float64)
    stderr = estimates.std(0, ddof=1) / np.sqrt(len(estimates))
    z = (estimates.mean(0) - np.asarray(expected)) / stderr
    assert np.abs(z).max() < bound, z
