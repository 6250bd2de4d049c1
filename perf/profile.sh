#!/usr/bin/env bash
# perf/profile.sh - where a crust bench run's cpu goes, per thread.
#
#   perf/profile.sh OUT CRUST bench SCENARIO [options...]
#
# Records the run with `perf record -e cpu-clock -g` (this guest has no PMU, so
# cpu-clock is the event that works) into OUT.data, keeps the bench's JSON in
# OUT.json and prints, for the threads the bench names in "tids" (tcp-bulk,
# tcp-msgs) or else the busiest threads: their cpu, their shares by library and
# their top symbols. libcrypto and libsodium have no symbols here, so each counts
# as one line. For sealed tcp-bulk it also prints the AEAD's rate per cpu-second of
# libcrypto on each shard: bytes received per second / (libcrypto's share of the
# shard's samples x the shard's cpu), to set beside perf/aead_speed.c.
# Environment: FREQ=2000 (samples per second per cpu), TOP=12 (symbols per thread).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 OUT CRUST bench SCENARIO [options...]" >&2; exit 2; }
out=$1
shift
command -v perf >/dev/null || { echo "perf/profile.sh: perf not installed" >&2; exit 1; }
perf record -q -F "${FREQ:-2000}" -e cpu-clock -g -o "$out.data" -- "$@" --json-only >"$out.json"
perf report -i "$out.data" --no-children --sort pid,dso,sym --stdio -g none \
	-F sample,pid,dso,sym 2>/dev/null >"$out.txt"
python3 - "$out.json" "$out.txt" "${FREQ:-2000}" "${TOP:-12}" <<'EOF'
import collections, json, re, sys

bench = json.load(open(sys.argv[1]))
freq, top = float(sys.argv[3]), int(sys.argv[4])
line_re = re.compile(r"^\s*(\d+)\s+(\d+):(\S+)\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$")
samples = collections.defaultdict(collections.Counter)   # tid -> (dso, sym) -> n
for line in open(sys.argv[2]):
    m = line_re.match(line)
    if not m:
        continue
    n, tid, dso, sym = int(m.group(1)), int(m.group(2)), m.group(4), m.group(6)
    if sym.startswith("0x"):            # a library without symbols: one line for all of it
        sym = "(no symbols)"
    samples[tid][(dso, sym)] += n

cpu_of = {"send": "send_threads", "tx_shard": "tx_shards", "rx_shard": "rx_shards",
          "listener": "listener"}
names = {v: k for k, v in bench.get("tids", {}).items() if v and k != "main"}
if bench.get("scenario") == "handshakes":
    # one thread per dialer service: add them up as one
    main, lsn = bench["tids"]["main"], bench["tids"]["listener"]
    group = collections.Counter()
    for tid in [t for t in samples if t not in (main, lsn)]:
        group.update(samples.pop(tid))
    samples[-1] = group
    names = {lsn: "listener", -1: f"dialers ({bench['dialers']} threads)"}
    cpu_of = {"listener": "listener", names[-1]: "dialers"}
if not names:
    busiest = sorted(samples, key=lambda t: -sum(samples[t].values()))[:3]
    names = {t: f"thread {t}" for t in busiest}
secs = bench.get("seconds", 0)
print(f"scenario {bench.get('scenario')}, records {bench.get('records')}"
      + (f", {bench['rx_gbit_s']:.2f} Gbit/s ({bench['rx_bytes_s'] / 1e9:.2f} GB/s)"
         if "rx_gbit_s" in bench else "")
      + (f", {bench['handshakes_s']:.0f} handshakes/s" if "handshakes_s" in bench else ""))
for tid, name in names.items():
    c = samples.get(tid)
    if not c:
        continue
    total = sum(c.values())
    cpu = (bench["thread_cpu_s"][cpu_of[name]] / secs
           if name in cpu_of and "thread_cpu_s" in bench and secs else total / freq)
    by_dso = collections.Counter()
    for (dso, _), n in c.items():
        by_dso[dso] += n
    print(f"\n{name} (tid {tid}): {cpu:.2f} cpu; "
          + ", ".join(f"{d} {n / total * 100:.1f}%" for d, n in by_dso.most_common(5)))
    for (dso, sym), n in c.most_common(top):
        print(f"  {n / total * 100:5.1f}%  {dso:22s} {sym}")
    crypto = by_dso.get("libcrypto.so.3", 0) / total
    if bench.get("scenario") == "tcp-bulk" and bench.get("records") == "sealed" and crypto:
        print(f"  AEAD: libcrypto {crypto * cpu:.2f} cpu -> "
              f"{bench['rx_bytes_s'] / 1e9 / (crypto * cpu):.2f} GB/s per cpu-second")
EOF
