#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A second client of sr's control socket, by docs/control.md alone (standard library only).

  ctl_client.py drive NAME [--finish]   version, status, pause, resume (and finish) by the protocol
  ctl_client.py check SCHEMA FILE       FILE's JSON against docs/control.md's "schema: SCHEMA" table
  ctl_client.py check-lines FILE        sr-save --progress json [--json]: every line against its table

Both read docs/control.md (beside this script's directory), so the document
and the code are tested against each other.  Exit 0 when all held, 1 with
what did not on stderr.
"""
import json
import os
import re
import socket
import sys

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "control.md")
ABSENT = object()      # "or absent": a field only some objects have
TYPES = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list,
         "null": type(None), "number": (int, float), "absent": ABSENT}


def doc_text():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def doc_version():
    m = re.search(r"^# The control socket protocol, version (\d+)$", doc_text(), re.M)
    return int(m.group(1))


def schema(name):
    """{field: (types...)} from the table under '#### schema: NAME'."""
    text = doc_text()
    m = re.search(r"^#### schema: %s\n(.*?)(?=^#|\Z)" % re.escape(name), text, re.M | re.S)
    if not m:
        raise SystemExit("ctl_client: no 'schema: %s' in %s" % (name, DOC))
    fields = {}
    for line in m.group(1).splitlines():
        row = re.match(r"\| `([a-z0-9_]+)` \| ([a-z ]+?) \|", line)
        if row:
            ts = []
            for t in row.group(2).split(" or "):
                ts += list(TYPES[t]) if isinstance(TYPES[t], tuple) else [TYPES[t]]
            fields[row.group(1)] = tuple(ts)
    return fields


def check(name, doc, where=""):
    """Problems of doc against schema name: missing, extra or mistyped fields."""
    want, bad = schema(name), []
    if not isinstance(doc, dict):
        return ["%s: not an object" % (where or name)]
    for k, types in want.items():
        v = doc.get(k, KeyError)
        if v is KeyError:
            if ABSENT not in types:
                bad.append("%s: no field %r" % (where or name, k))
            continue
        types = tuple(t for t in types if t is not ABSENT)
        if False:
            pass
        elif isinstance(v, bool) and bool not in types:
            bad.append("%s.%s: a boolean, documented %s" % (where or name, k, types))
        elif not isinstance(v, types):
            bad.append("%s.%s: %r is not %s" % (where or name, k, v, [t.__name__ for t in types]))
    for k in doc:
        if k not in want:
            bad.append("%s: field %r is not in docs/control.md" % (where or name, k))
    # Nested objects the tables name.
    if name == "status" and isinstance(doc.get("save"), dict):
        bad += check("status.save", doc["save"], "status.save")
    if name == "save" and isinstance(doc.get("summary"), dict):
        bad += check("save.summary", doc["summary"], "save.summary")
    if name == "save" and isinstance(doc.get("rounds"), list):
        for i, r in enumerate(doc["rounds"]):
            bad += check("save.round", r, "rounds[%d]" % i)
    if name == "dump":
        for key, sub in (("header", "dump.header"), ("totals", "dump.totals"),
                         ("domain", "dump.domain"), ("error", "dump.error")):
            if isinstance(doc.get(key), dict):
                bad += check(sub, doc[key], key)
        for key, sub in (("records", "dump.record"), ("iterations", "dump.iteration"),
                         ("vcpus", "dump.vcpu"), ("devices", "dump.device")):
            for i, r in enumerate(doc.get(key) or []):
                bad += check(sub, r, "%s[%d]" % (key, i))
        if isinstance(doc.get("domain"), dict):
            for i, r in enumerate(doc["domain"].get("regions") or []):
                bad += check("dump.region", r, "domain.regions[%d]" % i)
    if name == "list" and isinstance(doc.get("domains"), list):
        for i, d in enumerate(doc["domains"]):
            kind = "list.absent" if d.get("state") in ("stale", "unresponsive") else "status"
            bad += check(kind, d, "domains[%d]" % i)
    return bad


EVENTS = {"start": "event.start", "progress": "event.progress", "round": "event.round",
          "prepared": "event.step", "commit": "event.step", "abort": "event.step",
          "hold": "event.step", "end": "event.end"}


def check_lines(path):
    """--progress json (and --json): every line an event, or the save document last."""
    bad, kinds = [], []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        try:
            doc = json.loads(line)
        except ValueError as e:
            bad.append("line %d: not JSON: %s" % (n, e))
            continue
        if isinstance(doc, dict) and "schema" in doc:
            kinds.append("document")
            bad += check("save", doc, "line %d" % n)
        elif isinstance(doc, dict) and doc.get("event") in EVENTS:
            kinds.append(doc["event"])
            bad += check(EVENTS[doc["event"]], doc, "line %d (%s)" % (n, doc["event"]))
        else:
            bad.append("line %d: neither an event nor the document" % n)
    if not kinds or kinds[0] != "start" or "end" not in kinds:
        bad.append("events %s: want start first and an end" % kinds)
    return bad


def run_dir():
    d = os.environ.get("SR_RUN_DIR")
    if d:
        return d
    x = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(x, "sr") if os.geteuid() != 0 and x else "/run/sr"


def request(name, line):
    """One request, one connection: (ok, text) of the final line; other lines skipped."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(os.path.join(run_dir(), name + ".sock"))
    s.sendall(line.encode() + b"\n")
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("%s: the runner closed the connection without a reply" % line)
        buf += chunk
        while b"\n" in buf:
            ln, buf = buf.split(b"\n", 1)
            ln = ln.decode()
            if ln == "ok" or ln.startswith("ok "):
                s.close()
                return True, ln[3:]
            if ln.startswith("error "):
                s.close()
                return False, ln[6:]
            # progress and round lines: not a reply


def status(name):
    ok, text = request(name, "status")
    if not ok:
        raise RuntimeError("status: error " + text)
    return dict(w.split("=", 1) for w in text.split() if "=" in w)


def drive(name, finish):
    bad = []
    ok, text = request(name, "version")
    if not ok or text != "protocol=%d" % doc_version():
        bad.append("version: %r, docs/control.md says version %d" % (text, doc_version()))
    st = status(name)
    for k in schema("status"):
        if k != "save" and k not in st:
            bad.append("status: no %s= (%s)" % (k, " ".join(st)))
    if st.get("protocol") != str(doc_version()):
        bad.append("status: protocol=%s" % st.get("protocol"))
    if st.get("name") != name:
        bad.append("status: name=%s, asked %s" % (st.get("name"), name))
    steps = [("pause", "paused", "paused"), ("resume", "running", "running")]
    for req, answer, state in steps:
        ok, text = request(name, req)
        if not ok or text != answer:
            bad.append("%s: %s %r (want ok %s)" % (req, "ok" if ok else "error", text, answer))
        if status(name).get("state") != state:
            bad.append("%s: state is %s (want %s)" % (req, status(name).get("state"), state))
    ok, text = request(name, "no-such-request")
    if ok or not text.startswith("unknown request"):
        bad.append("an unknown request was answered %r" % text)
    if finish:
        ok, text = request(name, "finish")
        if not ok:
            bad.append("finish: error " + text)
    for b in bad:
        print("ctl_client: " + b, file=sys.stderr)
    if not bad:
        print("ctl_client: %s: version, status, pause, resume%s as docs/control.md says"
              % (name, ", finish" if finish else ""))
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "drive":
        return drive(argv[1], "--finish" in argv[2:])
    if len(argv) == 2 and argv[0] == "check-lines":
        bad = check_lines(argv[1])
        for b in bad:
            print("ctl_client: %s: %s" % (argv[1], b), file=sys.stderr)
        return 1 if bad else 0
    if len(argv) == 3 and argv[0] == "check":
        try:
            with open(argv[2], encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print("ctl_client: %s: %s" % (argv[2], e), file=sys.stderr)
            return 1
        bad = check(argv[1], doc)
        for b in bad:
            print("ctl_client: %s: %s" % (argv[2], b), file=sys.stderr)
        return 1 if bad else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
