"""Test helper: run ``python3 -m mini_buildd.cli.setup`` on a home and return its JSON result."""

import json
import os
import subprocess

from tests.helpers.daemon import PYTHON, as_user, user_of

ACCEPTANCE = ["--archives-from-apt-sources", "--sources", "bookworm", "--distributions", "bookworm:amd64",
              "--repositories", "test:Default:bookworm", "--chroots", "bookworm:amd64", "--update", "all", "--pca", "all"]
#: :data:`ACCEPTANCE` without its chroot: an instance for tests of the web and API side (never the shared chroot name).
WITHOUT_CHROOTS = [a for i, a in enumerate(ACCEPTANCE) if a != "--chroots" and (i == 0 or ACCEPTANCE[i - 1] != "--chroots")]


def run_setup(home, *args, http_endpoint="tcp6:port=8066", hostname="127.0.0.1", check=True, timeout=1800, unpriv=None):
    """Run setup (as ``unpriv``'s user if given); return (returncode, result dict or None, stderr)."""
    env = dict(os.environ, MINI_BUILDD_DEBOOTSTRAP_CACHE="1")
    argv, cwd = as_user([PYTHON, "-m", "mini_buildd.cli.setup", "--home", str(home), "--hostname", hostname,
                         "--http-endpoint", http_endpoint, "--dedicated-user", user_of(unpriv), "--json", *args],
                        unpriv, home)
    if unpriv is not None:
        argv[argv.index("env") + 1:argv.index("env") + 1] = ["MINI_BUILDD_DEBOOTSTRAP_CACHE=1"]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    result = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None
    if check and result is None:
        raise AssertionError(f"setup failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-5000:]}")
    return proc.returncode, result, proc.stderr


def by_str(result):
    return {i["identity_str"]: i for i in result["instances"]}
