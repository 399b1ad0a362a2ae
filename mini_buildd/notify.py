"""Who gets a notification mail for an event (upstream §5.4): the recipients, each with the reason, as
:class:`mini_buildd.events.Mailer` wants them. Computed from the models at the time of the event:

- the Daemon's ``notify`` addresses;
- the Repository's ``notify`` addresses (the repository of the event's distribution);
- ``changed_by``, if the repository has ``notify_changed_by`` (or the event has no repository),
  and only if it matches the Daemon's ``allow_emails_to`` regex;
- ``maintainer``, if the repository has ``notify_maintainer`` (same regex);
- active users subscribed to the package and/or distribution (empty = any; the distribution of a
  subscription may be a meta-distribution, mapped like uploads are).

Each address once (the :class:`Mailer` de-duplicates); errors here are logged, never raised, so a
broken model never stops an event.
"""

import email.utils
import logging
import re

LOG = logging.getLogger(__name__)


def _repository_of(distribution):
    # pylint: disable=import-outside-toplevel
    from mini_buildd.archive.operations import ArchiveError, resolve
    try:
        return resolve(distribution)[1].repository
    except (ArchiveError, ValueError, LookupError):
        return None


def _subscription_matches(sub, source, distribution, meta_map):
    if sub.package and sub.package != source:
        return False
    if sub.distribution:
        wanted = meta_map.get(sub.distribution, sub.distribution)
        if wanted != distribution:
            return False
    return True


def recipients(event):
    """``[(address, reason), ...]`` for ``event``."""
    # pylint: disable=import-outside-toplevel
    from mini_buildd.models import Daemon, Subscription
    from mini_buildd.pipeline.packager import meta_distribution_map
    result = []
    try:
        daemon = Daemon.get()
        for a in daemon.notify.all():
            result.append((str(a), "you are on the instance's notify list"))
        repository = _repository_of(event.distribution) if event.distribution else None
        if repository is not None:
            for a in repository.notify.all():
                result.append((str(a), f"you are on repository {repository.identity}'s notify list"))
        allow = re.compile(daemon.allow_emails_to)

        def allowed(address):
            return bool(allow.match(email.utils.parseaddr(address)[1]))
        extra = event.extra or {}
        changed_by, maintainer = extra.get("changed_by"), extra.get("maintainer")
        if changed_by and (repository is None or repository.notify_changed_by) and allowed(changed_by):
            result.append((changed_by, "you uploaded this package (Changed-By)"))
        if maintainer and repository is not None and repository.notify_maintainer and allowed(maintainer):
            result.append((maintainer, "you maintain this package"))
        meta_map = meta_distribution_map()
        for sub in Subscription.objects.filter(subscriber__is_active=True).select_related("subscriber"):
            if sub.subscriber.email and _subscription_matches(sub, event.source, event.distribution, meta_map):
                result.append((sub.subscriber.email, f"you subscribed to: {sub}"))
    except Exception as e:  # pylint: disable=broad-except
        LOG.error("Computing notification recipients for %s failed: %s", event, e)
    return result
