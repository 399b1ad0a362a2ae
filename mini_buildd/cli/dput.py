"""``mini-buildd-dput [-c CONFIG] [-f] [-C] [--ca-file FILE] TARGET CHANGES``: upload like mini-buildd does, over FTP
or FTPS (plain dput has no FTPS), optionally waiting for the package's INSTALLED/FAILED event."""

import argparse
import configparser
import datetime
import os
import ssl
import sys

from debian import deb822

from mini_buildd import __version__
from mini_buildd.pipeline import ftpd


def parser():
    """The command line parser of mini-buildd-dput."""
    p = argparse.ArgumentParser(prog="mini-buildd-dput", description="Upload a changes file to a mini-buildd instance.")
    p.add_argument("--version", action="version", version=f"mini-buildd-dput {__version__}")
    p.add_argument("-c", "--config", default=os.path.expanduser("~/.dput.cf"), help="dput config (default: %(default)s)")
    p.add_argument("-f", "--force", action="store_true", help="upload even if a .upload marker says it was done")
    p.add_argument("-C", "--check", action="store_true",
                   help="wait for the INSTALLED or FAILED event of this upload; exit non-zero on FAILED")
    p.add_argument("--ca-file", default=None, metavar="FILE",
                   help="verify the instance's TLS certificate (ftps upload, https for --check) against FILE, e.g. its "
                        "self-signed certificate; default: ftps encrypts without verifying (the upload is signed), "
                        "https verifies against the system's CAs")
    p.add_argument("--http", default=None, help="instance HTTP URL for --check (default: derived from the FTP host, port - 1)")
    p.add_argument("target", help="dput target, e.g. mini-buildd-IDENTITY")
    p.add_argument("changes", help="the .changes file")
    return p


def target_url(config_path, target):
    """The FTP(S) URL of a target of a dput config file."""
    cfg = configparser.ConfigParser(interpolation=None)
    if not cfg.read(config_path):
        raise ValueError(f"Can't read dput config '{config_path}'.")
    if not cfg.has_section(target):
        raise ValueError(f"No target '{target}' in {config_path} (targets: {', '.join(cfg.sections())}).")
    method = cfg.get(target, "method", fallback="ftp")
    if method not in ("ftp", "ftps"):
        raise ValueError(f"Target '{target}': method '{method}' is not supported (use ftp or ftps).")
    fqdn = cfg.get(target, "fqdn")
    incoming = cfg.get(target, "incoming", fallback="/incoming")
    return f"{method}://{fqdn}{incoming}"


def main(argv=None):
    """Command line: upload a changes file (and optionally wait for its result); exit status."""
    args = parser().parse_args(argv)
    try:
        url = target_url(args.config, args.target)
        with open(args.changes, encoding="utf-8") as f:
            changes = deb822.Changes(f)
        started = datetime.datetime.now(datetime.timezone.utc).isoformat()
        tls_context = None
        if args.ca_file:
            if not os.access(args.ca_file, os.R_OK):
                raise ValueError(f"Can't read CA file '{args.ca_file}'.")
            tls_context = ssl.create_default_context(cafile=args.ca_file)
            os.environ["REQUESTS_CA_BUNDLE"] = args.ca_file  # --check's https requests
        ftpd.upload(args.changes, url, force=args.force, tls_context=tls_context)
        print(f"Uploaded {os.path.basename(args.changes)} to {url}.")
        if not args.check:
            return 0
        from mini_buildd.cli import events  # pylint: disable=import-outside-toplevel
        http = args.http
        if http is None:
            scheme, _, rest = url.partition("://")
            host_port = rest.split("/")[0]
            host, _, port = host_port.rpartition(":")
            http = f"{'https' if scheme == 'ftps' else 'http'}://{host}:{int(port) - 1}"

        def on_event(event):
            if event["source"] != changes["Source"] or event["version"] != changes["Version"]:
                return None
            if event["type"] == "INSTALLED":
                print(f"INSTALLED in {event['distribution']}.")
                return 0
            if event["type"] in ("FAILED", "REJECTED"):
                detail = event.get("extra", {}).get("error", {}).get("detail", "")
                print(f"{event['type']}: {detail}", file=sys.stderr)
                return 1
            return None
        return events.follow(http, started, on_event)
    except (ValueError, OSError, ftpd.FtpError, ConnectionError) as e:
        print(f"mini-buildd-dput: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
