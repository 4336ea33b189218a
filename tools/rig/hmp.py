#!/usr/bin/env python3
"""Send HMP commands to the outer QEMU's monitor socket and print the answers.

    hmp.py SOCKET COMMAND...

rig.sh uses it when L1 hangs, to record where the emulated CPUs are
(`info registers -a`), the TCG translation state (`info jit`) and the like.
"""
import socket
import sys
import time


def read_until_prompt(s, limit=10.0):
    out = b""
    end = time.time() + limit
    while time.time() < end and not out.endswith(b"(qemu) "):
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def main():
    if len(sys.argv) < 3:
        print("usage: hmp.py SOCKET COMMAND...", file=sys.stderr)
        return 2
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sys.argv[1])
    read_until_prompt(s)  # the banner
    for cmd in sys.argv[2:]:
        s.sendall(cmd.encode() + b"\n")
        text = read_until_prompt(s)
        print("(qemu) " + text.replace("\r", "").rstrip().removesuffix("(qemu)").rstrip())
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
