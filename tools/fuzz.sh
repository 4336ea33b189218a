#!/bin/sh
# Run every libFuzzer target (fuzz_* executables) in BUILD_DIR for SECONDS each.
# Usage: tools/fuzz.sh BUILD_DIR SECONDS
# The corpus of fuzz_<name> lives in build/fuzz-corpus/<name> and grows across
# runs; crashing inputs go to build/fuzz-corpus/<name>-crashes/, the full log to
# build/fuzz-corpus/<name>.log. Prints PASS fuzz_<name> or FAIL fuzz_<name> per
# target and exits non-zero if any target crashed, hung or leaked.
set -u

usage() {
	echo "usage: tools/fuzz.sh BUILD_DIR SECONDS" >&2
	exit 2
}

[ $# -eq 2 ] || usage
build=$1
secs=$2
case $secs in
'' | *[!0-9]*) usage ;;
esac
[ "$secs" -gt 0 ] || usage
[ -d "$build" ] || {
	echo "fuzz: no build directory $build" >&2
	exit 2
}

root=$(cd "$(dirname "$0")/.." && pwd)
corpus_root=$root/build/fuzz-corpus
mkdir -p "$corpus_root" || exit 2

targets=$(find "$build" -maxdepth 1 -type f -name 'fuzz_*' ! -name '*.*' -perm -u+x | sort)
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz_* executables in $build (build with -Dfuzz=true)" >&2
	exit 2
fi

# UBSan findings must stop the run, not scroll past
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}"

failed=0
for exe in $targets; do
	t=$(basename "$exe")
	name=${t#fuzz_}
	corpus=$corpus_root/$name
	crashes=$corpus_root/$name-crashes
	log=$corpus_root/$name.log
	mkdir -p "$corpus" "$crashes" || exit 2
	if "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
		-artifact_prefix="$crashes/" "$corpus" >"$log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
		echo "PASS $t${execs:+ ($execs runs)}"
	else
		echo "FAIL $t (log: $log, inputs: $crashes/)"
		grep -E 'ERROR: |runtime error|SUMMARY|Test unit written' "$log" | head -n 10 >&2
		failed=1
	fi
done
exit $failed
