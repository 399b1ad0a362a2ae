# shellcheck shell=sh
mbd_install eatmydata
mbd_lib=$(find /usr/lib /lib -name 'libeatmydata.so*' \( -type f -o -type l \) 2>/dev/null | sort | head -n 1)
if [ -z "${mbd_lib}" ]; then
	echo "MINI_BUILDD: eatmydata: libeatmydata not found, not preloading" >&2
elif ! grep -q -F "${mbd_lib}" /etc/ld.so.preload 2>/dev/null; then
	echo "${mbd_lib}" >>/etc/ld.so.preload
	echo "MINI_BUILDD: eatmydata: Preloading ${mbd_lib} via /etc/ld.so.preload"
fi
