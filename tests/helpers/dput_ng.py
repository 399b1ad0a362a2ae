"""Test helper: Debian's dput-ng, beside the classic dput the suite installs.

The two packages conflict (both ship ``/usr/bin/dput``), and the suite needs the classic one.
So when dput-ng is not installed, :func:`dput_ng` fetches the real ``dput-ng`` and
``python3-dput`` packages with ``apt-get download`` (from the host's apt sources, once per run)
and unpacks them into a private directory. dput-ng runs from there the way it runs from its
own source tree: its code on ``PYTHONPATH``, its data dir (profiles, schemas, hooks) and its
``/etc/dput.d`` (the DEFAULT profile) merged as ``skel/`` in the working directory, which
dput-ng reads with the highest precedence.
"""

import os
import pathlib
import shutil
import subprocess
import tempfile

PYTHON = "/usr/bin/python3"
_CACHE = {}


class DputNg:
    """How to run dput-ng: ``argv`` prefix, working directory and environment additions."""

    def __init__(self, argv, cwd=None, env=None, data_dir=pathlib.Path("/usr/share/dput-ng")):
        self.argv, self.cwd, self.env, self.data_dir = list(argv), cwd, dict(env or {}), pathlib.Path(data_dir)

    def environ(self, home):
        """The environment for a dput-ng process with ``home`` as its HOME (its ``~/.dput.d``)."""
        return {**os.environ, **self.env, "HOME": str(home)}

    def run(self, args, home, **kwargs):
        return subprocess.run([*self.argv, *[str(a) for a in args]], cwd=self.cwd, env=self.environ(home),
                              capture_output=True, text=True, timeout=300, check=False, **kwargs)

    def python(self, code, home):
        """Run Python ``code`` with dput-ng's modules importable (as dput-ng itself would)."""
        return subprocess.run([PYTHON, "-c", code], cwd=self.cwd, env=self.environ(home), capture_output=True, text=True,
                              timeout=60, check=False)


def _installed():
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "dput-ng"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() == "install ok installed"


def dput_ng():
    """A :class:`DputNg` (installed, or unpacked from the real packages); raises RuntimeError
    (with apt's message) if the packages can't be fetched."""
    if "dput-ng" in _CACHE:
        return _CACHE["dput-ng"]
    if _installed():
        result = DputNg(["dput"])
    else:
        base = pathlib.Path(tempfile.mkdtemp(prefix="mbd-dput-ng-"))
        proc = subprocess.run(["apt-get", "download", "-q", "dput-ng", "python3-dput"], cwd=base, capture_output=True,
                              text=True, check=False)
        debs = sorted(base.glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 2:
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"apt-get download dput-ng python3-dput failed: {proc.stdout}{proc.stderr}")
        root = base / "root"
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        run_dir = base / "run"
        run_dir.mkdir()
        # skel/ stands for both of the package's config locations: /etc/dput.d (the DEFAULT
        # profile, which newer dput-ng versions need for keys like full_upload_log) and, over it,
        # /usr/share/dput-ng (which an installed dput-ng ranks higher).
        skel = run_dir / "skel"
        shutil.copytree(root / "etc" / "dput.d", skel, ignore_dangling_symlinks=True)
        shutil.copytree(root / "usr" / "share" / "dput-ng", skel, dirs_exist_ok=True, ignore_dangling_symlinks=True)
        result = DputNg([PYTHON, str(root / "usr" / "bin" / "dput")], cwd=run_dir,
                        env={"PYTHONPATH": str(root / "usr" / "lib" / "python3" / "dist-packages")},
                        data_dir=root / "usr" / "share" / "dput-ng")
    _CACHE["dput-ng"] = result
    return result
