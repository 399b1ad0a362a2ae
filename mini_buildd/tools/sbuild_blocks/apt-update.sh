# shellcheck shell=sh
mbd_timeout()
{
	if command -v timeout >/dev/null; then timeout "$@"; else shift; "$@"; fi
}

mbd_out=$(mktemp)
mbd_rc_file=$(mktemp)
trap 'rm -f "${mbd_out}" "${mbd_rc_file}"' EXIT
mbd_ok=""
# shellcheck disable=SC2043,SC2086  # @TIMEOUTS@: the list of timeouts (filled in by sbuild.py); MBD_APT_GET is a command with options
for mbd_timeout_s in @TIMEOUTS@; do
	{ mbd_rc=0; mbd_timeout "${mbd_timeout_s}" ${MBD_APT_GET} update 2>&1 || mbd_rc=$?; echo "${mbd_rc}" >"${mbd_rc_file}"; } | tee "${mbd_out}"
	mbd_rc=$(cat "${mbd_rc_file}")
	# apt-get update exits 0 even when indices failed ("Mirror sync in progress?", hash sum mismatch)
	if [ "${mbd_rc}" = "0" ] && ! grep -q -E '^(E: |W: (Failed to fetch|Some index files failed))' "${mbd_out}"; then
		mbd_ok=yes
		break
	fi
	echo "MINI_BUILDD: apt-update: apt-get update failed (exit ${mbd_rc}, timeout ${mbd_timeout_s}s), retrying..."
	sleep 1
done
if [ -z "${mbd_ok}" ]; then
	echo "MINI_BUILDD: apt-update: apt-get update failed, giving up" >&2
	exit 1
fi
apt-cache policy
