#!/bin/sh
# Run rig tests (tests/rig/*.sh) against build/cvisor.
#
# usage: tools/rig/rig.sh [--direct|--nested] [--with-qemu] [-v] [TEST.sh...]
#        tools/rig/rig.sh [--direct|--nested] --demo
#
# On a host with usable hardware virtualization the tests run directly. Elsewhere they
# run in the nested rig: an outer TCG QEMU emulating an AMD CPU with SVM+NPT boots
# Debian's cloud kernel (L1) with kvm-amd; build/cvisor runs inside L1 and boots the L2
# guests. See tools/rig/README.md.
#
#   --direct / --nested  force the mode (default: detect)
#   --with-qemu          (nested) also put QEMU into L1; tests see it as $QEMU
#   --cvisor PATH        test this program instead of build/cvisor (e.g. tools/rig/qemu-cvisor
#                        with --with-qemu: the tests run against QEMU, to check the tests)
#   -v                   stream the whole outer console while the tests run
#   --demo               boot the default guest with its console on this terminal
#   --mode               print the mode the tests would run in (direct or nested), and exit
# Without TEST arguments, every tests/rig/*.sh except lib.sh runs.
# Output: "PASS name" / "FAIL name" per test, the log of each failing test, and a last
# line "N passed, N failed"; the exit status is 0 only when none failed.
# Environment: RIG_CARRIER=0|1 forces the assets into the initramfs / onto a disk;
# RIG_LIMIT=N overrides the whole-run limit (default: sum of the test timeouts + 120 s);
# RIG_SMP=N gives L1 N CPUs (default 1) and RIG_L1_CMDLINE adds to L1's kernel command
# line (L1 runs with a periodic tick: nohz=off highres=off); see tools/rig/README.md.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RIG=$ROOT/build/rig
DEFAULT_TIMEOUT=300

case $ROOT in *' '*) echo "rig: the repository path must not contain spaces" >&2; exit 2 ;; esac
mode=auto with_qemu=0 verbose=0 action=tests cvisor=$ROOT/build/cvisor
while [ $# -gt 0 ]; do
	case $1 in
	--direct) mode=direct ;;
	--nested) mode=nested ;;
	--with-qemu) with_qemu=1 ;;
	--demo) action=demo ;;
	--mode) action=mode ;;
	--cvisor) cvisor=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift ;;
	-v | --verbose) verbose=1 ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	-*) echo "rig: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -gt 0 ] || [ $action = demo ] || set -- "$ROOT"/tests/rig/*.sh

tests=
for t in "$@"; do
	[ "$(basename "$t")" = lib.sh ] && continue
	[ -f "$t" ] || { echo "rig: no such test: $t" >&2; exit 2; }
	t=$(cd "$(dirname "$t")" && pwd)/$(basename "$t")
	case $t in *' '*) echo "rig: test paths must not contain spaces: $t" >&2; exit 2 ;; esac
	tests="$tests $t"
done

# Real VT-x/AMD-V: a vmx/svm flag, not PVM (software KVM), and /dev/kvm opens.
hw_virt() {
	grep -q -w -E 'vmx|svm' /proc/cpuinfo && [ ! -e /sys/module/kvm_pvm ] &&
		[ -c /dev/kvm ] && (: <>/dev/kvm) 2>/dev/null
}
if [ $mode = auto ]; then
	if hw_virt; then mode=direct; else mode=nested; fi
fi
[ $action = mode ] && { echo $mode; exit 0; }

test_timeout() {
	_t=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$1" | head -n1)
	echo "${_t:-$DEFAULT_TIMEOUT}"
}

"$ROOT/tools/rig/assets.sh"
"$ROOT/tools/rig/mkinitrd-l2.sh" "$RIG/l2.cpio.gz"
# An empty ext4 file system for disk tests (tests copy it before writing to it).
if [ ! -s "$RIG/ext4.img" ]; then
	mke2fs -q -t ext4 -F -L cvisor-test "$RIG/ext4.img.$$" 64M && mv "$RIG/ext4.img.$$" "$RIG/ext4.img"
