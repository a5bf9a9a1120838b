#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""QMP for bench-peer.  Polls in-process, so Python's start-up is not in the
times it reports.

  qmp.py SOCKET COMMAND [JSON-ARGUMENTS]
      one command; its "return" printed as JSON
  qmp.py SOCKET migrate URI SECONDS [--stop]
      (stop the guest first, then) migrate to URI and poll query-migrate
      every 10 ms; prints the last query-migrate plus "wall_ms", from the
      stop (or the migrate) to completion; exit 3 when it did not complete
      in SECONDS (the migration is cancelled)
  qmp.py SOCKET wait-loaded SECONDS
      wait for the socket, then until query-status leaves "inmigrate";
      prints the status

Exit status: 0 done, 1 QEMU answered with an error or the migration failed,
2 QEMU could not be reached, 3 timeout."""
import json
import os
import socket
import sys
import time


class Qmp:
    def __init__(self, path, wait_s=0):
        end = time.monotonic() + wait_s
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.settimeout(60)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() >= end:
                    raise
                time.sleep(0.005)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # the greeting
        self.call("qmp_capabilities")

    def call(self, cmd, args=None):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise OSError("QEMU closed the socket")
            r = json.loads(line)
            if "error" in r:
                raise RuntimeError(f"{cmd}: {r['error'].get('desc')}")
            if "return" in r:
                return r["return"]


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, cmd = argv[1], argv[2]
    try:
        if cmd == "wait-loaded":
            q = Qmp(path, float(argv[3]))
            end = time.monotonic() + float(argv[3])
            while (st := q.call("query-status")["status"]) == "inmigrate":
                if time.monotonic() >= end:
                    return 3
                time.sleep(0.01)
            print(st)
            return 0
        q = Qmp(path)
        if cmd == "migrate":
            t0 = time.monotonic()
            if "--stop" in argv:
                q.call("stop")
            q.call("migrate", {"uri": argv[3]})
            end = t0 + float(argv[4])
            while True:
                m = q.call("query-migrate")
                if m.get("status") in ("completed", "failed"):
                    break
                if time.monotonic() >= end:
                    q.call("migrate_cancel")
                    m["wall_ms"] = int((time.monotonic() - t0) * 1000)
                    print(json.dumps(m))
                    return 3
                time.sleep(0.01)
            m["wall_ms"] = int((time.monotonic() - t0) * 1000)
            print(json.dumps(m))
            return 0 if m["status"] == "completed" else 1
        print(json.dumps(q.call(cmd, json.loads(argv[3]) if len(argv) > 3 else None)))
        return 0
    except RuntimeError as e:
        print(f"qmp: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"qmp: {path}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
