# Throwaway database servers on 127.0.0.1 for the tests of many workers on one database.
#
#   source .ci/servers.sh && start_servers && trap stop_servers EXIT
#
# start_servers starts PostgreSQL and MariaDB (MySQL's protocol), each installed from
# Debian's packages with apt-get when missing, each in a fresh folder on a free loopback
# port, and exports the URLs the tests read: LRLAW_TEST_POSTGRES_URL and
# LRLAW_TEST_MYSQL_URL. A server that cannot be had is reported and skipped (returns 0):
# its tests then skip with that reason.

SERVERS_DIR="$(mktemp -d)"
chmod 755 "$SERVERS_DIR"

_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# _ensure_package PACKAGE PROGRAM: install PACKAGE unless PROGRAM (a glob) exists.
_ensure_package() {
    compgen -G "$2" >/dev/null && return 0
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    echo "servers: installing Debian's $1 package" >&2
    $sudo apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null 2>&1 && compgen -G "$2" >/dev/null
}

# _as USER COMMAND...: run as USER when this shell is root (the servers refuse root).
_as() {
    local user="$1"
    shift
    if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

start_postgres() {
    if ! _ensure_package postgresql "/usr/lib/postgresql/*/bin/initdb"; then
        echo "servers: PostgreSQL could not be installed; its tests will skip" >&2
        return 0
    fi
    local bin port folder="$SERVERS_DIR/postgres"
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    port="$(_free_port)"
    mkdir -p "$folder" && { [ "$(id -u)" != 0 ] || chown postgres "$folder"; }
    if ! _as postgres "$bin/initdb" -D "$folder/data" -A trust -U lrlaw >"$folder/initdb.log" 2>&1 \
        || ! _as postgres "$bin/pg_ctl" -D "$folder/data" -l "$folder/server.log" -w start \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $folder -c max_connections=300 -c fsync=off" >/dev/null \
        || ! _as postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U lrlaw lrlaw; then
        echo "servers: PostgreSQL did not start (logs in $folder); its tests will skip" >&2
        return 0
    fi
    STOP_POSTGRES=(_as postgres "$bin/pg_ctl" -D "$folder/data" -m fast -w stop)
    export LRLAW_TEST_POSTGRES_URL="postgresql://lrlaw@127.0.0.1:$port/lrlaw"
    echo "servers: PostgreSQL at $LRLAW_TEST_POSTGRES_URL" >&2
}

start_mysql() {
    if ! _ensure_package mariadb-server "/usr/sbin/mariadbd"; then
        echo "servers: MariaDB could not be installed; the MySQL tests will skip" >&2
        return 0
    fi
    local port folder="$SERVERS_DIR/mysql" user="mysql"
    port="$(_free_port)"
    [ "$(id -u)" = 0 ] || user="$(id -un)"
    mkdir -p "$folder" && { [ "$(id -u)" != 0 ] || chown mysql "$folder"; }
    if ! mariadb-install-db --user="$user" --datadir="$folder/data" >"$folder/install.log" 2>&1; then
        echo "servers: MariaDB could not be set up (logs in $folder); the MySQL tests will skip" >&2
        return 0
    fi
    mariadbd --user="$user" --datadir="$folder/data" --bind-address=127.0.0.1 --port="$port" \
        --socket="$folder/socket" --pid-file="$folder/pid" >"$folder/server.log" 2>&1 &
    local tries=0
    until mariadb --socket="$folder/socket" -u "$(id -un)" -e "SELECT 1" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 60 ]; then
            echo "servers: MariaDB did not start (logs in $folder); the MySQL tests will skip" >&2
            return 0
        fi
        sleep 0.5
    done
    mariadb --socket="$folder/socket" -u "$(id -un)" -e \
        "CREATE DATABASE lrlaw; CREATE USER 'lrlaw'@'127.0.0.1' IDENTIFIED BY 'lrlaw'; GRANT ALL ON *.* TO 'lrlaw'@'127.0.0.1';"
    STOP_MYSQL=(kill "$(cat "$folder/pid")")
    export LRLAW_TEST_MYSQL_URL="mysql+pymysql://lrlaw:lrlaw@127.0.0.1:$port/lrlaw"
    echo "servers: MariaDB at $LRLAW_TEST_MYSQL_URL" >&2
}

start_servers() {
    start_postgres
    start_mysql
}

stop_servers() {
    [ -z "${STOP_POSTGRES+x}" ] || "${STOP_POSTGRES[@]}" >/dev/null 2>&1 || true
    [ -z "${STOP_MYSQL+x}" ] || "${STOP_MYSQL[@]}" >/dev/null 2>&1 || true
    sleep 1
    rm -rf "$SERVERS_DIR"
}
