"""Test helper (owns: tests/helpers/package_tree.py): the Debian packages as users install them.

- :func:`build_debs` builds the binary packages from a clean copy of the work tree with the real
  ``dpkg-buildpackage -us -uc -b`` (``DEB_BUILD_OPTIONS=nocheck``; optionally with another version in
  the copy's changelog).
- :class:`LocalRepo` is a flat ``deb [trusted=yes] file:/... ./`` repository of those .debs.
- :class:`Tree` is a clean Debian tree (unpacked from the pristine debootstrap tarball cached in
  ``/var/cache/mini-buildd``, which :func:`mini_buildd.tools.chroot_backends.cached_debootstrap_tarball`
  makes once per codename from the host's archive) with proc, sys, dev and dev/pts mounted, the
  host's resolv.conf and hosts, and apt sources from the host's archive URL. It runs commands with
  ``chroot``, runs the installed daemon the way its systemd unit does (:class:`UnitDaemon`), and on
  :meth:`Tree.close` kills every process whose root lies in the tree, unmounts everything below it
  (reverse order, lazily if needed) and removes it.

Needs root. Nothing here writes a mirror host name: the archive URL comes from
:mod:`tests.helpers.host_archive`.
"""

import fnmatch
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time

import requests

from mini_buildd import config
from mini_buildd.tools import chroot_backends
from tests.helpers import host_archive

#: The tree the packages are built from: this work tree (``MBD_PACKAGE_SOURCE``: another checkout).
SRC = pathlib.Path(os.environ.get("MBD_PACKAGE_SOURCE") or pathlib.Path(__file__).resolve().parents[2])
#: A clean environment for host tools (Debian's python3 only, no pyenv).
HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": "", "LC_ALL": "C.UTF-8"}
#: The environment of commands run in a tree.
TREE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
PACKAGES = ("python3-mini-buildd", "mini-buildd", "mini-buildd-utils")

# ------------------------------------------------------------------------------------------------ build
_IGNORE_ANYWHERE = ("__pycache__", "*.pyc", ".pytest_cache")
_IGNORE_BELOW = {
    ".": (".git", ".pybuild", "build", "*.egg-info", ".run-home", "test-artifacts"),
    "debian": (".debhelper", "tmp", "files", "*.substvars", "debhelper-build-stamp", "*.debhelper.log",
               "mini-buildd", "mini-buildd-utils", "python3-mini-buildd", "mbd-generated"),
}


def _ignore(directory, names):
    relative = os.path.relpath(directory, SRC)
    patterns = _IGNORE_ANYWHERE + _IGNORE_BELOW.get(relative, ())
    return {name for name in names if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)}


def changelog_version(changelog):
    return re.match(r"^\S+ \(([^)]+)\)", pathlib.Path(changelog).read_text(encoding="UTF-8")).group(1)


def build_debs(workdir, version_suffix=""):
    """Build the packages from a clean copy of the work tree in ``workdir``; ``{package: .deb path}``.

    With ``version_suffix``, the copy's top changelog entry gets version ``VERSION+SUFFIX`` (an upgrade)."""
    workdir = pathlib.Path(workdir)
    tree = workdir / "mini-buildd"
    shutil.copytree(SRC, tree, symlinks=True, ignore=_ignore)
    if version_suffix:
        changelog = tree / "debian" / "changelog"
        text = changelog.read_text(encoding="UTF-8")
        changelog.write_text(re.sub(r"^(\S+) \(([^)]+)\)", rf"\1 (\2{version_suffix})", text, count=1), encoding="UTF-8")
    # nocheck: the build-time unit tests run in tests/integration/test_debian_package.py's build (and
    # in make check's host group); here only the packages are wanted, twice (install and upgrade).
    proc = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=tree, env=dict(HOST_ENV, DEB_BUILD_OPTIONS="nocheck"),
                          capture_output=True, text=True, timeout=900, check=False)
    (workdir / "build.log").write_text(proc.stdout + proc.stderr, encoding="UTF-8")
    if proc.returncode != 0:
        raise AssertionError(f"dpkg-buildpackage failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-5000:]}")
    debs = {deb.name.split("_")[0]: deb for deb in sorted(workdir.glob("*.deb"))}
    assert set(PACKAGES) <= set(debs), debs
    return debs


