#!/usr/bin/env bash
# Make sure the base image the Dockerfiles start FROM is in the local Docker engine.
#   scripts/ensure_base_image.sh IMAGE        (the Dockerfiles' ARG BASE_IMAGE default)
#   scripts/ensure_base_image.sh --mirror 127.0.0.1:5000 IMAGE linux/arm64 [PLATFORM...]
# Order: already local -> docker pull -> build a stand-in from Debian packages.
# The stand-in (debootstrap minbase + the packages of the image it stands in for, imported
# under the same name) exists for machines with no container registry; its Python is
# /usr/bin/python3 (Debian 3.11.x), and the Dockerfiles work on both it and the real image.
# The Debian mirror is read from this host's apt configuration at run time.
# --mirror: the engine's image store holds one platform per tag, so a stand-in is also
# published to that loopback registry (dockerd's registry mirror for docker.io, see
# scripts/setup.sh) as one index of this host's image and a stand-in for each PLATFORM,
# built with debootstrap --arch under qemu-user emulation (linux/arm64: about 4 min) and
# kept in the registry for later runs (ci/src/onnx_serving/base_images.py). A pulled image is
# never mirrored: the registry it came from serves its other platforms.
set -euo pipefail

registry=
if [[ ${1:-} == --mirror ]]; then
    registry=${2:?usage: ensure_base_image.sh --mirror REGISTRY IMAGE PLATFORM...}
    shift 2
fi
image=${1:?usage: ensure_base_image.sh [--mirror REGISTRY] IMAGE [PLATFORM...]}
shift
platforms=("$@")
[[ -z $registry || ${#platforms[@]} -gt 0 ]] ||
    { echo "ensure_base_image: --mirror needs the platforms to publish, e.g. linux/arm64" >&2; exit 2; }
src=$(cd "$(dirname "$0")/../ci/src" && pwd)
ci_module() { PYTHONPATH="$src" python3 -m "$@"; }
docker_bin=$(ci_module onnx_serving.docker_cli) ||
    { echo "ensure_base_image: no docker client found (install docker.io, or set DOCKER=...)" >&2; exit 1; }

# The stand-in is Debian bookworm's Python, so only bookworm python tags make sense: the slim
# image (minbase + python3), or the full one, which is buildpack-deps:bookworm (curl, scm and
# the build tools and -dev libraries of docker-library/buildpack-deps) + Python with pip.
# Sets $packages and $debian (the Debian mirror), or says why no stand-in can be built.
stand_in_packages() {
    case $image in
        python:3.11-slim-bookworm*) packages=python3,python3-venv,ca-certificates ;;
        python:3.11-bookworm*)
            packages=python3,python3-venv,python3-pip,python3-dev,ca-certificates,curl,gnupg,netbase,sq,wget
            packages+=,git,mercurial,openssh-client,subversion,procps,autoconf,automake,bzip2
            packages+=,default-libmysqlclient-dev,dpkg-dev,file,g++,gcc,imagemagick,libbz2-dev
            packages+=,libc6-dev,libcurl4-openssl-dev,libdb-dev,libevent-dev,libffi-dev,libgdbm-dev
            packages+=,libglib2.0-dev,libgmp-dev,libjpeg-dev,libkrb5-dev,liblzma-dev,libmagickcore-dev
            packages+=,libmagickwand-dev,libmaxminddb-dev,libncurses5-dev,libncursesw5-dev,libpng-dev
            packages+=,libpq-dev,libreadline-dev,libsqlite3-dev,libssl-dev,libtool,libwebp-dev
            packages+=,libxml2-dev,libxslt1-dev,libyaml-dev,make,patch,unzip,xz-utils,zlib1g-dev ;;
        *)
            echo "ensure_base_image: cannot pull '$image' and can only build a stand-in for" \
                 "python:3.11-slim-bookworm or python:3.11-bookworm (Debian bookworm ships Python 3.11)" >&2
            exit 1 ;;
    esac
    for tool in debootstrap tar; do
        command -v "$tool" >/dev/null || { echo "ensure_base_image: '$tool' is needed to build a stand-in for $image (apt-get install $tool)" >&2; exit 1; }
    done
    [[ $(id -u) == 0 ]] || { echo "ensure_base_image: building the stand-in needs root (debootstrap)" >&2; exit 1; }
    # debian_mirror: the Debian mirror of this host's apt sources (DEBIAN_MIRROR, APT_SOURCES_DIR).
    # shellcheck source=scripts/debian_mirror.sh
    source "$(dirname "$0")/debian_mirror.sh"
    debian=${DEBIAN_MIRROR:-$(debian_mirror)}
    [[ -n $debian ]] || { echo "ensure_base_image: no Debian mirror found in $apt_dir/sources.list*; set DEBIAN_MIRROR=<url>" >&2; exit 1; }
}

