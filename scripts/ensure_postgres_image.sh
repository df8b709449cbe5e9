#!/usr/bin/env bash
# Make sure the PostgreSQL image compose.yaml's `db` service runs is in the local Docker engine.
#   scripts/ensure_postgres_image.sh [IMAGE]        (default postgres:15, as compose.yaml)
# Order: already local -> docker pull -> build a stand-in from Debian packages.
# Everyone with a registry gets the official image. The stand-in, for machines with none, is
# debootstrap minbase + Debian bookworm's postgresql-15, imported under the same name, with an
# entrypoint that keeps the official image's environment contract: POSTGRES_USER (default
# postgres), POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (required), POSTGRES_DB (default: the
# user), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), data in
# PGDATA=/var/lib/postgresql/data, server on port 5432 of every interface, STOPSIGNAL SIGINT.
# Not covered: /docker-entrypoint-initdb.d scripts, and the en_US.UTF-8 default locale (C.UTF-8).
# The Debian mirror is read from this host's apt configuration at run time.
set -euo pipefail

image=${1:-postgres:15}
docker_bin=$(PYTHONPATH="$(dirname "$0")/../ci/src" python3 -m onnx_serving.docker_cli) ||
    { echo "ensure_postgres_image: no docker client found (install docker.io, or set DOCKER=...)" >&2; exit 1; }

if "$docker_bin" image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi

echo "ensure_postgres_image: $image is not local; trying docker pull" >&2
if timeout 60 "$docker_bin" pull -q "$image" >/dev/null 2>&1; then
    exit 0
fi

# Debian bookworm ships PostgreSQL 15, so only 15 tags can be stood in for.
if [[ $image != postgres:15 && $image != postgres:15-bookworm && $image != postgres:15.* ]]; then
    echo "ensure_postgres_image: cannot pull '$image' and can only build a stand-in for" \
         "postgres:15 (Debian bookworm ships PostgreSQL 15)" >&2
    exit 1
fi
for tool in debootstrap tar; do
    command -v "$tool" >/dev/null || { echo "ensure_postgres_image: '$tool' is needed to build a stand-in for $image (apt-get install $tool)" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "ensure_postgres_image: building the stand-in needs root (debootstrap)" >&2; exit 1; }

# shellcheck source=scripts/debian_mirror.sh
source "$(dirname "$0")/debian_mirror.sh"
mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
[[ -n $mirror ]] || { echo "ensure_postgres_image: no Debian mirror found in $apt_dir/sources.list*; set DEBIAN_MIRROR=<url>" >&2; exit 1; }

root=$(mktemp -d /tmp/ensure-postgres-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "ensure_postgres_image: building a stand-in for $image with debootstrap (about 2 min)" >&2
debootstrap --variant=minbase --include=postgresql-15 \
    bookworm "$root/rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 || {
    tail -20 "$root/debootstrap.log" >&2; exit 1; }

r=$root/rootfs
# Debian's package made a "main" cluster; the entrypoint makes its own in PGDATA.
rm -rf "$r"/var/lib/postgresql/15 "$r"/etc/postgresql/15
rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
       "$r"/usr/share/locale/* "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* \
       "$r"/var/cache/debconf/*-old "$r"/var/log/* "$r"/tmp/* "$r"/root/.cache
mkdir -p "$r"/var/lib/postgresql/data "$r"/usr/local/bin

cat > "$r"/usr/local/bin/docker-entrypoint.sh <<'ENTRYPOINT'
#!/bin/bash
# Stand-in for the official postgres image's entrypoint (scripts/ensure_postgres_image.sh).
set -euo pipefail

# VAR from VAR, or from the file named by VAR_FILE (not both), else the default.
file_env() {
    local var=$1 file_var="${1}_FILE" default=${2:-}
    if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
        echo "error: both $var and $file_var are set (but are exclusive)" >&2; exit 1
    fi
    local value=$default
    if [[ -n ${!var:-} ]]; then value=${!var}; elif [[ -n ${!file_var:-} ]]; then value=$(<"${!file_var}"); fi
    export "$var=$value"
    unset "$file_var"
}

[[ ${1:-} == -* ]] && set -- postgres "$@"
if [[ ${1:-} == postgres ]]; then
    if [[ $(id -u) == 0 ]]; then
        mkdir -p "$PGDATA" /var/run/postgresql
        find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres {} +
        chmod 700 "$PGDATA"
        chmod 3775 /var/run/postgresql
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
    fi
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [[ ! -s $PGDATA/PG_VERSION ]]; then
        if [[ -z $POSTGRES_PASSWORD && $auth != trust ]]; then
            echo "error: database is uninitialized and superuser password is not specified:" \
                 "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
            exit 1
        fi
        # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of arguments
        initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
            --encoding=UTF8 --locale=C.UTF-8 $POSTGRES_INITDB_ARGS
        printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
        printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
        if [[ $POSTGRES_DB != postgres ]]; then
            # On the socket only: nothing (pg_isready on TCP) sees it before it is ready.
            pg_ctl --wait --silent -o "-c listen_addresses=''" start
            printf 'CREATE DATABASE :"db";\n' |
                psql --quiet -v ON_ERROR_STOP=1 -v db="$POSTGRES_DB" \
                    --username="$POSTGRES_USER" --dbname=postgres
            pg_ctl --wait --silent -m fast stop
        fi
        echo "PostgreSQL init process complete; ready for start up."
    fi
    unset POSTGRES_PASSWORD
fi
exec "$@"
ENTRYPOINT
chmod 755 "$r"/usr/local/bin/docker-entrypoint.sh

# `docker import` cannot set STOPSIGNAL: a metadata-only build adds it (nothing is pulled).
rootfs_tag="ensure-postgres-image-rootfs:$$"
tar --numeric-owner -C "$r" -c . | "$docker_bin" import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'ENV PGDATA=/var/lib/postgresql/data' \
    -c 'VOLUME /var/lib/postgresql/data' \
    -c 'EXPOSE 5432' \
    -c 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    -c 'CMD ["postgres"]' \
    -m "stand-in for $image: debootstrap bookworm minbase + postgresql-15" \
    - "$rootfs_tag" >/dev/null
printf 'FROM %s\nSTOPSIGNAL SIGINT\nLABEL org.opencontainers.image.description="stand-in for %s"\n' \
    "$rootfs_tag" "$image" | DOCKER_BUILDKIT=0 "$docker_bin" build -q -t "$image" - \
    >"$root/build.log" 2>&1 || { cat "$root/build.log" >&2; exit 1; }
"$docker_bin" rmi "$rootfs_tag" >/dev/null
echo "ensure_postgres_image: built stand-in $image" >&2