fi
mkdir -p "$RIG/logs"
stamp=$(date +%Y%m%d-%H%M%S)-$$
if [ ! -x "$cvisor" ]; then
	[ $action = demo ] && { echo "rig: $cvisor is missing (run make)" >&2; exit 1; }
	echo "rig: warning: $cvisor is missing; tests that use it will fail" >&2
fi

# ---------------------------------------------------------------- direct mode
if [ $mode = direct ]; then
	if [ $action = demo ]; then
		exec "$cvisor" run --kernel "$RIG/kernel/vmlinuz" --initrd "$RIG/l2.cpio.gz" \
			--cmdline "console=ttyS0 mode=shell" --cpus 2 --memory 512M
	fi
	# Tests see the same busybox tools as in L1.
	bbin=$RIG/bbin
	if [ ! -x "$bbin/sh" ]; then
		mkdir -p "$bbin"
		for a in $("$RIG/busybox" --list); do ln -sf ../busybox "$bbin/$a"; done
	fi
	export CVISOR="$cvisor" CVISORD="$ROOT/build/cvisord"
	export KERNEL="$RIG/kernel/vmlinuz" VMLINUX="$RIG/kernel/vmlinux" INITRD="$RIG/l2.cpio.gz"
	export DISK_EXT4="$RIG/ext4.img"
	export RIG_LIB="$ROOT/tests/rig/lib.sh" RIG_MODE=direct
	if q=$(command -v qemu-system-x86_64); then export QEMU="$q"; fi
	logdir=$RIG/logs/direct-$stamp
	mkdir -p "$logdir" "$RIG/tmp"
	pass=0 failed=0
	for t in $tests; do
		name=$(basename "$t")
		to=$(test_timeout "$t")
		dir=$(mktemp -d "$RIG/tmp/$name.XXXXXX")
		start=$(date +%s)
		rc=0
		TMPDIR=$dir timeout -k 10 "$to" env PATH="$bbin:$RIG/tools:$PATH" "$bbin/sh" "$t" \
			</dev/null >"$logdir/$name.log" 2>&1 || rc=$?
		secs=$(($(date +%s) - start))
		rm -rf "$dir"
		if [ $rc = 0 ]; then
			echo "PASS $name (${secs}s)"
			pass=$((pass + 1))
		else
			[ $rc = 124 ] && echo "rig: $name timed out after ${to}s" >>"$logdir/$name.log"
			echo "FAIL $name (rc=$rc, ${secs}s)"
			echo "===== log of $name ====="
			cat "$logdir/$name.log"
			echo "===== end of $name ====="
			failed=$((failed + 1))
		fi
	done
	echo "$pass passed, $failed failed"
	[ $failed = 0 ]
	exit
fi

# ---------------------------------------------------------------- nested rig
L1_MODULES="irqbypass kvm kvm-amd tun tap llc stp bridge veth vhost_iotlb vhost vhost_net
  vsock vmw_vsock_virtio_transport_common vhost_vsock
  virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"

# Everything of this run lives in its own directory: runs may go on in parallel.
work=$(mktemp -d "$RIG/run.XXXXXX")
qpid=
trap '[ -z "$qpid" ] || kill "$qpid" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
stage=$work/l1-root
carrier=$work/carrier-root
mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin" "$stage/lib/modules" \
	"$stage/rig/bin" "$stage/rig/tests" "$stage/rig/carrier" "$stage/root" "$carrier" \
	"$stage/proc" "$stage/sys" "$stage/dev" "$stage/tmp" "$stage/run" "$stage/etc"

