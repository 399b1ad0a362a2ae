# Shared shell functions of the autopkgtests in debian/tests (sourced, not run).
# shellcheck shell=sh

MBD_USER="mini-buildd"
MBD_LOG="${AUTOPKGTEST_ARTIFACTS:-${AUTOPKGTEST_TMP:-/tmp}}/mini-buildd-daemon.log"
MBD_PID=""

# Start the daemon as mini-buildd.service does: as user mini-buildd, with the options of
# /etc/default/mini-buildd. systemd when it runs, else by hand (containers without systemd).
mbd_start()
{
	if [ -d /run/systemd/system ]; then
		systemctl restart mini-buildd.service
		return 0
	fi
	MINI_BUILDD_OPTIONS=""
	# shellcheck source=/dev/null
	. /etc/default/mini-buildd
	# shellcheck disable=SC2086  # split like systemd does ($MINI_BUILDD_OPTIONS in ExecStart)
	(cd / && exec setsid runuser -u "${MBD_USER}" -- /usr/sbin/mini-buildd ${MINI_BUILDD_OPTIONS}) >>"${MBD_LOG}" 2>&1 &
	MBD_PID=$!
}

mbd_stop()
{
	if [ -d /run/systemd/system ]; then
		systemctl stop mini-buildd.service
	elif [ -n "${MBD_PID}" ]; then
		kill -TERM "${MBD_PID}" 2>/dev/null || true
		i=0
		while kill -0 "${MBD_PID}" 2>/dev/null && [ "${i}" -lt 120 ]; do
			sleep 1
			i=$((i + 1))
		done
		MBD_PID=""
	fi
}

# Wait until the status call answers on URL $1; print its JSON.
mbd_wait_status()
{
	i=0
	while [ "${i}" -lt 120 ]; do
		if curl -fsS "${1}/mini_buildd/api/status/?output=json" 2>/dev/null; then
			return 0
		fi
		sleep 1
		i=$((i + 1))
	done
	echo "mini-buildd did not answer on ${1}; daemon output:" >&2
	cat "${MBD_LOG}" >&2 2>/dev/null || journalctl -u mini-buildd.service --no-pager >&2 || true
	return 1
}

mbd_fail()
{
	echo "FAIL: $*" >&2
	mbd_stop
	exit 1
}
