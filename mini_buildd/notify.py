"""Notification mails for events (upstream §5.4): who gets one, and building and sending them.

:func:`recipients` computes the recipients, each with the reason, from the models at the time of
the event:

- the Daemon's ``notify`` addresses;
- the Repository's ``notify`` addresses (the repository of the event's distribution);
- ``changed_by``, if the repository has ``notify_changed_by`` (or the event has no repository),
  and only if it matches the Daemon's ``allow_emails_to`` regex;
- ``maintainer``, if the repository has ``notify_maintainer`` (same regex);
- active users subscribed to the package and/or distribution (empty = any; the distribution of a
  subscription may be a meta-distribution, mapped like uploads are).

Each address once (the :class:`Mailer` de-duplicates); errors there are logged, never raised, so a
broken model never stops an event.

:class:`Mailer` builds the mails (:func:`summary`) and sends them by SMTP (:func:`parse_smtp_url`);
the event hub (:class:`mini_buildd.events.Events`) runs it for each event in a background thread.
"""

import collections
import email.message
import email.utils
import json
import logging
import re
import smtplib

from mini_buildd.events import ARCH_TYPES, Type

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
    from mini_buildd.models import Daemon, Repository, Subscription
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
        meta_map = Repository.mbd_meta_distribution_map()
        for sub in Subscription.objects.filter(subscriber__is_active=True).select_related("subscriber"):
            if sub.subscriber.email and _subscription_matches(sub, event.source, event.distribution, meta_map):
                result.append((sub.subscriber.email, f"you subscribed to: {sub}"))
    except Exception as e:  # pylint: disable=broad-except  # mail job boundary: a broken model never stops an event (partial recipients)
        LOG.error("Computing notification recipients for %s failed: %s", event, e)
    return result


# ---------------------------------------------------------------------- mail
SmtpUrl = collections.namedtuple("SmtpUrl", "user password ssl host port")

_SMTP_URL_RE = re.compile(r"^(?:(?P<user>[^:]*):(?P<password>.*)@)?(?P<scheme>smtp|ssmtp)://"
                          r"(?P<host>\[[^\]]+\]|[^:/@\[\]]+)(?::(?P<port>[0-9]+))?/?$")


def parse_smtp_url(url):
    """``[USER]:[PASSWORD]@smtp|ssmtp://HOST:PORT`` -> :class:`SmtpUrl`.

    The credentials part is optional; empty user means no login. Default ports: 25 (smtp), 465
    (ssmtp = SMTP over TLS). Raises ``ValueError`` on anything else.
    """
    match = _SMTP_URL_RE.match(url.strip())
    if not match:
        raise ValueError(f"Bad SMTP URL (want '[USER]:[PASSWORD]@smtp|ssmtp://HOST:PORT'): {url!r}")
    ssl = match["scheme"] == "ssmtp"
    host = match["host"].strip("[]")
    return SmtpUrl(user=match["user"] or "", password=match["password"] or "", ssl=ssl,
                   host=host, port=int(match["port"]) if match["port"] else (465 if ssl else 25))


def _links(event, events_url):
    """(label, URL) pairs worth clicking for ``event``."""
    extra = event.extra
    links = []
    if extra.get("changes") and events_url:
        # A builder keeps the buildrequest of a running build in its builds dir.
        base = events_url.replace("/events-dir/", "/builds-dir/") if event.type == Type.BUILDING else events_url
        links.append(("Changes", base + extra["changes"]))

    def logs(info, arch):
        if event.type in (Type.BUILDING, Type.PACKAGING) and info.get("buildlog_building"):
            links.append((f"Live build log ({arch})", info["buildlog_building"]))
        elif info.get("buildlog_installed"):
            links.append((f"Build log ({arch})", info["buildlog_installed"]))

    if event.type in ARCH_TYPES:
        logs(extra, extra.get("architecture", "?"))
    for group in ("buildrequests", "buildresults"):
        for arch, info in sorted((extra.get(group) or {}).items()):
            if isinstance(info, dict):
                logs(info, arch)
    return links


