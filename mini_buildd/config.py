"""Run-time configuration: the instance home and every path below it, system paths, host name,
endpoints and debug switches. This is the only module that builds file system paths.

The daemon (or a test) calls :func:`init` once; everyone else reads :data:`paths` and
:data:`runtime`.
"""

import hashlib
import os
import pathlib
import re
import socket

#: Directories created below the home on start (upstream §1.3).
HOME_DIRS = (
    ".gnupg", "incoming", "repositories", "etc", "etc/event-hooks",
    "var", "var/events", "var/shared", "var/shared/builds", "var/shared/libdir", "var/shared/debug",
    "var/chroots", "var/crontab", "var/log", "var/tmp", "var/quarantine",
)

#: Mode of the home: private to the daemon's user (it serves ``repositories/`` itself).
HOME_MODE = 0o700
#: Mode of secret files in the home (database, Django secret key, GnuPG files, admin password).
SECRET_FILE_MODE = 0o600

#: System files outside the home.
SCHROOT_CHROOT_D = pathlib.Path("/etc/schroot/chroot.d")
SCHROOT_CONF_DIR = pathlib.Path("/etc/schroot/mini-buildd")
#: The instance's TLS certificate and key (``mini-buildd-self-signed-certificate``, :mod:`mini_buildd.tools.tls`).
SSL_DIR = pathlib.Path("/etc/ssl/mini-buildd")
SSL_CERT = SSL_DIR / "certs" / "mini-buildd.crt"
SSL_KEY = SSL_DIR / "private" / "mini-buildd.key"


def ssl_files(directory=None):
    """``(certificate, key)`` below ``directory`` (laid out like :data:`SSL_DIR`, the default)."""
    if directory is None:
        return SSL_CERT, SSL_KEY
    directory = pathlib.Path(directory)
    return directory / SSL_CERT.relative_to(SSL_DIR), directory / SSL_KEY.relative_to(SSL_DIR)


#: Where end-to-end tests and `make run` keep a cached debootstrap tarball.
CACHE_DIR = pathlib.Path("/var/cache/mini-buildd")

#: The root helper (:mod:`mini_buildd.roothelper`) a daemon not running as root calls with
#: ``sudo -n`` (the package's sudoers rule allows user mini-buildd exactly this command);
#: ``$MINI_BUILDD_CHROOT_HELPER`` names another one (a source tree's, in tests).
CHROOT_HELPER = pathlib.Path("/usr/sbin/mini-buildd-chroot-helper")
CHROOT_HELPER_ENV = "MINI_BUILDD_CHROOT_HELPER"


def chroot_helper():
    """The root helper command to run with sudo (see :data:`CHROOT_HELPER`)."""
    return pathlib.Path(os.environ.get(CHROOT_HELPER_ENV) or CHROOT_HELPER)


def chroots_dir(home):
    """``HOME/var/chroots``: where an instance's chroot data lives (owned by root, see
    :mod:`mini_buildd.roothelper`)."""
    return pathlib.Path(home) / "var" / "chroots"


def cached_tarball(codename, arch, variant="buildd", include=(), apt_lines=()):
    """The cached debootstrap tarball of ``codename``/``arch`` in :data:`CACHE_DIR`: the pristine
    one, or with ``include`` (package names) the pristine one with these packages installed, and
    with ``apt_lines`` also upgraded from these sources (a digest of the sorted names and the lines
    is part of the file name)."""
    name = f"debootstrap-{codename}-{arch}-{variant}"
    if include:
        text = " ".join(sorted(set(include)))
        if apt_lines:
            text += "\n" + "\n".join(apt_lines)
        name += "-with-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return CACHE_DIR / f"{name}.tar"


def cached_unshare_tarball(codename, arch, variant, digest):
    """The cached mmdebstrap tarball of ``codename``/``arch`` made with the options of ``digest``
    (see :func:`mini_buildd.tools.chroot_backends.cached_unshare_tarball`) in :data:`CACHE_DIR`."""
    return CACHE_DIR / f"mbd-unshare-{codename}-{arch}-{variant}-{digest}.tar"


PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
#: Source package templates (keyring and test packages).
PACKAGE_TEMPLATES = PACKAGE_DIR / "package_templates"