work=
cleanup() { [[ -z $work ]] || rm -rf "$work"; }
trap cleanup EXIT

# stand_in ARCH: the stand-in's root file system as a tar on stdout (debootstrap's log in $work).
stand_in() {
    local arch=$1 r
    r=$work/rootfs-$arch
    debootstrap --arch="$arch" --variant=minbase --include="$packages" \
        bookworm "$r" "$debian" >"$work/debootstrap-$arch.log" 2>&1 || {
        tail -20 "$work/debootstrap-$arch.log" >&2; return 1; }
    # Like the official images (the slim one without docs, man pages or locales): no apt lists
    # or caches.
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
           "$r"/var/log/* "$r"/tmp/* "$r"/root/.cache
    if [[ $image == python:3.11-slim-bookworm* ]]; then
        rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/*
    fi
    find "$r/usr/lib/python3.11" -name '__pycache__' -type d -prune -exec rm -rf {} +
    # The official images have `python` (and `pip`), and their Python is not marked as managed
    # by the OS package manager: `pip install` into it works, as it does there.
    ln -sf python3 "$r/usr/bin/python"
    if [[ -x $r/usr/bin/pip3 ]]; then ln -sf pip3 "$r/usr/bin/pip"; fi
    rm -f "$r"/usr/lib/python3.11/EXTERNALLY-MANAGED
    tar --numeric-owner -C "$r" -c .
    rm -rf "$r"
}

if ! "$docker_bin" image inspect "$image" >/dev/null 2>&1; then
    echo "ensure_base_image: $image is not local; trying docker pull" >&2
    if ! timeout 60 "$docker_bin" pull -q "$image" >/dev/null 2>&1; then
        stand_in_packages
        echo "ensure_base_image: building a stand-in for $image with debootstrap (1.5 to 6 min)" >&2
        work=$(mktemp -d /tmp/ensure-base-image.XXXXXX)
        # Into a file first: a tar cut short (debootstrap failed) is never imported.
        stand_in "$(dpkg --print-architecture 2>/dev/null || echo amd64)" >"$work/rootfs.tar"
        "$docker_bin" import \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV LANG=C.UTF-8' \
            -c 'CMD ["python3"]' \
            -m "stand-in for $image: debootstrap bookworm minbase + $packages" \
            "$work/rootfs.tar" "$image" >/dev/null
        rm -f "$work/rootfs.tar"
        echo "ensure_base_image: built stand-in $image" >&2
    fi
fi
[[ -n $registry ]] || exit 0

# ---- --mirror: the registry's index holds this host's image and each PLATFORM --------------
built=()
todo=$(ci_module onnx_serving.base_images missing "$registry" "$image" "${platforms[@]}")
while read -r platform arch; do
    [[ -n $platform ]] || continue
    stand_in_packages
    case $arch in arm64) handler=qemu-aarch64 ;; amd64) handler=qemu-x86_64 ;; *) handler=qemu-$arch ;; esac
    [[ -e /proc/sys/fs/binfmt_misc/$handler ]] || {
        echo "ensure_base_image: building $image for $platform needs qemu-user emulation" \
             "(no binfmt handler $handler: apt-get install qemu-user-static binfmt-support," \
             "or ./scripts/setup.sh test)" >&2
        exit 1; }
    echo "ensure_base_image: building a $platform stand-in for $image under emulation (about 4 min)" >&2
    [[ -n $work ]] || work=$(mktemp -d /tmp/ensure-base-image.XXXXXX)
    stand_in "$arch" >"$work/$arch.tar"
    built+=("$platform=$work/$arch.tar")
done <<<"$todo"
ci_module onnx_serving.base_images publish "$registry" "$image" "${built[@]}" >&2
