"""The status mixin shared by every model that owns data outside the database.

A status model is Removed, Prepared or Active; ``last_checked`` holds either a real check
timestamp or one of four sentinels shown as flags (upstream §2.1):

==========  ====  ======================================================
sentinel    flag  meaning
==========  ====  ======================================================
NONE        ``-`` prepared, never checked
CHANGED     ``*`` configuration changed, must be prepared (synced) again
FAILED      ``x`` last check failed
REACTIVATE  ``A`` activate automatically when the next check succeeds
(a date)    ``C`` checked on that date
==========  ====  ======================================================

Models supply only their own data hooks (``mbd_prepare_data``, ``mbd_sync_data``,
``mbd_check_data``, ``mbd_remove_data``) and their dependencies; the state machine lives here.
"""

import contextlib
import contextvars
import datetime
import logging

from django.db import models, transaction
from django.utils import timezone

from mini_buildd import errors

LOG = logging.getLogger(__name__)


def _sentinel(day):
    return datetime.datetime(1, 1, day, tzinfo=datetime.timezone.utc)


#: The instances checked successfully in the current :func:`check_once` scope, else None.
_CHECKED_ONCE = contextvars.ContextVar("mbd_checked_once", default=None)


@contextlib.contextmanager
def check_once():
    """Within this scope (and threads run in a copy of its context) an instance checked successfully is
    not checked again, neither directly nor as a dependency: one ``setup`` run checks each instance once
    (a Source's Release files, a chroot's apt update) instead of again for every dependant."""
    token = _CHECKED_ONCE.set(set())
    try:
        yield
    finally:
        _CHECKED_ONCE.reset(token)


class StatusError(errors.Error):
    """An action is not possible in the current state, or a hook failed."""


