"""Tests of avsbench/media."""
