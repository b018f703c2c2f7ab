#!/usr/bin/env python3
"""Writes a store snapshot (data_dir/state.json, the JSON of store::Snapshot) with N ready
instances, for the /scaler/status benchmark: benches/seed_state.py FILE N"""
import json
import sys
import time

path, n = sys.argv[1], int(sys.argv[2])
now = int(time.time() * 1000)
instances = {}
for i in range(n):
    host = "vsg-%012x" % i
    instances[host] = {
        "host": host, "state": "ready", "origin": "scaler",
        "created_at": now - 3_600_000 + i, "state_since": now - 1_800_000 + i,
        "seen_at": now - 1_800_000 + i, "counted": True, "reason": None,
        "approved_at": None, "deleted_at": None,
        "ip": "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255),
        "attempts": 0, "last_error": None,
    }
snapshot = {
    "version": 1,
    "settings": {"min_available": 2, "max_total": 80, "bulk_max": 5},
    "settings_changed_by": None,
    "ledger": {"instances": instances, "offset": 0},
}
with open(path, "w") as f:
    json.dump(snapshot, f)
