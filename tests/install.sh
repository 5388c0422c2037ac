#!/usr/bin/env bash
# Runs the README's install steps, as written, as root: the paths under /etc, /var/lib,
# /usr/local/bin and /usr/share/doc moved under a temporary root, the config edited for a
# simulator on loopback, the systemd and journal lines left out (no systemd as PID 1 needed).
# Creates the system user `huoltosync` if it is absent (and leaves it). Needs root and runuser.
#
#   bash tests/install.sh        (from the repository root; builds target/release if missing)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
fail() { echo "install.sh: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run it as root: it creates a system user and runs commands with runuser"
command -v runuser >/dev/null || fail "runuser is not installed"
[ -x target/release/huoltosync ] || cargo build --release

ROOT=$(mktemp -d /tmp/huoltosync-install.XXXXXX)
SIM_PID=
cleanup() {
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null
    rm -rf "$ROOT"
}
trap cleanup EXIT
chmod 0755 "$ROOT"   # the service user walks to its folders below it
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system"
BIN="$ROOT/usr/local/bin/huoltosync"

# A simulator on loopback: the Tampuuri the config is edited to.
target/release/huoltosync sim --listen 127.0.0.1:0 --tickets 30 --accounts 1 >"$ROOT/sim.out" 2>/dev/null &
SIM_PID=$!
for _ in $(seq 100); do grep -q listening "$ROOT/sim.out" && break; sleep 0.1; done
BASE_URL=$(sed -n 's/^listening on //p' "$ROOT/sim.out")
[ -n "$BASE_URL" ] || fail "the simulator did not start"

# "then edit it": what an operator would edit, for the simulator.
edit_config() {
    local c="$ROOT/etc/huoltosync/config.toml"
    sed -i \
        -e "s#^path = \"/var/lib/huoltosync/#path = \"$ROOT/var/lib/huoltosync/#" \
        -e "s#^base_url = \"https://api.tampuuri.fi/v10/api/\"#base_url = \"$BASE_URL\"#" \
        -e 's#^customer_name = .*#customer_name = "Simulaattori Oy"#' \
        -e 's#^name = "isannointi-esimerkki"#name = "sim-1"#' \
        -e 's#^username = "huoltoyhtio"#username = "huolto"#' \
        "$c"
}

# The hand-made install block: the first ```sh block after "### By hand" (under "## Install").
STEPS=$(awk '/^### By hand/{i=1} i&&/^```sh/{b=1;next} b&&/^```/{exit} b' README.md)
[ -n "$STEPS" ] || fail "no install block in README.md"
SCRIPT="$ROOT/steps.sh"
{
    echo 'set -euxo pipefail'
    while IFS= read -r line; do
        case "$line" in
        '' | '#'* | ' '*'#'* | cargo\ * | systemctl\ * | journalctl\ *) continue ;;
        esac
        line=${line%%   #*}   # trailing comments
        if [[ $line != *useradd* ]]; then
            line=${line//\/etc\//$ROOT/etc/}
            line=${line//\/var\/lib\//$ROOT/var/lib/}
            line=${line//\/usr\/local\/bin\//$ROOT/usr/local/bin/}
            line=${line//\/usr\/share\/doc\//$ROOT/usr/share/doc/}
            line=${line// huoltosync --config/ $BIN --config}
            line=${line//THE-API-KEY/sim-key}
            line=${line//THE-PASSWORD/sim-password}
        fi
        echo "$line"
        [[ $line == *config.example.toml* ]] && echo edit_config
    done <<<"$STEPS"
} >"$SCRIPT"
grep -q 'runuser -u huoltosync' "$SCRIPT" || fail "the README's install steps run nothing as the service user"
export ROOT BASE_URL
export -f edit_config
bash "$SCRIPT" >"$ROOT/steps.out" 2>&1 || { cat "$ROOT/steps.out" >&2; fail "a README install step failed (above)"; }

out=$(cat "$ROOT/steps.out")
grep -q "sim-1: credentials work; 30 unfinished" <<<"$out" || fail "check-config --online did not reach the simulator: $out"
grep -q "sim-1: ok: 30 open" <<<"$out" || fail "run --once did not sync: $out"
grep -q "sim-1: OK" <<<"$out" || fail "status does not say OK: $out"
[ -f "$ROOT/usr/share/doc/huoltosync/README.md" ] || fail "the units' Documentation= file is not installed"

# Everything the service made belongs to it, so the units can go on from here.
store="$ROOT/var/lib/huoltosync/huoltosync.db"
[ -f "$store" ] || fail "no store at $store"
bad=$(find "$ROOT/var/lib/huoltosync" ! -user huoltosync)
[ -z "$bad" ] || fail "files not owned by huoltosync: $bad"

# Read-only commands need no secret: without CREDENTIALS_DIRECTORY the *_file names resolve
# beside config.toml, where there are none, and tasks still works.
runuser -u huoltosync -- "$BIN" --config "$ROOT/etc/huoltosync/config.toml" tasks --json >"$ROOT/tasks.json" 2>"$ROOT/tasks.err" \
    || fail "tasks as huoltosync without the credentials: $(cat "$ROOT/tasks.err")"
[ "$(grep -c '"id"' "$ROOT/tasks.json")" = 30 ] || fail "tasks --json does not list the 30 tickets"

# Root next to the service is refused, naming the user, and leaves nothing behind.
before=$(ls -A "$ROOT/var/lib/huoltosync")
set +e
"$BIN" --config "$ROOT/etc/huoltosync/config.toml" status >/dev/null 2>"$ROOT/root.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "status as root on the service's store exits $rc, not 2"
grep -q "huoltosync" "$ROOT/root.err" || fail "the refusal does not name the user: $(cat "$ROOT/root.err")"
[ "$before" = "$(ls -A "$ROOT/var/lib/huoltosync")" ] || fail "root's refused run left files behind"
echo "install: the README's install steps work as written (check-config --online, run --once, status as huoltosync; tasks without credentials; root refused)"
