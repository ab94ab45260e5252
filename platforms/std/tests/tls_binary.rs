//! `longlink lab --tls` and `longlink client tls://` as subprocesses, over
//! loopback, with certificates made in the test.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const BIN: &str = env!("CARGO_BIN_EXE_longlink");

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

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("longlink-tlsbin-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA (written as `{tag}-ca.pem`) and a `localhost` certificate and key it
/// issued (`{tag}-cert.pem`, `{tag}-key.pem`).
fn pki(dir: &Dir, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{tag} CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (
        dir.write(&format!("{tag}-ca.pem"), &ca_cert.pem()),
        dir.write(&format!("{tag}-cert.pem"), &cert.pem()),
        dir.write(&format!("{tag}-key.pem"), &key.serialize_pem()),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn lab(cert: &Path, key: &Path, port: u16, check: bool) -> Child {
    lab_framed(cert, key, port, check, &["--framing", "lines"])
}

/// `framing`: the framing options (`--framing lines`, or `--acked`).
fn lab_framed(cert: &Path, key: &Path, port: u16, check: bool, framing: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["lab", "--listen", &format!("127.0.0.1:{port}")])
        .args(framing)
        .arg("--tls")
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key);
    if check {
        cmd.args(["--check", "--timeout", "10s"]);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn client(port: u16, ca: &Path) -> Child {
    client_framed(port, ca, &["--framing", "lines"])
}

fn client_framed(port: u16, ca: &Path, framing: &[&str]) -> Child {
    Command::new(BIN)
        .args(["client", &format!("tls://localhost:{port}")])
        .args(framing)
        .args(["--heartbeat", "200ms", "--retry-delay", "200ms"])
        .arg("--ca")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn lab_tls_acked_check_passes_against_the_acked_client_binary_over_tls() {
    let dir = Dir::new();
    let (ca, cert, key) = pki(&dir, "acked");
    let port = free_port();
    let mut lab = lab_framed(&cert, &key, port, true, &["--acked"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut client = client_framed(port, &ca, &["--acked"]);
    let status = wait_exit(&mut lab, Duration::from_secs(40));
    let mut out = String::new();
    lab.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = client.kill();
    let _ = client.wait();
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(out.contains("8 passed, 0 failed"), "{out}");
}

#[test]
fn lab_tls_check_passes_against_the_client_binary_over_tls() {
    let dir = Dir::new();
    let (ca, cert, key) = pki(&dir, "good");
    let port = free_port();
    let mut lab = lab(&cert, &key, port, true);
    std::thread::sleep(Duration::from_millis(200));
    let mut client = client(port, &ca);
    let status = wait_exit(&mut lab, Duration::from_secs(30));
    let mut out = String::new();
    lab.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = client.kill();
    let _ = client.wait();
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(out.contains("7 passed, 0 failed"), "{out}");
}

#[test]
fn an_untrusted_server_is_a_logged_failed_connect_never_plain_text() {
    let dir = Dir::new();
    let (_, cert, key) = pki(&dir, "server");
    let (other_ca, _, _) = pki(&dir, "other");
    let port = free_port();
    let mut lab = lab(&cert, &key, port, false);
    std::thread::sleep(Duration::from_millis(200));
    let mut client = client(port, &other_ca);
    std::thread::sleep(Duration::from_millis(700));
    let _ = Command::new("kill")
        .args(["-TERM", &client.id().to_string()])
        .status();
    let exited = wait_exit(&mut client, Duration::from_secs(10));
    let _ = lab.kill();
    let _ = lab.wait();
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut out = String::new();
    lab.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(exited.is_some(), "{err}");
    assert!(
        err.contains("WARN") && err.contains("not signed by a trusted CA"),
        "a clear warning:\n{err}"
    );
    assert!(err.contains("connects 0"), "{err}");
    assert!(
        out.contains("TLS failed"),
        "the lab saw the refusal:\n{out}"
    );
    assert!(
        !out.contains("heart beat"),
        "nothing went out in the clear:\n{out}"
    );
}

#[test]
fn tls_options_are_checked() {
    let bad = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = bad(&["client", "tcp://127.0.0.1:9", "--ca", "/nonexistent.pem"]);
    assert!(e.contains("tls://"), "{e}");
    let e = bad(&["client", "tls://127.0.0.1:9", "--ca", "/nonexistent.pem"]);
    assert!(e.contains("nonexistent.pem"), "{e}");
    bad(&["client", "tls://127.0.0.1:9", "--cert", "c.pem"]);
    bad(&["lab", "--tls"]);
    bad(&["lab", "--tls", "--udp", "--cert", "c", "--key", "k"]);
}
