#!/bin/sh
# `make bench`: run tests/bench/*.sh (cvisor and QEMU side by side in one rig
# run, or directly on hosts with VT-x/AMD-V) and print their BENCH tables.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
out=$ROOT/build/rig/logs/bench-$(date +%Y%m%d-%H%M%S).log
mkdir -p "$(dirname "$out")"
rc=0
[ $# -gt 0 ] || set -- "$ROOT"/tests/bench/*.sh
"$ROOT/tools/rig/rig.sh" --with-qemu -v "$@" >"$out" 2>&1 || rc=$?
# nested runs stream the test output into $out; direct runs keep per-test logs
direct=$(ls -dt "$ROOT"/build/rig/logs/direct-* 2>/dev/null | head -n1)
{ cat "$out"; [ -n "$direct" ] && [ "$direct" -nt "$out" ] && cat "$direct"/*.log; } |
	tr -d '\r' | grep -E '^(BENCH|run [0-9]+ )' || true
tr -d '\r' <"$out" | grep -E '^(PASS|FAIL) |passed, .* failed$' || true
echo "full log: $out"
exit $rc
