"""sbuild config and setup block names (upstream §6.2): the known names, their descriptions and
validation of a Distribution's block lists. The blocks' contents live in :mod:`mini_buildd.tools.sbuild`.
"""

SBUILD_CONFIG_BLOCKS = {
    "set-default-path": "Set sbuild's default $path explicitly",
    "ccache": "Prepend /usr/lib/ccache to $path and keep CCACHE_DIR in the per-chroot libdir",
}

SBUILD_SETUP_BLOCKS = {
    "apt-setup": "Install APT keys, sources.list and preferences for the build",
    "apt-update": "Run apt-get update (with timeouts and retries) and show apt-cache policy",
    "ccache": "Install ccache",
    "eatmydata": "Install eatmydata and preload it",
    "show-sbuildrc": "Print the generated .sbuildrc",
    "apt-key-binary": "Dearmor APT keys (for APT without armored key support, <= jessie)",
    "apt-key-add": "Add APT keys via apt-key (<= squeeze)",
    "apt-no-check-valid-until": "Ignore expired Valid-Until in Release files",
    "apt-allow-unauthenticated": "Allow unauthenticated APT sources",
    "apt-force-yes": "Use APT's --force-yes",
    "apt-no-cache": "Disable HTTP caching in APT",
    "apt-no-pipelining": "Disable HTTP pipelining in APT",
    "apt-clear": "Clear APT sources and keys of the chroot",
    "bash-devices": "Provide /dev/fd etc. for bash",
    "schroot-shm": "Mount a fresh /dev/shm",
    "sun-java6-license": "Pre-accept the sun-java6 license",
}


def validate_blocks(text, known=None):
    """Split a space-separated block list; raise ValueError on unknown or duplicate names.

    ``known`` defaults to :data:`SBUILD_SETUP_BLOCKS`.
    """
    known = SBUILD_SETUP_BLOCKS if known is None else known
    names = (text or "").split()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"Unknown sbuild block(s): {' '.join(unknown)} (known: {' '.join(known)})")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Duplicate sbuild block(s): {' '.join(duplicates)}")
    return names


def validate_setup_blocks(text):
    return validate_blocks(text, SBUILD_SETUP_BLOCKS)


def validate_config_blocks(text):
    return validate_blocks(text, SBUILD_CONFIG_BLOCKS)
