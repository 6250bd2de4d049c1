#!/usr/bin/env python3
"""Bootstrap cache crash safety: a node that bootstraps to four live
contacts writes its cache four times within milliseconds of starting.
SIGKILL it at a random moment in that window, 200 times (bounded to 90 s):
after every kill the file must load (Python reader of the documented
format), no run may report an unreadable cache or set one aside, and the
entries must be the four contacts."""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, _child_setup, check, crust_binary, log, run  # noqa: E402
import cachefile  # noqa: E402

ROUNDS = 200
TIME_LIMIT = 90.0


def main():
    targets = [CrustNode("T%d" % i, args=["--no-beacon"]) for i in range(4)]
    with tempfile.TemporaryDirectory(prefix="crust-crash-") as tmp:
        cfg = os.path.join(tmp, "node.json")
        cache = os.path.join(tmp, "node.cache")
        with open(cfg, "w") as f:
            json.dump({"hard_coded_contacts": ["127.0.0.1:%d" % t.port for t in targets],
                       "shards": 1, "bind_addr": "127.0.0.1", "pex": False, "beacon": False},
                      f)
        argv = [crust_binary(), "node", "--config", cfg, "--cache", cache]
        start = time.monotonic()
        changed = 0
        last = None
        done = 0
        while done < ROUNDS and time.monotonic() - start < TIME_LIMIT:
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, preexec_fn=_child_setup)
            try:
                time.sleep(random.uniform(0.0, 0.06))
                p.send_signal(signal.SIGKILL)
            finally:
                p.kill()
                _, err = p.communicate(timeout=10)
            err = err.decode("utf-8", "replace")
            if "bootstrap cache" in err:
                check(False, "run %d: no complaint about the cache, got:\n%s" % (done, err))
            if os.path.exists(cache):
                try:
                    entries = cachefile.load(cache)
                except ValueError as e:
                    check(False, "run %d: the cache file loads after SIGKILL (%s)" % (done, e))
                raw = open(cache, "rb").read()
                if raw != last:
                    changed += 1
                    last = raw
            done += 1
        log("%d runs in %.1f s; the file changed under %d of them"
            % (done, time.monotonic() - start, changed))
        check(done >= 50, "at least 50 SIGKILLed runs happened (%d)" % done)
        check(changed >= 5, "kills landed while the cache was being updated (%d runs changed it)"
              % changed)
        check(not glob.glob(cache + ".corrupt-*"), "no cache was ever set aside")
        entries = cachefile.load(cache)
        check(entries and {e["peer"] for e in entries} <= {t.peer for t in targets},
              "the cache holds only the contacts: %d entries" % len(entries))
        # a last, unkilled run loads it and bootstraps from it
        n = CrustNode("final", args=["--no-beacon", "--no-pex", "--cache", cache],
                      isolated=False)
        ev = n.wait_for("new_bootstrap_connection")
        check(ev["peer"] in {t.peer for t in targets}, "a clean start bootstraps from it", n)
        n.quit()
    for t in targets:
        t.quit()


if __name__ == "__main__":
    run(main)
