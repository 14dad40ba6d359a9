"""The crate graph's boundaries (deps.py) hold for this repository."""

import deps


def test_crate_boundaries_hold():
    assert deps.check() == []