class BackgroundBuild(threading.Thread):
    """:func:`build_debs` in a thread (the upgrade build runs while the first tree installs)."""

    def __init__(self, workdir, version_suffix=""):
        super().__init__(daemon=True)
        self.args = (workdir, version_suffix)
        self.debs, self.error = None, None
        self.start()

    def run(self):
        try:
            self.debs = build_debs(*self.args)
        except BaseException as e:  # pylint: disable=broad-except  # re-raised by result()
            self.error = e

    def result(self, timeout=900):
        """The built debs (waits up to ``timeout``; re-raises the build's error)."""
        self.join(timeout)
        if self.error:
            raise self.error
        assert self.debs, "background build did not finish"
        return self.debs


def source_copy(debs):
    """The work tree copy the .debs were built from."""
    return next(iter(debs.values())).parent / "mini-buildd"


class LocalRepo:
    """A flat apt repository (``./Packages``) in ``path`` (a directory inside a tree)."""

    def __init__(self, path, tree_path):
        self.path = pathlib.Path(path)
        self.tree_path = tree_path
        self.path.mkdir(parents=True, exist_ok=True)

    def replace(self, debs):
        """Serve exactly ``debs`` (.deb paths)."""
        for old in self.path.glob("*.deb"):
            old.unlink()
        for deb in debs:
            shutil.copy2(deb, self.path / deb.name)
        packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=self.path, env=HOST_ENV,
                                  capture_output=True, text=True, check=True).stdout
        (self.path / "Packages").write_text(packages, encoding="UTF-8")

    def apt_line(self):
        return f"deb [trusted=yes] file:{self.tree_path} ./\n"


# ------------------------------------------------------------------------------------------------ trees
def _mounts():
    """Mount points (as in /proc/mounts, octal escapes decoded), in mount order."""
    result = []
    for line in pathlib.Path("/proc/mounts").read_text(encoding="UTF-8").splitlines():
        point = line.split()[1]
        result.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point))
    return result


def mounts_below(path):
    path = str(path).rstrip("/")
    return [m for m in _mounts() if m == path or m.startswith(path + "/")]


def processes_in(path):
    """PIDs of the processes whose root directory is ``path`` or lies below it."""
    path = str(path).rstrip("/")
    pids = []
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                root = os.readlink(p / "root")
            except OSError:
                continue
            if root == path or root.startswith(path + "/"):
                pids.append(int(p.name))
    return pids


