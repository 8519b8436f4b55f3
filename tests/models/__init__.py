"""Tests of avsbench/models."""
