"""Validate rendered HTML with HTML Tidy (Debian package ``tidy``): a page passes when tidy reports
no errors. Warnings are returned for information (and can be required away with ``strict``)."""

import re
import shutil
import subprocess

TIDY = shutil.which("tidy") or "/usr/bin/tidy"
_LINE = re.compile(r"^line \d+ column \d+ - (Error|Warning|Info|Access): (.*)$")


def tidy_messages(html_text):
    """``(errors, warnings)``: tidy's messages for ``html_text`` (lists of strings)."""
    proc = subprocess.run([TIDY, "-e", "-q", "--show-warnings", "yes", "--gnu-emacs", "no"],
                          input=html_text.encode("utf-8") if isinstance(html_text, str) else html_text,
                          capture_output=True, timeout=60, check=False)
    errors, warnings = [], []
    for line in proc.stderr.decode("utf-8", errors="replace").splitlines():
        m = _LINE.match(line.strip())
        if m is None:
            continue
        (errors if m.group(1) == "Error" else warnings).append(line.strip())
    if proc.returncode >= 2 and not errors:
        errors.append(f"tidy exit code {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
    return errors, warnings


def assert_valid_html(html_text, what="page", strict=False):
    """Fail (AssertionError with tidy's messages) unless ``html_text`` has no tidy errors (and, with
    ``strict``, no warnings either). Returns the warnings."""
    if isinstance(html_text, bytes):
        html_text = html_text.decode("utf-8")
    errors, warnings = tidy_messages(html_text)
    problems = errors + (warnings if strict else [])
    if problems:
        numbered = "\n".join(f"{i + 1:4} {line}" for i, line in enumerate(html_text.splitlines()))
        raise AssertionError(f"{what}: HTML Tidy reports:\n  " + "\n  ".join(problems) + f"\n--- HTML ---\n{numbered}")
    return warnings


def assert_valid_response(response, what="page"):
    """A Django test client ``response`` is a full HTML document (doctype first) without tidy errors."""
    html = response.content
    assert html.lstrip().startswith(b"<!DOCTYPE html>"), html[:200]
    return assert_valid_html(html, what=what)
