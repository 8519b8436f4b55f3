"""Tests of avsbench/engine."""
