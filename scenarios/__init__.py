"""Scenario suites (TOML), shipped as package data."""
