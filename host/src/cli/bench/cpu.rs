//! CPU time around the timed run (`flotilla bench --cpu-pids`): the user + system clock
//! ticks that given processes (a cluster's servers) and the bench itself spent, read
//! from `/proc/PID/stat` (Linux) right before and right after the run, so that a script
//! can divide a system's CPU by the operations of exactly the window they were counted
//! in: setup (creating groups, preloading keys) and cleanup stay outside it.

use anyhow::Context as _;

/// Ticks read at one instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    servers: u64,
    own: u64,
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

fn ticks(pid: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("--cpu-pids: cannot read {path} (is process {pid} running?)"))?;
    parse_stat(&stat).with_context(|| format!("--cpu-pids: {path} has no CPU times: {stat:?}"))
}

/// Samples the CPU of `pids` (summed) and of this process.
pub fn sample(pids: &[u32]) -> anyhow::Result<CpuSample> {
    let mut servers = 0;
    for pid in pids {
        servers += ticks(&pid.to_string())?;
    }
    Ok(CpuSample {
        servers,
        own: ticks("self")?,
    })
}

/// What `--output json` reports as `cpu_ticks`: ticks spent between two samples, and
/// the clock's ticks per second (`getconf CLK_TCK` in the shell).
pub fn spent(before: CpuSample, after: CpuSample) -> serde_json::Value {
    serde_json::json!({
        "servers": after.servers.saturating_sub(before.servers),
        "generator": after.own.saturating_sub(before.own),
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
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_ticks_grow_with_work_and_a_missing_process_is_named() {
        let before = sample(&[std::process::id()]).expect("sample");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = sample(&[std::process::id()]).expect("sample");
        let spent = spent(before, after);
        assert!(spent["generator"].as_u64().expect("ticks") > 0, "{spent}");
        assert!(spent["servers"].as_u64().expect("ticks") > 0, "{spent}");
        let err = sample(&[u32::MAX]).expect_err("no such process");
        assert!(
            format!("{err:#}").contains(&format!("/proc/{}/stat", u32::MAX)),
            "{err:#}"
        );
    }
}
