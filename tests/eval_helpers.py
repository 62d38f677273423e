"""Helpers for the evaluation tests."""

from __future__ import annotations

from polyalign.data.features import FEATURE_NAMES, feature_matrix


def feature_fn():
    """(feature_matrix, names): the data layer's bilingual feature extractor, as the evaluation uses it."""
    return feature_matrix, list(FEATURE_NAMES)
