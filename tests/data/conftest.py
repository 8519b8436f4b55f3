"""Fixtures of tests/data: tiny official layouts (see avs_fixtures.py)."""

from tests.data.avs_fixtures import avss_root, ms3_root, s4_root  # noqa: F401
