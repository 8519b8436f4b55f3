"""Tests of avsbench/data."""
