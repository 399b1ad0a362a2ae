"""Distribution strings ``CODENAME-REPOID-SUITE[-rollbackN]`` (upstream §3.1).

This module owns :data:`DISTSTR_REGEX` and :class:`DistStr` (parsing, building, printing).
"""

import re

DISTSTR_REGEX = re.compile(r"^(\w+)-(\w+)-(\w+)(?:-rollback(\d+))?$", re.ASCII)


class DistStr:
    """A parsed distribution string ``CODENAME-REPOID-SUITE[-rollbackN]``.

    >>> d = DistStr("bookworm-test-unstable-rollback2")
    >>> d.codename, d.repository, d.suite, d.rollback
    ('bookworm', 'test', 'unstable', 2)
    >>> d.get(), d.get(rollback=0), str(d)
    ('bookworm-test-unstable', 'bookworm-test-unstable-rollback0', 'bookworm-test-unstable-rollback2')
    """

    def __init__(self, diststr):
        match = DISTSTR_REGEX.match(diststr or "")
        if match is None:
            raise ValueError(f"Malformed distribution '{diststr}': expected CODENAME-REPOID-SUITE[-rollbackN] "
                             "(three alphanumeric parts separated by '-', e.g. 'bookworm-test-unstable')")
        self.codename, self.repository, self.suite = match.group(1), match.group(2), match.group(3)
        self.rollback = None if match.group(4) is None else int(match.group(4))

    @classmethod
    def build(cls, codename, repository, suite, rollback=None):
        """Construct from parts (validated like a parsed string)."""
        return cls(f"{codename}-{repository}-{suite}" + ("" if rollback is None else f"-rollback{rollback}"))

    def get(self, rollback=None):
        """Return ``CODENAME-REPOID-SUITE``, with ``-rollback<rollback>`` appended if ``rollback`` is given."""
        base = f"{self.codename}-{self.repository}-{self.suite}"
        return base if rollback is None else f"{base}-rollback{int(rollback)}"

    @property
    def is_rollback(self):
        return self.rollback is not None

    def __str__(self):
        return self.get(self.rollback)

    def __repr__(self):
        return f"DistStr('{self}')"

    def __eq__(self, other):
        return isinstance(other, DistStr) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))
