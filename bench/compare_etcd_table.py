#!/usr/bin/env python3
"""Tables for bench/compare-etcd.sh: reads the JSON lines the script collected (one
`flotilla bench --output json` object per case, plus "run" and "system") and prints the
per-run numbers, the medians across runs with Flotilla/etcd ratios, the CPU each system
spent per operation (where the script recorded it), and the issue's targets as measured. `--self-test` checks the arithmetic on made-up numbers."""

import json
import statistics
import sys


def system_order(s):
    """Table order: "etcd" (the baseline of every ratio), then Flotilla by group count,
    unary calls before the same case on `Batch` streams (a "-batch" suffix)."""
    if s == "etcd":
        return (0, 0, 0)
    digits = "".join(ch for ch in s if ch.isdigit())
    return (1, int(digits) if digits else 0, 1 if s.endswith("-batch") else 0)


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def medians(rows):
    """(workload, value_size, clients, system) -> {ops_per_s, p50_ms, p99_ms, errors, runs, failed}"""
    groups = {}
    for r in rows:
        key = (r["workload"], r["value_size"], r["clients"], r["system"])
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if not r.get("failed")]
        out[key] = {
            "ops_per_s": median([r["ops_per_s"] for r in ok]),
            "p50_ms": median([r["p50_ms"] for r in ok]),
            "p99_ms": median([r["p99_ms"] for r in ok]),
            "cpu_us": median([r.get("server_cpu_us_per_op") for r in ok]),
            "cores": median([r.get("server_cores_busy") for r in ok]),
            "gen_us": median([r.get("generator_cpu_us_per_op") for r in ok]),
            "errors": sum(r.get("errors", 0) for r in ok),
            "runs": len(ok),
            "failed": len(rs) - len(ok),
        }
    return out


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def cases(m):
    return sorted({(w, v, c) for (w, v, c, _) in m}, key=lambda k: (k[0] != "write", k[1], k[2]))


def each_system(m):
    """(workload, value, clients, system, medians, etcd's medians for the case) in table
    order: cases as `cases` sorts them, systems as `system_order` does."""
    for (w, v, c) in cases(m):
        base = m.get((w, v, c, "etcd"))
        for s in sorted({k[3] for k in m if k[:3] == (w, v, c)}, key=system_order):
            yield w, v, c, s, m[(w, v, c, s)], base


def median_table(m):
    header = ["workload", "value", "clients", "system", "ops/s", "p50 ms", "p99 ms",
              "x etcd ops/s", "p99 / etcd p99", "errors", "runs"]
    rows = []
    for w, v, c, s, d, base in each_system(m):
        is_base = s == "etcd"
        rows.append([
            w, f"{v} B", c, s, fmt(d["ops_per_s"], ".0f"), fmt(d["p50_ms"], ".2f"),
            fmt(d["p99_ms"], ".2f"),
            "" if is_base else fmt(ratio(d["ops_per_s"], base and base["ops_per_s"]), ".2f"),
            "" if is_base else fmt(ratio(d["p99_ms"], base and base["p99_ms"]), ".2f"),
            d["errors"], f'{d["runs"]}' + (f' ({d["failed"]} failed)' if d["failed"] else ""),
        ])
    return table(header, rows)


def cpu_table(m):
    """Server CPU (user + system, the three processes of the system measured) per
    operation, its ratio to etcd's (below 1: Flotilla spent less), the server cores kept
    busy, and the load generator's CPU per operation."""
    header = ["workload", "value", "clients", "system", "server CPU us/op",
              "CPU/op / etcd", "server cores busy", "generator us/op"]
    rows = [[w, f"{v} B", c, s, fmt(d["cpu_us"], ".1f"),
             "" if s == "etcd" else fmt(ratio(d["cpu_us"], base and base["cpu_us"]), ".2f"),
             fmt(d["cores"], ".2f"), fmt(d["gen_us"], ".1f")]
            for w, v, c, s, d, base in each_system(m)]
    return table(header, rows)


def per_run_table(rows):
    header = ["run", "workload", "value", "clients", "system", "ops/s", "p50 ms", "p99 ms",
              "p999 ms", "errors"]
    out = []
    for r in sorted(rows, key=lambda r: (r["run"], r["workload"] != "write", r["value_size"],
                                         r["clients"], system_order(r["system"]))):
        if r.get("failed"):
            out.append([r["run"], r["workload"], f'{r["value_size"]} B', r["clients"],
                        r["system"], "FAILED", "", "", "", r.get("message", "")[:60]])
            continue
        kinds = ",".join(f"{k}:{v}" for k, v in sorted(r.get("errors_by_kind", {}).items()))
        out.append([r["run"], r["workload"], f'{r["value_size"]} B', r["clients"], r["system"],
                    fmt(r["ops_per_s"], ".0f"), fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"),
                    fmt(r["p999_ms"], ".2f"), f'{r["errors"]}' + (f" ({kinds})" if kinds else "")])
    return table(header, out)


