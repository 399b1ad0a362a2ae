"""Distribution knowledge: what mini-buildd knows about Debian/Ubuntu distributions, and pure helpers.

The package owns no code itself; it is split by concern, and every public name of its modules is
importable from here (``from mini_buildd import dist; dist.DistStr(...)``):

- :mod:`~mini_buildd.dist.names`: distribution strings (``CODENAME-REPOID-SUITE[-rollbackN]``,
  :class:`DistStr`, upstream §3.1);
- :mod:`~mini_buildd.dist.codenames`: codename knowledge: origin, version, archive signing keys,
  codeversion rule, extra sources (security, backports), components, per-codename Distribution
  and Chroot options used by the ``setup`` call (upstream §2.3, §4.3);
- :mod:`~mini_buildd.dist.host`: host probing: native architectures, archive URLs from the
  host's APT sources or an apt-cacher-ng proxy;
- :mod:`~mini_buildd.dist.layouts`: layout defaults as data (:data:`LAYOUTS`, upstream §3.2,
  §3.3), suite sort order, APT pin priorities;
- :mod:`~mini_buildd.dist.qa`: QA check modes and sbuild status words (upstream §6.4);
- :mod:`~mini_buildd.dist.blocks`: sbuild config and setup block names (upstream §6.2);
- :mod:`~mini_buildd.dist.versions`: version helpers: placeholders, mandatory regex check,
  port/rebuild versions, epoch-less versions for file names (upstream §3.4, §3.8).

It imports no Django. Upload option parsing lives in :mod:`mini_buildd.changes.uploadoptions`.
"""

from mini_buildd.dist.names import DISTSTR_REGEX, DistStr
from mini_buildd.dist.codenames import (
    DEBIAN_ARCHIVE_KEYS, DEBIAN_SECURITY_KEYS, DEBIAN_RELEASE_KEYS, UBUNTU_ARCHIVE_KEYS, guess_codeversion,
    DEBIAN, UBUNTU, DEBIAN_BACKPORTS, COMPONENTS,
    DEFAULT_SBUILD_CONFIG_BLOCKS, DEFAULT_SBUILD_SETUP_BLOCKS, DEFAULT_LINTIAN_EXTRA_OPTIONS,
    DEFAULT_LINTIAN_WARNFAIL_OPTIONS, DEFAULT_PIUPARTS_EXTRA_OPTIONS, DEFAULT_PIUPARTS_ROOT_ARG,
    DEFAULT_INTERNAL_APT_PRIORITY,
    ExtraSource, Codename, ROLLING_RANK, CODENAMES, codename_info, setup_codenames)
from mini_buildd.dist.host import (
    native_architectures, APT_SOURCES_LIST, APT_SOURCES_PARTS, archives_from_apt_sources, archives_from_origins,
    PROXY_ARCHIVE_PATHS, APT_CACHER_NG_PORT, archives_from_proxy)
from mini_buildd.dist.layouts import (
    DEFAULT_VERSION, MANDATORY_VERSION_REGEX, EXPERIMENTAL_DEFAULT_VERSION, EXPERIMENTAL_MANDATORY_VERSION_REGEX,
    SUITE_SORT, suite_sort_key, LAYOUTS, apt_pin_priority)
from mini_buildd.dist.qa import QAMode, SBUILD_STATUS_PASS, SBUILD_STATUS_WARN, SBUILD_STATUS_FAIL, sbuild_check_passes
from mini_buildd.dist.blocks import (
    SBUILD_CONFIG_BLOCKS, SBUILD_SETUP_BLOCKS, validate_blocks, validate_setup_blocks, validate_config_blocks)
from mini_buildd.dist.versions import (
    strip_epoch, substitute, version_matches_mandatory, port_version, rebuild_version, port_ext_version)

__all__ = [
    "DISTSTR_REGEX", "DistStr",
    "DEBIAN_ARCHIVE_KEYS", "DEBIAN_SECURITY_KEYS", "DEBIAN_RELEASE_KEYS", "UBUNTU_ARCHIVE_KEYS", "guess_codeversion",
    "DEBIAN", "UBUNTU", "DEBIAN_BACKPORTS", "COMPONENTS",
    "DEFAULT_SBUILD_CONFIG_BLOCKS", "DEFAULT_SBUILD_SETUP_BLOCKS", "DEFAULT_LINTIAN_EXTRA_OPTIONS",
    "DEFAULT_LINTIAN_WARNFAIL_OPTIONS", "DEFAULT_PIUPARTS_EXTRA_OPTIONS", "DEFAULT_PIUPARTS_ROOT_ARG",
    "DEFAULT_INTERNAL_APT_PRIORITY",
    "ExtraSource", "Codename", "ROLLING_RANK", "CODENAMES", "codename_info", "setup_codenames",
    "native_architectures", "APT_SOURCES_LIST", "APT_SOURCES_PARTS", "archives_from_apt_sources", "archives_from_origins",
    "PROXY_ARCHIVE_PATHS", "APT_CACHER_NG_PORT", "archives_from_proxy",
    "DEFAULT_VERSION", "MANDATORY_VERSION_REGEX", "EXPERIMENTAL_DEFAULT_VERSION", "EXPERIMENTAL_MANDATORY_VERSION_REGEX",
    "SUITE_SORT", "suite_sort_key", "LAYOUTS", "apt_pin_priority",
    "QAMode", "SBUILD_STATUS_PASS", "SBUILD_STATUS_WARN", "SBUILD_STATUS_FAIL", "sbuild_check_passes",
    "SBUILD_CONFIG_BLOCKS", "SBUILD_SETUP_BLOCKS", "validate_blocks", "validate_setup_blocks", "validate_config_blocks",
    "strip_epoch", "substitute", "version_matches_mandatory", "port_version", "rebuild_version", "port_ext_version",
]
