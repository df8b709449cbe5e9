#!/usr/bin/env bash
# Make sure the base image the Dockerfiles start FROM is in the local Docker engine.
#   scripts/ensure_base_image.sh IMAGE        (the Dockerfiles' ARG BASE_IMAGE default)
# Order: already local -> docker pull -> build a stand-in from Debian packages.
# The stand-in (debootstrap minbase + the packages of the image it stands in for, imported
# under the same name) exists for machines with no container registry; its Python is
# /usr/bin/python3 (Debian 3.11.x), and the Dockerfiles work on both it and the real image.
# The Debian mirror is read from this host's apt configuration at run time.
set -euo pipefail

image=${1:?usage: ensure_base_image.sh IMAGE}
docker_bin=$(PYTHONPATH="$(dirname "$0")/../ci/src" python3 -m onnx_serving.docker_cli) ||
    { echo "ensure_base_image: no docker client found (install docker.io, or set DOCKER=...)" >&2; exit 1; }

if "$docker_bin" image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi

echo "ensure_base_image: $image is not local; trying docker pull" >&2
if timeout 60 "$docker_bin" pull -q "$image" >/dev/null 2>&1; then
    exit 0
fi

# The stand-in is Debian bookworm's Python, so only bookworm python tags make sense: the slim
# image (minbase + python3), or the full one, which is buildpack-deps:bookworm (curl, scm and
# the build tools and -dev libraries of docker-library/buildpack-deps) + Python with pip.
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
mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
[[ -n $mirror ]] || { echo "ensure_base_image: no Debian mirror found in $apt_dir/sources.list*; set DEBIAN_MIRROR=<url>" >&2; exit 1; }

root=$(mktemp -d /tmp/ensure-base-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "ensure_base_image: building a stand-in for $image with debootstrap (1.5 to 6 min)" >&2
debootstrap --variant=minbase --include="$packages" \
    bookworm "$root/rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 || {
    tail -20 "$root/debootstrap.log" >&2; exit 1; }

# Like the official images (the slim one without docs, man pages or locales): no apt lists
# or caches.
r=$root/rootfs
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
       "$r"/var/log/* "$r"/tmp/* "$r"/root/.cache
if [[ $image == python:3.11-slim-bookworm* ]]; then
    rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/*
fi
find "$r/usr/lib/python3.11" -name '__pycache__' -type d -prune -exec rm -rf {} +
# The official images have `python` (and `pip`), and their Python is not marked as managed by
# the OS package manager: `pip install` into it works, as it does there.
ln -sf python3 "$r/usr/bin/python"
[[ -x $r/usr/bin/pip3 ]] && ln -sf pip3 "$r/usr/bin/pip"
rm -f "$r"/usr/lib/python3.11/EXTERNALLY-MANAGED

tar --numeric-owner -C "$r" -c . | "$docker_bin" import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["python3"]' \
    -m "stand-in for $image: debootstrap bookworm minbase + $packages" \
    - "$image" >/dev/null
echo "ensure_base_image: built stand-in $image" >&2
