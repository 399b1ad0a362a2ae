"""Sphinx configuration of the mini-buildd manual (owns: doc/manual/conf.py).

Build: ``/usr/bin/python3 -m sphinx -W -b html doc/manual OUTDIR`` (``make manual`` writes to
``build/manual/html``). Only core Sphinx is used (Debian's python3-sphinx 5.3 on bookworm, 7/8 on
trixie). The API and command reference pages are generated at build time from the call registry
and the commands' argparse parsers by the local extension ``_ext/mbd_manual.py``.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, ROOT)

from mini_buildd import __version__  # noqa: E402  pylint: disable=wrong-import-position

project = "mini-buildd"
author = "the mini-buildd developers"
copyright = "the mini-buildd developers"  # pylint: disable=redefined-builtin
version = release = __version__

extensions = ["mbd_manual"]
root_doc = "index"
exclude_patterns = ["_build"]
templates_path = ["_templates"]
language = "en"
highlight_language = "none"
pygments_style = "sphinx"
# Keep "--option" and quotes as written (command lines are copied from the manual).
smartquotes = False

html_theme = "alabaster"
html_title = f"mini-buildd {__version__} manual"
html_static_path = []
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
# No search box in the sidebar: it needs an inline script, which the daemon's
# Content-Security-Policy does not allow. A plain link leads to the search page, which works.
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchlink.html"]}
html_theme_options = {"description": "Custom build daemon for Debian-based distributions",
                      "show_powered_by": False}
