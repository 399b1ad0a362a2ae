# shellcheck shell=sh
cat "${MBD_BUILD_DIR}/.sbuildrc"
