#!/usr/bin/env python3
"""summarize.py OUT REPEAT SECONDS CRUST CRUST_ARGS SOURCE - medians of perf/run.sh's raw runs.

Reads OUT/raw/NAME-N.json (+ .noise) for the iperf3 and crust runs named below,
OUT/raw/aead.jsonl (perf/aead_speed.c) and OUT/raw/hs_speed.jsonl (perf/hs_speed.c);
writes OUT/results.json (every run and the medians), OUT/results.md (the tables) and
OUT/plot.dat (for plot.gp).

The results table compares each crust figure with a baseline measured in the same run
(iperf3, or an in-process ceiling) as a ratio, and names the goal it is held against
("limit"). Nothing here fails on a missed goal: the figures are reported, not asserted.
"""
import json
import os
import platform
import statistics
import subprocess
import sys


def load(out, name, rep):
    with open(os.path.join(out, "raw", f"{name}-{rep}.json")) as f:
        run = json.load(f)
    try:
        with open(os.path.join(out, "raw", f"{name}-{rep}.noise")) as f:
            run["_noise"] = json.load(f)
    except (OSError, ValueError):
        run["_noise"] = {}
    return run


def load_jsonl(out, name):
    try:
        with open(os.path.join(out, "raw", name)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


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
        "other_share": run["_noise"].get("other_share"),
    }


def crust_figures(run):
    st = run["stats"]
    return {
        "gbit_s": run["rx_gbit_s"],
        "gbyte_s": run["rx_bytes_s"] / 1e9,
        "msgs_s": run["rx_msgs_s"],
        "cpu_s_per_gb": run["cpu_s_per_gb"],
        "bytes_per_send_call": st["bytes_per_send_call"],
        "bytes_per_recv_call": st["bytes_per_recv_call"],
        "enobufs_retries_s": run["enobufs_retries"] / run["seconds"],
        "send_threads_cpu": run["thread_cpu_s"]["send_threads"] / run["seconds"],
        "tx_shards_cpu": run["thread_cpu_s"]["tx_shards"] / run["seconds"],
        "rx_shards_cpu": run["thread_cpu_s"]["rx_shards"] / run["seconds"],
        "integrity_errors": sum(v for k, v in run["errors"].items()),
        "other_share": run["_noise"].get("other_share"),
    }


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
        "other_share": run["_noise"].get("other_share"),
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
        "other_share": run["_noise"].get("other_share"),
    }


def medians(runs):
    med = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if r[k] is not None]
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


RUNS = {  # name: figures
    "iperf3-bulk": iperf_figures,
    "iperf3-bulk-1m": iperf_figures,
    "iperf3-64": iperf_figures,
    "crust-tcp-bulk": crust_figures,
    "crust-tcp-bulk-tracer": crust_figures,
    "crust-tcp-bulk-tuned": crust_figures,
    "crust-tcp-msgs": crust_figures,
    "crust-tcp-msgs-tracer": crust_figures,
    "crust-handshakes": handshake_figures,
    "crust-idle": idle_figures,
}
THROUGHPUT = {  # crust-only table: name -> (scenario, records)
    "crust-tcp-bulk": ("tcp-bulk 128 KiB", "sealed"),
    "crust-tcp-bulk-tracer": ("tcp-bulk 128 KiB", "tracer"),
    "crust-tcp-bulk-tuned": ("tcp-bulk 128 KiB, 8 MiB queue, no heap trim", "sealed"),
    "crust-tcp-msgs": ("tcp-msgs 64 B", "sealed"),
    "crust-tcp-msgs-tracer": ("tcp-msgs 64 B", "tracer"),
}


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


class Row:
    """One line of the results table."""

    def __init__(self, scenario, metric, crust, baseline, baseline_is, crust_runs, baseline_runs,
                 limit=None, check=None, on="ratio", digits=2):
        self.scenario, self.metric = scenario, metric
        self.crust, self.baseline, self.baseline_is = crust, baseline, baseline_is
        self.ratio = ratio(crust, baseline)
        self.crust_runs, self.baseline_runs = crust_runs, baseline_runs
        self.limit, self.digits = limit, digits
        value = self.ratio if on == "ratio" else crust
        self.met = check(value) if check and value is not None else None

    def limit_text(self):
        if not self.limit:
            return "-"
        return f"{self.limit}: {'met' if self.met else 'missed'}" if self.met is not None else self.limit

    def as_json(self):
        return {"scenario": self.scenario, "metric": self.metric, "crust": self.crust,
                "baseline": self.baseline, "baseline_is": self.baseline_is, "ratio": self.ratio,
                "limit": self.limit, "met": self.met, "crust_runs": self.crust_runs,
                "baseline_runs": self.baseline_runs}


