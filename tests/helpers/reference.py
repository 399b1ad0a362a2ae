"""Where the tests find real outputs of upstream mini-buildd 2.4.10 (API answers, events, changes
files, reprepro configuration): a copy kept in the repository, so that CI and release users have
them too."""

import pathlib

#: tests/data/reference (copied from the project's shared reference material).
REFERENCE = pathlib.Path(__file__).resolve().parent.parent / "data" / "reference"
