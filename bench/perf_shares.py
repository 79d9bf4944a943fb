#!/usr/bin/env python3
"""Summarizes `perf script` output (call graphs) of one node: the share of samples per
thread, then for each named cost the share of all samples whose stack contains one of
its frames, split by thread. A sample counts once per cost even if several frames match;
costs overlap (a fjall commit inside the apply loop counts for both).
`--per-op HZ OPS` also prints each share as node CPU per operation, in microseconds: the
samples over the sampling rate HZ, divided by the OPS operations the cluster completed
while perf recorded (so costs of different loads, whose rates differ, can be compared).
`--self-test` checks the counting on a made-up script."""

import collections
import re
import sys

# (name, regex over the frames of one sample)
COSTS = [
    ("gRPC framework (h2, hyper, tonic)", r"h2::|hyper::|tonic::"),
    ("  of which HTTP/2 header coding (hpack)", r"hpack"),
    ("protobuf encode/decode (prost)", r"prost::encoding|prost::message|encoded_len|encode_raw|merge_field"),
    ("client API handlers", r"flotilla::api::"),
    ("raft transport", r"flotilla::transport::"),
    ("fjall batch commit", r"WriteBatch::commit"),
    ("  of which memtable inserts", r"Memtable::insert"),
    ("    of which skiplist search", r"SkipList<.*>::search_position"),
    ("fsync / fdatasync", r"fdatasync|fsync"),
    ("Wasm (wasmtime frames)", r"wasmtime"),
    ("  of which instance creation", r"Instance::new|instantiate"),
    ("plugin reads (fjall get)", r"Keyspace::get|Tree::get"),
    ("raft-rs step and ready", r"raft::raw_node|raft::raft::"),
    ("context switches (finish_task_switch)", r"finish_task_switch"),
    ("futex waits and wakes", r"futex"),
    ("mimalloc", r"\bmi_|_mi_"),
    ("socket send/receive", r"tcp_sendmsg|tcp_recvmsg|writev|recvfrom|sendmsg"),
]


def samples(lines):
    """Yields (thread, frames) per sample of `perf script` output."""
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif line[0] in " \t":
            frames.append(line.strip())
        else:
            comm, frames = line.split()[0], []
    if comm is not None:
        yield comm, frames


def shares(lines):
    threads = collections.Counter()
    hits = {name: collections.Counter() for name, _ in COSTS}
    for comm, frames in samples(lines):
        threads[comm] += 1
        stack = "\n".join(frames)
        for name, pattern in COSTS:
            if re.search(pattern, stack):
                hits[name][comm] += 1
    return threads, hits


def report(threads, hits, per_op=None):
    """per_op: (sampling rate in Hz, operations completed while sampling), or None."""
    total = sum(threads.values())
    if total == 0:
        return "no samples"

    def us(n):
        return n / per_op[0] / per_op[1] * 1e6

    out = [f"{total} samples; by thread: " + ", ".join(
        f"{t} {n / total:.1%}" for t, n in threads.most_common())]
    if per_op:
        out.append(f"node CPU per operation: {us(total):.1f} us/op; by thread: " + ", ".join(
            f"{t} {us(n):.1f}" for t, n in threads.most_common()))
    for name, _ in COSTS:
        n = sum(hits[name].values())
        split = ", ".join(f"{t} {c / total:.1%}" for t, c in hits[name].most_common())
        column = f"{us(n):5.1f} us/op  " if per_op else ""
        out.append(f"{n / total:6.1%}  {column}{name}" + (f"  ({split})" if n else ""))
    return "\n".join(out)


def self_test():
    script = [
        "flotilla-apply 1 [000] 1.0: 1 cpu-clock:",
        "\tffff wasmtime::Instance::new",
        "\tffff fjall::batch::WriteBatch::commit",
        "",
        "tokio-rt-worker 2 [001] 1.1: 1 cpu-clock:",
        "\tffff h2::codec::framed_read",
        "\tffff hyper::proto::h2::server",
        "",
    ]
    threads, hits = shares(script)
    assert threads == {"flotilla-apply": 1, "tokio-rt-worker": 1}, threads
    assert sum(hits["Wasm (wasmtime frames)"].values()) == 1
    assert hits["gRPC framework (h2, hyper, tonic)"]["tokio-rt-worker"] == 1  # counted once
    assert sum(hits["fjall batch commit"].values()) == 1
    assert sum(hits["mimalloc"].values()) == 0
    # 2 samples at 100 Hz over 4,000 operations: 5 us per operation, 2.5 us of it Wasm.
    text = report(threads, hits, (100.0, 4000))
    assert "node CPU per operation: 5.0 us/op" in text, text
    assert "  2.5 us/op  Wasm (wasmtime frames)" in text, text
    print("perf_shares self-test ok")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--self-test"]:
        self_test()
    elif args[:1] == ["--per-op"] and len(args) == 3:
        print(report(*shares(sys.stdin), per_op=(float(args[1]), float(args[2]))))
    elif not args:
        print(report(*shares(sys.stdin)))
    else:
        sys.exit("usage: perf_shares.py [--self-test | --per-op HZ OPS] < perf-script-output")
