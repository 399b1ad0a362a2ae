# shellcheck shell=sh
mbd_https()
{
	grep -q -E '^[[:space:]]*deb(-src)?[[:space:]]+(\[[^]]*\][[:space:]]+)?https://' "${MBD_CONFIG}/apt_sources.list"
}

if [ -s "${MBD_CONFIG}/apt_keys" ]; then
	install -m 0644 "${MBD_CONFIG}/apt_keys" /etc/apt/trusted.gpg.d/mini-buildd-buildrequest.asc
	echo "MINI_BUILDD: apt-setup: Installed APT keys as /etc/apt/trusted.gpg.d/mini-buildd-buildrequest.asc"
fi

if mbd_https; then
	echo "MINI_BUILDD: apt-setup: https sources: making sure APT can use them"
	mbd_https_pkgs=""
	mbd_installed ca-certificates || mbd_https_pkgs="ca-certificates"
	[ -e /usr/lib/apt/methods/https ] || mbd_https_pkgs="${mbd_https_pkgs} apt-transport-https"
	if [ -n "${mbd_https_pkgs}" ]; then
		${MBD_APT_GET} update
		# shellcheck disable=SC2086  # MBD_APT_GET is a command with options, mbd_https_pkgs a list of packages
		${MBD_APT_GET} install ${mbd_https_pkgs}
	fi
	if [ -s "${MBD_CONFIG}/ssl_cert" ]; then
		mkdir -p /usr/local/share/ca-certificates
		install -m 0644 "${MBD_CONFIG}/ssl_cert" /usr/local/share/ca-certificates/mini-buildd-buildrequest.crt
		if command -v update-ca-certificates >/dev/null; then
			update-ca-certificates
		fi
	fi
fi

install -m 0644 "${MBD_CONFIG}/apt_sources.list" /etc/apt/sources.list
install -m 0644 "${MBD_CONFIG}/apt_preferences" /etc/apt/preferences
echo "MINI_BUILDD: apt-setup: /etc/apt/sources.list:"
cat /etc/apt/sources.list
echo "MINI_BUILDD: apt-setup: /etc/apt/preferences:"
cat /etc/apt/preferences
