"""Shared helpers for the test suites (host facts, fixtures' building blocks)."""
