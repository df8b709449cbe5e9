#!/usr/bin/env bash
# Make sure an image the project starts from is in the local Docker engine.
#   scripts/ensure_image.sh IMAGE       a Dockerfile's ARG BASE_IMAGE default, or postgres:15
#   scripts/ensure_image.sh --mirror 127.0.0.1:5000 IMAGE linux/arm64 [PLATFORM...]
# Order: already local -> docker pull -> build a stand-in from Debian bookworm packages.
# Everyone with a registry gets the official image. The stand-ins (debootstrap minbase + the
# packages of the image they stand in for, imported under the same name) exist for machines
# with no container registry:
# - python:3.11-slim-bookworm, python:3.11-bookworm: Debian's Python 3.11 at /usr/bin/python3;
#   the Dockerfiles work on both it and the real image.
# - postgres:15: Debian's PostgreSQL 15 with the official image's environment contract
#   (scripts/stand-ins/postgres-entrypoint.sh): POSTGRES_USER, POSTGRES_PASSWORD[_FILE],
#   POSTGRES_DB, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, data in
#   PGDATA=/var/lib/postgresql/data, port 5432, STOPSIGNAL SIGINT. Not covered:
#   /docker-entrypoint-initdb.d scripts, the en_US.UTF-8 default locale (C.UTF-8).
# The Debian mirror is read from this host's apt configuration at run time.
# --mirror (python images only): the engine's image store holds one platform per tag, so a
# stand-in is also published to that loopback registry (dockerd's registry mirror for
# docker.io, see scripts/setup.sh) as one index of this host's image and a stand-in for each
# PLATFORM, built with debootstrap --arch under qemu-user emulation (linux/arm64: about 4 min)
# and kept in the registry for later runs (ci/src/onnx_serving/base_images.py). A pulled image
# is never mirrored: the registry it came from serves its other platforms.
set -euo pipefail
# shellcheck source=lib/usage.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib/usage.sh"
help_first "$@"

usage="usage: ensure_image.sh [--mirror REGISTRY] IMAGE [PLATFORM...]"
registry=
if [[ ${1:-} == --mirror ]]; then
    registry=${2:?$usage}
    shift 2
