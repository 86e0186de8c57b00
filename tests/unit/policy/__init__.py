"""Tests of clearance._internal.policy."""
