"""Tests of clearance.policy."""
