"""An application writing through Python's sqlite3 module (the system's SQLite, not better-sqlite3).

Driven by tests/support/pyapp.ts over stdin/stdout, one JSON object per line each way:

  {"id": 1, "cmd": "exec",   "sql": "...", "params": [...]}     autocommit statement
  {"id": 2, "cmd": "script", "sql": "..."}                       several statements (DDL)
  {"id": 3, "cmd": "tx",     "steps": [{"sql": "...", "params": [...]}, ...]}
                                                                 BEGIN IMMEDIATE .. COMMIT
  {"id": 4, "cmd": "query",  "sql": "...", "params": [...]}     rows, values typed as below
  {"id": 5, "cmd": "close"}

Every reply is {"id": n, "ok": true, ...} once the work is committed, or {"id": n, "ok": false,
"error": "..."} (a failed transaction is rolled back first).

Values are typed so none changes class or bits on the way: {"$int": "123"} is an int,
{"$real": "0.30000000000000004" | "Infinity" | "-Infinity" | "-0"} a float, {"$blob": base64}
bytes, a string TEXT, null NULL. Rows come back in the same form.
"""

import base64
import json
import math
import sqlite3
import sys


def decode(v):
    if v is None or isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return v
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, dict):
        if "$int" in v:
            return int(v["$int"])
        if "$real" in v:
            return float(v["$real"])  # "Infinity", "-Infinity" and "-0" parse as such
        if "$blob" in v:
            return base64.b64decode(v["$blob"])
    raise ValueError(f"cannot bind {v!r}: use null, a string, $int, $real or $blob")


def encode(v):
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return {"$int": str(v)}
    if isinstance(v, float):
        if math.isinf(v):
            return {"$real": "Infinity" if v > 0 else "-Infinity"}
        if v == 0 and math.copysign(1.0, v) < 0:
            return {"$real": "-0"}
        return {"$real": repr(v)}  # the shortest text that reads back to the same double
    if isinstance(v, (bytes, memoryview)):
        return {"$blob": base64.b64encode(bytes(v)).decode("ascii")}
    raise ValueError(f"cannot encode {v!r}")


def params_of(msg):
    return [decode(p) for p in msg.get("params") or []]


def main():
    path = sys.argv[1]
    # isolation_level=None: no implicit transactions, the driver says BEGIN and COMMIT itself.
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        rid = msg.get("id")
        cmd = msg.get("cmd")
        try:
            if cmd == "exec":
                cur = db.execute(msg["sql"], params_of(msg))
                reply = {"changes": cur.rowcount, "last_rowid": cur.lastrowid}
            elif cmd == "script":
                db.executescript(msg["sql"])
                reply = {}
            elif cmd == "tx":
                db.execute("BEGIN IMMEDIATE")
                changes = 0
                try:
                    for step in msg["steps"]:
                        cur = db.execute(step["sql"], params_of(step))
                        changes += max(cur.rowcount, 0)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                reply = {"changes": changes}
            elif cmd == "query":
                cur = db.execute(msg["sql"], params_of(msg))
                cols = [d[0] for d in cur.description or []]
                reply = {"columns": cols, "rows": [[encode(v) for v in r] for r in cur.fetchall()]}
            elif cmd == "close":
                db.close()
                out.write(json.dumps({"id": rid, "ok": True}) + "\n")
                out.flush()
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply.update({"id": rid, "ok": True})
        except Exception as e:  # noqa: BLE001 - every failure goes back to the driver
            reply = {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
