//! `longlink bench`: measures the `longlink client` binary from the outside,
//! over loopback, against a bare in-process server.
//!
//! - queued line -> wire: a line written to the client's stdin until the
//!   server has read it (pipe, stdin thread, enqueue wake-up, driver write,
//!   loopback), median, p99 and max, against the bare client (`longlink
//!   bare-echo` forwarding its stdin to a `TCP_NODELAY` socket) in the same
//!   run: the tail shows Nagle's algorithm if it is on;
//! - echo round trip: server writes `back N`, until it has read the reply;
//!   compared with a bare blocking `std::net` echo client (`longlink
//!   bare-echo`, a separate process like the client) on the same machine;
//! - echo throughput: the server writes `back N` lines as fast as it can
//!   while it reads the replies (pipelined), messages per second, against
//!   the same bare client;
//! - idle CPU: the client's utime+stime from `/proc/<pid>/stat` over an idle
//!   period with the connection up (heartbeats at the tutorial's 10 s).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::text::duration;

/// Percentiles of a sample set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub median: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

/// Median, p99 and max of `samples` (`None` when empty).
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut s = samples.to_vec();
    s.sort();
    let at = |q: f64| s[((s.len() as f64 - 1.0) * q).round() as usize];
    Some(Summary {
        n: s.len(),
        median: *s.get(s.len() / 2)?,
        p99: at(0.99),
        max: *s.last()?,
    })
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {}, p99 {}, max {} (n={})",
            duration(self.median),
            duration(self.p99),
            duration(self.max),
            self.n
        )
    }
}

/// Reads lines until one that is not a heartbeat.
fn next_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        line.clear();
        if r.read_until(b'\n', line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line != b"heart beat\n" {
            return Ok(());
        }
    }
}

/// Heartbeat interval of the client in the tail measurement: often enough
/// that many lines are queued while a heartbeat awaits its ACK, which is
/// when Nagle's algorithm (if on) holds a line back.
pub const TAIL_HEARTBEAT: &str = "20ms";
/// Pause between lines in the tail measurement, so that the server's
/// delayed ACKs matter as they do for a person typing.
pub const TAIL_GAP: Duration = Duration::from_millis(3);

/// Lines written to `stdin` until each is read from `reader`, `gap` apart.
fn line_to_wire(
    stdin: &mut impl Write,
    reader: &mut impl BufRead,
    samples: usize,
    gap: Duration,
) -> std::io::Result<Vec<Duration>> {
    let mut line = Vec::new();
    let mut wire = Vec::with_capacity(samples);
    for i in 0..samples {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let msg = format!("line {i}\n");
        let t0 = Instant::now();
        stdin.write_all(msg.as_bytes())?;
        stdin.flush()?;
        next_line(reader, &mut line)?;
        wire.push(t0.elapsed());
        if line != msg.as_bytes() {
            return Err(std::io::Error::other("lines out of order"));
        }
    }
    Ok(wire)
}

