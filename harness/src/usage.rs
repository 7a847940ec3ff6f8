//! What a process uses, as Linux's `/proc` tells: its CPU time and its
//! resident memory.

use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::unistd::{SysconfVar, sysconf};

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself: count the fields from the last ')'. After it come
    // field 3 (state) and on; utime and stime are fields 14 and 15.
    let after_name = stat
        .rfind(')')
        .with_context(|| format!("no ')' in {path}"))?
        + 1;
    let mut fields = stat[after_name..].split_whitespace().skip(14 - 3);
    let mut field = |name: &str| -> anyhow::Result<u64> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no {name} in {path}: {stat}"))
    };
    let ticks = field("utime")? + field("stime")?;
    let per_second = clock_ticks_per_second()?;
    Ok(Duration::from_nanos(
        (u128::from(ticks) * 1_000_000_000 / u128::from(per_second)) as u64,
    ))
}

/// The unit of the times in `/proc/PID/stat`; 100 on most Linux systems,
/// but the kernel's configuration decides.
fn clock_ticks_per_second() -> anyhow::Result<u64> {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => Ok(ticks as u64),
        Ok(other) => bail!("sysconf(_SC_CLK_TCK) gave {other:?}"),
        Err(e) => Err(e).context("sysconf(_SC_CLK_TCK)"),
    }
}

/// The resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu_time_and_memory() {
        let pid = std::process::id();
        let before = cpu_time(pid).unwrap();
        // Spin until the kernel has counted a tick more.
        let spun = std::time::Instant::now();
        let mut after = before;
        while after == before && spun.elapsed() < Duration::from_secs(10) {
            std::hint::black_box(spun.elapsed());
            after = cpu_time(pid).unwrap();
        }
        assert!(after > before, "{before:?} -> {after:?}");
        assert!(rss_bytes(pid).unwrap() > 1 << 20);
    }

    #[test]
    fn a_process_that_is_gone_is_an_error() {
        // Above the kernel's largest pid (4194304 at most).
        assert!(cpu_time(u32::MAX).is_err());
        assert!(rss_bytes(u32::MAX).is_err());
    }
}
