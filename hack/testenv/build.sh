#!/usr/bin/env bash
# Builds the test cluster's etcd and kube-apiserver from the pinned Go modules
# in hack/testenv/{etcd,kube} into the cache folder (default .cache/testenv,
# or $FARO_TESTENV_ASSETS). A binary is rebuilt only when it is missing or its
# module's go.mod/go.sum (the pins) changed, so a second run costs seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${FARO_TESTENV_ASSETS:-$root/.cache/testenv}
mkdir -p "$out"

build() { # name module-dir package [ldflags]
	local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
	local pin
	pin=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -d' ' -f1)
	if [[ -x $out/$name && -f $out/$name.pin && $(<"$out/$name.pin") == "$pin" ]]; then
		return
	fi
	echo "testenv: building $name from $pkg (the first build takes minutes)"
	local start=$SECONDS
	(cd "$dir" && go build -ldflags "$ldflags" -o "$out/$name.tmp" "$pkg")
	mv "$out/$name.tmp" "$out/$name"
	echo "$pin" >"$out/$name.pin"
	echo "testenv: built $name in $((SECONDS - start))s"
}

build etcd "$here/etcd" go.etcd.io/etcd/server/v3
kver=$(grep -E '^require k8s.io/kubernetes ' "$here/kube/go.mod" | cut -d' ' -f3)
kminor=$(echo "$kver" | cut -d. -f2)
build kube-apiserver "$here/kube" k8s.io/kubernetes/cmd/kube-apiserver \
	"-X k8s.io/component-base/version.gitVersion=$kver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kminor"