/// Round trips of `back N` lines over `stream`, answered by whoever is on the
/// other end.
fn echo_rtts(stream: &TcpStream, samples: usize) -> std::io::Result<Vec<Duration>> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = Vec::new();
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let msg = format!("back {i}\n");
        let t0 = Instant::now();
        writer.write_all(msg.as_bytes())?;
        next_line(&mut reader, &mut line)?;
        out.push(t0.elapsed());
        if line != msg.as_bytes() {
            return Err(std::io::Error::other(format!(
                "expected {msg:?}, got {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
    }
    Ok(out)
}

/// Pipelined echo: `n` `back` lines written by one thread while this one
/// reads the replies, in order. Returns messages per second.
fn echo_throughput(stream: &TcpStream, n: usize) -> std::io::Result<f64> {
    let out = stream.try_clone()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut w = BufWriter::new(out);
        for i in 0..n {
            writeln!(w, "back {i}")?;
        }
        w.flush()
    });
    let mut line = Vec::new();
    for i in 0..n {
        next_line(&mut reader, &mut line)?;
        if line != format!("back {i}\n").as_bytes() {
            return Err(std::io::Error::other(format!(
                "reply {i} out of order: {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
    }
    let elapsed = t0.elapsed();
    writer
        .join()
        .map_err(|_| std::io::Error::other("writer thread panicked"))??;
    Ok(n as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// The same measurements against the bare client (`longlink bare-echo`), a
/// separate process like the client, so that both pay the same process and
/// scheduling costs: stdin line to wire (back to back, then spaced), round
/// trips, then pipelined throughput.
fn baseline(exe: &std::path::Path, samples: usize, messages: usize) -> std::io::Result<Baseline> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut child = Command::new(exe)
        .args(["bare-echo", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let out = (|| {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut stdin = child.stdin.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let mut reader = BufReader::new(&s);
        let wire = line_to_wire(&mut stdin, &mut reader, samples, Duration::ZERO)?;
        let tail = line_to_wire(&mut stdin, &mut reader, samples, TAIL_GAP)?;
        let rtts = echo_rtts(&s, samples)?;
        Ok(Baseline {
            wire,
            tail,
            rtts,
            throughput: echo_throughput(&s, messages)?,
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    out
}

struct Baseline {
    wire: Vec<Duration>,
    tail: Vec<Duration>,
    rtts: Vec<Duration>,
    throughput: f64,
}

/// Lines [`TAIL_GAP`] apart through a client sending heartbeats every
/// [`TAIL_HEARTBEAT`].
fn tail(client: &std::path::Path, samples: usize) -> std::io::Result<Vec<Duration>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr: SocketAddr = listener.local_addr()?;
    let mut child = Command::new(client)
        .args(["-q", "client", &format!("tcp://{addr}")])
        .args(["--framing", "lines", "--heartbeat", TAIL_HEARTBEAT])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let out = (|| {
        let (stream, _) = listener.accept()?;
        let mut stdin = child.stdin.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        line_to_wire(&mut stdin, &mut BufReader::new(&stream), samples, TAIL_GAP)
    })();
    let _ = child.kill();
    let _ = child.wait();
    out
}

/// `longlink bare-echo ADDR`: the floor the benchmark compares against. As
/// little as a blocking client with `TCP_NODELAY` can do: read lines, write
/// each back, and write each line of stdin to the socket.
pub fn bare_echo(addr: SocketAddr) -> std::process::ExitCode {
    let run = || -> std::io::Result<()> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let out = s.try_clone()?;
        std::thread::spawn(move || {
            let mut out = &out;
            for line in std::io::stdin().lock().split(b'\n') {
                let Ok(mut line) = line else { return };
                line.push(b'\n');
                if out.write_all(&line).is_err() {
                    return;
                }
            }
        });
        let mut r = BufReader::new(s.try_clone()?);
        let mut w = &s;
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line)? > 0 {
            w.write_all(&line)?;
            line.clear();
        }
        Ok(())
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

/// CPU time (user + system) of a process in seconds, from `/proc`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The measurements.
#[derive(Debug, Clone)]
pub struct Results {
    /// stdin line -> server read.
    pub line_to_wire: Summary,
    /// stdin line -> server read through the bare client.
    pub baseline_wire: Summary,
    /// stdin line -> server read, lines [`TAIL_GAP`] apart, heartbeats every
    /// [`TAIL_HEARTBEAT`].
    pub tail_wire: Summary,
    /// The same through the bare client (no heartbeats).
    pub baseline_tail_wire: Summary,
    /// Echo round trip through the client.
    pub echo: Summary,
    /// Echo round trip through the bare std::net echo client.
    pub baseline: Summary,
    /// Pipelined echo messages per second through the client.
    pub throughput: f64,
    /// Pipelined echo messages per second through the bare client.
    pub baseline_throughput: f64,
    /// CPU seconds used while idle, and the idle time.
    pub idle_cpu: Option<(f64, Duration)>,
}

/// Runs everything against the client binary at `client`; the bare floor
/// (`longlink bare-echo`) is always this binary.
pub fn run(
    client: &std::path::Path,
    samples: usize,
    messages: usize,
    idle: Duration,
) -> std::io::Result<Results> {
    let messages = messages.max(1);
    let samples = samples.max(1);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr: SocketAddr = listener.local_addr()?;
    let mut child = Command::new(client)
        .args([
            "-q",
            "client",
            &format!("tcp://{addr}"),
            "--framing",
            "lines",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| {
        let (stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut stdin = child.stdin.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let wire = line_to_wire(&mut stdin, &mut reader, samples, Duration::ZERO)?;
        let echo = echo_rtts(&stream, samples)?;
        let throughput = echo_throughput(&stream, messages)?;
        // The floor is always this binary's own `bare-echo`, also when
        // measuring another client binary.
        let exe = std::env::current_exe()?;
        let base = baseline(&exe, samples, messages)?;
        let tail_wire = tail(client, samples)?;

        let before = cpu_seconds(child.id());
        std::thread::sleep(idle);
        let after = cpu_seconds(child.id());
        let idle_cpu = before.zip(after).map(|(b, a)| (a - b, idle));
        let none = std::io::ErrorKind::InvalidData;
        Ok(Results {
            line_to_wire: summarize(&wire).ok_or(none)?,
            baseline_wire: summarize(&base.wire).ok_or(none)?,
            tail_wire: summarize(&tail_wire).ok_or(none)?,
            baseline_tail_wire: summarize(&base.tail).ok_or(none)?,
            echo: summarize(&echo).ok_or(none)?,
            baseline: summarize(&base.rtts).ok_or(none)?,
            throughput,
            baseline_throughput: base.throughput,
            idle_cpu,
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The report.
pub fn render(r: &Results) -> String {
    let ratio = r.echo.median.as_secs_f64() / r.baseline.median.as_secs_f64().max(1e-9);
    let idle = match r.idle_cpu {
        Some((cpu, over)) => format!(
            "{:.3}s CPU over {} = {:.3}% of one core",
            cpu,
            duration(over),
            100.0 * cpu / over.as_secs_f64().max(1e-9)
        ),
        None => "unavailable (no /proc)".into(),
    };
    let tput = r.throughput / r.baseline_throughput.max(1e-9);
    let max_ratio = |a: &Summary, b: &Summary| a.max.as_secs_f64() / b.max.as_secs_f64().max(1e-9);
    let wire = max_ratio(&r.line_to_wire, &r.baseline_wire);
    let tail = max_ratio(&r.tail_wire, &r.baseline_tail_wire);
    let gap = duration(TAIL_GAP);
    let spaced = format!("lines {gap} apart, hb {TAIL_HEARTBEAT}:");
    let spaced_bare = format!("bare client, {gap} apart:");
    format!(
        "queued stdin line -> wire:      {}\n\
         bare client (TCP_NODELAY):     {}\n\
         line -> wire max / bare max:   {wire:.2}x\n\
         {spaced:<31}{}\n\
         {spaced_bare:<31}{}\n\
         spaced max / bare max:         {tail:.2}x\n\
         echo round trip (back N):      {}\n\
         bare std::net echo client:     {}\n\
         echo / bare (medians):         {ratio:.2}x\n\
         pipelined echo:                {:.0} msg/s (bare client {:.0} msg/s, {tput:.2}x)\n\
         idle CPU (connected, hb 10s):  {idle}\n",
        r.line_to_wire,
        r.baseline_wire,
        r.tail_wire,
        r.baseline_tail_wire,
        r.echo,
        r.baseline,
        r.throughput,
        r.baseline_throughput
    )
}

/// The figures as `key=value` lines, microseconds and messages per second.
pub fn render_raw(r: &Results) -> String {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut out = String::new();
    for (name, s) in [
        ("wire", &r.line_to_wire),
        ("bare_wire", &r.baseline_wire),
        ("tail", &r.tail_wire),
        ("bare_tail", &r.baseline_tail_wire),
        ("echo", &r.echo),
        ("bare", &r.baseline),
    ] {
        out += &format!(
            "{name}_p50_us={:.1}\n{name}_p99_us={:.1}\n{name}_max_us={:.1}\n",
            us(s.median),
            us(s.p99),
            us(s.max)
        );
    }
    out += &format!("echo_msgs_per_s={:.0}\n", r.throughput);
    out += &format!("bare_msgs_per_s={:.0}\n", r.baseline_throughput);
    if let Some((cpu, over)) = r.idle_cpu {
        out += &format!(
            "idle_cpu_percent={:.4}\nidle_s={:.0}\n",
            100.0 * cpu / over.as_secs_f64().max(1e-9),
            over.as_secs_f64()
        );
    }
    out
}

/// Writes `text` to stdout. A reader that went away (`bench | head`) ends
/// the run quietly, as it does for the client; any other write error is
/// reported.
fn emit(text: &str) -> Result<(), std::process::ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("longlink bench: stdout: {e}");
            Err(std::process::ExitCode::FAILURE)
        }
    }
}

/// `longlink bench`.
pub fn main(args: &crate::cli::BenchArgs) -> std::process::ExitCode {
    let client = match &args.client {
        Some(p) => p.clone(),
        None => match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("longlink bench: cannot find this binary: {e}");
                return std::process::ExitCode::from(2);
            }
        },
    };
    if !args.raw {
        let header = format!(
            "longlink bench: {} samples, {} pipelined messages, {} idle, client {}\n",
            args.samples,
            args.messages,
            duration(args.idle),
            client.display()
        );
        if let Err(code) = emit(&header) {
            return code;
        }
    }
    match run(&client, args.samples, args.messages, args.idle) {
        Ok(r) => match emit(&if args.raw { render_raw(&r) } else { render(&r) }) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(code) => code,
        },
        Err(e) => {
            eprintln!("longlink bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let sum = summarize(&s).unwrap();
        assert_eq!(sum.median, Duration::from_millis(51));
        assert_eq!(sum.p99, Duration::from_millis(99));
        assert_eq!(sum.max, Duration::from_millis(100));
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn reads_our_own_cpu_time() {
        assert!(cpu_seconds(std::process::id()).is_some_and(|s| s >= 0.0));
    }
}
