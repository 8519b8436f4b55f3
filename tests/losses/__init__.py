"""Tests of the methods' losses (avsbench/models/<method>/losses.py)."""
