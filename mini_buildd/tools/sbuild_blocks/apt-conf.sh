# shellcheck shell=sh
# An APT configuration block (block name and apt.conf text filled in by sbuild.py).
mbd_apt_conf @NAME@ '@APT_CONF@'
