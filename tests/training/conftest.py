"""Fixtures of the training tests."""

import pytest

from tiny_talking_corpus import make_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Two identities, two 40-frame clips each, 64x64 frames (the tiny architecture's resolution)."""
    return make_corpus(tmp_path_factory.mktemp("corpus"), identities=2, clips_per_identity=2)
