"""Tests of avsbench/models/avsegformer."""