def targets(m):
    """The issue's targets, judged on the medians at 256 clients (the largest load)."""
    lines = []
    # The many-group case is whatever MANY_GROUPS the script ran with (64 by default).
    many = max((system_order(s)[1] for (_, _, _, s) in m if s != "etcd"), default=64)
    many = many if many > 1 else 64
    for v in sorted({v for (_, v, _, _) in m}):
        def get(w, s):
            return m.get((w, v, 256, s))
        e, er = get("write", "etcd"), get("read", "etcd")
        for api in ["", "-batch"]:
            how = " (Batch streams)" if api else ""
            f64, f1 = get("write", f"flotilla-{many}g" + api), get("write", "flotilla-1g" + api)
            if e and f64:
                r = ratio(f64["ops_per_s"], e["ops_per_s"])
                ok = r is not None and r >= 5 and f64["p99_ms"] <= e["p99_ms"]
                lines.append(f"{v} B, 256 clients, {many} groups writes{how}: {fmt(r, '.2f')}x etcd, "
                             f"p99 {fmt(f64['p99_ms'], '.2f')} vs {fmt(e['p99_ms'], '.2f')} ms "
                             f"(target >=5x and p99 no worse): {'met' if ok else 'NOT met'}")
            if e and f1:
                r = ratio(f1["ops_per_s"], e["ops_per_s"])
                ok = r is not None and r >= 2
                lines.append(f"{v} B, 256 clients, 1 group writes{how}:   {fmt(r, '.2f')}x etcd "
                             f"(target >=2x): {'met' if ok else 'NOT met'}")
            for s in ["flotilla-1g" + api, f"flotilla-{many}g" + api]:
                fr = get("read", s)
                if er and fr:
                    r = ratio(fr["ops_per_s"], er["ops_per_s"])
                    ok = r is not None and r >= 3
                    lines.append(f"{v} B, 256 clients, linearizable reads, {s}: "
                                 f"{fmt(r, '.2f')}x etcd (target >=3x): "
                                 f"{'met' if ok else 'NOT met'}")
    return "\n".join(lines) or "(no 256-client cases measured)"


def report(rows):
    m = medians(rows)
    parts = ["== medians across runs (ratios are Flotilla median / etcd median) ==\n"
             + median_table(m)]
    if any(d["cpu_us"] is not None for d in m.values()):
        parts.append("== CPU per operation, medians across runs ==\n" + cpu_table(m))
    parts += ["== targets (issue 5), at 256 clients ==\n" + targets(m),
              "== every run ==\n" + per_run_table(rows)]
    return "\n\n".join(parts)


def self_test():
    def row(run, system, ops, p99, workload="write", errors=0):
        return {"run": run, "system": system, "workload": workload, "value_size": 16,
                "clients": 256, "ops_per_s": ops, "p50_ms": p99 / 2, "p99_ms": p99,
                "p999_ms": p99 * 2, "errors": errors, "server_cpu_us_per_op": 1e6 / ops,
                "server_cores_busy": 1.5, "generator_cpu_us_per_op": 2.0}
    rows = [row(1, "etcd", 100, 10), row(2, "etcd", 300, 30), row(3, "etcd", 200, 20),
            row(1, "flotilla-64g", 1000, 5), row(2, "flotilla-64g", 900, 50, errors=2),
            row(3, "flotilla-64g", 1100, 8),
            {"run": 3, "system": "flotilla-1g", "workload": "write", "value_size": 16,
             "clients": 256, "failed": True, "message": "boom"},
            row(1, "flotilla-1g", 500, 10), row(2, "flotilla-1g", 300, 10),
            row(1, "flotilla-1g-batch", 700, 10)]
    m = medians(rows)
    assert m[("write", 16, 256, "etcd")]["ops_per_s"] == 200
    assert m[("write", 16, 256, "flotilla-64g")]["ops_per_s"] == 1000
    assert m[("write", 16, 256, "flotilla-64g")]["p99_ms"] == 8
    assert m[("write", 16, 256, "flotilla-64g")]["errors"] == 2
    # The failed run is left out of the median (of 500 and 300) and counted.
    assert m[("write", 16, 256, "flotilla-1g")]["ops_per_s"] == 400
    assert m[("write", 16, 256, "flotilla-1g")]["failed"] == 1
    assert ratio(1000, 200) == 5 and ratio(1, 0) is None and ratio(None, 1) is None
    t = targets(m)
    assert "64 groups writes: 5.00x etcd, p99 8.00 vs 20.00 ms" in t and "): met" in t, t
    assert "1 group writes:   2.00x etcd (target >=2x): met" in t, t
    assert "1 group writes (Batch streams):   3.50x etcd (target >=2x): met" in t, t
    t32 = targets(medians([dict(r, system=r["system"].replace("64g", "32g")) for r in rows]))
    assert "32 groups writes: 5.00x etcd" in t32, t32
    assert sorted(["flotilla-1g-batch", "flotilla-64g", "etcd", "flotilla-1g"],
                  key=system_order) == ["etcd", "flotilla-1g", "flotilla-1g-batch", "flotilla-64g"]
    text = report(rows)
    assert "FAILED" in text and "5.00" in text and "0.40" in text, text
    # CPU per op: etcd's median is 1e6/200 = 5000 us, flotilla-64g's 1e6/1000 = 1000 us.
    assert m[("write", 16, 256, "etcd")]["cpu_us"] == 5000
    cpu = cpu_table(m)
    row64 = [line.split() for line in cpu.splitlines() if " flotilla-64g " in line + " "]
    assert row64 == [["write", "16", "B", "256", "flotilla-64g", "1000.0", "0.20", "1.50", "2.0"]], cpu
    assert "== CPU per operation" in text
    old = [{k: v for k, v in r.items() if not k.startswith(("server_", "generator_"))} for r in rows]
    assert "== CPU per operation" not in report(old)
    print("compare_etcd_table self-test: passed")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 2:
        print(report(load(sys.argv[1])))
    else:
        sys.exit("usage: compare_etcd_table.py RESULTS.jsonl | --self-test")
