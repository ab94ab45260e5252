//! Stopping `longlink client`: what it reports about undelivered messages on
//! SIGTERM/SIGINT, and `--drain`. The real binary, loopback only.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use longlink_core::{Framing, Transport};
use longlink_std::lab::{Lab, LabEvent, Limits};

const BIN: &str = env!("CARGO_BIN_EXE_longlink");
const T: Duration = Duration::from_secs(10);

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A loopback port nobody listens on (for now).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn client(url: &str, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["client", url])
        .args(["--heartbeat", "200ms", "--retry-delay", "100ms"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// Messages (not heartbeats) the lab delivers until `n` arrived or `timeout`.
fn messages(lab: &Lab, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match lab.next_event(left) {
            Some(LabEvent::Message { bytes, .. }) if bytes != b"heart beat" => got.push(bytes),
            Some(_) => {}
            None => break,
        }
    }
    got
}

#[test]
fn sigterm_reports_unwritten_lines_and_fails() {
    // Nobody listens: every line stays queued.
    let addr = free_port();
    let mut child = client(&format!("tcp://{addr}"), &["--framing", "lines"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\nthree\n").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    signal(&child, "TERM");
    let status = wait_exit(&mut child, T).expect("SIGTERM ends the client");
    let err = stderr(&mut child);
    assert!(
        err.contains("3 queued message(s) not delivered (not written to the socket)"),
        "{err}"
    );
    assert_eq!(status.code(), Some(1), "{err}");
}

#[test]
fn sigint_with_an_empty_queue_exits_0_and_says_so() {
    let lab = Lab::start(free_port(), Transport::Tcp, Framing::Lines).unwrap();
    let mut child = client(
        &format!("tcp://{}", lab.local_addr()),
        &["--framing", "lines", "--drain", "5s"],
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"a\nb\n").unwrap();
    assert_eq!(messages(&lab, 2, T), vec![b"a".to_vec(), b"b".to_vec()]);
    let t0 = Instant::now();
    signal(&child, "INT");
    let status = wait_exit(&mut child, T).expect("SIGINT ends the client");
    let err = stderr(&mut child);
    assert!(status.success(), "{err}");
    assert!(err.contains("0 queued message(s) not delivered"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "nothing to drain, no wait"
    );
}

#[test]
fn drain_waits_for_the_server_and_delivers_everything() {
    // The lab is not there yet: the lines wait in the queue; SIGTERM with
    // --drain keeps the client going until they were written.
    let addr = free_port();
    let mut child = client(
        &format!("tcp://{addr}"),
        &["--framing", "lines", "--drain", "8s"],
    );
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..5 {
        writeln!(stdin, "late {i}").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "--drain did not wait");
    let lab = Lab::start(addr, Transport::Tcp, Framing::Lines).unwrap();
    let want: Vec<Vec<u8>> = (0..5).map(|i| format!("late {i}").into_bytes()).collect();
    assert_eq!(messages(&lab, 5, T), want);
    let status = wait_exit(&mut child, T).expect("the drain ends");
    let err = stderr(&mut child);
    assert!(status.success(), "{err}");
    assert!(err.contains("0 queued message(s) not delivered"), "{err}");
}

#[test]
fn drain_gives_up_after_its_time_and_fails() {
    let addr = free_port();
    let mut child = client(&format!("tcp://{addr}"), &["--drain", "700ms"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"x\ny\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    signal(&child, "TERM");
    let status = wait_exit(&mut child, T).expect("the drain ends");
    let took = t0.elapsed();
    let err = stderr(&mut child);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("2 queued message(s) not delivered"),
        "raw framing: each line one message\n{err}"
    );
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(5),
        "waited {took:?} for a 700ms drain"
    );
}

#[test]
fn acked_drain_waits_for_acks_not_for_the_socket() {
    // The lab reads every message but acknowledges none: written is not
    // enough in acked mode, the drain must give up and say so.
    let lab = Lab::start_acked(
        free_port(),
        Transport::Tcp,
        Framing::Len16,
        None,
        Limits::default(),
    )
    .unwrap();
    lab.withhold_acks();
    let mut child = client(
        &format!("tcp://{}", lab.local_addr()),
        &["--acked", "--drain", "600ms", "--ack-timeout", "30s"],
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"p\nq\nr\n").unwrap();
    let want = vec![b"p".to_vec(), b"q".to_vec(), b"r".to_vec()];
    assert_eq!(messages(&lab, 3, T), want, "delivered, not acknowledged");
    signal(&child, "TERM");
    let status = wait_exit(&mut child, T).expect("the drain ends");
    let err = stderr(&mut child);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("3 queued message(s) not delivered (not acknowledged by the server)"),
        "{err}"
    );
}

#[test]
fn acked_drain_succeeds_once_everything_is_acknowledged() {
    let addr = free_port();
    let mut child = client(
        &format!("tcp://{addr}"),
        &["--acked", "--drain", "8s", "--session", "77"],
    );
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..4 {
        writeln!(stdin, "acked {i}").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "--drain did not wait");
    let lab = Lab::start_acked(
        addr,
        Transport::Tcp,
        Framing::Len16,
        None,
        Limits::default(),
    )
    .unwrap();
    let want: Vec<Vec<u8>> = (0..4).map(|i| format!("acked {i}").into_bytes()).collect();
    assert_eq!(messages(&lab, 4, T), want);
    let status = wait_exit(&mut child, T).expect("the drain ends");
    let err = stderr(&mut child);
    assert!(status.success(), "{err}");
    assert!(err.contains("0 queued message(s) not delivered"), "{err}");
    assert!(err.contains("messages acknowledged 4"), "{err}");
    assert!(lab.stats().acks_sent > 0);
}

#[test]
fn lab_check_acked_passes_against_the_client_binary() {
    check_acked(false);
}

#[test]
fn lab_check_acked_passes_against_the_client_binary_over_udp() {
    check_acked(true);
}

fn check_acked(udp: bool) {
    let listen = free_port().to_string();
    let scheme = if udp { "udp" } else { "tcp" };
    let mut lab = Command::new(BIN)
        .args(["lab", "--listen", &listen, "--check", "--acked"])
        .args(if udp { &["--udp"][..] } else { &[] })
        .args(["--timeout", "10s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut client = Command::new(BIN)
        .args(["-q", "client", &format!("{scheme}://{listen}"), "--acked"])
        .args(["--heartbeat", "200ms", "--retry-delay", "200ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut lab, Duration::from_secs(40));
    let mut out = String::new();
    lab.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let err = stderr(&mut lab);
    let _ = client.kill();
    let _ = client.wait();
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(out.contains("8 passed, 0 failed"), "{out}");
    assert!(
        out.contains("PASS  acked: once, in order, acks lost"),
        "{out}"
    );
    // The three the check resent, and any reply whose ack the earlier drop
    // cut off.
    let dups: u64 = err
        .split("duplicates dropped ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dups >= 3, "{err}");
}

#[test]
fn lab_check_acked_fails_against_a_client_without_acks() {
    // A client in the default mode sends no D/H frames: the acked lab sees
    // only malformed frames, so nothing passes after the connect.
    let listen = free_port().to_string();
    let mut lab = Command::new(BIN)
        .args(["lab", "--listen", &listen, "--check", "--acked"])
        .args(["--timeout", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut client = Command::new(BIN)
        .args(["-q", "client", &format!("tcp://{listen}")])
        .args(["--framing", "len16", "--heartbeat", "200ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut lab, Duration::from_secs(30));
    let mut out = String::new();
    lab.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = client.kill();
    let _ = client.wait();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(out.contains("FAIL  heartbeats"), "{out}");
}

#[test]
fn lab_acked_refuses_framings_that_cannot_carry_it() {
    for args in [
        &["lab", "--acked", "--framing", "lines"][..],
        &["lab", "--acked", "--framing", "raw"][..],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("acknowledged mode"), "{err}");
    }
}