class Paths:  # pylint: disable=too-many-public-methods  # one method per place in the home, all in one place
    """All paths below one instance home."""

    def __init__(self, home):
        self.home = pathlib.Path(home).resolve()

    def __repr__(self):
        return f"Paths({self.home})"

    def _h(self, *parts):
        return self.home.joinpath(*parts)

    # Top level
    @property
    def config_db(self):
        return self._h("config.sqlite")

    @property
    def django_secret_key(self):
        return self._h(".django_secret_key")

    @property
    def gnupg_home(self):
        return self._h(".gnupg")

    @property
    def incoming(self):
        return self._h("incoming")

    @property
    def repositories(self):
        return self._h("repositories")

    def repository(self, identity):
        return self._h("repositories", identity)

    # etc/
    @property
    def dput_cf(self):
        return self._h("etc", "dput.cf")

    @property
    def event_hooks(self):
        return self._h("etc", "event-hooks")

    @property
    def schroot_prefix_file(self):
        """The home's schroot name prefix (one line), shared by setup and the daemon."""
        return self._h("etc", "schroot-prefix")

    # var/
    @property
    def events(self):
        return self._h("var", "events")

    def events_of(self, *key_parts):
        """``var/events/SOURCE/VERSION/TIMECODE/ARCH``."""
        return self._h("var", "events", *key_parts)

    @property
    def builds(self):
        return self._h("var", "shared", "builds")

    def build_dir(self, *key_parts):
        return self._h("var", "shared", "builds", *key_parts)

    @property
    def shared(self):
        return self._h("var", "shared")

    def libdir(self, codename, arch):
        return self._h("var", "shared", "libdir", codename, arch)

    @property
    def debug(self):
        return self._h("var", "shared", "debug")

    @property
    def chroots(self):
        return self._h("var", "chroots")

    def chroot_dir(self, codename, arch):
        return self._h("var", "chroots", codename, arch)

    @property
    def unshare_chroots(self):
        """``var/unshare-chroots``: the tarballs of unshare mode chroots (the daemon's own files;
        ``var/chroots`` belongs to root)."""
        return self._h("var", "unshare-chroots")

    def unshare_tarball(self, codename, arch):
        """The tarball of the unshare mode chroot of ``codename``/``arch`` (sbuild's naming)."""
        return self._h("var", "unshare-chroots", f"{codename}-{arch}.tar")

    @property
    def crontab(self):
        return self._h("var", "crontab")

    def crontab_log(self, name):
        return self._h("var", "crontab", f"{name}.log")

    @property
    def log(self):
        return self._h("var", "log")

    @property
    def daemon_log(self):
        return self._h("var", "log", "daemon.log")

    @property
    def access_log(self):
        return self._h("var", "log", "access.log")

    @property
    def inspect_json(self):
        return self._h("var", "log", "inspect.json")

    @property
    def tmp(self):
        return self._h("var", "tmp")

    @property
    def quarantine(self):
        """Private per-arrival directories of uploads not yet verified (:mod:`mini_buildd.pipeline.incoming`)."""
        return self._h("var", "quarantine")

    @property
    def journals(self):
        """Write-ahead journals of repository changes, one dir per repository (:mod:`mini_buildd.archive.journal`)."""
        return self._h("var", "journal")

    def journal(self, identity):
        return self._h("var", "journal", identity)

    def base_index(self, origin, codename, component, arch):
        """One base source's verified ``Packages`` index (uncompressed; :mod:`mini_buildd.archive.indices`),
        in ``var/cache/indices``; its Release's hash of it beside, ``.sha256``."""
        return self._h("var", "cache", "indices", f"{origin}_{codename}_{component.replace('/', '_')}_{arch}_Packages")

    @property
    def port_watch(self):
        """The watched ports and the origin version each was made from (:mod:`mini_buildd.pipeline.port_watch`)."""
        return self._h("var", "ports.json")

    def installability_report(self, diststr):
        """The last installability report of a repository distribution (:mod:`mini_buildd.archive.installability`)."""
        return self._h("var", "installability", f"{diststr}.json")

    @property
    def accepted_requests(self):
        """Record of the buildrequests accepted (replays are refused)."""
        return self._h("var", "accepted-buildrequests")

    @property
    def static_root(self):
        """Web assets shipped with the package."""
        return PACKAGE_DIR / "webapp" / "static"

    @property
    def lock_file(self):
        """Held (``flock``) by the daemon running on this home; holds its pid."""
        return self._h(".mini-buildd.lock")

    @property
    def admin_password_file(self):
        """Where ``make run`` keeps the generated admin password (a secret: 0600)."""
        return self._h("admin-password")

    def config_db_files(self):
        """The configuration database and SQLite's side files (journal, WAL, shared memory)."""
        db = self.config_db
        return [db] + [db.with_name(db.name + suffix) for suffix in ("-journal", "-wal", "-shm")]

    def ccache_dir(self, codename, arch):
        """ccache's cache in the per-chroot libdir (the one part of ``var/shared`` a build may write)."""
        return shared_ccache_dir(self.shared, codename, arch)

    def create(self):
        """Create the home layout (idempotent) and make the home and its secrets private to us:
        home and ``.gnupg`` (dirs) 0700, secret files 0600, also on an existing home.
        Raises OSError if the home is not writable."""
        self.home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
        for d in HOME_DIRS:
            self._h(d).mkdir(parents=True, exist_ok=True)
        self.make_private()

    def make_private(self):
        """Fix the modes of the home and its secrets (see :meth:`create`)."""
        os.chmod(self.home, HOME_MODE)
        os.chmod(self.gnupg_home, 0o700)
        for dirpath, dirnames, filenames in os.walk(self.gnupg_home):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o700)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.isfile(path) and not os.path.islink(path):  # not the agent's sockets
                    os.chmod(path, SECRET_FILE_MODE)
        if not self.config_db.exists():
            # Created here (an empty file is an empty SQLite database) so that it never exists
            # with another mode; SQLite gives its side files the database file's mode.
            os.close(os.open(self.config_db, os.O_WRONLY | os.O_CREAT, SECRET_FILE_MODE))
        for path in self.config_db_files() + [self.django_secret_key, self.admin_password_file]:
            if path.is_file() and not path.is_symlink():
                os.chmod(path, SECRET_FILE_MODE)