def summary(event, events_url=None):
    """Plain text summary of ``event`` (mail body without signature)."""
    extra = event.extra
    lines = [event.one_liner(), ""]
    fields = [("Type", event.type.value), ("Distribution", event.distribution), ("Source", event.source),
              ("Version", event.version), ("Time", event.timestamp.isoformat(timespec="seconds")),
              ("Architecture", extra.get("architecture")), ("Changed-By", extra.get("changed_by")),
              ("Originally-Changed-By", extra.get("originally_changed_by")
               if extra.get("originally_changed_by") != extra.get("changed_by") else None),
              ("Maintainer", extra.get("maintainer")), ("Builder", extra.get("builder") if event.type in ARCH_TYPES else None),
              ("Sbuild status", extra.get("sbuild_status"))]
    for group in ("buildresults",):
        for arch, info in sorted((extra.get(group) or {}).items()):
            if isinstance(info, dict) and info.get("sbuild_status"):
                fields.append((f"Build {arch}", info["sbuild_status"]))
    error = extra.get("error")
    if error:
        fields.append(("Error", (error.get("detail") or error.get("title")) if isinstance(error, dict) else str(error)))
    width = max(len(label) for label, value in fields if value)
    lines += [f"{label + ':':<{width + 1}} {value}" for label, value in fields if value]

    links = _links(event, events_url)
    if links:
        lines += ["", "Links:"] + [f"  {label}: {url}" for label, url in links]
    auto_ports = extra.get("auto_ports")
    if auto_ports:
        lines += ["", "Automatic ports:"] + [f"  {target}: {result}" for target, result in sorted(auto_ports.items())]
    return "\n".join(lines) + "\n"


class Mailer:
    """Notification mails for events, sent by SMTP (upstream §5.4).

    ``recipients(event)`` returns the addresses to notify (computed by the caller from the
    models), each a string (``addr`` or ``Name <addr>``) or a pair ``(address, reason)``; every
    address is mailed once, with the first reason given for it. One mail per distinct reason.
    ``sender`` is the From address (Daemon ``email_address``), ``http_url`` the instance's base
    URL (for links to files in the events directory). Instances are callable: ``mailer(event)``.
    """

    def __init__(self, smtp_url, identity, recipients, sender, http_url=None, timeout=60):  # pylint: disable=redefined-outer-name
        self.smtp = parse_smtp_url(smtp_url)
        self.identity = identity
        self.recipients = recipients
        self.sender = sender
        self.http_url = http_url.rstrip("/") if http_url else None
        self.timeout = timeout

    def __call__(self, event):
        return self.send(event)

    @property
    def events_url(self):
        return f"{self.http_url}/mini_buildd/events-dir/" if self.http_url else None

    def subject(self, event):
        return f"[mini-buildd-{self.identity}] {event.one_liner()}"

    def groups(self, event):
        """``{reason: [address, ...]}`` for ``event``, each address (case-insensitively) once."""
        seen, groups = set(), {}
        for item in self.recipients(event) or []:
            address, reason = (item, None) if isinstance(item, str) else (item[0], item[1])
            _name, addr = email.utils.parseaddr(address)
            if not addr or "@" not in addr or addr.lower() in seen:
                if not addr or "@" not in addr:
                    LOG.warning("Ignoring bad notification address: %r", address)
                continue
            seen.add(addr.lower())
            groups.setdefault(reason, []).append(address)
        return groups

    def message(self, event, to, reason=None):
        """The mail for ``event`` to the addresses ``to``."""
        msg = email.message.EmailMessage()
        msg["Subject"] = self.subject(event)
        msg["From"] = self.sender
        msg["To"] = ", ".join(to)
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = email.utils.make_msgid(domain=email.utils.parseaddr(self.sender)[1].partition("@")[2] or None)
        msg["X-Mini-Buildd-Event"] = event.type.value
        signature = f"mini-buildd-{self.identity}" + (f" <{self.http_url}/>" if self.http_url else "")
        body = summary(event, self.events_url) + "\n-- \n" + signature + "\n"
        if reason:
            body += f"You get this mail because: {reason}\n"
        msg.set_content(body)
        msg.add_attachment(json.dumps(event.to_json(), indent=2).encode("utf-8"),
                           maintype="application", subtype="json", filename=event.file_name())
        return msg

    def _connect(self):
        if self.smtp.ssl:
            conn = smtplib.SMTP_SSL(self.smtp.host, self.smtp.port, timeout=self.timeout)
        else:
            conn = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout)
            if self.smtp.user:
                conn.ehlo()
                if conn.has_extn("starttls"):
                    conn.starttls()
                    conn.ehlo()
        if self.smtp.user:
            conn.login(self.smtp.user, self.smtp.password)
        return conn

    def send(self, event):
        """Send the mails for ``event``; return the addresses mailed. SMTP errors are raised."""
        groups = self.groups(event)
        if not groups:
            LOG.debug("No notification recipients for: %s", event.one_liner())
            return []
        sent = []
        conn = self._connect()
        try:
            for reason, to in groups.items():
                msg = self.message(event, to, reason)
                conn.send_message(msg, from_addr=email.utils.parseaddr(self.sender)[1] or self.sender,
                                  to_addrs=[email.utils.parseaddr(a)[1] for a in to])
                sent += to
        finally:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()
        LOG.info("Notification mail '%s' sent to: %s", self.subject(event), ", ".join(sent))
        return sent
