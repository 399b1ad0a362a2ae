# shellcheck shell=sh
if [ -s "${MBD_CONFIG}/apt_keys" ]; then
	apt-key add "${MBD_CONFIG}/apt_keys"
fi
