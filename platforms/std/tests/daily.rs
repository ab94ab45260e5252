//! The `longlink` binary for daily use, as a subprocess over loopback:
//! scriptable (stdout, --output, --count/--timeout/--exit-on-eof, exit
//! status, closed pipes), binary-clean (--input hex/escaped, the lab's
//! stdin commands, binary shown as hex) and its conventions (durations,
//! host names, URLs, log lines, --help).
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
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

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn read_all(r: Option<impl Read>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        r.read_to_string(&mut s).unwrap();
    }
    s
}

/// The first client to connect to `lab`.
fn connected(lab: &Lab) -> SocketAddr {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lab.next_event(left) {
            Some(LabEvent::Connected { peer, .. }) => return peer,
            Some(_) => {}
            None => panic!("no client connected"),
        }
    }
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

/// Runs the client to completion (at most `T`), with `stdin` as its input.
fn client_run(args: &[&str], stdin: &[u8]) -> (Option<ExitStatus>, String, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let out = child.stdout.take();
    let err = child.stderr.take();
    let out = std::thread::spawn(move || read_all(out));
    let err = std::thread::spawn(move || read_all(err));
    let status = wait_exit(&mut child, T);
    (
        status,
        out.join().unwrap(),
        err.join().unwrap(),
        started.elapsed(),
    )
}