def kill_processes_in(path, timeout=10):
    """Kill (TERM, then KILL) every process whose root is below ``path``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_in(path):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + timeout
        while processes_in(path) and time.time() < deadline:
            time.sleep(0.2)
        if not processes_in(path):
            return


def base_tarball(codename):
    """The cached pristine debootstrap tarball of ``codename`` (made once from the host's archive)."""
    arch = host_archive.host_arch()
    path = chroot_backends.cached_tarball_path(codename, arch)
    if path.exists():
        return path
    return chroot_backends.cached_debootstrap_tarball(codename, arch, host_archive.archive_url(codename),
                                                      keyring_path=host_archive.keyring_path())


def archive_has(codename):
    """Whether the host's archive carries ``codename`` (its Release file answers)."""
    try:
        return requests.get(f"{host_archive.archive_url(codename)}/dists/{codename}/Release", timeout=20).status_code == 200
    except requests.RequestException:
        return False


class Tree:
    """A clean Debian tree at ``path``; use as a context manager (or call :meth:`close`)."""

    def __init__(self, path, codename):
        self.path = pathlib.Path(path)
        self.codename = codename
        self.own_mounts = []
        self.closed = False

    # -- life cycle
    def open(self):
        """Unpack the base tarball, mount the base file systems and set up name resolution."""
        self.path.mkdir(parents=True)
        subprocess.run(["tar", "--extract", "--numeric-owner", "--file", str(base_tarball(self.codename)),
                        "--directory", str(self.path)], check=True, env=HOST_ENV)
        try:
            self.mount_base()
            for name in ("resolv.conf", "hosts"):
                target = self.path / "etc" / name
                target.unlink(missing_ok=True)
                shutil.copy2(f"/etc/{name}", target)
            self.write("etc/apt/sources.list", host_archive.sources_list(self.codename))
            for extra in (self.path / "etc/apt/sources.list.d").glob("*"):
                extra.unlink()
        except BaseException:
            self.close()
            raise
        return self

    def _mount(self, source, target, options):
        point = self.path / target
        if not point.exists():
            point.mkdir(parents=True)
        subprocess.run(["mount", *options, source, str(point)], check=True, env=HOST_ENV)
        self.own_mounts.append(str(point))

    def bind_ro(self, source, target):
        """Bind-mount host file or directory ``source`` read-only at ``target`` (tree path)."""
        point = self.file(target)
        if pathlib.Path(source).is_dir():
            point.mkdir(parents=True, exist_ok=True)
        else:
            point.parent.mkdir(parents=True, exist_ok=True)
            point.touch()
        self._mount(str(source), str(target).lstrip("/"), ["--bind"])
        subprocess.run(["mount", "-o", "remount,bind,ro", self.own_mounts[-1]], check=True, env=HOST_ENV)

    def share_base_tarball(self, codename=None):
        """Offer the host's cache of base tarballs (:data:`mini_buildd.config.CACHE_DIR`) at the same
        path in the tree (a bind mount): the tree's root helper finds the pristine tarball of
        ``codename`` (default: the tree's) and the ones with the build tools (per set of tools and apt
        sources), and a tarball it makes there is kept for the next run, as the host's own are.
        Returns the pristine one's path, or None if the host has none (then nothing is shared)."""
        codename = codename or self.codename
        tarball = chroot_backends.cached_tarball_path(codename, host_archive.host_arch())
        if not tarball.exists():
            return None
        self.file(str(config.CACHE_DIR)).mkdir(parents=True, exist_ok=True)
        self._mount(str(config.CACHE_DIR), str(config.CACHE_DIR).lstrip("/"), ["--bind"])
        return tarball

    def foreign_mounts(self):
        """Mounts below the tree that are not this object's own."""
        return [m for m in mounts_below(self.path) if m not in self.own_mounts]

    def close(self):
        """Kill the tree's processes, unmount everything below it (reverse order), remove it."""
        if self.closed:
            return
        kill_processes_in(self.path)
        for point in reversed(mounts_below(self.path)):
            if subprocess.run(["umount", point], check=False, capture_output=True, env=HOST_ENV).returncode != 0:
                subprocess.run(["umount", "--lazy", point], check=False, capture_output=True, env=HOST_ENV)
        left = mounts_below(self.path)
        if not left:
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.path)], check=False, env=HOST_ENV)
        self.closed = True
        assert not left, f"still mounted below {self.path}: {left}"

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    # -- a booted container (systemd-nspawn -b) on the same tree
    def unmount_own(self, keep=()):
        """Unmount this object's own mounts (reverse order) except ``keep``; return what was unmounted."""
        gone = []
        for point in reversed(list(self.own_mounts)):
            if point in keep:
                continue
            subprocess.run(["umount", point], check=True, env=HOST_ENV)
            self.own_mounts.remove(point)
            gone.append(point)
        return gone

    def mount_base(self):
        """(Re-)mount proc, sys, dev and dev/pts (after a boot)."""
        self._mount("proc", "proc", ["-t", "proc"])
        self._mount("/sys", "sys", ["--bind"])
        self._mount("/dev", "dev", ["--bind"])
        self._mount("/dev/pts", "dev/pts", ["--bind"])

    # -- files and commands
    def file(self, path):
        return self.path / str(path).lstrip("/")

    def write(self, path, text, mode=0o644):
        """Write ``text`` to ``path`` in the tree (parents made, ``mode`` set); return the host path."""
        target = self.file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="UTF-8")
        target.chmod(mode)
        return target

    def run(self, *argv, stdin=None, env=None, check=True, timeout=900):
        """Run ``argv`` in the tree as root; the CompletedProcess (text), stderr merged into stdout on failure."""
        proc = subprocess.run(["chroot", str(self.path), *argv], input=stdin, capture_output=True, text=True,
                              env=dict(TREE_ENV, **(env or {})), timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"in {self.path}: {shlex.join(argv)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def sh(self, script, **kwargs):
        return self.run("sh", "-ec", script, **kwargs)

    def apt_get(self, *args, timeout=900):
        return self.run("apt-get", "-y", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
                        *args, timeout=timeout)

    def passwd(self, user):
        """``(uid, gid, home)`` of ``user`` in the tree's /etc/passwd, or None."""
        for line in self.file("etc/passwd").read_text(encoding="UTF-8").splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2]), int(fields[3]), fields[5]
        return None

    def dpkg_version(self, package):
        proc = self.run("dpkg-query", "-W", "-f", "${Status} ${Version}", package, check=False)
        status = proc.stdout.split()
        return status[-1] if proc.returncode == 0 and status[:3] == ["install", "ok", "installed"] else None


