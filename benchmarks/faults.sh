#!/bin/bash
# Faults reproduced, not simulated: a full disk (a 2 MB tmpfs, so root is needed) under the
# checkpoints and then under the SQLite storage, and PostgreSQL stopped in the middle of a
# climb. Each case prints how the command ended, what it left, and how the same command
# ends when run again once the fault is gone. From the repository root:
#     sudo bash benchmarks/faults.sh        (writes under $FAULTS_DIR, default /tmp/lrlaw-faults)
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
lrlaw="$root/.venv/bin/optuna-lrlaw"
python="$root/.venv/bin/python"
work="${FAULTS_DIR:-/tmp/lrlaw-faults}"
disk="$work/disk"
mkdir -p "$work" "$disk"
ladder=(ladder --widths 16,32,48 --trials 4 --seq-len 32 --batch-size 8 --tokens-per-param 5 --device cpu)

states() {  # every rung's trial states
    "$python" - "$1" <<'PY'
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = optuna.storages.RDBStorage(sys.argv[1])
for study in storage.get_all_studies():
    print("   ", study.study_name, [t.state.name for t in storage.get_all_trials(study._study_id, deepcopy=False)])
PY
}

twice() {  # the command, then the command again after "$@" has mended the fault
    local storage="$1" checkpoints="$2"; shift 2
    "$lrlaw" "${ladder[@]}" --storage "$storage" --checkpoint-dir "$checkpoints" >/dev/null 2>"$work/first.err"
    echo "  exit $?; its last line: $(tail -n 1 "$work/first.err")"
    left "$checkpoints"
    "$@"
    states "$storage"
    "$lrlaw" "${ladder[@]}" --storage "$storage" --checkpoint-dir "$checkpoints" >/dev/null 2>"$work/again.err"
    echo "  again: exit $?; $(grep -c 'loss' "$work/again.err") trial line(s); warnings: $(grep -o 'is marked failed.*' "$work/again.err")"
    left "$checkpoints"
    states "$storage"
}

left() {  # the files the climb left on the small disk and in the checkpoint folder
    echo "  files left: $(find "$disk" "$1" -type f ! -name filler 2>/dev/null | xargs -r ls -s | tr '\n' ' ')"
}

full_disk() {  # a 2 MB tmpfs with all but $1 bytes taken
    umount "$disk" 2>/dev/null
    mount -t tmpfs -o size=2m tmpfs "$disk" && head -c "$((2 * 1024 * 1024 - $1))" /dev/zero >"$disk/filler"
}

if [ "$(id -u)" = 0 ]; then
    echo "checkpoints on a full disk (100 kB free):"
    full_disk 100000 && rm -rf "$work/db.sqlite"
    twice "sqlite:///$work/db.sqlite" "$disk/checkpoints" rm "$disk/filler"
    echo "the SQLite storage on a full disk (200 kB free):"
    full_disk 200000 && rm -rf "$work/checkpoints"
    twice "sqlite:///$disk/db.sqlite" "$work/checkpoints" rm "$disk/filler"
    umount "$disk"
else
    echo "full disk: skipped (mounting a tmpfs needs root)"
fi

echo "PostgreSQL stopped 20 s into the climb:"
rm -rf "$work/checkpoints"
source "$root/.ci/servers.sh"
start_postgres >/dev/null 2>&1
url="$LRLAW_TEST_POSTGRES_URL"
port="${url##*:}" && port="${port%%/*}"
( sleep 20 && "${STOP_POSTGRES[@]}" >/dev/null 2>&1 ) &
start_again() {
    local bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)" folder="$SERVERS_DIR/postgres"
    _as postgres "$bin/pg_ctl" -D "$folder/data" -l "$folder/server.log" -w start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $folder -c fsync=off" >/dev/null 2>&1
}
twice "$url" "$work/checkpoints" start_again
stop_servers >/dev/null 2>&1
