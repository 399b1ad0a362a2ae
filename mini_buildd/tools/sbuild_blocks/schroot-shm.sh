# shellcheck shell=sh
if [ -L /dev/shm ]; then
	rm -f /dev/shm
fi
mkdir -p /dev/shm
if ! grep -q -E '^[^ ]+ /dev/shm ' /proc/mounts; then
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
fi
