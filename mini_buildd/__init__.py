"""mini-buildd: a custom build daemon for Debian-based distributions.

This package root only holds the version; import submodules explicitly.
"""

__version__ = "0.1.0"
