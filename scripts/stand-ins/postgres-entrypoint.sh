#!/bin/bash
# Stand-in for the official postgres image's entrypoint (scripts/ensure_image.sh).
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
