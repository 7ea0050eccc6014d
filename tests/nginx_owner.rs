//! The real nginx (Debian's) with the real nginx.conf in front of two linked instances:
//! its upstream hash on the correlationId is rinha's owner function, so every payment
//! reaches its owner and none crosses the peer link (one wake-up less on each side).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// nginx started on a copy of nginx.conf whose sockets live in `dir`; stopped on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Nginx {
    /// SIGTERM to the master (by pid), which stops its worker; a SIGKILL would orphan
    /// the worker. SIGKILL only if the master is still there after 5 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_nginx(bin: &Path, dir: PathBuf) -> Nginx {
    let port = free_port();
    let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nginx.conf"))
        .expect("read nginx.conf")
        .replace("/sockets/", &format!("{}/", dir.join("sockets").display()))
        .replace("listen 9999", &format!("listen 127.0.0.1:{port}"));
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let child = Command::new(bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-g")
        .arg(format!("daemon off; pid {}/nginx.pid;", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nginx did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx { child, dir, port }
}

fn forwarded(p: &Proc) -> f64 {
    series(&metrics_text(p.port), "rinha_payments_forwarded_total").expect("forwarded series")
}

fn paid(p: &Proc) -> f64 {
    family_sum(&metrics_text(p.port), "rinha_payments_paid_total")
}

#[test]
fn nginx_delivers_each_payment_to_its_owner() {
    let Some(bin) = required_tool("nginx", "nginx-light") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("rinha-nginx-owner-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sockets")).expect("socket dir");
    let (d, f) = processors();
    let peer_ports = [free_port(), free_port()];
    let nodes: Vec<Proc> = (1..=2)
        .map(|i| {
            let mut flags = mesh_flags(i, &peer_ports);
            flags.push("--unix".into());
            flags.push(format!("{}/sockets/api{i}.sock", dir.display()));
            let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
            rinha_at(d.port, f.port, &refs)
        })
        .collect();
    for n in &nodes {
        wait_linked(n, 1, Duration::from_secs(10));
    }
    let lb = start_nginx(&bin, dir);

    for i in 0..200 {
        assert_eq!(pay(lb.port, &uuid(40_000 + i), "19.90"), 202);
    }
    nodes
        .iter()
        .for_each(|n| wait_drained(n, Duration::from_secs(30)));
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(forwarded(n), 0.0, "instance {} forwarded payments", i + 1);
        assert!(
            paid(n) > 0.0,
            "instance {} paid nothing: not hashed at all",
            i + 1
        );
    }
    assert_eq!(paid(&nodes[0]) + paid(&nodes[1]), 200.0);

    // The control: ids in upper case do not match nginx.conf's key, so nginx round-robins
    // them and about half reach the wrong instance, which forwards them to the owner.
    for i in 0..40 {
        let id = uuid(50_000 + i).to_uppercase();
        assert_eq!(pay(lb.port, &id, "19.90"), 202);
    }
    nodes
        .iter()
        .for_each(|n| wait_drained(n, Duration::from_secs(30)));
    assert!(
        forwarded(&nodes[0]) + forwarded(&nodes[1]) > 0.0,
        "control: no forwards"
    );
    assert_eq!(paid(&nodes[0]) + paid(&nodes[1]), 240.0);
}
