# shellcheck shell=sh
set -e
export DEBIAN_FRONTEND=noninteractive
missing=""
# shellcheck disable=SC2043  # @PACKAGES@: the shell-quoted package names (filled in by sbuild.py)
for p in @PACKAGES@; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -n "$missing" ] || exit 0
echo "Installing:$missing"
apt-get -q -o Acquire::Languages=none update
# shellcheck disable=SC2086  # missing is a list of packages
apt-get -q -y --no-install-recommends -o Dpkg::Use-Pty=false -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install $missing
apt-get clean
