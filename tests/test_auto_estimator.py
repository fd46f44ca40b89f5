"""``estimator="auto"`` is resolved by the ELBO the guide runs under (reinmax_core.auto_estimator);
the end-to-end choice is pinned in ``tests/*/test_local_enum_models.py``."""

import pytest

from reinmax_core.auto_estimator import AUTO, resolve_estimator, scored_locally


def test_auto_is_reinmax_outside_and_straight_through_inside_local_scoring():
    assert resolve_estimator(AUTO) == "reinmax"
    with scored_locally():
        assert resolve_estimator(AUTO) == "straight_through"
        assert resolve_estimator("gumbel_rao") == "gumbel_rao"  # a named estimator is kept
    assert resolve_estimator(AUTO) == "reinmax"


def test_local_scoring_ends_when_the_guide_raises():
    with pytest.raises(RuntimeError), scored_locally():
        raise RuntimeError("the guide failed")
    assert resolve_estimator(AUTO) == "reinmax"
