//! End to end: the static `rinha` of Dockerfile.scratch, alone in an empty chroot, reaches
//! the processors by host name, once through /etc/hosts and once through DNS (the path
//! Docker's embedded resolver takes in the compose stack).
//!
//! Needs root for chroot(2); without it the test prints why and passes. The static binary
//! is built into `target/static` (or taken from `RINHA_STATIC_BIN`).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const TARGET: &str = "x86_64-unknown-linux-gnu";
const HOSTS_NAME: &str = "pp.hosts.rinha.test";
const DNS_NAME: &str = "payment-processor.dns.rinha.test";
/// The chroot's nameserver: a loopback address nothing else uses (one per test process,
/// so that two concurrent runs do not answer each other), so that in the /etc/hosts case
/// it answers "connection refused" and glibc falls through to `files`.
fn dns_ip() -> Ipv4Addr {
    let [_, _, a, b] = std::process::id().to_be_bytes();
    Ipv4Addr::new(127, 77, a, b.max(1))
}
const WAIT: Duration = Duration::from_secs(15);

#[test]
fn static_binary_reaches_processors_by_name_in_empty_chroot() {
    if !is_root() {
        eprintln!(
            "SKIPPED chroot test: chroot(2) needs root (run the tests as root to include it)"
        );
        return;
    }
    let bin = static_rinha();
    assert!(
        is_static(&bin),
        "{} has an ELF interpreter: not static",
        bin.display()
    );

    let work = TempDir::new();
    let root = work.0.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::copy(&bin, root.join("rinha")).unwrap();
    fs::set_permissions(root.join("rinha"), fs::Permissions::from_mode(0o755)).unwrap();

    let (pd, pf) = (free_port(), free_port());
    let _default = spawn_processor(&work.0, pd, "0.05");
    let _fallback = spawn_processor(&work.0, pf, "0.15");
    for port in [pd, pf] {
        wait_until(&format!("processor on :{port}"), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
    let resolv = format!("nameserver {}\noptions timeout:1 attempts:1\n", dns_ip());
    fs::write(root.join("etc/resolv.conf"), &resolv).unwrap();

    // 1. The name exists only in /etc/hosts; the nameserver refuses.
    fs::write(root.join("etc/hosts"), format!("127.0.0.1 {HOSTS_NAME}\n")).unwrap();
    let id = "0b0a6f47-3c6e-4d1e-9a59-7d1c2f0e0001";
    pay_through_chroot(&work.0, &root, HOSTS_NAME, (pd, pf), id);

    // 2. The name exists only in DNS, as in Docker (names are not in /etc/hosts there).
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let _dns = match Dns::start(DNS_NAME) {
        Ok(dns) => dns,
        Err(e) => {
            eprintln!("SKIPPED the DNS half: cannot bind {}:53: {e}", dns_ip());
            return;
        }
    };
    let id = "0b0a6f47-3c6e-4d1e-9a59-7d1c2f0e0002";
    pay_through_chroot(&work.0, &root, DNS_NAME, (pd, pf), id);
}

/// Starts `chroot ROOT /rinha` against processors at `name`, pays `id`, and checks that the
/// backend's summary and exactly one processor recorded it.
fn pay_through_chroot(work: &Path, root: &Path, name: &str, (pd, pf): (u16, u16), id: &str) {
    let port = free_port();
    let log_path = work.join(format!("rinha-{name}.log"));
    let log = File::create(&log_path).unwrap();
    let child = Command::new(chroot_program())
        .arg(root)
        .arg("/rinha")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--default-url", &format!("http://{name}:{pd}")])
        .args(["--fallback-url", &format!("http://{name}:{pf}")])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn chroot");
    let mut rinha = Killed(child);
    let why = |what: &str| {
        let out = fs::read_to_string(&log_path).unwrap_or_default();
        format!("{what} (resolving via {name}); rinha's output:\n{out}")
    };

    let deadline = Instant::now() + WAIT;
    while !matches!(http(port, "GET", "/health", None), Ok((200, _))) {
        if let Ok(Some(status)) = rinha.0.try_wait() {
            panic!("{}", why(&format!("rinha exited with {status}")));
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            why("no 200 from GET /health")
        );
        thread::sleep(Duration::from_millis(50));
    }

    let body = format!(r#"{{"correlationId":"{id}","amount":19.90}}"#);
    let (status, _) = http(port, "POST", "/payments", Some(&body)).expect("POST /payments");
    assert!(
        (200..300).contains(&status),
        "POST /payments answered {status}"
    );

    let deadline = Instant::now() + WAIT;
    loop {
        let (status, json) = http(port, "GET", "/payments-summary", None).expect("summary");
        assert_eq!(status, 200, "GET /payments-summary: {json}");
        let n = ["default", "fallback"].map(|k| total_requests(&json, k).unwrap_or(0));
        if n[0] + n[1] == 1 {
            break;
        }
        assert!(n[0] + n[1] == 0, "one payment counted {n:?} times: {json}");
        assert!(
            Instant::now() < deadline,
            "{}",
            why(&format!("never paid: {json}"))
        );
        thread::sleep(Duration::from_millis(100));
    }
    let stored = [pd, pf].map(|p| http(p, "GET", &format!("/payments/{id}"), None));
    let found = stored.iter().filter(|r| matches!(r, Ok((200, _)))).count();
    assert_eq!(found, 1, "payment {id} on the processors: {stored:?}");
}

/// chroot(8) by absolute path: the child's environment is cleared, PATH included.
fn chroot_program() -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
    let found = dirs
        .map(|d| Path::new(d).join("chroot"))
        .find(|p| p.is_file());
    found.expect("chroot(8) not found (coreutils)")
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"));
    uid.and_then(|u| u.split_whitespace().nth(1)) == Some("0")
}

/// The image's build (glibc static-pie), minus LTO and debug info to keep it quick.
fn static_rinha() -> PathBuf {
    if let Some(bin) = std::env::var_os("RINHA_STATIC_BIN") {
        return bin.into();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = manifest.join("target/static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(manifest)
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "rinha",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_PROFILE_RELEASE_LTO", "off")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .stdin(Stdio::null())
        .status()
        .expect("run cargo");
    assert!(status.success(), "static build failed: {status}");
    target_dir.join(TARGET).join("release/rinha")
}

/// A 64-bit ELF without a PT_INTERP program header needs no dynamic loader.
fn is_static(path: &Path) -> bool {
    let b = fs::read(path).unwrap_or_default();
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u64_at = |o: usize| {
        let s: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        usize::try_from(u64::from_le_bytes(s)).ok()
    };
    if b.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(size), Some(num)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..num).all(|i| {
        let o = phoff + i * size;
        b.get(o..o + 4).is_some_and(|t| t != 3u32.to_le_bytes())
    })
}

fn spawn_processor(work: &Path, port: u16, fee: &str) -> Killed {
    let log = File::create(work.join(format!("processor-{port}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_processor"))
        .args(["--port", &port.to_string(), "--fee", fee, "--token", "123"])
        .args(["--rate-limit-seconds", "5"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn processor");
    Killed(child)
}

/// One HTTP/1.1 request on a fresh connection: (status, body), chunked bodies decoded.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, raw.clone());
    let (head, rest) = raw.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest).ok_or_else(bad)?
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n..)?.strip_prefix("\r\n")?;
    }
}

/// `totalRequests` inside the object named `key` of a summary.
fn total_requests(json: &str, key: &str) -> Option<u64> {
    let obj = &json[json.find(&format!("\"{key}\""))?..];
    let after = &obj[obj.find("\"totalRequests\"")? + "\"totalRequests\"".len()..];
    let digits = after.trim_start().strip_prefix(':')?.trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL, by PID) and reaped when the test ends or panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chroot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A one-name authoritative DNS server on dns_ip():53 (UDP): A -> 127.0.0.1, any other type
/// of that name -> no records, any other name -> NXDOMAIN.
struct Dns {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Dns {
    fn start(name: &'static str) -> io::Result<Dns> {
        let sock = UdpSocket::bind((dns_ip(), 53))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = dns_reply(&buf[..n], name) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        Ok(Dns {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn dns_reply(q: &[u8], name: &str) -> Option<Vec<u8>> {
    if q.get(4..6)? != [0, 1] {
        return None; // exactly one question
    }
    let mut labels = Vec::new();
    let mut i = 12;
    while *q.get(i)? != 0 {
        let len = usize::from(*q.get(i)?);
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let question = q.get(12..i + 5)?;
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let known = labels.join(".") == name;
    let answer_a = known && qtype == 1;
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(q.get(0..2)?);
    r.extend_from_slice(if known { &[0x81, 0x80] } else { &[0x81, 0x83] });
    r.extend_from_slice(&[0, 1, 0, u8::from(answer_a), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answer_a {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(r)
}

#[test]
fn helpers_parse_what_they_should() {
    assert_eq!(
        dechunk("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n").as_deref(),
        Some("hello!")
    );
    let s = r#"{"default":{"totalRequests":3,"totalAmount":1.5},"fallback":{"totalRequests": 0}}"#;
    assert_eq!(total_requests(s, "default"), Some(3));
    assert_eq!(total_requests(s, "fallback"), Some(0));
    let q = [
        0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 1, b'b', 0, 0, 1, 0, 1,
    ];
    let r = dns_reply(&q, "a.b").unwrap();
    assert_eq!(
        (&r[..4], r[7], &r[r.len() - 4..]),
        (&[0xab, 0xcd, 0x81, 0x80][..], 1, &[127, 0, 0, 1][..])
    );
    assert_eq!(dns_reply(&q, "c.d").unwrap()[3], 0x83);
    if Path::new("/bin/sh").exists() {
        assert!(
            !is_static(Path::new("/bin/sh")),
            "/bin/sh is dynamically linked"
        );
    }
}