#[test]
fn client_prints_each_message_on_stdout_and_stops_after_count() {
    let lab = Lab::start(any(), Transport::Tcp, Framing::Lines).unwrap();
    let url = format!("tcp://{}", lab.local_addr());
    let mut child = Command::new(BIN)
        .args(["client", &url, "--framing", "lines", "--output", "hex"])
        .args(["--count", "2", "--heartbeat", "off"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let peer = connected(&lab);
    for m in [&b"bin"[..], b"hi", b"third: not printed"] {
        lab.send_to(peer, m).unwrap();
    }
    let status = wait_exit(&mut child, T).expect("--count 2 stops the client");
    let out = read_all(child.stdout.take());
    let err = read_all(child.stderr.take());
    assert!(status.success(), "{err}");
    assert_eq!(out, "62 69 6e\n68 69\n", "stdout holds only the messages");
    // Logs go to stderr, dated RFC 3339, banner before "connected".
    let first = err.lines().next().unwrap();
    assert!(
        first.len() > 24 && first.as_bytes()[4] == b'-' && first.as_bytes()[10] == b'T',
        "{first}"
    );
    let banner = err.find("longlink client: TCP to").expect("banner");
    let conn = err.find("INFO  connected").expect("connected");
    assert!(banner < conn, "{err}");
    assert!(err.contains("0 queued message(s) not delivered"), "{err}");
    // The bin request was answered: binary in the log as hex.
    assert!(err.contains("sent 4 bytes: 11 22 33 0a"), "{err}");
}

#[test]
fn client_json_output_and_text_output() {
    let lab = Lab::start(any(), Transport::Tcp, Framing::Lines).unwrap();
    let url = format!("tcp://{}", lab.local_addr());
    let mut child = Command::new(BIN)
        .args(["client", &url, "--framing", "lines", "--output", "json"])
        .args(["--count", "2", "--heartbeat", "off", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peer = connected(&lab);
    lab.send_to(peer, b"hello \"you\"").unwrap();
    lab.send_raw(peer, &[0x11, 0x22, b'\n']).unwrap();
    assert!(wait_exit(&mut child, T).unwrap().success());
    let out = read_all(child.stdout.take());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("{\"time\":\"20"), "{out}");
    assert!(
        lines[0].ends_with(r#""dir":"in","len":11,"hex":"68 65 6c 6c 6f 20 22 79 6f 75 22","text":"hello \"you\""}"#),
        "{out}"
    );
    assert!(
        lines[1].ends_with(r#""dir":"in","len":2,"hex":"11 22","text":null}"#),
        "{out}"
    );

    // Text: each message as it is, one per line (like nc).
    let mut child = Command::new(BIN)
        .args(["client", &url, "--framing", "lines", "--count", "1", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peer = connected(&lab);
    lab.send_to(peer, b"plain text").unwrap();
    assert!(wait_exit(&mut child, T).unwrap().success());
    assert_eq!(read_all(child.stdout.take()), "plain text\n");
}

#[test]
fn timeout_stops_the_client_and_never_connecting_exits_3() {
    // Connected: --timeout ends it with 0.
    let lab = Lab::start(any(), Transport::Tcp, Framing::Raw).unwrap();
    let url = format!("tcp://{}", lab.local_addr());
    let (status, out, err, took) = client_run(
        &[&url, "--timeout", "800ms", "--connect-deadline", "300ms"],
        b"",
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("stopping: --timeout passed"), "{err}");

    // Nobody listens: --connect-deadline fails it with 3, errors in words.
    let closed = format!("tcp://{}", free_port());
    let (status, _, err, took) = client_run(
        &[
            &closed,
            "--connect-deadline",
            "700ms",
            "--retry-delay",
            "100ms",
        ],
        b"",
    );
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(err.contains("never connected"), "{err}");
    assert!(
        err.contains("Connection refused"),
        "errors in words:\n{err}"
    );
    assert!(!err.contains("Os {"), "no Debug output:\n{err}");
    assert!(!err.contains("ConnectFailed("), "no Debug output:\n{err}");

    // --timeout without ever connecting: 3 as well; humantime durations.
    let (status, _, err, _) = client_run(&[&closed, "--timeout", "0m0.5s"], b"");
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{err}");
}

#[test]
fn exit_on_eof_waits_for_the_queue_then_stops() {
    let lab = Lab::start(any(), Transport::Tcp, Framing::Lines).unwrap();
    let url = format!("tcp://{}", lab.local_addr());
    let (status, _, err, _) = client_run(
        &[
            &url,
            "--framing",
            "lines",
            "--exit-on-eof",
            "--heartbeat",
            "off",
        ],
        b"one\ntwo\n",
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(err.contains("stopping: end of input, queue empty"), "{err}");
    assert_eq!(messages(&lab, 2, T), [b"one".to_vec(), b"two".to_vec()]);

    // Acknowledged: stops once the server acknowledged every line.
    let lab = Lab::start_acked(
        any(),
        Transport::Tcp,
        Framing::Len16,
        None,
        Default::default(),
    )
    .unwrap();
    let url = format!("tcp://{}", lab.local_addr());
    let (status, _, err, _) = client_run(&[&url, "--acked", "--exit-on-eof"], b"a\nb\nc\n");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(err.contains("messages acknowledged 3"), "{err}");
    assert!(err.contains("0 queued message(s) not delivered"), "{err}");
}

#[test]
fn client_sends_hex_and_escaped_input() {
    let lab = Lab::start(any(), Transport::Tcp, Framing::Len16).unwrap();
    let url = format!("tcp://{}", lab.local_addr());
    let (status, _, err, _) = client_run(
        &[
            &url,
            "--framing",
            "len16",
            "--input",
            "hex",
            "--exit-on-eof",
        ],
        b"11 22 33\nzz\n0a0b\n",
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(
        err.contains("stdin line not sent"),
        "a bad line is reported:\n{err}"
    );
    assert_eq!(
        messages(&lab, 2, T),
        [vec![0x11, 0x22, 0x33], vec![0x0a, 0x0b]]
    );
    let (status, _, err, _) = client_run(
        &[
            &url,
            "--framing",
            "len16",
            "--input",
            "escaped",
            "--exit-on-eof",
        ],
        b"a\\x00b\\n\n",
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert_eq!(messages(&lab, 1, T), [b"a\x00b\n".to_vec()]);
}

/// A lab binary with piped stdin and stdout, and its stdout lines on a
/// channel.
struct LabProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl LabProc {
    fn start(extra: &[&str]) -> LabProc {
        let addr = free_port();
        let mut child = Command::new(BIN)
            .args(["lab", "--listen", &addr.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        // Wait until it listens.
        let deadline = Instant::now() + T;
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the lab does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut lab = LabProc { child, lines, addr };
        lab.line_with("connected");
        lab.line_with("disconnected");
        lab
    }

    fn line_with(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!("no stdout line with {needle:?}"),
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn stop(mut self) -> Output {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = wait_exit(&mut self.child, T).expect("the lab stops on SIGINT");
        Output {
            status,
            stdout: Vec::new(),
            stderr: read_all(self.child.stderr.take()).into_bytes(),
        }
    }
}

fn read_some(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(T)).unwrap();
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn lab_stdin_sends_to_one_client_lists_and_drops() {
    let mut lab = LabProc::start(&["--framing", "lines"]);
    // The probe was #1; these are #2 and #3.
    let mut two = TcpStream::connect(lab.addr).unwrap();
    assert!(lab.line_with(" connected").contains("#2 "));
    let mut three = TcpStream::connect(lab.addr).unwrap();
    assert!(lab.line_with(" connected").contains("#3 "));
    lab.say("@3 back hi");
    assert!(lab.line_with("<- 7 bytes").contains("#3 "));
    assert_eq!(read_some(&mut three, 8), b"back hi\n");
    lab.say("to all");
    assert!(lab.line_with("sent").contains("to 2 client(s)"));
    assert_eq!(read_some(&mut two, 7), b"to all\n");
    assert_eq!(read_some(&mut three, 7), b"to all\n");
    lab.say("!list");
    let list = lab.line_with("client(s):");
    assert!(list.contains("#2 ") && list.contains("#3 "), "{list}");
    lab.say("!drop 2");
    lab.line_with("dropped (by !drop)");
    two.set_read_timeout(Some(T)).unwrap();
    let mut rest = Vec::new();
    assert_eq!(two.read_to_end(&mut rest).unwrap(), 0, "#2 was closed");
    // What a client sends shows as hex when it is binary.
    three.write_all(&[0x11, 0x22, 0x33, b'\n']).unwrap();
    let line = lab.line_with("-> 3 bytes");
    assert!(line.ends_with("-> 3 bytes: 11 22 33"), "{line}");
    lab.say("!drop 9");
    let out = lab.stop();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no client #9"), "{err}");
    assert!(
        err.contains("longlink lab ran"),
        "the summary stays:\n{err}"
    );
}

#[test]
fn lab_sends_hex_and_prints_json() {
    let mut lab = LabProc::start(&["--framing", "len16", "--input", "hex", "--output", "json"]);
    let mut c = TcpStream::connect(lab.addr).unwrap();
    let line = lab.line_with("\"event\":\"connected\"");
    assert!(line.contains("\"client\":2"), "{line}");
    lab.say("@2 11 22 33");
    lab.line_with("\"dir\":\"out\"");
    assert_eq!(read_some(&mut c, 5), [0, 3, 0x11, 0x22, 0x33]);
    c.write_all(&[0, 2, b'h', b'i']).unwrap();
    let line = lab.line_with("\"dir\":\"in\"");
    assert!(
        line.contains(r#""client":2,"#) && line.ends_with(r#""len":2,"hex":"68 69","text":"hi"}"#),
        "{line}"
    );
    lab.say("!bogus");
    let out = lab.stop();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command"));
}

#[test]
fn a_closed_stdout_ends_lab_and_client_quietly() {
    // `longlink lab | head -1`.
    let addr = free_port();
    let mut lab = Command::new(BIN)
        .args(["lab", "--listen", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(lab.stdout.take().unwrap());
    let deadline = Instant::now() + T;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("connected"), "{first}");
    drop(out);
    // More events for the closed pipe.
    for _ in 0..3 {
        let _ = TcpStream::connect(addr);
    }
    let status = wait_exit(&mut lab, T).expect("the lab ends when stdout closes");
    let err = read_all(lab.stderr.take());
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // `longlink client ... | head -1`.
    let server = Lab::start(any(), Transport::Tcp, Framing::Lines).unwrap();
    let mut client = Command::new(BIN)
        .args(["client", &format!("tcp://{}", server.local_addr())])
        .args(["--framing", "lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let peer = connected(&server);
    drop(client.stdout.take());
    server.send_to(peer, b"nobody reads this").unwrap();
    let status = wait_exit(&mut client, T).expect("the client ends when stdout closes");
    let err = read_all(client.stderr.take());
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_report_as_json_with_bin_in_hex() {
    let addr = free_port();
    let lab = Command::new(BIN)
        .args(["lab", "--listen", &addr.to_string(), "--check", "--json"])
        .args(["--framing", "lines", "--heartbeats", "2", "--timeout", "5s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut client = Command::new(BIN)
        .args(["client", &format!("tcp://{addr}"), "--framing", "lines"])
        .args(["--heartbeat", "200ms", "--retry-delay", "100ms", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = lab.wait_with_output().unwrap();
    let _ = client.kill();
    let _ = client.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let text = text.trim();
    assert!(
        text.starts_with("{\"passed\":true,") && text.ends_with("]}"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(r#""name":"bin -> 11 22 33","passed":true,"detail":"11 22 33, round trip"#),
        "{text}"
    );
}

#[test]
fn demo_shows_bin_as_hex() {
    let out = Command::new(BIN)
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("11 22 33"), "{text}");
    assert!(!text.contains("\\x11"), "{text}");
    assert!(!text.contains("(Tcp)"), "no Debug output:\n{text}");

    // `longlink demo | head -1`: no panic, the status still tells.
    let mut demo = Command::new(BIN)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(demo.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("longlink demo"), "{first}");
    let status = wait_exit(&mut demo, Duration::from_secs(60)).unwrap();
    let err = read_all(demo.stderr.take());
    assert!(status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn conventions_host_names_urls_durations_help() {
    // --listen with a host name.
    let port = free_port().port();
    let mut lab = Command::new(BIN)
        .args(["lab", "--listen", &format!("localhost:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + T;
    while TcpStream::connect(("127.0.0.1", port)).is_err()
        && TcpStream::connect(("::1", port)).is_err()
    {
        assert!(
            Instant::now() < deadline,
            "lab on localhost does not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &lab.id().to_string()])
        .status();
    assert!(wait_exit(&mut lab, T).unwrap().success());
    assert!(read_all(lab.stderr.take()).contains("longlink lab ran"));

    // Bad URLs, clearly.
    for (url, says) in [
        ("tcp://a b:1", "cannot contain ' '"),
        ("tcp://[::1", "needs its ']'"),
    ] {
        let out = Command::new(BIN)
            .args(["client", url])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{url}: {err}");
    }
    // humantime durations.
    let out = Command::new(BIN)
        .args(["client", "tcp://127.0.0.1:1", "--retry-delay", "1m30s"])
        .args(["--timeout", "300ms", "-q"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    // --help: everyday options first, TLS after, no no-op options.
    let out = Command::new(BIN)
        .args(["client", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let (output, count, ca) = (
        help.find("--output").unwrap(),
        help.find("--count").unwrap(),
        help.find("--ca").unwrap(),
    );
    assert!(output < ca && count < ca, "{help}");
    assert!(help.contains("TLS (tls:// URLs)"), "{help}");
    assert!(!help.contains("--network-wait"), "{help}");
    let out = Command::new(BIN).args(["lab", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["@N TEXT", "!list", "!drop N"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn rust_log_overrides_the_level() {
    let closed = format!("tcp://{}", free_port());
    let out = Command::new(BIN)
        .args(["client", &closed, "--timeout", "300ms", "-q"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(" DEBUG "), "{err}");
}

#[test]
fn udp_client_prints_each_datagram() {
    let lab = Lab::start(any(), Transport::Udp, Framing::Raw).unwrap();
    let url = format!("udp://{}", lab.local_addr());
    let mut child = Command::new(BIN)
        .args(["client", &url, "--output", "hex", "--count", "1"])
        .args(["--heartbeat", "100ms", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A UDP client is known from its first datagram (a heartbeat).
    let peer = connected(&lab);
    lab.send_to(peer, b"bin").unwrap();
    assert!(wait_exit(&mut child, T).unwrap().success());
    assert_eq!(read_all(child.stdout.take()), "62 69 6e\n");
}