# add_elf BINARY DEST: copy a dynamic executable and the libraries ldd lists (at their
# own absolute paths under $stage).
add_elf() {
	cp "$1" "$stage$2"
	for lib in $(ldd "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done
}

cp "$RIG/busybox" "$stage/bin/busybox"
for a in $("$RIG/busybox" --list-full); do
	[ -e "$stage/$a" ] || ln -s /bin/busybox "$stage/$a"
done
for m in $L1_MODULES; do
	[ -f "$RIG/kernel/modules/$m.ko" ] && cp "$RIG/kernel/modules/$m.ko" "$stage/lib/modules/"
done
cp "$ROOT/tools/rig/l1-init" "$stage/init"
# iproute2's ip (busybox ip has no netns and no veth): tests that need namespaces
ipr=$(command -v ip || true)
if [ -n "$ipr" ] && ! "$ipr" -V 2>&1 | grep -q BusyBox; then
	rm -f "$stage/sbin/ip"
	add_elf "$(readlink -f "$ipr")" /sbin/ip
fi
[ -x "$cvisor" ] && add_elf "$cvisor" /rig/bin/cvisor
[ -x "$ROOT/build/cvisord" ] && add_elf "$ROOT/build/cvisord" /rig/bin/cvisord
for t in "$RIG"/tools/*; do [ -x "$t" ] && cp "$t" "$stage/rig/bin/"; done
cp "$ROOT/tests/rig/lib.sh" "$stage/rig/tests/lib.sh"
names= total=0
for t in $tests; do
	name=$(basename "$t")
	case " $names " in *" $name "*) echo "rig: two tests named $name" >&2; exit 2 ;; esac
	cp "$t" "$stage/rig/tests/$name"
	names="$names $name"
	total=$((total + $(test_timeout "$t")))
done

# The big L2 assets (~70 MB) go on a carrier disk: unpacking them from the initramfs
# under TCG costs more than mounting a disk (see tools/rig/README.md).
use_carrier=${RIG_CARRIER:-1}
[ $with_qemu = 1 ] && use_carrier=1
if [ "$use_carrier" = 1 ]; then
	assets=$carrier/assets
	assets_l1=/rig/carrier/assets
else
	assets=$stage/rig/assets
	assets_l1=/rig/assets
fi
mkdir -p "$assets"
cp "$RIG/kernel/vmlinuz" "$RIG/kernel/vmlinux" "$RIG/l2.cpio.gz" "$RIG/ext4.img" "$assets/"

if [ "$use_carrier" = 1 ] && command -v qemu-img >/dev/null && command -v qemu-io >/dev/null; then
	# qemu-img and qemu-io, the reference peers of the image tests, on the carrier
	# with their libraries, started through the dynamic loader with that path.
	qu=$carrier/qemu-utils
	mkdir -p "$qu/lib"
	for b in qemu-img qemu-io; do
		cp "$(command -v $b)" "$qu/"
		for lib in $(ldd "$(command -v $b)" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
			cp -L "$lib" "$qu/lib/"
		done
		printf '#!/bin/sh\nq=/rig/carrier/qemu-utils\nexec $q/lib/ld-linux-x86-64.so.2 --library-path $q/lib $q/%s "$@"\n' \
			"$b" >"$stage/rig/bin/$b"
		chmod 755 "$stage/rig/bin/$b"
	done
fi

if [ $with_qemu = 1 ]; then
	# QEMU as an L2 VMM for comparisons: binary, libraries and firmware on the carrier,
	# started through the dynamic loader with its own library path.
	qbin=$(command -v qemu-system-x86_64) || { echo "rig: qemu-system-x86_64 not found" >&2; exit 1; }
	q=$carrier/qemu
	mkdir -p "$q/bin" "$q/lib" "$q/share"
	cp "$qbin" "$q/bin/"
	for lib in $(ldd "$qbin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
		cp -L "$lib" "$q/lib/"
	done
	for f in /usr/share/qemu/*.bin /usr/share/qemu/*.rom /usr/share/seabios/*.bin \
		/usr/lib/ipxe/qemu/*.rom; do
		cp -L "$f" "$q/share/" 2>/dev/null || true
	done
	cat >"$stage/rig/bin/qemu-system-x86_64" <<'EOF'
#!/bin/sh
q=/rig/carrier/qemu
exec $q/lib/ld-linux-x86-64.so.2 --library-path $q/lib $q/bin/qemu-system-x86_64 -L $q/share "$@"
EOF
	chmod 755 "$stage/rig/bin/qemu-system-x86_64"
fi

cat >"$stage/rig/config" <<EOF
RIG_ACTION=$action
RIG_WARMUP=${RIG_WARMUP:-1}
RIG_TESTS="$names"
RIG_CARRIER=$use_carrier
RIG_ASSETS=$assets_l1
EOF

(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$work/l1.cpio.gz"
drive=
if [ "$use_carrier" = 1 ]; then
	mb=$(du -sm "$carrier" | cut -f1)
	: >"$work/carrier.img"
	mke2fs -q -F -t ext4 -O ^has_journal -L rig-carrier -d "$carrier" "$work/carrier.img" \
		"$((mb + mb / 5 + 16))M"
	drive="-drive file=$work/carrier.img,if=virtio,format=raw,readonly=on"
fi
rm -rf "$stage" "$carrier"

# qemu_l0 PREFIX...: run the outer QEMU (L0 -> L1) under the command PREFIX.
outer=$("$ROOT/tools/rig/outer-qemu.sh")
qemu_l0() {
	# shellcheck disable=SC2086
	"$@" $outer -accel tcg,thread=multi,tb-size=${RIG_TB_SIZE:-2048} -cpu EPYC,+svm,+npt -smp "${RIG_SMP:-1}" -m 6144 \
		-nographic -no-reboot -nic none -kernel "$RIG/kernel/vmlinuz" -initrd "$work/l1.cpio.gz" \
		$drive -append "console=ttyS0 panic=-1 quiet nohz=off highres=off ${RIG_L1_CMDLINE:-}" \
		-serial mon:stdio -serial file:"$work/heartbeat" -monitor unix:"$work/monitor",server=on,wait=off
}

if [ $action = demo ]; then
	echo "rig: this host has no hardware virtualization: running the guest nested, inside an emulated (TCG) L1 machine (slow; Ctrl-A X quits)"
	qemu_l0 env
	exit
fi

log=$RIG/logs/run-$stamp.log
limit=${RIG_LIMIT:-$((total + 120))}
echo "rig: nested rig, $(echo $names | wc -w) test(s), limit ${limit}s, console: ${log#$ROOT/}"
echo "rig: outer $($outer -version | head -n1)"
: >"$log"
t0=$(date +%s)
qemu_l0 timeout -k 10 "$limit" </dev/null >"$log" 2>&1 &
qpid=$!
# An L1 that hangs (the emulated CPU; tools/rig/README.md) stops its heartbeat
# (l1-init writes one line to its ttyS1 every 5 s): RIG_HB_SILENCE seconds (90)
# without one end the run, marked RIG-HANG. A test that hangs in a living L1 is
# left to its own timeout. Until the heartbeat starts, a console silent for
# RIG_SILENCE seconds (420) counts as the hang.
(
	last=-1 quiet=0 hblast=-1 hbquiet=0
	while kill -0 $qpid 2>/dev/null; do
		sleep 10
		size=$(wc -c <"$log")
		if [ "$size" = "$last" ]; then quiet=$((quiet + 10)); else quiet=0 last=$size; fi
		hb=$(wc -c <"$work/heartbeat" 2>/dev/null || echo 0)
		if [ "$hb" = "$hblast" ]; then hbquiet=$((hbquiet + 10)); else hbquiet=0 hblast=$hb; fi
		why=
		if [ "$hb" -gt 0 ]; then
			[ $hbquiet -lt "${RIG_HB_SILENCE:-90}" ] ||
				why="L1's heartbeat stopped ${hbquiet}s ago (console silent for ${quiet}s)"
		elif [ $quiet -ge "${RIG_SILENCE:-420}" ]; then
			why="L1 printed nothing for ${quiet}s"
		fi
		if [ -n "$why" ]; then
			echo "RIG-HANG $why: stopped" >>"$log"
			# where the emulated CPUs are (twice: spinning or stuck?) and TCG's state
			q=$(pgrep -f "^[^ ]*qemu-system-x86_64 .*$work/l1.cpio.gz" | head -n1)
			{
				echo "RIG-HANG outer QEMU: $(ps -o %cpu=,stat=,time= -p "$q" 2>/dev/null)"
				if command -v python3 >/dev/null && [ -S "$work/monitor" ]; then
					for k in 1 2; do
						timeout 20 python3 "$ROOT/tools/rig/hmp.py" "$work/monitor" \
							"info registers -a" 2>&1 | grep -a -E '^CPU#|RIP=|CR0=' |
							sed 's/^/RIG-HANG /'
						sleep 1
					done
					timeout 20 python3 "$ROOT/tools/rig/hmp.py" "$work/monitor" "info jit" 2>&1 |
						grep -a -i -E 'flush|code size|TB count' | sed 's/^/RIG-HANG /'
				fi
				# (CPU time again: did the emulated CPUs run meanwhile?)
				echo "RIG-HANG outer QEMU: $(ps -o %cpu=,stat=,time= -p "$q" 2>/dev/null)"
			} >>"$log" 2>&1
			pkill -TERM -P $qpid 2>/dev/null
			break
		fi
	done
) </dev/null >/dev/null 2>&1 & # (holds no pipe of whoever reads rig.sh's output)
# Report results as they arrive.
tail -n +1 -f --pid=$qpid "$log" | sed -u 's/\r$//' | while IFS= read -r line; do
	[ $verbose = 1 ] && printf '%s\n' "$line"
	case $line in
	"RIG-RESULT "*)
		set -- $line
		if [ "$3" = pass ]; then echo "PASS $2 (${5#secs=}s)"; else echo "FAIL $2 (${4}, ${5#secs=}s)"; fi
		;;
	"RIG-L1-READY "* | "RIG-WARMUP "* | "RIG-ERROR "* | "RIG-TIMEOUT "* | "RIG-HANG "*) [ $verbose = 1 ] || echo "rig: $line" ;;
	esac
done
qrc=0
wait $qpid || qrc=$?
qpid=
echo "rig: outer QEMU exited (status $qrc) after $(($(date +%s) - t0))s"
[ $qrc = 124 ] && echo "rig: the whole run hit its ${limit}s limit"

clean=$RIG/logs/run-$stamp.txt
tr -d '\r' <"$log" >"$clean"
pass=0 failed=0 died=0
for name in $names; do
	if grep -q "^RIG-RESULT $name pass " "$clean"; then
		pass=$((pass + 1))
		continue
	fi
	failed=$((failed + 1))
	if ! grep -q "^RIG-RESULT $name " "$clean"; then
		echo "FAIL $name (no result)"
		grep -q "^===== RIG-BEGIN $name " "$clean" || { died=1; continue; }
	fi
	echo "===== log of $name ====="
	awk -v b="===== RIG-BEGIN $name " -v e="===== RIG-END $name =====" \
		'index($0, b) == 1 { on = 1; next } $0 == e { on = 0 } on' "$clean"
	echo "===== end of $name ====="
done
if [ $died = 1 ] || ! grep -q '^RIG-DONE' "$clean"; then
	echo "===== the run ended without all results; last 60 lines of the console ====="
	grep -v "TCG doesn't support requested feature" "$clean" | tail -n 60
	echo "===== end of console (whole log: ${log#$ROOT/}) ====="
fi
rm -f "$clean"
echo "$pass passed, $failed failed"
[ $failed = 0 ]
