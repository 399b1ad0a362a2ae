"""Endpoints and URLs: twisted server/client endpoint strings, the URLs they stand for, and small
HTTP client helpers for talking to other instances.
"""

import logging
import urllib.parse

from mini_buildd import errors

LOG = logging.getLogger(__name__)


class EndpointError(errors.BadRequest, ValueError):
    """A malformed endpoint description."""


def _split(desc):
    """Split a twisted endpoint description into (type, args, kwargs) honouring '\\:' escapes."""
    parts, cur, i = [], "", 0
    while i < len(desc):
        c = desc[i]
        if c == "\\" and i + 1 < len(desc):
            cur += desc[i + 1]
            i += 2
            continue
        if c == ":":
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    kind, args, kwargs = parts[0], [], {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            kwargs[k] = v
        else:
            args.append(p)
    return kind, args, kwargs


class ServerEndpoint:
    """A twisted server endpoint string (``tcp6:port=8066``, ``ssl:port=8066:privateKey=K:certKey=C``)."""

    TYPES = ("tcp", "tcp6", "ssl", "unix")

    def __init__(self, desc, protocol="http"):
        self.desc = desc
        self.protocol = protocol
        self.kind, args, self.options = _split(desc)
        if self.kind not in self.TYPES:
            raise EndpointError(f"Unsupported endpoint type '{self.kind}' in '{desc}' (use one of {', '.join(self.TYPES)}).")
        if self.kind != "unix":
            port = self.options.get("port", args[0] if args else None)
            if port is None or not str(port).isdigit() or not 0 <= int(port) <= 65535:
                raise EndpointError(f"Endpoint '{desc}' needs a valid port (e.g. '{self.kind}:port=8066').")
            self.port = int(port)
        if self.kind == "ssl" and not ("privateKey" in self.options and "certKey" in self.options):
            raise EndpointError(f"SSL endpoint '{desc}' needs privateKey=FILE and certKey=FILE.")

    @property
    def is_ssl(self):
        return self.kind == "ssl"

    @property
    def scheme(self):
        return f"{self.protocol}s" if self.is_ssl else self.protocol

    def url(self, hostname):
        host = f"[{hostname}]" if ":" in hostname and not hostname.startswith("[") else hostname
        return f"{self.scheme}://{host}:{self.port}"

    def with_port(self, port):
        """Same endpoint, other port (FTP default = HTTP port + 1)."""
        opts = dict(self.options, port=str(port))
        return ServerEndpoint(":".join([self.kind] + [f"{k}={v}" for k, v in opts.items()]), self.protocol)

    def __str__(self):
        return self.desc


def client_url(endpoint_or_url):
    """Turn a twisted client endpoint (``tcp:host=H:port=P``, ``tls:…``) or URL into an http(s) URL."""
    if "://" in endpoint_or_url:
        return endpoint_or_url.rstrip("/")
    kind, args, kwargs = _split(endpoint_or_url)
    if kind not in ("tcp", "tls", "tcp6"):
        raise EndpointError(f"Unsupported client endpoint '{endpoint_or_url}' (use tcp:host=H:port=P, tls:… or a URL).")
    host = kwargs.get("host", args[0] if args else None)
    port = kwargs.get("port", args[1] if len(args) > 1 else None)
    if not host or not port:
        raise EndpointError(f"Client endpoint '{endpoint_or_url}' needs host and port.")
    scheme = "https" if kind == "tls" else "http"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def url_host_port(url):
    parsed = urllib.parse.urlsplit(url)
    return parsed.hostname, parsed.port


def fetch_api(endpoint, call, timeout=10, **args):
    """GET an anonymous API call of another instance; return the JSON result."""
    import requests  # pylint: disable=import-outside-toplevel
    url = f"{client_url(endpoint)}/mini_buildd/api/{call}/"
    response = requests.get(url, params={**args, "output": "json"}, timeout=timeout)
    response.raise_for_status()
    return response.json()
