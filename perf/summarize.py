#!/usr/bin/env python3
"""summarize.py OUT REPEAT SECONDS CRUST CRUST_ARGS SOURCE - medians of perf/run.sh's raw runs.

Reads OUT/raw/NAME-N.json (+ .noise) for the iperf3 and crust runs named below, and
OUT/raw/aead.jsonl; writes OUT/results.json (every run and the medians), OUT/results.md
(the tables) and OUT/plot.dat (for plot.gp).
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


def iperf_figures(run):
    """The figures crust reports, from iperf3 -J (received side, omitted second excluded)."""
    end = run["end"]
    rx = end["sum_received"]
    blk = run["start"]["test_start"]["blksize"]
    cpu = end["cpu_utilization_percent"]
    cpu_s = (cpu["host_total"] + cpu["remote_total"]) / 100 * rx["seconds"]
    return {
        "gbit_s": rx["bits_per_second"] / 1e9,
        "bytes_s": rx["bytes"] / rx["seconds"],
        "msgs_s": rx["bytes"] / rx["seconds"] / blk,
        "cpu_s_per_gb": cpu_s / (rx["bytes"] / 1e9) if rx["bytes"] else 0,
        "retransmits": end["sum_sent"].get("retransmits", 0),
        "other_share": run["_noise"].get("other_share"),
    }


def crust_figures(run):
    st = run["stats"]
    return {
        "gbit_s": run["rx_gbit_s"],
        "bytes_s": run["rx_bytes_s"],
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


def medians(runs):
    keys = runs[0].keys()
    med = {}
    for k in keys:
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


CRUST_RUNS = {  # name: (scenario words, records)
    "crust-tcp-bulk": ("tcp-bulk 128 KiB", "sealed"),
    "crust-tcp-bulk-tracer": ("tcp-bulk 128 KiB", "tracer"),
    "crust-tcp-msgs": ("tcp-msgs 64 B", "sealed"),
    "crust-tcp-msgs-tracer": ("tcp-msgs 64 B", "tracer"),
}
IPERF_RUNS = {
    "iperf3-bulk": "iperf3 single stream (128 KiB writes)",
    "iperf3-bulk-1m": "iperf3 -l 1M (1 MiB writes)",
    "iperf3-64": "iperf3 -l 64 (a send() per message)",
}
# (crust run, metric key, metric words, baseline run)
ROWS = [
    ("crust-tcp-bulk", "gbit_s", "Gbit/s received", "iperf3-bulk"),
    ("crust-tcp-bulk-tracer", "gbit_s", "Gbit/s received", "iperf3-bulk"),
    ("crust-tcp-bulk", "gbit_s", "Gbit/s received", "iperf3-bulk-1m"),
    ("crust-tcp-bulk-tracer", "gbit_s", "Gbit/s received", "iperf3-bulk-1m"),
    ("crust-tcp-bulk", "cpu_s_per_gb", "CPU s/GB (lower is better)", "iperf3-bulk"),
    ("crust-tcp-bulk-tracer", "cpu_s_per_gb", "CPU s/GB (lower is better)", "iperf3-bulk"),
    ("crust-tcp-msgs", "msgs_s", "messages/s received", "iperf3-64"),
    ("crust-tcp-msgs-tracer", "msgs_s", "messages/s received", "iperf3-64"),
    ("crust-tcp-msgs", "cpu_s_per_gb", "CPU s/GB (lower is better)", "iperf3-64"),
    ("crust-tcp-msgs-tracer", "cpu_s_per_gb", "CPU s/GB (lower is better)", "iperf3-64"),
]


def load_aead(out):
    try:
        with open(os.path.join(out, "raw", "aead.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def table_lines(table):
    lines = [
        "| scenario | crust records | metric | crust | baseline | ratio | baseline is | crust runs | baseline runs |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for t in table:
        lines.append(f"| {t['scenario']} | {t['records']} | {t['metric']} | {fmt(t['crust'])} | "
                     f"{fmt(t['baseline'])} | {fmt(t['ratio'])}x | {t['baseline_is']} | "
                     f"{', '.join(fmt(v) for v in t['crust_runs'])} | "
                     f"{', '.join(fmt(v) for v in t['baseline_runs'])} |")
    return lines


def crust_lines(med):
    lines = [
        "| scenario | records | bytes/send call | bytes/recv call | ENOBUFS retries/s | "
        "send thread cpu | tx shard cpu | rx shard cpu | integrity errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (scenario, records) in CRUST_RUNS.items():
        m = med[name]
        lines.append(f"| {scenario} | {records} | {fmt(m['bytes_per_send_call'])} | "
                     f"{fmt(m['bytes_per_recv_call'])} | {fmt(m['enobufs_retries_s'])} | "
                     f"{fmt(m['send_threads_cpu'])} | {fmt(m['tx_shards_cpu'])} | "
                     f"{fmt(m['rx_shards_cpu'])} | {fmt(m['integrity_errors'], 0)} |")
    return lines


def write_plot(out, med):
    cb, ct, cm, cmt = (med[n] for n in CRUST_RUNS)
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
    for name in list(IPERF_RUNS) + list(CRUST_RUNS):
        fn = crust_figures if name in CRUST_RUNS else iperf_figures
        raw[name] = [load(out, name, r) for r in range(1, repeat + 1)]
        figs[name] = [fn(r) for r in raw[name]]
        med[name] = medians(figs[name])
    table = [{"scenario": CRUST_RUNS[c][0], "records": CRUST_RUNS[c][1], "metric": words,
              "crust": med[c][k], "baseline": med[b][k], "baseline_is": IPERF_RUNS[b],
              "ratio": ratio(med[c][k], med[b][k]), "crust_runs": [r[k] for r in figs[c]],
              "baseline_runs": [r[k] for r in figs[b]]} for c, k, words, b in ROWS]
    aead = load_aead(out)
    result = {
        "machine": machine(),
        "params": {"seconds": float(secs), "repeat": repeat, "crust": crust, "crust_args": crust_args,
                   "source": source, "pinning": "receiver/server cpu 0, sender/client cpu 1"},
        "median": med,
        "table": table,
        "aead_ceiling": aead,
        "runs": figs,
        "raw": raw,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)

    mc = result["machine"]
    lines = [
        f"# crust vs iperf3 on loopback: medians of {repeat} runs of {secs} s",
        "",
        f"{mc['cpu_model']}, {mc['cpus']} cpus, kernel {mc['kernel']}; "
        "receiver/server pinned to cpu 0, sender/client to cpu 1. "
        f"crust: {source}{' ' + crust_args if crust_args else ''}. Records: sealed = the default "
        "secure session (AES-256-GCM), tracer = clear records (--tracer).",
        "",
    ]
    lines += table_lines(table)
    lines += ["", "crust only (medians):", ""] + crust_lines(med)
    if aead:
        lines += ["", "AEAD ceiling, one core (perf/aead_speed.c, libsodium "
                  f"{next((a['libsodium'] for a in aead if 'libsodium' in a), '?')}):", ""]
        lines += [f"- {a['cipher']} {a['op']} {a['size']} B: {a['gbyte_s']:.2f} GB/s"
                  for a in aead if "op" in a]
    other = [r["other_share"] for f in figs.values() for r in f if r["other_share"] is not None]
    if other:
        lines += ["", "Other processes during the kept runs (share of one cpu: the machine's cpu time "
                  f"less the runs' own): median {statistics.median(other):.2f}, max {max(other):.2f}."]
    lines.append("")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines))
    write_plot(out, med)


if __name__ == "__main__":
    main()
