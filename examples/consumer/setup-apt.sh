#!/bin/sh
# Set up APT on a consumer host for one mini-buildd instance: its archive key and its sources.
#
#   setup-apt.sh URL [SOURCES_LIST_ARGUMENTS...]
#   e.g.: setup-apt.sh http://mbd.example.org:8066 codenames=bookworm suites=stable
#
# Writes (as root; below $DESTDIR if set, e.g. for a container or a test):
#   /etc/apt/keyrings/mini-buildd-IDENTITY.gpg        the instance key (binary keyring)
#   /etc/apt/sources.list.d/mini-buildd-IDENTITY.list  its APT lines, each "signed-by" that key
# Then run "apt-get update". Needs curl, gpg and python3.
#
# The data come from the anonymous API calls "status", "pub_key" and "sources_list" (see the
# manual, chapter "Using the repositories"). Extra NAME=VALUE arguments go to sources_list.
set -eu

[ $# -ge 1 ] || { echo "usage: $0 URL [NAME=VALUE...]" >&2; exit 2; }
url="${1%/}"
shift
destdir="${DESTDIR:-}"

api() {
	# api CALL [NAME=VALUE...]: the call's plain text output
	call="$1"
	shift
	set -- "output=plain" "$@"
	query=""
	for arg in "$@"; do
		query="${query}${query:+&}${arg}"
	done
	curl --fail --silent --show-error "${url}/mini_buildd/api/${call}/?${query}"
}

identity=$(curl --fail --silent --show-error "${url}/mini_buildd/api/status/?output=json" |
	/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["identity"])')
case "$identity" in
	""|*[!A-Za-z0-9.-]*) echo "$0: unexpected instance identity '$identity'" >&2; exit 1;;
esac

keyring="/etc/apt/keyrings/mini-buildd-${identity}.gpg"
list="/etc/apt/sources.list.d/mini-buildd-${identity}.list"
mkdir -p "${destdir}/etc/apt/keyrings" "${destdir}/etc/apt/sources.list.d"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
api pub_key >"$tmp/key.asc"
gpg --batch --quiet --homedir "$tmp" --dearmor <"$tmp/key.asc" >"$tmp/key.gpg"
install -m 0644 "$tmp/key.gpg" "${destdir}${keyring}"

api sources_list "options=signed-by=${keyring}" "$@" >"$tmp/list"
{
	echo "# mini-buildd instance ${identity} at ${url} (written by setup-apt.sh)"
	cat "$tmp/list"
} >"$tmp/list.new"
install -m 0644 "$tmp/list.new" "${destdir}${list}"

echo "Wrote ${destdir}${keyring} and ${destdir}${list}; now run: apt-get update"
