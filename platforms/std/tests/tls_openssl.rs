//! TLS with certificates made by the real `openssl` binary, the way people
//! make them, against `openssl s_server`, through the real `longlink`
//! binary: rustls (the desktop default) and `--tls-stack embedded` (the
//! device's embedded-tls). Needs `openssl` on the PATH (`.ci/run` installs
//! it).
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_longlink");
const SAN: &str = "subjectAltName=DNS:localhost,IP:127.0.0.1";

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "longlink-openssl-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// Runs `openssl` in this directory; panics with its output on failure.
    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("the openssl binary (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    /// `openssl req -x509` the usual way (marked CA:TRUE by openssl's
    /// defaults): `{name}.pem`, `{name}.key`.
    fn self_signed(&self, name: &str, key: &[&str], subject: &str, san: &str) {
        let (pem, k) = (format!("{name}.pem"), format!("{name}.key"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "30", "-newkey"];
        args.extend_from_slice(key);
        args.extend_from_slice(&[
            "-keyout", &k, "-out", &pem, "-subj", subject, "-addext", san,
        ]);
        self.openssl(&args);
    }
    /// A CA (`ca.pem`, `ca.key`, ECDSA P-256) and a `localhost` leaf it
    /// signed (`{name}.pem`, `{name}.key`), valid from `start` to `end`
    /// (openssl `ca` dates, YYMMDDHHMMSSZ) or for 30 days.
    fn ca_and_leaf(&self, name: &str, dates: Option<(&str, &str)>) {
        if !self.path("ca.pem").exists() {
            self.self_signed(
                "ca",
                &EC,
                "/CN=longlink test CA",
                "basicConstraints=critical,CA:TRUE",
            );
            std::fs::write(self.path("index.txt"), "").unwrap();
            std::fs::write(self.path("serial"), "1000\n").unwrap();
            std::fs::write(
                self.path("ca.cnf"),
                "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n\
                 serial = serial\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\n\
                 default_days = 30\nunique_subject = no\n[p]\ncommonName = supplied\n",
            )
            .unwrap();
        }
        let (csr, k, pem) = (
            format!("{name}.csr"),
            format!("{name}.key"),
            format!("{name}.pem"),
        );
        let mut req = vec!["req", "-new", "-nodes", "-newkey"];
        req.extend_from_slice(&EC);
        req.extend_from_slice(&["-keyout", &k, "-out", &csr, "-subj", "/CN=localhost"]);
        req.extend_from_slice(&["-addext", SAN, "-addext", "basicConstraints=CA:FALSE"]);
        self.openssl(&req);
        let mut ca = vec!["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem"];
        ca.extend_from_slice(&["-keyfile", "ca.key", "-in", &csr, "-out", &pem, "-notext"]);
        if let Some((start, end)) = dates {
            ca.extend_from_slice(&["-startdate", start, "-enddate", end]);
        }
        self.openssl(&ca);
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const RSA: [&str; 1] = ["rsa:2048"];
const EC: [&str; 3] = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `openssl s_server` with this certificate; its stdout collected.
struct Server {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<String>>,
}

impl Server {
    fn start(dir: &Dir, cert: &str, key: &str, port: u16, version: &str) -> Server {
        let mut child = Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", cert, "-key", key, version])
            .current_dir(&dir.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    return;
                }
                o.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // Listening once it accepts a TCP connect.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, stdin, out }
    }

    fn wait_for(&self, text: &str, timeout: Duration) -> bool {
        self.wait_for_n(text, 1, timeout)
    }

    fn wait_for_n(&self, text: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.out.lock().unwrap().matches(text).count() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(port: u16, ca: &Path, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["client", &format!("tls://localhost:{port}")])
        .args(["--heartbeat", "off", "--retry-delay", "300ms"])
        .arg("--ca")
        .arg(ca)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills the client if a test fails before [`finish`].
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Stops the client after `run` and returns its stderr (log and summary).
fn finish(mut client: Child, run: Duration) -> String {
    std::thread::sleep(run);
    let _ = Command::new("kill")
        .args(["-TERM", &client.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = client.kill();
    let _ = client.wait();
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn connects(log: &str) -> u32 {
    let at = log.find("connects ").expect("summary") + "connects ".len();
    log[at..].split(' ').next().unwrap().parse().unwrap()
}

/// The client (`extra` options) against `s_server` with `cert`; returns
/// the client's log.
fn against(dir: &Dir, cert: &str, ca: &str, version: &str, extra: &[&str]) -> String {
    let port = free_port();
    let key = cert.replace(".pem", ".key");
    let _server = Server::start(dir, cert, &key, port, version);
    finish(
        client(port, &dir.path(ca), extra),
        Duration::from_millis(1500),
    )
}

#[test]
fn rustls_accepts_openssl_self_signed_rsa_and_ecdsa_given_as_ca() {
    let dir = Dir::new("self");
    dir.self_signed("rsa", &RSA, "/CN=localhost", SAN);
    dir.self_signed("ec", &EC, "/CN=localhost", SAN);
    for cert in ["rsa.pem", "ec.pem"] {
        let log = against(&dir, cert, cert, "-tls1_3", &[]);
        assert!(connects(&log) >= 1, "{cert} pinned: {log}");
        let log = against(&dir, cert, cert, "-tls1_2", &[]);
        assert!(connects(&log) >= 1, "{cert} pinned over TLS 1.2: {log}");
    }
    // Pinning is exact: another self-signed certificate is refused, in words.
    let log = against(&dir, "rsa.pem", "ec.pem", "-tls1_3", &[]);
    assert_eq!(connects(&log), 0, "{log}");
    assert!(
        log.contains("WARN") && log.contains("give exactly that certificate with --ca"),
        "{log}"
    );
}

#[test]
fn rustls_checks_names_and_dates_of_openssl_certificates() {
    let dir = Dir::new("checks");
    dir.ca_and_leaf("leaf", None);
    dir.ca_and_leaf("expired", Some(("200101000000Z", "200201000000Z")));
    dir.self_signed(
        "other",
        &EC,
        "/CN=other.example",
        "subjectAltName=DNS:other.example",
    );
    let log = against(&dir, "leaf.pem", "ca.pem", "-tls1_3", &[]);
    assert!(connects(&log) >= 1, "CA + leaf: {log}");
    // The leaf given as --ca is pinned too.
    let log = against(&dir, "leaf.pem", "leaf.pem", "-tls1_3", &[]);
    assert!(connects(&log) >= 1, "leaf pinned: {log}");

    let log = against(&dir, "expired.pem", "ca.pem", "-tls1_3", &[]);
    assert_eq!(connects(&log), 0, "{log}");
    assert!(log.contains("has expired; renew it"), "{log}");
    // Pinned or not, an expired certificate is refused.
    let log = against(&dir, "expired.pem", "expired.pem", "-tls1_3", &[]);
    assert_eq!(connects(&log), 0, "{log}");
    assert!(log.contains("has expired"), "{log}");

    // Pinned or not, the name must match.
    let log = against(&dir, "other.pem", "other.pem", "-tls1_3", &[]);
    assert_eq!(connects(&log), 0, "{log}");
    assert!(log.contains("not valid for this server name"), "{log}");
    assert!(
        !log.contains("Other(OtherError"),
        "no Rust debug output: {log}"
    );
}

#[test]
fn embedded_stack_connects_to_ecdsa_tls13_and_says_why_it_cannot_to_rsa_or_tls12() {
    let dir = Dir::new("device");
    dir.self_signed("ec", &EC, "/CN=localhost", SAN);
    dir.self_signed("rsa", &RSA, "/CN=localhost", SAN);
    dir.ca_and_leaf("leaf", None);
    let embedded = ["--tls-stack", "embedded"];

    let log = against(&dir, "ec.pem", "ec.pem", "-tls1_3", &embedded);
    assert!(connects(&log) >= 1, "self-signed P-256: {log}");
    let log = against(&dir, "leaf.pem", "ca.pem", "-tls1_3", &embedded);
    assert!(connects(&log) >= 1, "CA + leaf, P-256: {log}");

    let log = against(&dir, "rsa.pem", "rsa.pem", "-tls1_3", &embedded);
    assert_eq!(connects(&log), 0, "{log}");
    assert!(log.contains("RSA certificate"), "{log}");

    // An ECDSA leaf under an RSA CA: rustls takes it, the device cannot.
    dir.self_signed(
        "rsaca",
        &RSA,
        "/CN=RSA CA",
        "basicConstraints=critical,CA:TRUE",
    );
    let mut req = vec!["req", "-new", "-nodes", "-newkey"];
    req.extend_from_slice(&EC);
    req.extend_from_slice(&["-keyout", "under-rsa.key", "-out", "under-rsa.csr"]);
    req.extend_from_slice(&["-subj", "/CN=localhost", "-addext", SAN]);
    dir.openssl(&req);
    std::fs::write(
        dir.path("leaf.ext"),
        format!("{SAN}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    dir.openssl(&[
        "x509",
        "-req",
        "-in",
        "under-rsa.csr",
        "-CA",
        "rsaca.pem",
        "-CAkey",
        "rsaca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "leaf.ext",
        "-out",
        "under-rsa.pem",
    ]);
    let log = against(&dir, "under-rsa.pem", "rsaca.pem", "-tls1_3", &[]);
    assert!(connects(&log) >= 1, "rustls, RSA CA: {log}");
    let log = against(&dir, "under-rsa.pem", "rsaca.pem", "-tls1_3", &embedded);
    assert_eq!(connects(&log), 0, "{log}");
    assert!(log.contains("not ECDSA P-256 with SHA-256"), "{log}");

    let log = against(&dir, "ec.pem", "ec.pem", "-tls1_2", &embedded);
    assert_eq!(connects(&log), 0, "{log}");
    assert!(log.contains("does not speak TLS 1.3"), "{log}");

    // Without --ca the device has nothing to trust: refused at start.
    let out = Command::new(BIN)
        .args(["client", "tls://localhost:9", "--tls-stack", "embedded"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --ca"));
    // Not a flag that plain TCP silently ignores.
    let out = Command::new(BIN)
        .args(["client", "tcp://127.0.0.1:9", "--tls-stack", "embedded"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("need a tls:// URL"));
}

#[test]
fn embedded_stack_survives_openssl_key_updates_on_one_connection() {
    let dir = Dir::new("keyupdate");
    dir.self_signed("ec", &EC, "/CN=localhost", SAN);
    let port = free_port();
    let mut server = Server::start(&dir, "ec.pem", "ec.key", port, "-tls1_3");
    let mut client = Guard(Some(client(
        port,
        &dir.path("ec.pem"),
        &["--tls-stack", "embedded", "--framing", "lines"],
    )));
    let t = Duration::from_secs(10);
    assert!(server.wait_for("CIPHER is", t), "no handshake");
    // Each `back` line comes back from the client; `k` and `K` (on a line
    // of their own) make s_server send a KeyUpdate, without and with
    // update_requested.
    for (i, command) in ["", "k\n", "K\n", "k\n"].iter().enumerate() {
        if !command.is_empty() {
            server.stdin.write_all(command.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        }
        let line = format!("back {i}\n");
        server.stdin.write_all(line.as_bytes()).unwrap();
        assert!(
            server.wait_for(&line, t),
            "no echo after {command:?}: {}",
            server.out.lock().unwrap()
        );
    }
    let log = finish(client.0.take().unwrap(), Duration::from_millis(100));
    // s_server reports each key update on stdout (stdio, flushed when it
    // exits at the end of its input).
    let Server { child, stdin, out } = &mut server;
    let _ = stdin.write_all(b"Q\n");
    let deadline = Instant::now() + Duration::from_secs(3);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let out = out.lock().unwrap().clone();
    assert!(
        out.matches("SSL_do_handshake -> 1").count() >= 3,
        "three key updates sent: {out}"
    );
    assert_eq!(connects(&log), 1, "one connection throughout: {log}");
    assert!(!log.contains("receive failed"), "{log}");
}
