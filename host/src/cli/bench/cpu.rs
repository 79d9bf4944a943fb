//! CPU time around the timed run (`flotilla bench --cpu-pids`): the user + system clock
//! ticks that given processes (a cluster's servers) and the bench itself spent, read
//! from `/proc/PID/stat` (Linux) right before and right after the run, so that a script
//! can divide a system's CPU by the operations of exactly the window they were counted
//! in: setup (creating groups, preloading keys) and cleanup stay outside it. The
//! servers' ticks are also read per thread (`/proc/PID/task/TID/stat`) and reported by
//! thread name; a thread that ends inside the window is missing from that split.

use std::collections::BTreeMap;

use anyhow::Context as _;

/// Ticks read at one instant.
#[derive(Clone, Debug)]
pub struct CpuSample {
    servers: u64,
    own: u64,
    /// Thread id -> (thread name, ticks) of the servers' threads (ids are system-wide).
    threads: BTreeMap<u64, (String, u64)>,
}

/// User + system ticks of all threads of a process, from the text of its
/// `/proc/PID/stat`. The command name (field 2) is in parentheses and may hold spaces
/// or parentheses, so fields are counted after its last `)`: utime and stime are
/// fields 14 and 15, i.e. the 12th and 13th after it.
fn parse_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The command name of a `/proc/.../stat` text: between the first `(` and the last `)`.
fn parse_name(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

/// Name and ticks of every thread of `pid` that can still be read.
fn thread_ticks(pid: u32, out: &mut BTreeMap<u64, (String, u64)>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let (Some(name), Some(ticks)) = (parse_name(&stat), parse_stat(&stat)) {
            out.insert(tid, (name.to_string(), ticks));
        }
    }
}

fn ticks(pid: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("--cpu-pids: cannot read {path} (is process {pid} running?)"))?;
    parse_stat(&stat).with_context(|| format!("--cpu-pids: {path} has no CPU times: {stat:?}"))
}

/// Samples the CPU of `pids` (summed) and of this process.
pub fn sample(pids: &[u32]) -> anyhow::Result<CpuSample> {
    let mut servers = 0;
    let mut threads = BTreeMap::new();
    for pid in pids {
        servers += ticks(&pid.to_string())?;
        thread_ticks(*pid, &mut threads);
    }
    Ok(CpuSample {
        servers,
        own: ticks("self")?,
        threads,
    })
}

/// What `--output json` reports as `cpu_ticks`: ticks spent between two samples (the
/// clock's ticks per second are `getconf CLK_TCK` in the shell), and the servers' ticks
/// by thread name.
pub fn spent(before: CpuSample, after: CpuSample) -> serde_json::Value {
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (tid, (name, ticks)) in after.threads {
        let earlier = before.threads.get(&tid).map_or(0, |(_, t)| *t);
        *by_name.entry(name).or_default() += ticks.saturating_sub(earlier);
    }
    serde_json::json!({
        "servers": after.servers.saturating_sub(before.servers),
        "generator": after.own.saturating_sub(before.own),
        "server_threads": by_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // Field 2 with a space and a parenthesis; utime 123, stime 45.
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 123 45 0 0 20 0 9 0";
        assert_eq!(parse_stat(stat), Some(168));
        assert_eq!(parse_name(stat), Some("my (odd) name"));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_ticks_grow_with_work_and_a_missing_process_is_named() {
        let before = sample(&[std::process::id()]).expect("sample");
        let spin = std::thread::Builder::new()
            .name("cpu-test-spin".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(300) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                // Still alive when the second sample is taken.
                std::thread::sleep(std::time::Duration::from_millis(500));
            })
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(350));
        let after = sample(&[std::process::id()]).expect("sample");
        spin.join().expect("join");
        let spent = spent(before, after);
        assert!(spent["generator"].as_u64().expect("ticks") > 0, "{spent}");
        assert!(spent["servers"].as_u64().expect("ticks") > 0, "{spent}");
        assert!(
            spent["server_threads"]["cpu-test-spin"]
                .as_u64()
                .expect("ticks")
                > 0,
            "{spent}"
        );
        let err = sample(&[u32::MAX]).expect_err("no such process");
        assert!(
            format!("{err:#}").contains(&format!("/proc/{}/stat", u32::MAX)),
            "{err:#}"
        );
    }
}