fi
image=${1:?$usage}
shift
platforms=("$@")
[[ -z $registry || ${#platforms[@]} -gt 0 ]] ||
    { echo "ensure_image: --mirror needs the platforms to publish, e.g. linux/arm64" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
ci_module() { PYTHONPATH="$here/../ci/src" python3 -m "$@"; }
docker_bin=$(ci_module onnx_serving.docker_cli) ||
    { echo "ensure_image: no docker client found (install docker.io, or set DOCKER=...)" >&2; exit 1; }

# Sets $packages, $minutes and $debian (the Debian mirror), or says why no stand-in can be
# built. Debian bookworm ships Python 3.11 and PostgreSQL 15: only those tags can be stood in
# for. The full python image is buildpack-deps:bookworm (curl, scm and the build tools and
# -dev libraries of docker-library/buildpack-deps) + Python with pip.
stand_in_packages() {
    case $image in
        python:3.11-slim-bookworm*) packages=python3,python3-venv,ca-certificates minutes="1.5 to 3" ;;
        python:3.11-bookworm*)
            packages=python3,python3-venv,python3-pip,python3-dev,ca-certificates,curl,gnupg,netbase,sq,wget
            packages+=,git,mercurial,openssh-client,subversion,procps,autoconf,automake,bzip2
            packages+=,default-libmysqlclient-dev,dpkg-dev,file,g++,gcc,imagemagick,libbz2-dev
            packages+=,libc6-dev,libcurl4-openssl-dev,libdb-dev,libevent-dev,libffi-dev,libgdbm-dev
            packages+=,libglib2.0-dev,libgmp-dev,libjpeg-dev,libkrb5-dev,liblzma-dev,libmagickcore-dev
            packages+=,libmagickwand-dev,libmaxminddb-dev,libncurses5-dev,libncursesw5-dev,libpng-dev
            packages+=,libpq-dev,libreadline-dev,libsqlite3-dev,libssl-dev,libtool,libwebp-dev
            packages+=,libxml2-dev,libxslt1-dev,libyaml-dev,make,patch,unzip,xz-utils,zlib1g-dev
            minutes="4 to 6" ;;
        postgres:15 | postgres:15-bookworm | postgres:15.*) packages=postgresql-15 minutes=2 ;;
        *)
            echo "ensure_image: cannot pull '$image' and can only build a stand-in for" \
                 "python:3.11-slim-bookworm, python:3.11-bookworm or postgres:15" \
                 "(Debian bookworm ships Python 3.11 and PostgreSQL 15)" >&2
            exit 1 ;;
    esac
    for tool in debootstrap tar; do
        command -v "$tool" >/dev/null || { echo "ensure_image: '$tool' is needed to build a stand-in for $image (apt-get install $tool)" >&2; exit 1; }
    done
    [[ $(id -u) == 0 ]] || { echo "ensure_image: building the stand-in needs root (debootstrap)" >&2; exit 1; }
    # debian_mirror: the Debian mirror of this host's apt sources (DEBIAN_MIRROR, APT_SOURCES_DIR).
    # shellcheck source=scripts/debian_mirror.sh
    source "$here/debian_mirror.sh"
    debian=${DEBIAN_MIRROR:-$(debian_mirror)}
    [[ -n $debian ]] || { echo "ensure_image: no Debian mirror found in $apt_dir/sources.list*; set DEBIAN_MIRROR=<url>" >&2; exit 1; }
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
    # Like the official images: no apt lists or caches; the slim and postgres ones also
    # without docs, man pages or locales.
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
           "$r"/var/log/* "$r"/tmp/* "$r"/root/.cache
    if [[ $image != python:3.11-bookworm* ]]; then
        rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/*
    fi
    if [[ $image == postgres:* ]]; then
        # Debian's package made a "main" cluster; the entrypoint makes its own in PGDATA.
        rm -rf "$r"/var/lib/postgresql/15 "$r"/etc/postgresql/15
        mkdir -p "$r"/var/lib/postgresql/data "$r"/usr/local/bin
        install -m 755 "$here/stand-ins/postgres-entrypoint.sh" "$r"/usr/local/bin/docker-entrypoint.sh
    else
        find "$r/usr/lib/python3.11" -name '__pycache__' -type d -prune -exec rm -rf {} +
        # The official images have `python` (and `pip`), and their Python is not marked as
        # managed by the OS package manager: `pip install` into it works, as it does there.
        ln -sf python3 "$r/usr/bin/python"
        if [[ -x $r/usr/bin/pip3 ]]; then ln -sf pip3 "$r/usr/bin/pip"; fi
        rm -f "$r"/usr/lib/python3.11/EXTERNALLY-MANAGED
    fi
    tar --numeric-owner -C "$r" -c .
    rm -rf "$r"
}

# import_stand_in TAR: the image under its name, with the official image's configuration.
import_stand_in() {
    local tar=$1 comment="stand-in for $image: debootstrap bookworm minbase + $packages"
    if [[ $image != postgres:* ]]; then
        "$docker_bin" import -m "$comment" \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' "$tar" "$image" >/dev/null
        return
    fi
    # `docker import` cannot set STOPSIGNAL: a metadata-only build adds it (nothing is pulled).
    local rootfs_tag="ensure-image-rootfs:$$"
    "$docker_bin" import -m "$comment" \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' -c 'ENV PGDATA=/var/lib/postgresql/data' \
        -c 'VOLUME /var/lib/postgresql/data' -c 'EXPOSE 5432' \
        -c 'ENTRYPOINT ["docker-entrypoint.sh"]' -c 'CMD ["postgres"]' \
        "$tar" "$rootfs_tag" >/dev/null
    printf 'FROM %s\nSTOPSIGNAL SIGINT\nLABEL org.opencontainers.image.description="stand-in for %s"\n' \
        "$rootfs_tag" "$image" | DOCKER_BUILDKIT=0 "$docker_bin" build -q -t "$image" - \
        >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
    "$docker_bin" rmi "$rootfs_tag" >/dev/null
}

if ! "$docker_bin" image inspect "$image" >/dev/null 2>&1; then
    echo "ensure_image: $image is not local; trying docker pull" >&2
    if ! timeout 60 "$docker_bin" pull -q "$image" >/dev/null 2>&1; then
        stand_in_packages
        echo "ensure_image: building a stand-in for $image with debootstrap ($minutes min)" >&2
        work=$(mktemp -d /tmp/ensure-image.XXXXXX)
        # Into a file first: a tar cut short (debootstrap failed) is never imported.
        stand_in "$(dpkg --print-architecture 2>/dev/null || echo amd64)" >"$work/rootfs.tar"
        import_stand_in "$work/rootfs.tar"
        rm -f "$work/rootfs.tar"
        echo "ensure_image: built stand-in $image" >&2
    fi
fi
[[ -n $registry ]] || exit 0

# ---- --mirror: the registry's index holds this host's image and each PLATFORM --------------
[[ $image == python:* ]] ||
    { echo "ensure_image: --mirror publishes base images (python:*), not $image" >&2; exit 2; }
built=()
todo=$(ci_module onnx_serving.base_images missing "$registry" "$image" "${platforms[@]}")
while read -r platform arch; do
    [[ -n $platform ]] || continue
    stand_in_packages
    case $arch in arm64) handler=qemu-aarch64 ;; amd64) handler=qemu-x86_64 ;; *) handler=qemu-$arch ;; esac
    [[ -e /proc/sys/fs/binfmt_misc/$handler ]] || {
        echo "ensure_image: building $image for $platform needs qemu-user emulation" \
             "(no binfmt handler $handler: apt-get install qemu-user-static binfmt-support," \
             "or ./scripts/setup.sh test)" >&2
        exit 1; }
    echo "ensure_image: building a $platform stand-in for $image under emulation (about 4 min)" >&2
    [[ -n $work ]] || work=$(mktemp -d /tmp/ensure-image.XXXXXX)
    stand_in "$arch" >"$work/$arch.tar"
    built+=("$platform=$work/$arch.tar")
done <<<"$todo"
ci_module onnx_serving.base_images publish "$registry" "$image" "${built[@]}" >&2
