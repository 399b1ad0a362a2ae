# shellcheck shell=sh
mbd_asc=/etc/apt/trusted.gpg.d/mini-buildd-buildrequest.asc
[ -s "${mbd_asc}" ] || mbd_asc="${MBD_CONFIG}/apt_keys"
if [ -s "${mbd_asc}" ]; then
	mbd_dearmor "${mbd_asc}" >/etc/apt/trusted.gpg.d/mini-buildd-buildrequest.gpg
	chmod 0644 /etc/apt/trusted.gpg.d/mini-buildd-buildrequest.gpg
	rm -f /etc/apt/trusted.gpg.d/mini-buildd-buildrequest.asc
	echo "MINI_BUILDD: apt-key-binary: Installed dearmored keys as /etc/apt/trusted.gpg.d/mini-buildd-buildrequest.gpg"
fi
