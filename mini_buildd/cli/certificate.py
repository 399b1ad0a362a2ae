"""``mini-buildd-self-signed-certificate create|show|remove`` (owns: this command): the instance's
self-signed TLS key and certificate for HTTPS and FTPS endpoints (run as root).

The files are ``/etc/ssl/mini-buildd/private/mini-buildd.key`` and
``/etc/ssl/mini-buildd/certs/mini-buildd.crt`` (:data:`mini_buildd.config.SSL_DIR`); ``--dir`` or
``MINI_BUILDD_SSL_DIR`` puts the same layout below another directory (tests). The openssl work
is :mod:`mini_buildd.tools.tls`.
"""

import argparse
import os
import sys

from mini_buildd import __version__, config
from mini_buildd.tools import tls

PROG = "mini-buildd-self-signed-certificate"
ENV_DIR = "MINI_BUILDD_SSL_DIR"


def parser():
    """The command line parser of mini-buildd-self-signed-certificate."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Create, show or remove the self-signed TLS certificate of a mini-buildd instance "
                    f"(key {config.SSL_KEY}, certificate {config.SSL_CERT}).",
        epilog="Then run the daemon with --http-endpoint ssl:port=8066:privateKey=KEY:certKey=CERT (HTTPS), and "
               "setup --ftp-endpoint ssl:port=8067:privateKey=KEY:certKey=CERT for FTPS incoming. The common name "
               "must be the host name clients use (the daemon's --hostname).")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--dir", default=os.environ.get(ENV_DIR) or None, metavar="DIR",
                   help=f"use DIR/private/mini-buildd.key and DIR/certs/mini-buildd.crt instead of {config.SSL_DIR} "
                        f"(default: ${ENV_DIR}, else {config.SSL_DIR})")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    create = sub.add_parser("create", help="make a new key and self-signed certificate",
                            description="Make a new RSA key and a self-signed certificate (CN and subjectAltName = "
                                        "the host name or address; key mode 0640, group mini-buildd if it exists).")
    create.add_argument("--cn", default=None, metavar="CN",
                        help="common name: the instance's host name or IP address (default: this host's FQDN)")
    create.add_argument("--days", type=int, default=tls.DEFAULT_DAYS, help="validity in days (default: %(default)s)")
    create.add_argument("--force", action="store_true", help="replace an existing key and certificate")
    sub.add_parser("show", aliases=["status"], help="print subject, subject alternative names, expiry and fingerprint",
                   description="Print the certificate's subject, subject alternative names, expiry and SHA-256 fingerprint.")
    sub.add_parser("remove", help="remove key and certificate", description="Remove the key and the certificate.")
    return p


def _show(cert, key):
    i = tls.info(cert)
    print(f"certificate: {cert}")
    print(f"key:         {key}{'' if os.path.exists(key) else ' (missing)'}")
    print(f"subject:     {i['subject']}")
    print(f"alt names:   {', '.join(i['sans']) or '(none)'}")
    print(f"expires:     {i['not_after']}{' (EXPIRED)' if i['expired'] else ''}")
    print(f"sha256:      {i['sha256_fingerprint']}")
    return 1 if i["expired"] else 0


def main(argv=None):
    """Command line: create, show or remove the certificate; exit status."""
    args = parser().parse_args(argv)
    cert, key = config.ssl_files(args.dir)
    try:
        if args.command == "create":
            if args.days < 1:
                raise tls.TlsError("--days must be at least 1.")
            cn = args.cn or config.default_fqdn()
            tls.create(cert, key, cn, days=args.days, force=args.force)
            print(f"Created {key} and {cert} (CN {cn}).")
            _show(cert, key)
            print(f"HTTPS endpoint: ssl:port=8066:privateKey={key}:certKey={cert}")
            return 0
        if args.command in ("show", "status"):
            return _show(cert, key)
        for path in tls.remove(cert, key):
            print(f"Removed {path}.")
        return 0
    except (tls.TlsError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
