#!/bin/sh
# `make demo`: boot the default guest (2 vCPUs, 512 MiB, busybox shell on the serial
# console) directly on hosts with VT-x/AMD-V, else inside the nested rig.
exec "$(dirname "$0")/rig.sh" --demo "$@"