def shared_ccache_dir(shared_dir, codename, arch):
    """``SHARED/libdir/CODENAME/ARCH/.ccache`` of an instance's ``var/shared`` dir ``shared_dir``."""
    return pathlib.Path(shared_dir).resolve().joinpath("libdir", codename, arch, ".ccache")


def schroot_conf(name):
    """``/etc/schroot/chroot.d/NAME.conf``."""
    return SCHROOT_CHROOT_D / f"{name}.conf"


#: Upstream's schroot name prefix: chroots are named ``PREFIX-CODENAME-ARCH``.
DEFAULT_SCHROOT_PREFIX = "mini-buildd"
_SCHROOT_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$")


def schroot_name(codename, arch):
    """The schroot name of this instance's chroot for ``codename``/``arch``."""
    return f"{runtime.schroot_prefix}-{codename}-{arch}"


def validate_schroot_prefix(prefix):
    if not _SCHROOT_PREFIX_RE.match(prefix or "") or prefix.endswith("-"):
        raise ValueError(f"Invalid schroot prefix '{prefix}' (letters, digits, '_', '.', '-'; at most 50; not ending in '-').")
    return prefix


def read_schroot_prefix(home_paths):
    """The prefix persisted in the home (default :data:`DEFAULT_SCHROOT_PREFIX`)."""
    try:
        prefix = home_paths.schroot_prefix_file.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        # no home yet (or not a usable one: the daemon's home check reports that)
        return DEFAULT_SCHROOT_PREFIX
    return validate_schroot_prefix(prefix)


def set_schroot_prefix(prefix):
    """Use and persist ``prefix`` for this home (setup and daemon ``--schroot-prefix``).

    Refused while the home has chroots made under another prefix (their schroot configs carry
    the old name: remove them first).
    """
    validate_schroot_prefix(prefix)
    current = read_schroot_prefix(paths)
    if prefix != current:
        if paths.chroots.is_dir() and any(paths.chroots.iterdir()):
            raise ValueError(f"This home's chroots use the schroot prefix '{current}': remove them before changing it to '{prefix}'.")
        paths.schroot_prefix_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = paths.schroot_prefix_file.with_name(f".{paths.schroot_prefix_file.name}.tmp")
        tmp.write_text(prefix + "\n", encoding="utf-8")
        os.replace(tmp, paths.schroot_prefix_file)
    runtime.schroot_prefix = prefix
    return prefix


def default_fqdn():
    return socket.getfqdn() or "localhost"


class Runtime:
    """Process-wide settings given on the daemon's command line."""

    def __init__(self):
        self.hostname = default_fqdn()
        self.http_endpoints = ["tcp6:port=8066"]
        self.dedicated_user = "mini-buildd"
        #: Chroots start from a cached pristine debootstrap tarball (tests, ``make run``).
        self.debootstrap_cache = os.environ.get("MINI_BUILDD_DEBOOTSTRAP_CACHE") == "1"
        self.debug = set()
        #: ``[USER]:[PASSWORD]@smtp|ssmtp://HOST:PORT`` for notification mails; None: no mails.
        self.smtp = None
        #: Account sign-up at /accounts/register/ (off unless ``--allow-registration``).
        self.allow_registration = False
        #: Names this home's chroots (``PREFIX-CODENAME-ARCH``); read from the home by :func:`init`.
        self.schroot_prefix = DEFAULT_SCHROOT_PREFIX
        #: Bench mode only: ``(delay, [codename:arch])`` of simulated builds (pipeline.simulated_builder).
        self.simulated_builds = None

    @property
    def http_endpoint(self):
        """The primary HTTP endpoint."""
        return self.http_endpoints[0]


#: Set by :func:`init`.
paths: Paths = None  # type: ignore[assignment]  # pylint: disable=invalid-name  # not a constant: set by init() before any use
runtime = Runtime()


def init(home, hostname=None, http_endpoints=None, debug=None, dedicated_user=None):
    """Set the instance home and run-time settings for this process; return :data:`paths`."""
    global paths  # pylint: disable=global-statement,invalid-name
    paths = Paths(home)
    runtime.schroot_prefix = read_schroot_prefix(paths)
    if hostname:
        runtime.hostname = hostname
    if http_endpoints:
        runtime.http_endpoints = list(http_endpoints)
    if debug is not None:
        runtime.debug = set(debug)
    if dedicated_user:
        runtime.dedicated_user = dedicated_user
    return paths