def build_rows(med, figs, aead, hs):
    def runs(name, key):
        return [r[key] for r in figs[name]]

    rows = []
    seal = aead_pick(aead, "aes-256-gcm", "openssl-evp", "seal", 131072)
    seal_is = "AES-256-GCM seal in place, OpenSSL EVP, 128 KiB records, one core (aead_speed)"
    rows.append(Row("tcp-bulk 128 KiB, sealed", "GB/s received", med["crust-tcp-bulk"]["gbyte_s"],
                    seal, seal_is, runs("crust-tcp-bulk", "gbyte_s"), [seal],
                    ">= 0.85x", lambda r: r >= 0.85))
    rows.append(Row("tcp-bulk 128 KiB, sealed, 8 MiB send queue, glibc heap trim off (diagnostic)",
                    "GB/s received", med["crust-tcp-bulk-tuned"]["gbyte_s"], seal, seal_is,
                    runs("crust-tcp-bulk-tuned", "gbyte_s"), [seal]))
    for name, records in (("crust-tcp-bulk", "sealed"), ("crust-tcp-bulk-tracer", "tracer")):
        rows.append(Row(f"tcp-bulk 128 KiB, {records}", "Gbit/s received", med[name]["gbit_s"],
                        med["iperf3-bulk"]["gbit_s"], "iperf3, one stream, 128 KiB writes",
                        runs(name, "gbit_s"), runs("iperf3-bulk", "gbit_s"),
                        ">= 0.8x (earlier goal)", lambda r: r >= 0.8))
    for name, records in (("crust-tcp-bulk", "sealed"), ("crust-tcp-bulk-tracer", "tracer")):
        rows.append(Row(f"tcp-bulk 128 KiB, {records}", "Gbit/s received", med[name]["gbit_s"],
                        med["iperf3-bulk-1m"]["gbit_s"], "iperf3 -l 1M (its best single stream)",
                        runs(name, "gbit_s"), runs("iperf3-bulk-1m", "gbit_s")))
    for name, records in (("crust-tcp-bulk", "sealed"), ("crust-tcp-bulk-tracer", "tracer")):
        rows.append(Row(f"tcp-bulk 128 KiB, {records}", "CPU s/GB (lower is better)",
                        med[name]["cpu_s_per_gb"], med["iperf3-bulk"]["cpu_s_per_gb"],
                        "iperf3, 128 KiB writes", runs(name, "cpu_s_per_gb"),
                        runs("iperf3-bulk", "cpu_s_per_gb")))
    rows.append(Row("tcp-msgs 64 B, sealed, one connection", "messages/s received",
                    med["crust-tcp-msgs"]["msgs_s"], med["iperf3-64"]["msgs_s"],
                    "iperf3 -l 64 (a send() per message)", runs("crust-tcp-msgs", "msgs_s"),
                    runs("iperf3-64", "msgs_s"), ">= 5,000,000/s", lambda c: c >= 5e6, on="crust"))
    rows.append(Row("tcp-msgs 64 B, tracer, one connection", "messages/s received",
                    med["crust-tcp-msgs-tracer"]["msgs_s"], med["iperf3-64"]["msgs_s"],
                    "iperf3 -l 64", runs("crust-tcp-msgs-tracer", "msgs_s"),
                    runs("iperf3-64", "msgs_s")))
    for name, records in (("crust-tcp-msgs", "sealed"), ("crust-tcp-msgs-tracer", "tracer")):
        rows.append(Row(f"tcp-msgs 64 B, {records}", "CPU s/GB (lower is better)",
                        med[name]["cpu_s_per_gb"], med["iperf3-64"]["cpu_s_per_gb"],
                        "iperf3 -l 64", runs(name, "cpu_s_per_gb"),
                        runs("iperf3-64", "cpu_s_per_gb")))
    ceiling, both_per_k = hs_ceiling(hs)
    rows.append(Row("handshakes, sealed (listener cpu 0, dialers cpu 1)", "handshakes/s completed",
                    med["crust-handshakes"]["handshakes_s"], ceiling,
                    "handshake crypto of the busier role on one core, in process (hs_speed)",
                    runs("crust-handshakes", "handshakes_s"), [ceiling],
                    ">= 5,000/s", lambda c: c >= 5000, on="crust"))
    rows.append(Row("handshakes, sealed", "CPU s per 1000 handshakes (both ends; lower is better)",
                    med["crust-handshakes"]["cpu_s_per_1000"], both_per_k,
                    "both roles' handshake crypto, in process (hs_speed)",
                    runs("crust-handshakes", "cpu_s_per_1000"), [both_per_k], digits=3))
    rows.append(Row("idle connections, sealed (both ends in one process)",
                    "bytes of RSS per connection", med["crust-idle"]["rss_per_conn"], None, "-",
                    runs("crust-idle", "rss_per_conn"), []))
    return rows


