"""Which receiver addresses a user's webhook may reach (mini_buildd.webhook_addresses): internal
addresses (loopback, private, link-local, CGNAT, cloud metadata, multicast, IPv4-mapped IPv6 of
those) refused unless an administrator allows the network; administrators' webhooks unlimited;
the allowed networks from the environment; a connection goes to the address that was checked."""

import ipaddress

import pytest

from mini_buildd import webhook_addresses as wa


@pytest.mark.parametrize("address", ["127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "fd00::1",
                                     "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::"])
def test_internal(address):
    assert wa.is_internal(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_public(address):
    assert not wa.is_internal(address)


def test_users_refused_admins_and_allowed_nets_pass():
    with pytest.raises(wa.InternalAddress, match="internal address 169.254.169.254"):
        wa.check_addresses("metadata", ["169.254.169.254"])
    # One internal address among public ones is enough to refuse (the connection could go there).
    with pytest.raises(wa.InternalAddress, match="10.0.0.5"):
        wa.check_addresses("mixed", ["8.8.8.8", "10.0.0.5"])
    assert wa.check_addresses("metadata", ["169.254.169.254"], privileged=True) == "169.254.169.254"
    nets = wa.parse_nets("10.0.0.0/8, 192.168.7.7")
    assert wa.check_addresses("ci", ["10.3.3.3"], allowed_nets=nets) == "10.3.3.3"
    assert wa.check_addresses("ci", ["192.168.7.7"], allowed_nets=nets) == "192.168.7.7"
    with pytest.raises(wa.InternalAddress):
        wa.check_addresses("ci", ["192.168.7.8"], allowed_nets=nets)
    assert wa.check_addresses("public", ["8.8.8.8"]) == "8.8.8.8"
    with pytest.raises(OSError):
        wa.check_addresses("nothing", [])


def test_allowed_nets_from_environment(monkeypatch):
    monkeypatch.delenv(wa.ALLOW_NETS_ENV, raising=False)
    assert not wa.allowed_nets_from_environment()
    monkeypatch.setenv(wa.ALLOW_NETS_ENV, "127.0.0.0/8,fd00::/8")
    assert wa.allowed_nets_from_environment() == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    monkeypatch.setenv(wa.ALLOW_NETS_ENV, "127.0.0.0/8,not-a-net")
    assert not wa.allowed_nets_from_environment()  # a bad value opens nothing
    with pytest.raises(ValueError, match="not-a-net"):
        wa.parse_nets("not-a-net")


def test_connection_is_pinned_to_the_checked_address(monkeypatch):
    """DNS rebinding: the host is resolved once; the connection object keeps that address."""
    answers = iter([["8.8.4.4"], ["127.0.0.1"]])
    monkeypatch.setattr(wa, "resolve", lambda host, port: next(answers))
    conn = wa.connection("https", "hooks.example", None, 5)
    assert (conn.host, conn.port, conn.mbd_address) == ("hooks.example", 443, "8.8.4.4")
    with pytest.raises(wa.InternalAddress):
        wa.connection("http", "hooks.example", 8080, 5)
