# shellcheck shell=sh
rm -f /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources /etc/apt/trusted.gpg.d/* /etc/apt/trusted.gpg
: >/etc/apt/sources.list
