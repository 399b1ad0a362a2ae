# shellcheck shell=sh
for mbd_p in sun-java6-bin sun-java6-jre sun-java6-jdk; do
	echo "${mbd_p} shared/accepted-sun-dlj-v1-1 boolean true"
done | debconf-set-selections
