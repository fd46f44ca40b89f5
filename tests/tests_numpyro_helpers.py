"""Helpers shared by the NumPyro tests."""

import numpy as np
import scipy.stats


def assert_categorical_law(one_hot, probs) -> None:
    one_hot, probs = np.asarray(one_hot), np.asarray(probs)
    assert set(np.unique(one_hot)) <= {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.sum(-1), 1)
    counts = one_hot.reshape(-1, probs.shape[-1]).sum(0)
    assert counts[probs == 0].sum() == 0, "a zero-probability category was drawn"
    observed, expected = counts[probs > 0], probs[probs > 0] * counts.sum()
    if len(observed) < 2:
        return
    p_value = scipy.stats.chisquare(observed, expected).pvalue
    assert p_value > 1e-4, f"chi-square p = {p_value:.2g}: counts {observed} vs {expected}"
