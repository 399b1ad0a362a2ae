"""Wrappers of the external tools: each module is the only one that runs its tool."""