def table_lines(rows):
    lines = ["| scenario | crust | baseline | ratio | limit |", "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r.scenario}: {r.metric} | {fmt(r.crust, r.digits)} | "
                     f"{fmt(r.baseline, r.digits)} | "
                     f"{fmt(r.ratio) + 'x' if r.ratio is not None else '-'} | {r.limit_text()} |")
    lines += ["", "Baselines and individual runs:", ""]
    for r in rows:
        lines.append(f"- {r.scenario}, {r.metric}: baseline = {r.baseline_is}; crust runs "
                     f"{', '.join(fmt(v, r.digits) for v in r.crust_runs)}"
                     + (f"; baseline runs {', '.join(fmt(v, r.digits) for v in r.baseline_runs)}"
                        if r.baseline_runs and r.baseline_runs != [r.baseline] else ""))
    return lines


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


def write_plot(out, med):
    cb, ct = med["crust-tcp-bulk"], med["crust-tcp-bulk-tracer"]
    cm, cmt = med["crust-tcp-msgs"], med["crust-tcp-msgs-tracer"]
    with open(os.path.join(out, "plot.dat"), "w") as f:
        f.write("# label crust-sealed crust-tracer iperf3-same-size iperf3-1MiB-writes\n")
        f.write(f"\"tcp-bulk 128 KiB, Gbit/s\" {cb['gbit_s']:.3f} {ct['gbit_s']:.3f} "
                f"{med['iperf3-bulk']['gbit_s']:.3f} {med['iperf3-bulk-1m']['gbit_s']:.3f}\n")
        f.write(f"\"tcp-msgs 64 B, Mmsg/s\" {cm['msgs_s'] / 1e6:.3f} {cmt['msgs_s'] / 1e6:.3f} "
                f"{med['iperf3-64']['msgs_s'] / 1e6:.3f} NaN\n")


def main():
    out, repeat, secs, crust, crust_args, source = sys.argv[1:7]
    repeat = int(repeat)
    raw, figs, med = {}, {}, {}
    for name, fn in RUNS.items():
        raw[name] = [load(out, name, r) for r in range(1, repeat + 1)]
        figs[name] = [fn(r) for r in raw[name]]
        med[name] = medians(figs[name])
    aead = load_jsonl(out, "aead.jsonl")
    hs = load_jsonl(out, "hs_speed.jsonl")
    rows = build_rows(med, figs, aead, hs)
    idle_conns = raw["crust-idle"][0]["conns"]
    result = {
        "machine": machine(),
        "params": {"seconds": float(secs), "repeat": repeat, "crust": crust, "crust_args": crust_args,
                   "source": source, "pinning": "receiver/server/listener cpu 0, "
                   "sender/client/dialers cpu 1"},
        "median": med,
        "table": [r.as_json() for r in rows],
        "aead": aead,
        "hs_speed": hs,
        "runs": figs,
        "raw": raw,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)

    mc = result["machine"]
    lines = [
        f"# crust on loopback: medians of {repeat} runs of {secs} s",
        "",
        f"{mc['cpu_model']}, {mc['cpus']} cpus, kernel {mc['kernel']}; receiver/server/listener "
        "pinned to cpu 0, sender/client/dialers to cpu 1. "
        f"crust: {source}{' ' + crust_args if crust_args else ''}. Records: sealed = the default "
        "secure session (AES-256-GCM on OpenSSL EVP here), tracer = clear records (--tracer). "
        "Ratio = crust / baseline; limit = the goal, reported, never asserted.",
        "",
    ]
    lines += table_lines(rows)
    lines += ["", "Throughput, crust's own counters (medians):", ""] + crust_lines(med)
    lines += ["", f"Handshakes (medians; {raw['crust-handshakes'][0]['conns']} dials in flight, "
              "one dialer service each):", ""] + handshake_lines(med["crust-handshakes"])
    lines += ["", "Idle connections (medians; both ends in one process: listener plus one dialer "
              "service per connection):", ""] + idle_lines(med["crust-idle"], idle_conns)
    if aead:
        lines += ["", "AEAD on one core (perf/aead_speed.c, cpu 1; warm = the ceiling, the rest "
                  "diagnostics):", ""] + aead_lines(aead)
    if hs:
        lines += ["", "Handshake crypto on one core (perf/hs_speed.c, cpu 1):", ""] + hs_lines(hs)
    other = [r["other_share"] for f in figs.values() for r in f if r.get("other_share") is not None]
    if other:
        lines += ["", "Other processes during the kept runs (share of one cpu: the machine's cpu time "
                  f"less the runs' own): median {statistics.median(other):.2f}, max {max(other):.2f}."]
    lines.append("")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines))
    write_plot(out, med)


if __name__ == "__main__":
    main()