class StatusModel(models.Model):
    """Abstract base: status, last_checked sentinels, and the prepare/check/activate actions."""

    STATUS_REMOVED, STATUS_PREPARED, STATUS_ACTIVE = 0, 1, 2
    STATUS_CHOICES = ((STATUS_REMOVED, "Removed"), (STATUS_PREPARED, "Prepared"), (STATUS_ACTIVE, "Active"))

    CHECK_NONE = _sentinel(1)
    CHECK_CHANGED = _sentinel(2)
    CHECK_FAILED = _sentinel(3)
    CHECK_REACTIVATE = _sentinel(4)
    _FLAGS = {CHECK_NONE: "-", CHECK_CHANGED: "*", CHECK_FAILED: "x", CHECK_REACTIVATE: "A"}

    status = models.IntegerField(choices=STATUS_CHOICES, default=STATUS_REMOVED, editable=False)
    last_checked = models.DateTimeField(default=CHECK_NONE, editable=False)
    status_message = models.TextField(blank=True, default="", editable=False,
                                      help_text="What the last action said (errors say what to fix).")

    #: Dependency failures are fatal (False for Daemon and Repository: only logged).
    mbd_lethal_dependencies = True
    #: Field names that prepare/check may set themselves; editing them does not mark the object changed.
    mbd_volatile_fields = ()

    class Meta:
        abstract = True

    # ------------------------------------------------------------------ hooks (override)
    def mbd_prepare_data(self):
        """Create the associated data (object is Removed)."""

    def mbd_sync_data(self):
        """Update associated data after a configuration change; default: remove and prepare again."""
        self.mbd_remove_data()
        self.mbd_prepare_data()

    def mbd_check_data(self):
        """Verify the associated data; raise on a problem."""

    def mbd_remove_data(self):
        """Delete the associated data (must be idempotent)."""

    def mbd_dependencies(self):
        """Status models this one needs (prepared before, checked/activated with it)."""
        return []

    def mbd_reverse_dependencies(self):
        """Status models that need this one (marked changed when this one changes)."""
        return []

    def mbd_on_activate(self):
        """Called after the object became Active."""

    def mbd_on_deactivate(self):
        """Called after the object left Active."""

    # ------------------------------------------------------------------ state
    @property
    def mbd_key(self):
        return f"{self._meta.verbose_name} '{self}'"

    def mbd_is_removed(self):
        return self.status == self.STATUS_REMOVED

    def mbd_is_prepared(self):
        return self.status >= self.STATUS_PREPARED

    def mbd_is_active(self):
        return self.status == self.STATUS_ACTIVE

    def mbd_is_changed(self):
        return self.last_checked == self.CHECK_CHANGED

    def mbd_is_failed(self):
        return self.last_checked == self.CHECK_FAILED

    def mbd_is_reactivate(self):
        return self.last_checked == self.CHECK_REACTIVATE

    def mbd_is_checked(self):
        return self.last_checked not in self._FLAGS

    def mbd_is_active_or_reactivate(self):
        return self.mbd_is_active() or self.mbd_is_reactivate()

    @property
    def mbd_flag(self):
        return self._FLAGS.get(self.last_checked, "C")

    def mbd_status_display(self):
        """Upstream's display string: ``Status (flag)`` or ``Status (C/timestamp)``."""
        status = self.get_status_display()
        if self.mbd_is_removed():
            return status
        if self.mbd_is_checked():
            return f"{status} (C/{self.last_checked:%Y-%m-%d %H:%M})"
        return f"{status} ({self.mbd_flag})"

    def _set(self, status=None, last_checked=None, message=None):
        fields = []
        if status is not None:
            self.status = status
            fields.append("status")
        if last_checked is not None:
            self.last_checked = last_checked
            fields.append("last_checked")
        if message is not None:
            self.status_message = message
            fields.append("status_message")
        # Bypass change detection: status fields are never configuration.
        models.Model.save(self, update_fields=fields)

    def _refresh(self):
        if self.pk is not None:
            fresh = type(self).objects.filter(pk=self.pk).first()
            if fresh is not None:
                self.status, self.last_checked = fresh.status, fresh.last_checked

    def _on_dependencies(self, action, **kwargs):
        for dep in self.mbd_dependencies():
            try:
                getattr(dep, action)(**kwargs)
            except Exception as e:  # pylint: disable=broad-except  # a dependency's action may fail any way: lethal -> StatusError, else logged
                if self.mbd_lethal_dependencies:
                    raise StatusError(f"{self.mbd_key}: dependency {dep.mbd_key}: {e}") from e
                LOG.warning("%s: non-lethal dependency %s failed to %s: %s", self.mbd_key, dep.mbd_key, action, e)

    # ------------------------------------------------------------------ actions
    def mbd_prepare(self):
        """Removed → Prepared (create data); Changed → sync data; otherwise nothing."""
        self._refresh()
        if self.mbd_is_removed():
            self._on_dependencies("mbd_prepare")
            try:
                self.mbd_prepare_data()
            except Exception as e:  # pylint: disable=broad-except  # hook boundary: any failure of the hook is this action's StatusError
                try:
                    self.mbd_remove_data()
                except Exception as cleanup:  # pylint: disable=broad-except  # clean-up that must not raise (the prepare error is reported)
                    LOG.error("%s: cleanup after failed prepare failed: %s", self.mbd_key, cleanup)
                self._set(message=f"Prepare failed: {e}")
                raise StatusError(f"{self.mbd_key}: prepare failed: {e}") from e
            self._set(self.STATUS_PREPARED, self.CHECK_NONE, "Prepared.")
            LOG.info("%s: prepared.", self.mbd_key)
        elif self.mbd_is_changed():
            self._on_dependencies("mbd_prepare")
            try:
                self.mbd_sync_data()
            except Exception as e:  # pylint: disable=broad-except  # hook boundary: any failure of the hook is this action's StatusError
                self._set(message=f"Sync failed: {e}")
                raise StatusError(f"{self.mbd_key}: sync failed: {e}") from e
            self._set(self.STATUS_PREPARED, self.CHECK_NONE, "Synced.")
            LOG.info("%s: synced.", self.mbd_key)

    def mbd_check(self, force=True):
        """Check the data; success sets a timestamp (and reactivates), failure sets FAILED."""
        self._refresh()
        if self.mbd_is_removed():
            raise StatusError(f"{self.mbd_key}: removed, prepare first.")
        if self.mbd_is_changed():
            raise StatusError(f"{self.mbd_key}: changed, prepare (sync) first.")
        if not force and self.mbd_is_checked():
            return
        checked_once = _CHECKED_ONCE.get()
        if checked_once is not None and (self._meta.label, self.pk) in checked_once and self.mbd_is_checked():
            return
        was_active = self.mbd_is_active()
        will_be_active = was_active or self.mbd_is_reactivate()
        try:
            self._on_dependencies("mbd_check", force=force)
            if will_be_active and self.mbd_lethal_dependencies:
                for dep in self.mbd_dependencies():
                    dep._refresh()  # pylint: disable=protected-access
                    if not dep.mbd_is_active_or_reactivate():
                        raise StatusError(f"dependency {dep.mbd_key} is not active")
            self.mbd_check_data()
        except Exception as e:  # pylint: disable=broad-except  # hook boundary: any failure of the check is this action's StatusError
            if was_active:
                self._set(self.STATUS_PREPARED, self.CHECK_REACTIVATE, f"Check failed: {e}")
                self.mbd_on_deactivate()
            else:
                self._set(last_checked=self.CHECK_FAILED, message=f"Check failed: {e}")
            LOG.warning("%s: check failed: %s", self.mbd_key, e)
            raise StatusError(f"{self.mbd_key}: check failed: {e}") from e
        if self.mbd_is_reactivate():
            self._set(self.STATUS_ACTIVE, timezone.now(), "Checked, reactivated.")
            self.mbd_on_activate()
        else:
            self._set(last_checked=timezone.now(), message="Checked.")
        if checked_once is not None:
            checked_once.add((self._meta.label, self.pk))
        LOG.info("%s: checked.", self.mbd_key)

    def mbd_activate(self):
        """Prepared and checked → Active (dependencies first); unchecked/failed → auto-activate flag."""
        self._refresh()
        if self.mbd_is_active():
            return
        if self.mbd_is_prepared() and self.mbd_is_checked():
            self._on_dependencies("mbd_activate")
            self._set(self.STATUS_ACTIVE, message="Activated.")
            self.mbd_on_activate()
            LOG.info("%s: activated.", self.mbd_key)
        elif self.mbd_is_prepared() and self.last_checked in (self.CHECK_NONE, self.CHECK_FAILED, self.CHECK_REACTIVATE):
            self._set(last_checked=self.CHECK_REACTIVATE, message="Will activate when the next check succeeds.")
            LOG.info("%s: will activate when the next check succeeds.", self.mbd_key)
        else:
            raise StatusError(f"{self.mbd_key}: prepare and check first.")

    def mbd_deactivate(self):
        """Active → Prepared; a pending auto-activation becomes a plain failure flag."""
        self._refresh()
        was_active = self.mbd_is_active()
        if self.status > self.STATUS_PREPARED:
            self._set(self.STATUS_PREPARED, message="Deactivated.")
        if self.mbd_is_reactivate():
            self._set(last_checked=self.CHECK_FAILED)
        if was_active:
            self.mbd_on_deactivate()
            LOG.info("%s: deactivated.", self.mbd_key)

    def mbd_remove(self):
        """Drop the associated data; Removed with no check flag."""
        self._refresh()
        if self.mbd_is_active():
            self.mbd_deactivate()
        self.mbd_remove_data()
        self._set(self.STATUS_REMOVED, self.CHECK_NONE, "Removed.")
        LOG.info("%s: removed.", self.mbd_key)

    def mbd_pc(self):
        self.mbd_prepare()
        self.mbd_check(force=True)

    def mbd_pca(self):
        self.mbd_prepare()
        self.mbd_check(force=True)
        self.mbd_activate()

    ACTIONS = ("prepare", "check", "pc", "activate", "pca", "deactivate", "remove")

    def mbd_run(self, action):
        """Run one of :data:`ACTIONS` by name."""
        if action not in self.ACTIONS:
            raise StatusError(f"Unknown status action '{action}'")
        getattr(self, f"mbd_{action}")()

    def mbd_run_reported(self, action):
        """Run ``action`` for a user interface: ``(True, status display)`` or ``(False, why)``; never raises."""
        try:
            self.mbd_run(action)
            return True, self.mbd_status_display()
        except Exception as e:  # pylint: disable=broad-except  # the actions log their own failures
            return False, str(e)

    # ------------------------------------------------------------------ change tracking
    def mbd_config_values(self):
        """The configuration field values (what the administrator edits)."""
        skip = {"status", "last_checked", "status_message", *self.mbd_volatile_fields}
        return {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields
                if f.attname not in skip and not f.primary_key}

    def mbd_set_changed(self):
        """Mark configuration as changed: an active object is deactivated; all need preparing again."""
        self._refresh()
        if self.mbd_is_removed():
            return
        was_active = self.mbd_is_active()
        self._set(self.STATUS_PREPARED, self.CHECK_CHANGED, "Configuration changed: prepare (sync) again.")
        if was_active:
            self.mbd_on_deactivate()
        for rdep in self.mbd_reverse_dependencies():
            rdep.mbd_set_changed()

    def save(self, *args, **kwargs):  # pylint: disable=signature-differs
        changed = False
        if self.pk is not None and not kwargs.get("update_fields"):
            stored = type(self).objects.filter(pk=self.pk).first()
            if stored is not None:
                changed = stored.mbd_config_values() != self.mbd_config_values()
                self.status, self.last_checked = stored.status, stored.last_checked
        with transaction.atomic():
            super().save(*args, **kwargs)
            if changed:
                self.mbd_set_changed()
