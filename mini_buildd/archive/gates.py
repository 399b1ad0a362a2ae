"""What may refuse a migration or a removal before it changes a distribution (issue #16), and the
suite reports refreshed after every change.

This module owns the gates :class:`MigrationGate` and :class:`RemovalGate` hand to
:meth:`mini_buildd.archive.operations.RepositoryView.migrate` and ``remove`` (run under the
repository lock, with the planned steps): the installability check of
:mod:`mini_buildd.archive.installability` and, for migrations, the repository's QA-regression
gate (:mod:`mini_buildd.archive.qa_regressions`; off, warn or refuse), and :func:`check_port`, the
installability check of a port's build results before they are installed. A refused change raises a
409 (:class:`~mini_buildd.archive.installability.NotInstallable` or :class:`QARegression`) unless
``force`` (ADMIN) is given; then what was overridden (:attr:`Gate.overridden`) and the warnings
(:attr:`Gate.warnings`) go into the event.
"""

import logging
import os

from debian import deb822

from mini_buildd import dist, errors
from mini_buildd.archive import installability, qa_regressions

LOG = logging.getLogger(__name__)


class QARegression(errors.Conflict):
    """The version to migrate has a QA regression against the target's (the message lists it)."""


class Gate:
    """One gate; after the operation, :attr:`overridden` holds what ``force`` let through and
    :attr:`warnings` what only warns (texts)."""

    def __init__(self, view, source, force=False):
        self.view, self.source, self.force = view, source, bool(force)
        self.overridden, self.warnings = [], []

    def _refuse_or_record(self, message, error=installability.NotInstallable):
        if not self.force:
            raise error(message)
        LOG.warning("Forced despite: %s", message)
        self.overridden.append(message)

    def _distribution(self, diststr):
        return self.view.distribution(dist.DistStr(diststr).codename)


class MigrationGate(Gate):
    """Called with the planned (from, to, version) steps of a migration or rollback restore."""

    def __call__(self, steps):
        current = self.view.reprepro.ls(self.source)
        for src, dst, version in steps:
            distribution = self._distribution(dst)
            candidate = installability.candidate_stanzas(self.view.repository, distribution, src, self.source, version)
            problems = installability.check(distribution, self.view.repository, dst, self.source, candidate)
            if problems:
                self._refuse_or_record(installability.describe(dst, problems))
            old = current.get(dst, [{}])[0].get("version")
            self._qa(dst, old, version)

    def _qa(self, dst, old, version):
        mode = self.view.repository.qa_regression_gate
        if mode == self.view.repository.QA_GATE_OFF or not old or old == version:
            return
        found = qa_regressions.regressions(self.source, old, version)
        if not found:
            return
        message = qa_regressions.describe(self.source, old, version, dst, found)
        if mode == self.view.repository.QA_GATE_REFUSE:
            self._refuse_or_record(message, QARegression)
        else:
            self.warnings.append(message)


class RemovalGate(Gate):
    """Called with the version a removal takes out of ``diststr`` (rollback distributions are not checked)."""

    def __init__(self, view, source, diststr, force=False):
        super().__init__(view, source, force)
        self.diststr = diststr

    def __call__(self, _version):
        if dist.DistStr(self.diststr).rollback is not None:
            return  # rollback distributions are kept for restores, not installed from
        problems = installability.check(self._distribution(self.diststr), self.view.repository, self.diststr, self.source)
        if problems:
            self._refuse_or_record(installability.describe(self.diststr, problems, removal=True))


#: The changelog text of a port (:data:`mini_buildd.pipeline.ports.PORT_MESSAGE`): its uploads are checked like migrations.
PORT_MARK = "Automated port via mini-buildd"


def check_port(view, diststr, source, binary_changes, changes_text):
    """Before a port's build results are installed (``changes_text``: its changelog says it is a port):
    refuse (:class:`~mini_buildd.archive.installability.NotInstallable`) when a built binary can not
    be installed in ``diststr`` or a package there would become uninstallable. Other uploads pass."""
    if PORT_MARK not in (changes_text or ""):
        return
    debs = []
    for path in binary_changes:
        with open(path, encoding="utf-8", errors="replace") as f:
            listed = deb822.Changes(f).get("Files", [])
        debs += [os.path.join(os.path.dirname(path), e["name"]) for e in listed if e["name"].endswith(".deb")]
    distribution = view.distribution(dist.DistStr(diststr).codename)
    problems = installability.check(distribution, view.repository, diststr, source, installability.stanzas_of_debs(debs))
    if problems:
        raise installability.NotInstallable(installability.describe(diststr, problems, what="Installing this port"))


def refresh_reports(view, diststrs):
    """Renew the installability reports of ``diststrs`` (after a change); failures are logged only."""
    for diststr in sorted(set(diststrs)):
        if dist.DistStr(diststr).rollback is not None:
            continue
        try:
            installability.refresh(view.distribution(dist.DistStr(diststr).codename), view.repository, diststr)
        except Exception as e:  # pylint: disable=broad-except  # boundary: a report is optional, the change is done
            LOG.warning("Installability report of %s not renewed: %s", diststr, e)
