# A throwaway PostgreSQL server on 127.0.0.1 for the tests of many workers on one database.
#
#   source .ci/postgres.sh && start_postgres && trap stop_postgres EXIT
#
# start_postgres installs Debian's server when it is missing (apt-get), starts one in a
# fresh folder on a free loopback port (as the postgres user when run as root: the server
# refuses root), and exports LRLAW_TEST_POSTGRES_URL, which the tests read. When no server
# can be had it says why and returns 0: those tests then skip with that reason.

_postgres_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_postgres() {
    if [ -z "$(_postgres_bin)" ]; then
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo -n"
        echo "postgres: installing Debian's postgresql package" >&2
        $sudo apt-get update -qq >/dev/null 2>&1 || true
        if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null 2>&1; then
            echo "postgres: apt-get could not install postgresql; the PostgreSQL tests will skip" >&2
            return 0
        fi
    fi
    local bin run_as=()
    bin="$(_postgres_bin)"
    POSTGRES_DIR="$(mktemp -d)"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$POSTGRES_DIR"
        run_as=(runuser -u postgres --)
    fi
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    if ! "${run_as[@]}" "$bin/initdb" -D "$POSTGRES_DIR/data" -A trust -U lrlaw >"$POSTGRES_DIR/initdb.log" 2>&1 \
        || ! "${run_as[@]}" "$bin/pg_ctl" -D "$POSTGRES_DIR/data" -l "$POSTGRES_DIR/server.log" -w start \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $POSTGRES_DIR -c max_connections=300 -c fsync=off" \
            >/dev/null; then
        echo "postgres: the server did not start (logs in $POSTGRES_DIR); the PostgreSQL tests will skip" >&2
        return 0
    fi
    "${run_as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U lrlaw lrlaw
    export LRLAW_TEST_POSTGRES_URL="postgresql://lrlaw@127.0.0.1:$port/lrlaw"
    echo "postgres: serving $LRLAW_TEST_POSTGRES_URL" >&2
}

stop_postgres() {
    [ -n "${POSTGRES_DIR:-}" ] && [ -d "$POSTGRES_DIR/data" ] || return 0
    local run_as=()
    [ "$(id -u)" = 0 ] && run_as=(runuser -u postgres --)
    "${run_as[@]}" "$(_postgres_bin)/pg_ctl" -D "$POSTGRES_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$POSTGRES_DIR"
}