# ------------------------------------------------------------------------------------------------ the unit
def unit_path(tree):
    for candidate in ("lib/systemd/system/mini-buildd.service", "usr/lib/systemd/system/mini-buildd.service"):
        if tree.file(candidate).exists():
            return tree.file(candidate)
    raise AssertionError("mini-buildd.service not installed in the tree")


def parse_unit(text):
    """``{key: [values]}`` of the unit's [Service] section."""
    section, result = None, {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            result.setdefault(key.strip(), []).append(value.strip())
    return result


def parse_environment_file(text):
    """systemd ``EnvironmentFile=`` semantics: ``KEY=VALUE`` lines, quotes removed, comments skipped."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        words = shlex.split(value, comments=False) if value.strip() else [""]
        env[key] = " ".join(words)
    return env


def expand_exec(command, env):
    """systemd's ExecStart expansion: ``$VAR`` splits into words (empty: none), ``${VAR}`` is one word."""
    argv = []
    for word in shlex.split(command):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            argv += env.get(m.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda v: env.get(v.group(1), ""), word))
    return argv


class UnitDaemon:
    """The installed daemon started the way ``mini-buildd.service`` starts it: its ExecStart, with
    its EnvironmentFile, as its User, inside the tree, in the background (own session)."""

    def __init__(self, tree, url, log_path, extra_env=None):
        self.tree = tree
        self.url = url
        self.log_path = pathlib.Path(log_path)
        self.extra_env = extra_env or {}
        self.proc = None

    def command(self):
        """``(user, env, argv)`` from the installed unit."""
        unit = parse_unit(unit_path(self.tree).read_text(encoding="UTF-8"))
        user = unit["User"][-1]
        env = {}
        for entry in unit.get("EnvironmentFile", []):
            optional = entry.startswith("-")
            path = self.tree.file(entry.lstrip("-"))
            if path.exists():
                env.update(parse_environment_file(path.read_text(encoding="UTF-8")))
            elif not optional:
                raise AssertionError(f"EnvironmentFile {entry} missing")
        for entry in unit.get("Environment", []):
            for word in shlex.split(entry):
                key, _sep, value = word.partition("=")
                env[key] = value
        uid, _gid, home = self.tree.passwd(user)
        assert uid != 0
        # systemd's default service PATH on bookworm (split-usr build); the trees from the buildd
        # tarball are not merged-usr, so /sbin and /bin matter.
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "USER": user, "LOGNAME": user,
                "SHELL": "/bin/bash", "LANG": "C.UTF-8"}
        env = dict(base, **env, **self.extra_env)
        return user, env, expand_exec(unit["ExecStart"][-1].lstrip("-@+!"), env)

    def start(self, timeout=120, engine=False):
        """Start the unit's ExecStart in the tree as its user; wait up to ``timeout`` for HTTP (and with
        ``engine`` also for the engine, which starts in a thread after HTTP: ``status`` says load -1 until then)."""
        user, env, argv = self.command()
        uid, gid, _home = self.tree.passwd(user)
        with open(self.log_path, "a", encoding="UTF-8") as log:
            log.write(f"--- start: {shlex.join(argv)}\n")
            log.flush()
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                ["chroot", str(self.tree.path), "setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--",
                 "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=HOST_ENV)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()[-5000:]}")
            try:
                answer = requests.get(f"{self.url}/mini_buildd/api/status/", timeout=5)
                if answer.status_code == 200 and (not engine or answer.json()["load"] >= 0):
                    return self
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"daemon did not answer within {timeout}s:\n{self.output()[-5000:]}")

    def output(self):
        return self.log_path.read_text(encoding="UTF-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout=120):
        """SIGTERM (as systemd stops it), SIGKILL after ``timeout``; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code


# ------------------------------------------------------------------------------------------------ boot
def nspawn_available():
    return shutil.which("systemd-nspawn", path=HOST_ENV["PATH"]) is not None


class Booted:
    """The tree booted with ``systemd-nspawn -b`` (host network, not registered with machined);
    commands run in it with ``nsenter`` into its init's namespaces. Use as a context manager: on
    exit the container is powered off (SIGTERM to nspawn, SIGKILL after a timeout)."""

    def __init__(self, tree, log_path):
        self.tree = tree
        self.log_path = pathlib.Path(log_path)
        self.proc = None
        self.init_pid = None

    def __enter__(self):
        with open(self.log_path, "a", encoding="UTF-8") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                ["systemd-nspawn", "--quiet", "-D", str(self.tree.path), "-b", "--register=no", "--keep-unit",
                 "--console=pipe"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=HOST_ENV)
        try:
            self._wait_booted()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _children(self, pid):
        try:
            return [int(c) for task in pathlib.Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text(encoding="UTF-8").split()]
        except OSError:
            return []

    def _wait_booted(self, timeout=90):
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited with {self.proc.returncode}: {self.output()[-3000:]}")
            if self.init_pid is None:
                children = self._children(self.proc.pid)
                self.init_pid = children[0] if children else None
            if self.init_pid:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.5)
        raise AssertionError(f"the container did not boot within {timeout}s (state '{state}'): {self.output()[-3000:]}")

    def output(self):
        return self.log_path.read_text(encoding="UTF-8", errors="replace") if self.log_path.exists() else ""

    def run(self, *argv, check=True, timeout=120):
        """Run ``argv`` in the booted container (nsenter); the CompletedProcess, fails on an error if ``check``."""
        proc = subprocess.run(["nsenter", f"--target={self.init_pid}", "--mount", "--uts", "--ipc", "--net", "--pid",
                               "--cgroup", "--root", "--wd", "--", "env", "-i", *[f"{k}={v}" for k, v in TREE_ENV.items()],
                               *argv], capture_output=True, text=True, timeout=timeout, check=False, env=HOST_ENV)
        if check and proc.returncode != 0:
            raise AssertionError(f"in the container: {shlex.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def __exit__(self, *exc):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's init to power off
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                if self.init_pid:
                    try:
                        os.kill(self.init_pid, signal.SIGKILL)  # ends its whole PID namespace
                    except ProcessLookupError:
                        pass
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
