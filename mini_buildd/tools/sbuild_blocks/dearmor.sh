# shellcheck shell=sh
mbd_dearmor()
{
	mbd_dearmor_dir=$(mktemp -d)
	awk -v dir="${mbd_dearmor_dir}" '
		/^-----BEGIN PGP/ {inblock=1; body=0; n++; next}
		/^-----END PGP/ {inblock=0; next}
		inblock && !body && /^[[:space:]]*$/ {body=1; next}
		inblock && body && !/^=/ {print > (dir "/" n)}' "$1"
	# shellcheck disable=SC2012  # the dir holds only the numbered files written by awk above
	for mbd_block in $(ls "${mbd_dearmor_dir}" | sort -n); do
		base64 -d "${mbd_dearmor_dir}/${mbd_block}"
	done
	rm -rf "${mbd_dearmor_dir}"
}
