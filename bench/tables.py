#!/usr/bin/env python3
"""Markdown tables of the benchmark results, for docs/benchmarks.md.

    python3 bench/tables.py [bench/results]

Reads dns.jsonl, failover.jsonl, mirror.jsonl, scale.jsonl and cluster.jsonl (whichever exist) and
prints the tables the document holds, with the environment of each run.
"""

import json
import os
import statistics
import sys


def load(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def f(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def env_line(records):
    env = next((r for r in records if r.get("type") == "environment"), None)
    if not env:
        return ""
    # The quiet-machine checks: records of their own, or (scale) one inside each pool size.
    quiet = [r["state"] for r in records if r.get("type") == "quiet"]
    quiet += [r["quiet"] for r in records if isinstance(r.get("quiet"), dict)]
    loads = "; ".join(
        f"load {q['loadavg'][0]:.2f} ({'quiet' if q['quiet'] else 'NOT quiet'})" for q in quiet
    )
    end = next((r for r in records if r.get("type") == "end"), {})
    m = env["machine"]
    return (
        f"Run {env['date']}, commit `{env['commit']}`, {m['nproc']} × {m['cpu_model']}, kernel {m['kernel']}, "
        f"{m['os']}; 1-minute load before measuring: {loads or '–'}, after: "
        f"{end.get('loadavg', ['–'])[0]}. Command: `{env['command']}`."
    )


def dns(records):
    print("### DNS\n")
    print(env_line(records) + "\n")
    summ = [r for r in records if r.get("type") == "summary"]
    for mode, title in (("fixed", "Fixed offered load"), ("max", "Unthrottled")):
        rows = [r for r in summ if r["mode"] == mode]
        if not rows:
            continue
        print(f"**{title}** (medians of {rows[0]['runs']} runs; ratio = median of the per-round dnsd/peer ratios)\n")
        print("| server | qps | avg latency µs | p99 latency µs | lost | server CPU µs/query | of which user / system | CPU 1 µs/query | CPU 0 busy % | CPU 1 busy % |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            m = r["median"]
            print(
                f"| {r['server']} | {f(m['qps'])} | {f(m['avg_latency_us'])} | {f(m['p99_latency_us'])} | {f(m['lost'])} | "
                f"{f(m['server_cpu_us_per_query'], 2)} | {f(m.get('server_user_us_per_query'), 2)} / {f(m.get('server_system_us_per_query'), 2)} | "
                f"{f(m['cpu1_us_per_query'], 2)} | {f(m['cpu0_busy_pct'])} | {f(m['cpu1_busy_pct'])} |"
            )
            q = r.get("dnsd_over_peer") or {}
            if q:
                print(
                    f"| *dnsd / {r['server']}* | *{f(q.get('qps'), 3)}* | *{f(q.get('avg_latency_us'), 3)}* | *{f(q.get('p99_latency_us'), 3)}* | | "
                    f"*{f(q.get('server_cpu_us_per_query'), 3)}* | *{f(q.get('server_user_us_per_query'), 3)} / {f(q.get('server_system_us_per_query'), 3)}* | "
                    f"*{f(q.get('cpu1_us_per_query'), 3)}* | | |"
                )
        print()
    eq = next((r for r in records if r.get("type") == "equivalence"), None)
    if eq:
        sizes = eq["response_bytes_without_edns"]
        print("Response sizes without EDNS, bytes (service / member / NXDOMAIN): " + "; ".join(
            f"{s} {v.get('service')}/{v.get('member')}/{v.get('nxdomain')}" for s, v in sizes.items()
        ) + ".\n")


def failover(records):
    print("### Failover\n")
    print(env_line(records) + "\n")
    g = next((r for r in records if r.get("type") == "gdnsd"), None)
    if g:
        s = g["settings"]
        print(
            f"gdnsd: `{s['plugin']}` on port {s['port']}, interval {s['interval_s']} s, timeout {s['timeout_s']} s, "
            f"up/ok/down thresholds {s['up_thresh']}/{s['ok_thresh']}/{s['down_thresh']}, {s['resource']}"
            + (f"; a 1 s interval was refused: `{s['interval_1s_refused']}`" if s.get("interval_1s_refused") else "")
            + ".\n"
        )
    print("| system | setting | direction | n | min ms | median ms | p95 ms | max ms | timeouts |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in records:
        if r.get("type") != "summary":
            continue
        ms = r["ms"]
        print(
            f"| {r['system']} | {r['setting']} | {r['direction']} | {ms['n']} | {f(ms['min'])} | {f(ms['median'])} | "
            f"{f(ms['p95'])} | {f(ms['max'])} | {r['timeouts']} |"
        )
    trials = [r for r in records if r.get("type") == "trial"]
    for setting in dict.fromkeys(t["setting"] for t in trials):
        mine = [t for t in trials if t["setting"] == setting]
        nd = sorted(t["dnsd_node_down_event_ms"] for t in mine if t.get("dnsd_node_down_event_ms") is not None)
        fo = sorted(t["dnsd_failover_event_ms"] for t in mine if t.get("dnsd_failover_event_ms") is not None)
        dns = sorted(t["dnsd_failover_ms"] for t in mine if t.get("dnsd_failover_ms") is not None)
        if nd and fo and dns:
            print(
                f"\ndnsd {setting}: median crash → node_down event {f(statistics.median(nd))} ms, "
                f"→ failover event {f(statistics.median(fo))} ms, "
                f"→ first DNS answer naming h2 {f(statistics.median(dns))} ms."
            )
    print()


def mirror(records):
    print("### Mirroring\n")
    print(env_line(records) + "\n")
    setup = next((r for r in records if r.get("type") == "cost_setup"), None)
    if setup:
        print(f"Data set: {setup['files']:,} files × {setup['file_kib']} KiB = {setup['set_bytes']:,} bytes.\n")
    rows = [r for r in records if r.get("type") == "cost_summary"]
    if rows:
        print("| step | tool | time ms | literal B | matched B | rsync sent+received B | h2 link B | TS CPU ms | time / by hand | wire / by hand | h2 link / by hand | time / by hand over ssh |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            for tool in ("dnsd", "rsync_sync", "by_hand_ssh", "by_hand"):
                m = r["median"].get(tool)
                if not m:
                    continue
                q = r["over_by_hand"].get(tool, {})
                qs = r.get("over_by_hand_ssh", {}).get(tool, {})
                print(
                    f"| {r['step']} | {tool} | {f(m['wall_ms'])} | {f(m['literal_bytes'])} | {f(m['matched_bytes'])} | "
                    f"{f(m['wire_bytes'])} | {f(m['h2_link_bytes'])} | {f(m.get('ts_cpu_ms'))} | {f(q.get('wall_ms'), 3) if q else ''} | "
                    f"{f(q.get('wire_bytes'), 3) if q else ''} | {f(q.get('h2_link_bytes'), 3) if q else ''} | "
                    f"{f(qs.get('wall_ms'), 3) if qs else ''} |"
                )
        print()
    loss = [r for r in records if r.get("type") == "loss_summary"]
    if loss:
        print("| sync interval | trials | lost writes: min | median | max | window ms: median | max |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in loss:
            lo, w = r["lost"], r["window_ms"]
            print(f"| {r['interval']} | {lo['n']} | {f(lo['min'])} | {f(lo['median'])} | {f(lo['max'])} | {f(w['median'])} | {f(w['max'])} |")
        print(f"\n(writer: {loss[0]['write_rate']} files per second on the primary)\n")


def scale(records):
    print("### Controller scale\n")
    print(env_line(records) + "\n")
    sizes = [r for r in records if r.get("type") == "size"]
    if not sizes:
        return
    print("| members | services | probes/s | CPU % of one core | of which user / system | µs per probe | RSS MiB (median) | RSS MiB (max) | death → node_down ms: min | median | p95 | max |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sizes:
        d = r["down_delay_ms"]
        print(
            f"| {r['members']:,} | {r['services']} | {f(r['probes_per_s'])} | {f(r['cpu_pct_of_one_core'], 2)} | "
            f"{f(r.get('user_pct'), 2)} / {f(r.get('system_pct'), 2)} | {f(r['cpu_us_per_probe'], 1)} | "
            f"{f(r['rss_mib']['median'], 1)} | {f(r['rss_mib']['max'], 1)} | {f(d['min'])} | {f(d['median'])} | {f(d['p95'])} | {f(d['max'])} |"
        )
    print()


def cluster(records):
    print("### Several terminal servers\n")
    print(env_line(records) + "\n")
    st = next((r for r in records if r.get("type") == "settings"), None)
    if st:
        print(
            f"Heartbeat {f(st['interval_ms'])} ms, timeout {f(st['timeout_ms'])} ms, fall {st['fall']}, rise {st['rise']}; "
            f"lease {f(st['lease_ms'])} ms; failover bound (fall × interval + interval) {f(st['failover_bound_ms'])} ms, "
            f"takeover bound (lease + fall × interval + interval) {f(st['takeover_bound_ms'])} ms.\n"
        )
    for table in ("failover", "takeover"):
        rows = [r for r in records if r.get("type") == "summary" and r.get("table") == table]
        if not rows:
            continue
        print("| " + table + " | n | min | median | p95 | max | missing |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            s = r["stats"]
            d = 2 if r["key"].startswith("ratio") else 0
            print(
                f"| {r['row']} | {s['n']} | {f(s['min'], d)} | {f(s['median'], d)} | {f(s['p95'], d)} | "
                f"{f(s['max'], d)} | {r['missing']} |"
            )
        print()
    over = next((r for r in records if r.get("type") == "takeover_over_bound"), None)
    if over:
        print(f"Takeovers over the bound ({f(over['bound_ms'])} ms) or never: {over['over']} of {over['of']}.\n")
    windows = [r for r in records if r.get("type") == "etcd_window"]
    if windows:
        print(
            "| window | s | churn | revisions | revisions/s | views (RTT only) | servers | state | epochs | leader | "
            "puts/s | txns/s | WAL fsyncs/s | keep-alive requests/s | failovers / failbacks |"
        )
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for w in windows:
            c = w["key_changes_by_class"]
            n = lambda k: sum(c.get(k, {}).values())
            m = w["metrics_per_s"]
            churn = f"{w['churn_actions']} × every {w['churn_every_s']:g} s" if w.get("churn_every_s") else "none"
            print(
                f"| {w['window']} | {f(w['seconds'])} | {churn} | {w['revisions']} | {f(w['revisions_per_s'], 3)} | "
                f"{n('views')} ({w.get('view_writes_by_cause', {}).get('rtt_only', 0)}) | {n('servers')} | {n('state')} | {n('epochs')} | {n('leader')} | "
                f"{f(m['grpc_put'], 3)} | {f(m['grpc_txn'], 3)} | {f(m['wal_fsyncs'], 2)} | {f(m['keepalive_requests'], 2)} | "
                f"{w['leader_failovers']} / {w['leader_failbacks']} |"
            )
        print()


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "bench/results"
    for name, fn in (("dns", dns), ("failover", failover), ("mirror", mirror), ("scale", scale), ("cluster", cluster)):
        records = load(os.path.join(base, f"{name}.jsonl"))
        if records:
            fn(records)


if __name__ == "__main__":
    main()
