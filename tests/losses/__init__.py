"""Tests of avsbench/losses."""
