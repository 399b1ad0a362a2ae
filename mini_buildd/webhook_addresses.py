"""Where a webhook may send (issue #17, server-side request forgery): the addresses of a receiver.

This module owns

- which addresses are *internal* (:func:`is_internal`: loopback, private, link-local, carrier-grade
  NAT, multicast, reserved, unspecified; IPv4-mapped IPv6 judged as the IPv4 address) and the
  networks an administrator opens for users anyway (``MINI_BUILDD_WEBHOOK_ALLOW_NETS``, comma-separated
  CIDRs, :func:`allowed_nets_from_environment`),
- resolving a receiver's host once per attempt and checking every address it resolves to
  (:func:`checked_address`): a webhook of a user who is not an administrator may not reach an
  internal address outside the allowed networks,
- connections pinned to that checked address (:func:`connection`), so a host name that resolves to
  an outside address at the check and to an inside one at connect time (DNS rebinding) still only
  reaches the checked address; HTTPS keeps the host name for SNI and certificate checks.

Administrators' webhooks may reach any address (they configure the host anyway).
"""

import http.client
import ipaddress
import logging
import os
import socket
import urllib.parse

from mini_buildd import errors

LOG = logging.getLogger(__name__)

ALLOW_NETS_ENV = "MINI_BUILDD_WEBHOOK_ALLOW_NETS"

#: Shared address space (RFC 6598) is not "private" to Python's ipaddress before 3.11.4, but is internal.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class InternalAddress(errors.BadRequest, ValueError):
    """A receiver resolves to an internal address the webhook may not reach (a ``ValueError`` too:
    what URL checks raise)."""


def parse_nets(text):
    """``"10.0.0.0/8, 192.168.1.5"`` -> tuple of networks; ``ValueError`` naming a bad entry."""
    nets = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError as e:
            raise ValueError(f"{ALLOW_NETS_ENV}: '{item}' is not a network ({e})") from e
    return tuple(nets)


def allowed_nets_from_environment():
    """The networks of ``MINI_BUILDD_WEBHOOK_ALLOW_NETS`` (none if unset; a bad value is logged and ignored)."""
    try:
        return parse_nets(os.environ.get(ALLOW_NETS_ENV, ""))
    except ValueError as e:
        LOG.error("%s (no network allowed)", e)
        return ()


def is_internal(address):
    """Whether ``address`` (text or ipaddress object) is not a public unicast address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or (ip.version == 4 and ip in _CGNAT) or not ip.is_global)


def _allowed(ip, allowed_nets):
    return any(ip.version == net.version and ip in net for net in allowed_nets)


def check_addresses(host, addresses, privileged=False, allowed_nets=()):
    """The first of ``addresses`` (resolved for ``host``) if the webhook may reach all of them;
    else :class:`InternalAddress`. ``privileged``: an administrator's webhook (no limit)."""
    if not addresses:
        raise OSError(f"{host}: no address")
    if not privileged:
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if is_internal(ip) and not _allowed(ip, allowed_nets):
                raise InternalAddress(f"{host} resolves to the internal address {address}: only administrators' webhooks may "
                                      f"reach internal addresses (or an administrator allows the network in {ALLOW_NETS_ENV})")
    return addresses[0]


def resolve(host, port):
    """Every address ``host`` resolves to for a TCP connection to ``port`` (``OSError`` if none)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


def checked_address(host, port, privileged=False, allowed_nets=()):
    """Resolve ``host`` once and check what it resolves to (:func:`check_addresses`); the address to connect to."""
    return check_addresses(host, resolve(host, port), privileged=privileged, allowed_nets=allowed_nets)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``address`` with ``Host:`` of the URL's host."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.mbd_address = address

    def connect(self):
        self.sock = socket.create_connection((self.mbd_address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address``; SNI and the certificate check use the URL's host."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.mbd_address = address

    def connect(self):
        sock = socket.create_connection((self.mbd_address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # pylint: disable=no-member  # HTTPSConnection's own


def _port(scheme, port):
    """``port``, or the scheme's default."""
    return port or (443 if scheme.lower() == "https" else 80)


def check_url_host(url, allowed_nets=()):
    """A user's webhook URL at creation: its host must not resolve to an internal address
    (:class:`InternalAddress`); a host that does not resolve now passes (its deliveries fail until
    it does, and each delivery checks again)."""
    parts = urllib.parse.urlsplit(url)
    try:
        addresses = resolve(parts.hostname, _port(parts.scheme, parts.port))
    except OSError:
        return
    check_addresses(parts.hostname, addresses, allowed_nets=allowed_nets)


def connection(scheme, host, port, timeout, privileged=False, allowed_nets=()):
    """An ``http.client`` connection to ``host`` pinned to its checked address (see :func:`checked_address`)."""
    port = _port(scheme, port)
    address = checked_address(host, port, privileged=privileged, allowed_nets=allowed_nets)
    cls = _PinnedHTTPSConnection if scheme.lower() == "https" else _PinnedHTTPConnection
    return cls(host, port, address, timeout)
