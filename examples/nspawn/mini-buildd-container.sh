#!/bin/sh
# Create a systemd-nspawn container that runs a mini-buildd instance (run as root on the host).
#
#   mini-buildd-container.sh NAME CODENAME ARCHIVE_URL DEB_DIR
#   e.g.: mini-buildd-container.sh mbd bookworm http://archive.example.org/debian ./debs
#
# NAME         container (machine) name; the system goes to /var/lib/machines/NAME
# CODENAME     bookworm or trixie
# ARCHIVE_URL  a Debian archive (take the one of your /etc/apt/sources.list)
# DEB_DIR      directory with the mini-buildd .deb files ("make deb" puts them into ..)
#
# Needs debootstrap and systemd-container on the host. The container shares the host's network
# (ports 8066 HTTP and 8067 FTP must be free on the host) and gets the capabilities schroot needs
# to mount file systems: run trusted builds only, as on a host. Start/stop it with
# "machinectl start|stop NAME", get a shell with "machinectl shell NAME".
set -eu

[ $# -eq 4 ] || { echo "usage: $0 NAME CODENAME ARCHIVE_URL DEB_DIR" >&2; exit 2; }
name="$1"
codename="$2"
archive="$3"
debs="$4"

case "$name" in
	""|*[!a-z0-9-]*) echo "$0: NAME: use lower-case letters, digits and '-'" >&2; exit 2;;
esac
case "$codename" in
	bookworm|trixie) ;;
	*) echo "$0: CODENAME: bookworm or trixie" >&2; exit 2;;
esac
ls "$debs"/mini-buildd_*.deb "$debs"/python3-mini-buildd_*.deb >/dev/null

root="/var/lib/machines/${name}"
[ ! -e "$root" ] || { echo "$0: $root exists already" >&2; exit 1; }

# 1. A minimal Debian system with systemd.
debootstrap --include=systemd,systemd-sysv,dbus,ca-certificates "$codename" "$root" "$archive"
echo "$name" >"$root/etc/hostname"

# 2. The mini-buildd packages and their dependencies, installed inside the container.
mkdir -p "$root/root/debs"
cp "$debs"/*.deb "$root/root/debs/"
systemd-nspawn --quiet -D "$root" --pipe sh -c \
	'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y /root/debs/*.deb && rm -rf /root/debs'

# 3. Container settings: host network, and what schroot needs to mount in the container.
mkdir -p /etc/systemd/nspawn
cat >"/etc/systemd/nspawn/${name}.nspawn" <<NSPAWN
[Exec]
Boot=yes
Capability=CAP_SYS_ADMIN CAP_MKNOD

[Network]
VirtualEthernet=no
NSPAWN

# 4. Start it; the instance answers on http://HOST:8066/ once booted.
machinectl start "$name"
echo "Container $name started. Set the admin password inside it:"
echo "  machinectl shell $name /bin/sh -c 'systemctl stop mini-buildd; sudo -u mini-buildd mini-buildd --set-admin-password-file -; systemctl start mini-buildd'"
