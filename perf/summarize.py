#!/usr/bin/env python3
"""summarize.py OUT REPEAT SECONDS CRUST CRUST_ARGS SOURCE SWEEP_REPEAT SWEEP_SIZES UDP_SIZES FULL ELAPSED

Medians of perf/run.sh's raw runs. Reads OUT/raw/NAME-N.json (+ .noise), or
NAME-N.unavailable (why a run has no figures), OUT/raw/aead.jsonl
(perf/aead_speed.c), OUT/raw/hs_speed.jsonl (perf/hs_speed.c) and
OUT/raw/hook-rows.jsonl (rows printed by row hooks such as perf/impaired.sh,
contract at the top of perf/run.sh); writes OUT/results.json (every run, the
medians, the table), OUT/results.md (the tables) and OUT/*.dat for plot.gp.

The results table puts each crust figure beside a baseline (what a user would
pick instead, measured in the same run) as a ratio, beside the machine's limit
where there is one, and holds it against the goal of issue 4 (met / missed).
Nothing here fails on a missed goal: figures are reported, never asserted.
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys

OUT = "."


def raw_path(name, rep, ext):
    return os.path.join(OUT, "raw", f"{name}-{rep}.{ext}")


def load(name, rep):
    """(run dict, None) or (None, reason)."""
    try:
        with open(raw_path(name, rep, "unavailable")) as f:
            return None, f.read().strip()
    except OSError:
        pass
    try:
        with open(raw_path(name, rep, "json")) as f:
            text = f.read()
    except OSError:
        return None, "not run"
    try:  # one JSON document (iperf3 -J spans lines), else JSON lines (sockperf_run)
        run = json.loads(text)
    except ValueError:
        try:
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as e:
            return None, f"output is not JSON ({e})"
        if not lines:
            return None, "no output"
        run = lines[0] if len(lines) == 1 else {"lines": lines}
    try:
        with open(raw_path(name, rep, "noise")) as f:
            run["_noise"] = json.load(f)
    except (OSError, ValueError):
        run["_noise"] = {}
    return run, None


def load_jsonl(name):
    try:
        with open(os.path.join(OUT, "raw", name)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def noise(run):
    return run["_noise"].get("other_share")


def iperf_figures(run):
    """The figures crust reports, from iperf3 -J (received side, omitted second excluded)."""
    end = run["end"]
    rx = end["sum_received"]
    blk = run["start"]["test_start"]["blksize"]
    cpu = end["cpu_utilization_percent"]
    cpu_s = (cpu["host_total"] + cpu["remote_total"]) / 100 * rx["seconds"]
    return {
        "gbit_s": rx["bits_per_second"] / 1e9,
        "gbyte_s": rx["bytes"] / rx["seconds"] / 1e9,
        "msgs_s": rx["bytes"] / rx["seconds"] / blk,
        "cpu_s_per_gb": cpu_s / (rx["bytes"] / 1e9) if rx["bytes"] else 0,
        "retransmits": end["sum_sent"].get("retransmits", 0),
        "other_share": noise(run),
    }


def traffic_figures(run):
    """The traffic block every crust scenario and perf/ driver prints (tools/bench.h)."""
    return {
        "gbit_s": run["rx_bytes_s"] * 8 / 1e9 if run.get("rx_bytes_s") is not None else None,
        "gbyte_s": run["rx_bytes_s"] / 1e9 if run.get("rx_bytes_s") is not None else None,
        "msgs_s": run.get("rx_msgs_s"),
        "tx_msgs_s": run.get("tx_msgs_s"),
        "rx_packets_s": run.get("rx_packets_s"),
        "tx_packets_s": run.get("tx_packets_s"),
        "cpu_s_per_gb": run.get("cpu_s_per_gb"),
        "sender_cpu": run["sender"]["cpu_s"] / run["seconds"] if run.get("seconds") else None,
        "receiver_cpu": run["receiver"]["cpu_s"] / run["seconds"] if run.get("seconds") else None,
        "other_share": noise(run),
    }


def crust_figures(run):
    st = run["stats"]
    f = traffic_figures(run)
    f.update({
        "gbit_s": run["rx_gbit_s"],
        "bytes_per_send_call": st["bytes_per_send_call"],
        "bytes_per_recv_call": st["bytes_per_recv_call"],
        "enobufs_retries_s": run["enobufs_retries"] / run["seconds"],
        "send_threads_cpu": run["thread_cpu_s"]["send_threads"] / run["seconds"],
        "tx_shards_cpu": run["thread_cpu_s"]["tx_shards"] / run["seconds"],
        "rx_shards_cpu": run["thread_cpu_s"]["rx_shards"] / run["seconds"],
        "integrity_errors": sum(v for k, v in run["errors"].items()),
    })
    return f


def udp_figures(run):
    f = traffic_figures(run)
    if "totals" in run:  # crust bench udp-pps
        f["kernel_drops_s"] = run["window_kernel_drops"] / run["seconds"]
        f["datagrams_per_rx_call"] = run["datagrams_per_rx_call"]
    return f


def pingpong_figures(run):
    lat = run["latency_us"]
    f = traffic_figures(run)
    f.update({"round_trips_s": run["round_trips_s"], "p50": lat["p50"], "p90": lat["p90"],
              "p99": lat["p99"], "p999": lat["p999"], "mean": lat["mean"]})
    return f


def sockperf_text(run, who):
    for line in run.get("lines", []):
        if line.get("sockperf") == who:
            return line["text"]
    return ""


def sockperf_tput_figures(run):
    """sockperf throughput: the client's sent rate; received = the server's total / the time."""
    client, server = sockperf_text(run, "client"), sockperf_text(run, "server")
    sent = re.search(r"Total of (\d+) messages sent in ([\d.]+) sec", client)
    got = re.search(r"Total (\d+) messages received", server)
    if not sent or not got:
        raise ValueError("sockperf output not understood")
    secs = float(sent.group(2))
    rate = re.search(r"Message Rate is (\d+)", client)
    tx = float(rate.group(1)) if rate else int(sent.group(1)) / secs
    rx = int(got.group(1)) / secs  # the server also counts the few warm-up messages
    return {"tx_msgs_s": tx, "msgs_s": rx, "rx_packets_s": rx, "other_share": noise(run)}


def sockperf_pp_figures(run):
    """sockperf ping-pong --full-rtt: round-trip percentiles in microseconds."""
    client = sockperf_text(run, "client")
    pct = {float(p): float(v) for p, v in
           re.findall(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)", client)}
    avg = re.search(r"avg-(?:rtt|latency)=([\d.]+)", client)
    if 50.0 not in pct or 99.0 not in pct or 99.9 not in pct:
        raise ValueError("sockperf output not understood")
    return {"p50": pct[50.0], "p90": pct.get(90.0), "p99": pct[99.0], "p999": pct[99.9],
            "mean": float(avg.group(1)) if avg else None, "other_share": noise(run)}


def handshake_figures(run):
    err = run["errors"]
    return {
        "handshakes_s": run["handshakes_s"],
        "accepted_s": run["accepted_s"],
        "cpu_s_per_1000": run["cpu_s_per_1000"],
        "listener_cpu_s_per_1000": run["listener_cpu_s_per_1000"],
        "dialers_cpu_s_per_1000": run["dialers_cpu_s_per_1000"],
        "listener_cpu": run["thread_cpu_s"]["listener"] / run["seconds"],
        "dialers_cpu": run["thread_cpu_s"]["dialers"] / run["seconds"],
        "latency_p50_us": run["latency_us"]["p50"],
        "latency_p99_us": run["latency_us"]["p99"],
        "failures": err["connect_failed"] + err["handshake_failed"] + err["abuse"]
        + err["drop_failed"] + err["unresolved"],
        "other_share": noise(run),
    }


def idle_figures(run):
    pc, first = run["per_conn_bytes"], run["per_first_conn_bytes"]
    return {
        "rss_per_conn": pc["rss"],
        "heap_per_conn": pc["heap_in_use"],
        "slab_per_conn": pc["kernel_slab"],
        "first_rss_per_conn": first["rss"],
        "connects_s": run["connects_s"],
        "hold_cpu_per_s": run["hold_cpu_per_s"],
        "failures": sum(run["errors"].values()),
        "conns": run["conns"],
        "other_share": noise(run),
    }


RUNS = {  # name: figures (main matrix)
    "iperf3-bulk": iperf_figures,
    "iperf3-bulk-1m": iperf_figures,
    "iperf3-64": iperf_figures,
    "crust-tcp-bulk": crust_figures,
    "crust-tcp-bulk-tracer": crust_figures,
    "crust-tcp-bulk-tuned": crust_figures,
    "crust-tcp-msgs": crust_figures,
    "crust-tcp-msgs-tracer": crust_figures,
    "uv-64": traffic_figures,
    "uv-64-coalesced": traffic_figures,
    "crust-udp-pps": udp_figures,
    "limit-udp-gso": udp_figures,
    "limit-udp-sendmmsg": udp_figures,
    "sockperf-udp-tput": sockperf_tput_figures,
    "crust-pingpong": pingpong_figures,
    "crust-pingpong-tracer": pingpong_figures,
    "sockperf-tcp-pp": sockperf_pp_figures,
    "sockperf-udp-pp": sockperf_pp_figures,
    "enet-1200": traffic_figures,
    "crust-rudp-bulk": traffic_figures,   # HOOK rudp (tools/bench_rudp.c)
    "crust-rudp-msgs": traffic_figures,   # HOOK rudp
    "crust-handshakes": handshake_figures,
    "crust-idle": idle_figures,
}
THROUGHPUT = {  # crust's own counters table: name -> (scenario, records)
    "crust-tcp-bulk": ("tcp-bulk 128 KiB", "sealed"),
    "crust-tcp-bulk-tracer": ("tcp-bulk 128 KiB", "tracer"),
    "crust-tcp-bulk-tuned": ("tcp-bulk 128 KiB, 8 MiB queue, no heap trim", "sealed"),
    "crust-tcp-msgs": ("tcp-msgs 64 B", "sealed"),
    "crust-tcp-msgs-tracer": ("tcp-msgs 64 B", "tracer"),
}


class Series:
    """The runs of one name: figures of those that ran, reasons of those that did not."""

    def __init__(self, name, fn, reps):
        self.name, self.runs, self.figs, self.reasons = name, [], [], []
        for rep in range(1, reps + 1):
            run, why = load(name, rep)
            if run is not None:
                try:
                    self.figs.append(fn(run))
                    self.runs.append(run)
                except (KeyError, ValueError, TypeError, ZeroDivisionError) as e:
                    self.reasons.append(f"run {rep}: figures not understood ({e!r})")
            else:
                self.reasons.append(why)
        self.med = medians(self.figs) if self.figs else None

    def get(self, key):
        return self.med.get(key) if self.med else None

    def values(self, key):
        return [f.get(key) for f in self.figs]

    def why(self):
        if self.figs:
            return None
        reasons = [r for r in self.reasons if r != "not run"] or self.reasons
        return reasons[0] if reasons else "not run"


def medians(runs):
    med = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float)) and r[k] is not None]
        med[k] = statistics.median(vals) if vals else None
    return med


def machine():
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release()}


def fmt(v, digits=2):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b else None


class Row:
    """One line of the results table.

    goals: list of (text, kind, threshold): kind "baseline>=" / "baseline<=" (the
    ratio crust/baseline), "limit>=" (crust/limit), "abs>=" (crust itself).
    """

    def __init__(self, group, scenario, metric, crust, baseline=None, baseline_is="-",
                 limit=None, limit_is=None, goals=(), digits=2, crust_why=None,
                 baseline_why=None, crust_runs=(), baseline_runs=(), note=None, met=None):
        self.group, self.scenario, self.metric = group, scenario, metric
        self.crust, self.baseline, self.baseline_is = crust, baseline, baseline_is
        self.limit, self.limit_is, self.digits = limit, limit_is, digits
        self.crust_why, self.baseline_why = crust_why, baseline_why
        self.crust_runs, self.baseline_runs, self.note = list(crust_runs), list(baseline_runs), note
        self.ratio = ratio(crust, baseline)
        self.limit_ratio = ratio(crust, limit)
        self.goal = "; ".join(g[0] for g in goals) or "-"
        self.met = met
        if goals and met is None:
            checks = [self.check(kind, th) for _, kind, th in goals]
            self.met = None if None in checks else all(checks)

    def check(self, kind, th):
        v = {"baseline>=": self.ratio, "baseline<=": self.ratio, "limit>=": self.limit_ratio,
             "abs>=": self.crust}[kind]
        if v is None:
            return None
        return v <= th if kind.endswith("<=") else v >= th

    @classmethod
    def of(cls, group, scenario, metric, cs, key, bs=None, bkey=None, baseline_is="-",
           limit=None, limit_is=None, goals=(), digits=2, note=None, scale=1.0):
        def sc(v):
            return v * scale if v is not None else None
        return cls(group, scenario, metric, sc(cs.get(key)) if cs else None,
                   sc(bs.get(bkey or key)) if bs else None, baseline_is, limit, limit_is, goals,
                   digits, crust_why=cs.why() if cs else "not built yet",
                   baseline_why=bs.why() if bs else None,
                   crust_runs=[sc(v) for v in cs.values(key)] if cs else [],
                   baseline_runs=[sc(v) for v in bs.values(bkey or key)] if bs else [], note=note)

    def crust_text(self):
        if self.crust is None:
            if not self.crust_why:
                return "-"
            if self.crust_why == "not built yet" or self.crust_why.startswith("not run"):
                return self.crust_why
            return f"FAILED / unavailable: {self.crust_why}"
        return fmt(self.crust, self.digits)

    def baseline_text(self):
        if self.baseline is None and self.baseline_why:
            return f"unavailable: {self.baseline_why}"
        return fmt(self.baseline, self.digits)

    def limit_text(self):
        if self.limit is None:
            return "-" if not self.limit_is else f"unavailable ({self.limit_is})"
        r = f" (crust = {self.limit_ratio:.2f}x)" if self.limit_ratio is not None else ""
        return f"{fmt(self.limit, self.digits)}{r}"

    def met_text(self):
        return {None: "-", True: "**met**", False: "**missed**"}[self.met]

    def as_json(self):
        return {k: getattr(self, k) for k in (
            "group", "scenario", "metric", "crust", "baseline", "baseline_is", "ratio", "limit",
            "limit_is", "limit_ratio", "goal", "met", "crust_why", "baseline_why", "crust_runs",
            "baseline_runs", "note")}


def aead_pick(aead, cipher, impl, op, size, memory="warm", other="none"):
    for a in aead:
        if (a.get("cipher"), a.get("impl"), a.get("op"), a.get("size"), a.get("memory"),
                a.get("other_load", "none")) == (cipher, impl, op, size, memory, other):
            return a["gbyte_s"]
    return None


def hs_ceiling(hs):
    """Handshakes/s one core finishes for the busier role, and cpu s per 1000 for both."""
    roles = {h["role"]: h for h in hs}
    if "initiator" not in roles or "responder" not in roles:
        return None, None
    per_s = min(roles["initiator"]["per_s"], roles["responder"]["per_s"])
    return per_s, roles["both"]["us_each"] / 1000 if "both" in roles else None


def crust_lines(med):
    lines = [
        "| scenario | records | bytes/send call | bytes/recv call | ENOBUFS retries/s | "
        "send thread cpu | tx shard cpu | rx shard cpu | integrity errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (scenario, records) in THROUGHPUT.items():
        m = med[name]
        lines.append(f"| {scenario} | {records} | {fmt(m['bytes_per_send_call'])} | "
                     f"{fmt(m['bytes_per_recv_call'])} | {fmt(m['enobufs_retries_s'])} | "
                     f"{fmt(m['send_threads_cpu'])} | {fmt(m['tx_shards_cpu'])} | "
                     f"{fmt(m['rx_shards_cpu'])} | {fmt(m['integrity_errors'], 0)} |")
    return lines


def handshake_lines(m):
    return [
        "| handshakes/s (dialers) | accepted/s (listener) | listener cpu | dialers cpu | "
        "listener cpu s/1000 | dialers cpu s/1000 | latency p50 | latency p99 | failures |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {fmt(m['handshakes_s'])} | {fmt(m['accepted_s'])} | {fmt(m['listener_cpu'])} | "
        f"{fmt(m['dialers_cpu'])} | {fmt(m['listener_cpu_s_per_1000'], 3)} | "
        f"{fmt(m['dialers_cpu_s_per_1000'], 3)} | {fmt(m['latency_p50_us'], 0)} us | "
        f"{fmt(m['latency_p99_us'], 0)} us | {fmt(m['failures'], 0)} |",
    ]


def idle_lines(m, conns):
    return [
        "| connections | RSS/conn | heap in use/conn | kernel slab/conn | RSS/conn incl. first use | "
        "connects/s | cpu while idle | failures |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {conns} | {fmt(m['rss_per_conn'])} B | {fmt(m['heap_per_conn'])} B | "
        f"{fmt(m['slab_per_conn'])} B | {fmt(m['first_rss_per_conn'])} B | {fmt(m['connects_s'])} | "
        f"{fmt(m['hold_cpu_per_s'], 3)} cpu | {fmt(m['failures'], 0)} |",
    ]


def aead_lines(aead):
    lines = ["| cipher | implementation | record | memory | other cpu | seal GB/s | open GB/s |",
             "| --- | --- | ---: | --- | --- | ---: | ---: |"]
    seen = []
    for a in aead:
        if "op" not in a:
            continue
        key = (a["cipher"], a["impl"], a["size"], a["memory"], a.get("other_load", "none"))
        if key in seen:
            continue
        seen.append(key)
        s = aead_pick(aead, a["cipher"], a["impl"], "seal", a["size"], a["memory"], key[4])
        o = aead_pick(aead, a["cipher"], a["impl"], "open", a["size"], a["memory"], key[4])
        lines.append(f"| {a['cipher']} | {a['impl']} | {a['size']} B | {a['memory']} | {key[4]} | "
                     f"{fmt(s)} | {fmt(o)} |")
    vers = next((a for a in aead if "libsodium" in a), None)
    if vers:
        lines += ["", f"libsodium {vers['libsodium']}, {vers['openssl']}, AES-NI: {vers['aesni']}."]
    return lines


def hs_lines(hs):
    lines = ["| role | us of cpu per handshake | handshakes/s on one core |", "| --- | ---: | ---: |"]
    for h in hs:
        lines.append(f"| {h['role']} | {h['us_each']:.1f} | {fmt(h['per_s'])} |")
    return lines




def build_rows(S, aead, hs, hook_rows):
    """The results table, grouped; goals are issue 4's (and the earlier bench's)."""
    rows = []
    seal = aead_pick(aead, "aes-256-gcm", "openssl-evp", "seal", 131072)
    seal_is = "AES-256-GCM seal, OpenSSL EVP, 128 KiB records, one core (aead_speed)"
    tcp = "TCP"
    rows.append(Row.of(tcp, "tcp-bulk 128 KiB, tracer", "Gbit/s received",
                       S["crust-tcp-bulk-tracer"], "gbit_s", S["iperf3-bulk"],
                       baseline_is="iperf3, one stream, 128 KiB writes",
                       goals=[(">= 1.0x iperf3", "baseline>=", 1.0)]))
    rows.append(Row.of(tcp, "tcp-bulk 128 KiB, sealed", "GB/s received", S["crust-tcp-bulk"],
                       "gbyte_s", S["iperf3-bulk"], baseline_is="iperf3, 128 KiB writes (plain TCP)",
                       limit=seal, limit_is=seal_is, goals=[(">= 0.85x AEAD limit", "limit>=", 0.85)]))
    rows.append(Row.of(tcp, "tcp-bulk 128 KiB, sealed, 8 MiB send queue, heap trim off (diagnostic)",
                       "GB/s received", S["crust-tcp-bulk-tuned"], "gbyte_s", S["iperf3-bulk"],
                       baseline_is="iperf3, 128 KiB writes", limit=seal, limit_is=seal_is))
    for name, rec in (("crust-tcp-bulk", "sealed"), ("crust-tcp-bulk-tracer", "tracer")):
        rows.append(Row.of(tcp, f"tcp-bulk 128 KiB, {rec}", "Gbit/s received", S[name], "gbit_s",
                           S["iperf3-bulk-1m"], baseline_is="iperf3 -l 1M (its best single stream)"))
        rows.append(Row.of(tcp, f"tcp-bulk 128 KiB, {rec}", "CPU s/GB (lower is better)", S[name],
                           "cpu_s_per_gb", S["iperf3-bulk"], baseline_is="iperf3, 128 KiB writes"))
    uv_is = "libuv, same 4-byte framing, a uv_write per message (perf/uv_frame.c --coalesce 1)"
    rows.append(Row.of(tcp, "tcp-msgs 64 B, sealed, one connection", "messages/s received",
                       S["crust-tcp-msgs"], "msgs_s", S["uv-64"], baseline_is=uv_is,
                       goals=[(">= 5,000,000/s", "abs>=", 5e6), (">= 3x libuv", "baseline>=", 3.0)],
                       digits=0))
    rows.append(Row.of(tcp, "tcp-msgs 64 B, sealed, one connection", "messages/s received",
                       S["crust-tcp-msgs"], "msgs_s", S["uv-64-coalesced"],
                       baseline_is="libuv, same framing, the application packs ~960 frames per "
                       "uv_write (perf/uv_frame.c)", digits=0))
    rows.append(Row.of(tcp, "tcp-msgs 64 B, tracer, one connection", "messages/s received",
                       S["crust-tcp-msgs-tracer"], "msgs_s", S["uv-64"], baseline_is=uv_is, digits=0))
    rows.append(Row.of(tcp, "tcp-msgs 64 B, sealed", "messages/s received", S["crust-tcp-msgs"],
                       "msgs_s", S["iperf3-64"], baseline_is="iperf3 -l 64 (a send() per message)",
                       digits=0))
    rows.append(Row.of(tcp, "tcp-msgs 64 B, sealed", "CPU s/GB (lower is better)",
                       S["crust-tcp-msgs"], "cpu_s_per_gb", S["uv-64"], baseline_is=uv_is))

    udp = "Datagrams"
    gso = S["limit-udp-gso"]
    rows.append(Row.of(udp, "udp-pps 1200 B through the engine", "datagrams/s received",
                       S["crust-udp-pps"], "msgs_s", S["sockperf-udp-tput"],
                       baseline_is="sockperf throughput -m 1200 (received by its server)",
                       limit=gso.get("msgs_s"),
                       limit_is="UDP GSO/GRO loop, plain sockets (perf/udp_limits.c --mode gso)",
                       goals=[(">= 0.8x GSO/GRO limit", "limit>=", 0.8),
                              (">= 3x sockperf", "baseline>=", 3.0)], digits=0))
    rows.append(Row.of(udp, "udp-pps 1200 B through the engine", "datagrams/s received",
                       S["crust-udp-pps"], "msgs_s", S["limit-udp-sendmmsg"],
                       baseline_is="sendmmsg/recvmmsg loop, 64 per call (perf/udp_limits.c "
                       "--mode sendmmsg)", digits=0))
    rows.append(Row.of(udp, "udp-pps 1200 B through the engine", "datagrams/s sent",
                       S["crust-udp-pps"], "tx_msgs_s", S["sockperf-udp-tput"],
                       baseline_is="sockperf throughput -m 1200 (sent by its client)",
                       limit=gso.get("tx_msgs_s"), limit_is="UDP GSO loop, sent", digits=0))
    rows.append(Row.of(udp, "udp-pps 1200 B", "CPU s/GB (lower is better)", S["crust-udp-pps"],
                       "cpu_s_per_gb", S["limit-udp-gso"], baseline_is="UDP GSO/GRO loop"))

    lat = "Latency"
    sp_tcp = "sockperf ping-pong --tcp -m 64 --full-rtt (round trip)"
    rows.append(Row.of(lat, "pingpong 64 B, sealed", "round trip p50, us (lower is better)",
                       S["crust-pingpong"], "p50", S["sockperf-tcp-pp"], baseline_is=sp_tcp,
                       goals=[("<= 1.1x sockperf", "baseline<=", 1.1)]))
    for q in ("p99", "p999"):
        rows.append(Row.of(lat, "pingpong 64 B, sealed", f"round trip {q}, us", S["crust-pingpong"],
                           q, S["sockperf-tcp-pp"], baseline_is=sp_tcp))
    rows.append(Row.of(lat, "pingpong 64 B, tracer", "round trip p50, us",
                       S["crust-pingpong-tracer"], "p50", S["sockperf-tcp-pp"], baseline_is=sp_tcp))
    rows.append(Row.of(lat, "pingpong 64 B, sealed", "round trip p50, us", S["crust-pingpong"],
                       "p50", S["sockperf-udp-pp"],
                       baseline_is="sockperf ping-pong over UDP -m 64 --full-rtt"))

    rudp = "Reliable UDP"  # HOOK rudp
    enet = S["enet-1200"]
    cb, tcp_sealed = S.get("crust-rudp-bulk"), S["crust-tcp-bulk"]
    built = cb is not None and (cb.figs or any(r != "not run" for r in cb.reasons))
    rows.append(Row.of(rudp, "rudp-bulk, sealed", "GB/s received", cb if built else None,
                       "gbyte_s", enet, baseline_is="ENet 1.3 reliable, 1200 B packets "
                       "(perf/enet_bench.c)", limit=tcp_sealed.get("gbyte_s"),
                       limit_is="crust tcp-bulk sealed, this run",
                       goals=[(">= 1.0x crust TCP sealed", "limit>=", 1.0),
                              (">= 5x ENet", "baseline>=", 5.0)], digits=3))
    cm = S.get("crust-rudp-msgs")
    if cm is not None and (cm.figs or any(r != "not run" for r in cm.reasons)):
        rows.append(Row.of(rudp, "rudp-msgs, sealed", "messages/s received", cm, "msgs_s", enet,
                           baseline_is="ENet, 1200 B reliable packets", digits=0))

    conn = "Connections"
    ceiling, both_per_k = hs_ceiling(hs)
    h = S["crust-handshakes"]
    rows.append(Row(conn, "handshakes, sealed (listener cpu 0, dialers cpu 1)",
                    "handshakes/s completed", h.get("handshakes_s"), None, "-", ceiling,
                    "handshake crypto of the busier role on one core (hs_speed)",
                    [(">= 5,000/s (earlier goal)", "abs>=", 5000)], digits=0, crust_why=h.why(),
                    crust_runs=h.values("handshakes_s")))
    rows.append(Row(conn, "handshakes, sealed", "CPU s per 1000 handshakes (both ends)",
                    h.get("cpu_s_per_1000"), None, "-", both_per_k,
                    "both roles' crypto in process (hs_speed)", digits=3, crust_why=h.why(),
                    crust_runs=h.values("cpu_s_per_1000")))
    i = S["crust-idle"]
    rows.append(Row(conn, f"idle, {fmt(i.get('conns'), 0)} connections (both ends in one process)",
                    "bytes of RSS per connection", i.get("rss_per_conn"), digits=0,
                    crust_why=i.why(), crust_runs=i.values("rss_per_conn")))

    for r in hook_rows:  # HOOK rows (perf/impaired.sh ...)
        rows.append(Row(r.get("group", r.get("hook", "?")), r.get("scenario", "?"),
                        r.get("metric", "-"), r.get("crust"), r.get("baseline"),
                        r.get("baseline_is", "-"), r.get("limit"), r.get("limit_is"),
                        (), crust_why=r.get("unavailable") or ("no figure" if r.get("crust") is None
                                                               else None),
                        note=r.get("note"), met=r.get("met")))
        rows[-1].goal = r.get("goal", "-")
    return rows


def table_lines(rows):
    lines = []
    group = None
    for r in rows:
        if r.group != group:
            group = r.group
            lines += ["", f"**{group}**", "",
                      "| scenario | crust | baseline | ratio | limit | goal | met? |",
                      "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
        lines.append(f"| {r.scenario}: {r.metric} | {r.crust_text()} | {r.baseline_text()} | "
                     f"{fmt(r.ratio) + 'x' if r.ratio is not None else '-'} | {r.limit_text()} | "
                     f"{r.goal} | {r.met_text()} |")
    lines += ["", "Baselines, limits and individual runs:", ""]
    for r in rows:
        runs = ", ".join(fmt(v, r.digits) for v in r.crust_runs if v is not None)
        bruns = ", ".join(fmt(v, r.digits) for v in r.baseline_runs if v is not None)
        lines.append(f"- {r.scenario}, {r.metric}: baseline = {r.baseline_is}"
                     + (f"; limit = {r.limit_is}" if r.limit_is else "")
                     + (f"; crust runs {runs}" if runs else "")
                     + (f"; baseline runs {bruns}" if bruns else "")
                     + (f". {r.note}" if r.note else ""))
    return lines


def pingpong_lines(S):
    lines = ["| | p50 | p90 | p99 | p99.9 | mean | round trips/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, label in (("crust-pingpong", "crust pingpong, sealed"),
                        ("crust-pingpong-tracer", "crust pingpong, tracer"),
                        ("sockperf-tcp-pp", "sockperf ping-pong, TCP"),
                        ("sockperf-udp-pp", "sockperf ping-pong, UDP")):
        s = S[name]
        if not s.figs:
            lines.append(f"| {label} | unavailable: {s.why()} | | | | | |")
            continue
        lines.append(f"| {label} | {fmt(s.get('p50'))} | {fmt(s.get('p90'))} | "
                     f"{fmt(s.get('p99'))} | {fmt(s.get('p999'))} | {fmt(s.get('mean'))} | "
                     f"{fmt(s.get('round_trips_s'), 0)} |")
    return lines


def traffic_lines(S):
    """tx/rx packets, messages, bytes and cpu of every traffic run: both views."""
    lines = ["| run | tx packets/s | rx packets/s | tx msgs/s | rx msgs/s | rx Gbit/s | "
             "cpu s/GB | sender cpu | receiver cpu |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in S.items():
        if not s.figs or s.get("rx_packets_s") is None or name.startswith("sweep-"):
            continue
        lines.append(f"| {name} | {fmt(s.get('tx_packets_s'), 0)} | {fmt(s.get('rx_packets_s'), 0)} | "
                     f"{fmt(s.get('tx_msgs_s'), 0)} | {fmt(s.get('msgs_s'), 0)} | "
                     f"{fmt(s.get('gbit_s'))} | {fmt(s.get('cpu_s_per_gb'), 3)} | "
                     f"{fmt(s.get('sender_cpu'))} | {fmt(s.get('receiver_cpu'))} |")
    return lines


SWEEP_TCP = (("crust sealed", "sweep-crust-tcp", crust_figures),
             ("crust tracer", "sweep-crust-tcp-tracer", crust_figures),
             ("iperf3 -l SIZE", "sweep-iperf3", iperf_figures),
             ("libuv, uv_write per message", "sweep-uv", traffic_figures),
             ("libuv, coalesced writes", "sweep-uv-coalesced", traffic_figures))
SWEEP_UDP = (("crust udp-pps", "sweep-crust-udp", udp_figures),
             ("UDP GSO/GRO loop", "sweep-limit-gso", udp_figures),
             ("sockperf throughput", "sweep-sockperf", sockperf_tput_figures))


def sweeps(reps, tcp_sizes, udp_sizes):
    tcp = {size: [Series(f"{pre}-{size}", fn, reps) for _, pre, fn in SWEEP_TCP] for size in tcp_sizes}
    udp = {size: [Series(f"{pre}-{size}", fn, reps) for _, pre, fn in SWEEP_UDP] for size in udp_sizes}
    return tcp, udp


def num(v, scale=1.0):
    return f"{v * scale:.6g}" if v is not None else "NaN"


def write_plot_data(S, tcp, udp):
    with open(os.path.join(OUT, "sweep_tcp.dat"), "w") as f:
        f.write("# size  Mmsg/s: " + " | ".join(l for l, _, _ in SWEEP_TCP)
                + "  then Gbit/s of the same\n")
        for size, series in tcp.items():
            f.write(f"{size} " + " ".join(num(s.get("msgs_s"), 1e-6) for s in series) + " "
                    + " ".join(num(s.get("gbit_s")) for s in series) + "\n")
    with open(os.path.join(OUT, "sweep_udp.dat"), "w") as f:
        f.write("# size  Mdatagrams/s received: " + " | ".join(l for l, _, _ in SWEEP_UDP) + "\n")
        for size, series in udp.items():
            f.write(f"{size} " + " ".join(num(s.get("msgs_s"), 1e-6) for s in series) + "\n")
    with open(os.path.join(OUT, "latency.dat"), "w") as f:
        f.write("# label p50 p99 p999 (us, round trip)\n")
        for name, label in (("crust-pingpong", "crust sealed"), ("crust-pingpong-tracer", "crust tracer"),
                            ("sockperf-tcp-pp", "sockperf TCP"), ("sockperf-udp-pp", "sockperf UDP")):
            s = S[name]
            f.write(f"\"{label}\" {num(s.get('p50'))} {num(s.get('p99'))} {num(s.get('p999'))}\n")
    with open(os.path.join(OUT, "plot.dat"), "w") as f:
        f.write("# label crust-sealed crust-tracer iperf3-same-size iperf3-1MiB-writes\n")
        f.write(f"\"tcp-bulk 128 KiB, Gbit/s\" {num(S['crust-tcp-bulk'].get('gbit_s'))} "
                f"{num(S['crust-tcp-bulk-tracer'].get('gbit_s'))} {num(S['iperf3-bulk'].get('gbit_s'))} "
                f"{num(S['iperf3-bulk-1m'].get('gbit_s'))}\n")
        f.write(f"\"tcp-msgs 64 B, Mmsg/s\" {num(S['crust-tcp-msgs'].get('msgs_s'), 1e-6)} "
                f"{num(S['crust-tcp-msgs-tracer'].get('msgs_s'), 1e-6)} "
                f"{num(S['iperf3-64'].get('msgs_s'), 1e-6)} NaN\n")


def sweep_lines(tcp, udp):
    lines = ["| size | " + " | ".join(l for l, _, _ in SWEEP_TCP) + " |",
             "| ---: |" + " ---: |" * len(SWEEP_TCP)]
    for size, series in tcp.items():
        lines.append(f"| {size} B | " + " | ".join(
            f"{fmt(s.get('msgs_s'), 0)} msg/s, {fmt(s.get('gbit_s'))} Gbit/s" if s.figs
            else "unavailable" for s in series) + " |")
    lines += ["", "| size | " + " | ".join(l for l, _, _ in SWEEP_UDP) + " |",
              "| ---: |" + " ---: |" * len(SWEEP_UDP)]
    for size, series in udp.items():
        lines.append(f"| {size} B | " + " | ".join(
            f"{fmt(s.get('msgs_s'), 0)} datagrams/s" if s.figs else "unavailable" for s in series)
            + " |")
    return lines


def main():
    global OUT
    (OUT, repeat, secs, crust, crust_args, source, sweep_repeat, sweep_sizes, udp_sizes, full,
     elapsed) = sys.argv[1:12]
    repeat, sweep_repeat = int(repeat), int(sweep_repeat)
    S = {name: Series(name, fn, repeat) for name, fn in RUNS.items()}
    tcp, udp = sweeps(sweep_repeat, sweep_sizes.split(), udp_sizes.split())
    aead = load_jsonl("aead.jsonl")
    hs = load_jsonl("hs_speed.jsonl")
    hook_rows = load_jsonl("hook-rows.jsonl")
    rows = build_rows(S, aead, hs, hook_rows)
    result = {
        "machine": machine(),
        "params": {"seconds": float(secs), "repeat": repeat, "crust": crust, "crust_args": crust_args,
                   "source": source, "full": full == "1", "elapsed_s": int(elapsed),
                   "sweep_repeat": sweep_repeat, "pinning": "receiver/server/listener cpu 0, "
                   "sender/client/dialers cpu 1"},
        "median": {n: s.med for n, s in S.items()},
        "unavailable": {n: s.why() for n, s in S.items() if not s.figs},
        "table": [r.as_json() for r in rows],
        "sweep_tcp": {size: {s.name: s.med for s in ss} for size, ss in tcp.items()},
        "sweep_udp": {size: {s.name: s.med for s in ss} for size, ss in udp.items()},
        "aead": aead,
        "hs_speed": hs,
        "hook_rows": hook_rows,
        "runs": {n: s.figs for n, s in S.items()},
        "raw": {n: s.runs for n, s in S.items()},
    }
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(result, f, indent=1)

    mc = result["machine"]
    lines = [
        f"# crust on loopback: medians of {repeat} runs of {secs} s"
        f" ({'make bench-full' if full == '1' else 'make bench'}, {int(elapsed) // 60} min "
        f"{int(elapsed) % 60} s)",
        "",
        f"{mc['cpu_model']}, {mc['cpus']} cpus, kernel {mc['kernel']}; receiver/server/listener "
        "pinned to cpu 0, sender/client/dialers to cpu 1. "
        f"crust: {source}{' ' + crust_args if crust_args else ''}. Records: sealed = the default "
        "secure session (AES-256-GCM on OpenSSL EVP here), tracer = clear records (--tracer). "
        "Ratio = crust / baseline (what a user would pick instead); limit = the machine's own "
        "ceiling, with crust's share of it; goal = issue 4's, reported, never asserted.",
    ]
    lines += table_lines(rows)
    lines += ["", "Round trips (microseconds; sockperf with --full-rtt):", ""] + pingpong_lines(S)
    lines += ["", "Every traffic run, both views (medians; packets: TCP data segments, UDP "
              "datagrams):", ""] + traffic_lines(S)
    lines += ["", f"Throughput vs message size (medians of {sweep_repeat} run(s) of each; "
              "results_sweep_tcp.png, results_sweep_udp.png):", ""] + sweep_lines(tcp, udp)
    if all(S[n].figs for n in THROUGHPUT):
        lines += ["", "TCP throughput, crust's own counters (medians):", ""] + crust_lines(
            {n: S[n].med for n in THROUGHPUT})
    if S["crust-handshakes"].figs:
        lines += ["", f"Handshakes (medians; {S['crust-handshakes'].runs[0]['conns']} dials in "
                  "flight, one dialer service each):", ""] + handshake_lines(S["crust-handshakes"].med)
    if S["crust-idle"].figs:
        lines += ["", "Idle connections (medians; both ends in one process: listener plus one "
                  "dialer service per connection):", ""] + idle_lines(
                      S["crust-idle"].med, S["crust-idle"].runs[0]["conns"])
    if aead:
        lines += ["", "AEAD on one core (perf/aead_speed.c, cpu 1; warm = the ceiling, the rest "
                  "diagnostics):", ""] + aead_lines(aead)
    if hs:
        lines += ["", "Handshake crypto on one core (perf/hs_speed.c, cpu 1):", ""] + hs_lines(hs)
    gone = {n: s.why() for n, s in S.items() if not s.figs}
    if gone:
        lines += ["", "Not measured in this run:", ""] + [f"- {n}: {w}" for n, w in gone.items()]
    other = [f["other_share"] for s in S.values() for f in s.figs if f.get("other_share") is not None]
    if other:
        lines += ["", "Other processes during the kept runs (share of one cpu: the machine's cpu time "
                  f"less the runs' own): median {statistics.median(other):.2f}, max {max(other):.2f}."]
    lines.append("")
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write("\n".join(lines))
    write_plot_data(S, tcp, udp)



if __name__ == "__main__":
    main()
