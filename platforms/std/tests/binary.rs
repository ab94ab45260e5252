//! The `longlink` binary as a subprocess, over loopback only.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use longlink_core::{Framing, Transport};
use longlink_std::lab::{Lab, LabEvent};

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

/// Messages (not heartbeats) the lab receives until `n` arrived or `timeout`.
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

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn client_queues_stdin_lines_across_a_server_restart_survives_eof_and_stops_on_sigterm() {
    let lab = Lab::start(any(), Transport::Tcp, Framing::Lines).unwrap();
    let addr = lab.local_addr();
    let mut child = Command::new(BIN)
        .args(["client", &format!("tcp://{addr}"), "--framing", "lines"])
        .args(["--heartbeat", "200ms", "--retry-delay", "100ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\r\n").unwrap();
    assert_eq!(messages(&lab, 2, T), vec![b"one".to_vec(), b"two".to_vec()]);

    // The server goes away; lines typed meanwhile wait in the queue.
    drop(lab);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        writeln!(stdin, "down {i}").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let lab = Lab::start(addr, Transport::Tcp, Framing::Lines).unwrap();
    let want: Vec<Vec<u8>> = (0..5).map(|i| format!("down {i}").into_bytes()).collect();
    assert_eq!(
        messages(&lab, 5, T),
        want,
        "delivered after the reconnect, once, in order"
    );
    assert!(
        messages(&lab, 1, Duration::from_millis(500)).is_empty(),
        "no duplicates"
    );

    // End of input does not end the client.
    drop(stdin);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "EOF ended the client");
    let peer = lab.clients()[0];
    let (reply, _) = longlink_std::check::request(
        &lab,
        peer,
        b"back still",
        longlink_std::check::Expect::Bytes(b"back still"),
        b"heart beat",
        T,
    )
    .unwrap();
    assert_eq!(reply, b"back still");

    signal(&child, "TERM");
    let status = wait_exit(&mut child, T).expect("SIGTERM ends the client");
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("longlink client ran"),
        "summary missing:\n{err}"
    );
    assert!(err.contains("connects 2"), "{err}");
    assert!(err.contains("received"), "events are logged:\n{err}");
}

#[test]
fn sigint_also_ends_the_client_cleanly() {
    let lab = Lab::start(any(), Transport::Udp, Framing::Raw).unwrap();
    let mut child = Command::new(BIN)
        .args(["-q", "client", &format!("udp://{}", lab.local_addr())])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + T;
    let hb = lab.wait_for(
        deadline,
        |e| matches!(e, LabEvent::Message { bytes, .. } if bytes == b"heart beat").then_some(()),
        drop,
    );
    assert_eq!(hb, Some(()));
    signal(&child, "INT");
    let status = wait_exit(&mut child, T).expect("SIGINT ends the client");
    assert!(status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("longlink client ran"), "{err}");
    assert!(!err.contains("INFO"), "-q hides info lines:\n{err}");
}

#[test]
fn lab_check_passes_against_the_client_binary() {
    let port = std::net::TcpListener::bind(any())
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut lab = Command::new(BIN)
        .args([
            "lab",
            "--listen",
            &listen,
            "--check",
            "--timeout",
            "10s",
            "--framing",
            "len16",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut client = Command::new(BIN)
        .args([
            "-q",
            "client",
            &format!("tcp://{listen}"),
            "--framing",
            "len16",
        ])
        .args(["--heartbeat", "200ms", "--retry-delay", "200ms"])
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
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(out.contains("7 passed, 0 failed"), "{out}");
}

#[test]
fn lab_check_fails_when_no_client_comes() {
    let port = std::net::TcpListener::bind(any())
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut lab = Command::new(BIN)
        .args([
            "lab",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--check",
            "--timeout",
            "300ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut lab, T).unwrap();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn demo_passes() {
    let out = Command::new(BIN)
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("passed, 0 failed"), "{text}");
    assert!(
        text.contains("link reset"),
        "the chart shows the link reset:\n{text}"
    );
}

#[test]
fn bad_arguments_exit_with_2() {
    for args in [
        &["client", "http://127.0.0.1:1"][..],
        &["client", "tcp://127.0.0.1:1", "--heartbeat", "5 parsecs"],
        &["client", "tcp://127.0.0.1:1", "--heartbeat-payload", ""],
        &[
            "client",
            "tcp://127.0.0.1:1",
            "--framing",
            "lines",
            "--heartbeat-payload",
            "a\nb",
        ],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn bench_into_a_closed_pipe_ends_quietly() {
    // `longlink bench | head -0`: the reader is gone before the first line.
    let mut child = Command::new(BIN)
        .args([
            "bench",
            "--samples",
            "5",
            "--messages",
            "20",
            "--idle",
            "10ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

#[test]
fn bench_measures_the_client_against_the_bare_echo_client() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "--raw",
            "--samples",
            "20",
            "--messages",
            "200",
            "--idle",
            "10ms",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for key in [
        "wire_p50_us=",
        "echo_p50_us=",
        "bare_p50_us=",
        "echo_msgs_per_s=",
        "bare_msgs_per_s=",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{key}{value}");
    }
}
