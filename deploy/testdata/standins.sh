#!/usr/bin/env bash
# standins.sh: local stand-ins for the two base images of the repository's
# Dockerfile, tagged with exactly the names it uses, for machines that reach
# no image registry (the Docker tests in deploy/ call it):
#
#   golang:1.26                                a Debian rootfs (debootstrap
#       --variant=minbase, with ca-certificates and tzdata) and this machine's
#       Go in /usr/local/go; GOPATH=/go, GOTOOLCHAIN=local, WORKDIR /go, as in
#       the real image. It has a shell and update-ca-certificates, which the
#       Dockerfile and `modgate client-env --shell dockerfile` use.
#   gcr.io/distroless/static-debian12:nonroot  no shell: CA roots, tzdata,
#       /etc/passwd and /etc/group with root, nobody and nonroot (65532),
#       /home/nonroot, /tmp; USER 65532, as in the real image.
#
#   bash deploy/testdata/standins.sh [docker client]
#
# Both are cached. The rootfs tarball is kept in $MODGATE_STANDIN_CACHE
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/modgate/standins) under the hash
# of its recipe, so only the first run pays for debootstrap. The images stay
# in Docker's image store with the label org.modgate.standin=<hash of this
# script, the recipe and the Go version>; an image of that label is kept as
# it is. A tag held by an image without the label (the real one, pulled from
# a registry) is left alone and used.
#
# The golang stand-in also trusts this machine's CA roots
# ($MODGATE_STANDIN_ROOTS, default /etc/ssl/certs/ca-certificates.crt): its
# `go mod download` of the Dockerfile's dependencies goes to the Go module
# proxy the way this machine reaches it.
#
# Environment: GOROOT (default: go env GOROOT), MODGATE_DEBIAN_SUITE
# (default: this machine's VERSION_CODENAME), MODGATE_DEBIAN_MIRROR (default
# http://deb.debian.org/debian).
set -euo pipefail

docker=${1:-docker}
golang_tag=golang:1.26
distroless_tag=gcr.io/distroless/static-debian12:nonroot

goroot=${GOROOT:-$(go env GOROOT)}
goversion=$("$goroot/bin/go" env GOVERSION)
suite=${MODGATE_DEBIAN_SUITE:-$(. /etc/os-release && echo "$VERSION_CODENAME")}
mirror=${MODGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${MODGATE_STANDIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modgate/standins}

recipe="debootstrap --variant=minbase --include=ca-certificates,tzdata $suite $mirror"
rootfs_key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
machine_roots=${MODGATE_STANDIN_ROOTS:-/etc/ssl/certs/ca-certificates.crt}
image_key=$({ cat "${BASH_SOURCE[0]}" "$machine_roots"; printf '%s\n%s\n' "$recipe" "$goversion"; } |
	sha256sum | cut -c1-16)
rootfs_tar=$cache/rootfs-$rootfs_key.tar

log() { printf 'standins: %s\n' "$*" >&2; }

# label TAG prints the tag's org.modgate.standin label, "none" for an image
# without it, or nothing when no image has the tag.
label() {
	"$docker" image inspect --format '{{with index .Config.Labels "org.modgate.standin"}}{{.}}{{else}}none{{end}}' "$1" 2>/dev/null || true
}

# needed TAG says whether TAG must be (re)built.
needed() {
	local l
	l=$(label "$1")
	case "$l" in
	"$image_key") log "$1: stand-in $image_key is current"; return 1 ;;
	none) log "$1: an image without the stand-in label holds the tag: using it"; return 1 ;;
	esac
	return 0
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# rootfs makes the cached rootfs tarball when it is missing.
rootfs() {
	[ -s "$rootfs_tar" ] && return
	command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
	log "debootstrap: $recipe (once: the tarball is cached as $rootfs_tar)"
	mkdir -p "$cache"
	local dir=$work/debootstrap
	if ! debootstrap --variant=minbase --include=ca-certificates,tzdata "$suite" "$dir" "$mirror" >"$work/debootstrap.log" 2>&1; then
		tail -n 30 "$work/debootstrap.log" >&2
		exit 1
	fi
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
	tar --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -C "$dir" -cf "$rootfs_tar.tmp" .
	mv "$rootfs_tar.tmp" "$rootfs_tar"
	rm -rf "$dir"
}

build_golang() {
	rootfs
	log "$golang_tag: $recipe + $goversion from $goroot"
	local dir=$work/golang
	mkdir -p "$dir"
	tar --numeric-owner -C "$dir" -xf "$rootfs_tar"
	mkdir -p "$dir/usr/local/go" "$dir/go/bin" "$dir/go/src"
	cp -a "$goroot/." "$dir/usr/local/go/"
	chmod 1777 "$dir/go"
	# The machine's CA roots, kept through update-ca-certificates, so that the
	# image build's `go mod download` reaches the Go module proxy as the
	# machine does (as a company's golang image carries its company's roots).
	cp "$machine_roots" "$dir/usr/local/share/ca-certificates/machine-roots.crt"
	chroot "$dir" update-ca-certificates >/dev/null 2>&1
	tar --numeric-owner -C "$dir" -c . | "$docker" import \
		--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV GOLANG_VERSION='"${goversion#go}" \
		--change 'ENV GOTOOLCHAIN=local' \
		--change 'ENV GOPATH=/go' \
		--change 'WORKDIR /go' \
		--change 'CMD ["bash"]' \
		--change "LABEL org.modgate.standin=$image_key" \
		- "$golang_tag" >/dev/null
	rm -rf "$dir"
}

build_distroless() {
	rootfs
	log "$distroless_tag: CA roots and tzdata from the rootfs, user nonroot (65532)"
	local dir=$work/distroless src=$work/src
	mkdir -p "$src" "$dir/etc/ssl/certs" "$dir/usr/share" "$dir/home/nonroot" "$dir/root" "$dir/tmp"
	tar --numeric-owner -C "$src" -xf "$rootfs_tar" ./etc/ssl/certs/ca-certificates.crt ./usr/share/zoneinfo ./usr/lib/os-release
	cp "$src/etc/ssl/certs/ca-certificates.crt" "$dir/etc/ssl/certs/"
	cp -a "$src/usr/share/zoneinfo" "$dir/usr/share/"
	cp "$src/usr/lib/os-release" "$dir/etc/os-release"
	cat >"$dir/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/sbin/nologin
		nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
		nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
	EOF
	cat >"$dir/etc/group" <<-'EOF'
		root:x:0:
		nobody:x:65534:
		tty:x:5:
		staff:x:50:
		nonroot:x:65532:
	EOF
	echo 'hosts: files dns' >"$dir/etc/nsswitch.conf"
	chown 65532:65532 "$dir/home/nonroot"
	chmod 0700 "$dir/home/nonroot" "$dir/root"
	chmod 1777 "$dir/tmp"
	tar --numeric-owner -C "$dir" -c . | "$docker" import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
		--change 'USER 65532' \
		--change 'WORKDIR /home/nonroot' \
		--change "LABEL org.modgate.standin=$image_key" \
		- "$distroless_tag" >/dev/null
	rm -rf "$dir" "$src"
}

if needed "$golang_tag"; then
	build_golang
fi
if needed "$distroless_tag"; then
	build_distroless
fi
