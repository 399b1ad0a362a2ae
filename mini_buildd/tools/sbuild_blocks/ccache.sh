# shellcheck shell=sh
mbd_install ccache
