//! What the process under test costs, read from `/proc`: resident memory (`VmRSS` in
//! `/proc/PID/status`) and CPU time (`utime + stime` in `/proc/PID/stat`, all threads).

use super::Error;

/// The process's resident set size in KiB (`VmRSS`).
pub fn rss_kb(pid: u32) -> Result<u64, Error> {
    let text = read(pid, "status")?;
    parse_vmrss(&text).ok_or(Error::ProcFormat {
        pid,
        file: "status",
        field: "VmRSS",
    })
}

/// CPU time the process has used so far, user plus system, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, Error> {
    let text = read(pid, "stat")?;
    let ticks = parse_cpu_ticks(&text).ok_or(Error::ProcFormat {
        pid,
        file: "stat",
        field: "utime/stime",
    })?;
    Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// CPU seconds used by `pid` (if any) while `work` ran, alongside what `work` returned.
pub async fn cpu_during<T>(
    pid: Option<u32>,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<(T, Option<f64>), Error> {
    let before = pid.map(cpu_seconds).transpose()?;
    let out = work.await?;
    let after = pid.map(cpu_seconds).transpose()?;
    Ok((out, before.zip(after).map(|(b, a)| a - b)))
}

fn read(pid: u32, file: &'static str) -> Result<String, Error> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|source| Error::Proc {
        pid,
        file,
        source,
    })
}

/// `VmRSS:     1234 kB` → 1234.
fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Fields 14 and 15 of `/proc/PID/stat` (utime, stime), counted after the `)` that closes the
/// command name, which may itself hold spaces and parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss() {
        let status = "Name:\tnginx\nVmPeak:\t  9000 kB\nVmRSS:\t   5120 kB\nThreads:\t1\n";
        assert_eq!(parse_vmrss(status), Some(5120));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_past_odd_command_names() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(281));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_kb(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
    }
}
