//! The benchmark's processes and their CPUs: pinning one to a CPU, and the CPU time one used
//! (from `/proc`), so that a figure can say which process was the bottleneck and what each
//! request cost it.

use std::process::{Command, Stdio};

use anyhow::Context as _;

/// Clock ticks per second of `/proc/{pid}/stat`'s times: Linux's `USER_HZ`, 100 on every
/// architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// Seconds of CPU process `pid` has used, user and system, all its threads.
///
/// # Errors
/// When the process is gone or `/proc` is not Linux's.
pub fn process_seconds(pid: u32) -> anyhow::Result<f64> {
    // utime and stime.
    stat_seconds(&pid.to_string(), [14, 15])
}

/// Seconds of CPU used by this process's children that have ended and been waited for: the
/// load generator's, read before and after a run of it.
///
/// # Errors
/// When `/proc` is not Linux's.
pub fn children_seconds() -> anyhow::Result<f64> {
    // cutime and cstime.
    stat_seconds("self", [16, 17])
}

/// The sum of the numbered fields of `/proc/{process}/stat`, in seconds.
fn stat_seconds(process: &str, fields: [usize; 2]) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat"))
        .with_context(|| format!("reading /proc/{process}/stat"))?;
    // The command name, in parentheses, may hold spaces: count the fields after it, from
    // the third (the state).
    let (_, after_name) = stat.rsplit_once(')').context("an unreadable stat line")?;
    let values: Vec<&str> = after_name.split_whitespace().collect();
    let mut ticks = 0.0;
    for field in fields {
        let value = values.get(field - 3).context("a short stat line")?;
        ticks += value.parse::<f64>()?;
    }
    Ok(ticks / TICKS_PER_SECOND)
}

/// Seconds each CPU has been busy since boot, whoever kept it busy (this machine is shared):
/// all of `/proc/stat`'s times of its `cpuN` line but idle and iowait.
///
/// # Errors
/// When `/proc` is not Linux's.
pub fn busy_seconds() -> anyhow::Result<Vec<f64>> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let cpus = stat.lines().filter(|line| {
        line.strip_prefix("cpu")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    cpus.map(|line| {
        let times = line
            .split_whitespace()
            .skip(1)
            .map(str::parse::<f64>)
            .collect::<Result<Vec<_>, _>>()?;
        // user nice system idle iowait irq softirq steal (guest times are in user's).
        let busy: f64 = times.iter().take(8).sum::<f64>() - times[3] - times[4];
        Ok(busy / TICKS_PER_SECOND)
    })
    .collect()
}

/// Moves every thread of process `pid` onto CPU `cpu`.
///
/// # Errors
/// When `taskset` (from util-linux) is missing or fails.
pub fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("taskset (from util-linux) is needed to pin processes")?;
    anyhow::ensure!(status.success(), "taskset could not pin process {pid}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin = std::time::Instant::now();
        while spin.elapsed().as_millis() < 50 {}
        let seconds = process_seconds(std::process::id()).expect("our own stat");
        assert!(seconds > 0.0, "{seconds}");
        assert!(children_seconds().expect("our own stat") >= 0.0);
    }

    #[test]
    fn every_cpu_has_been_busy_since_boot() {
        let busy = busy_seconds().expect("/proc/stat");
        assert!(
            !busy.is_empty() && busy.iter().all(|&seconds| seconds > 0.0),
            "{busy:?}"
        );
    }
}
