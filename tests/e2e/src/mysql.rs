//! A private MariaDB server for the MySQL-protocol tests: its own datadir
//! and socket in a temporary directory, a free loopback port, a user with
//! a real password, stopped (by its pid) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Proc, free_port, lab_dir, tool, wait_for_port};

/// The application user's password: tests check it never shows in any
/// output.
pub const APP_PASSWORD: &str = "Ratatosk-Db-Pw-7731";

pub struct Mariadb {
    pub port: u16,
    pub proc: Proc,
    dir: tempfile::TempDir,
}

impl Mariadb {
    /// Initialises a datadir, starts `mariadbd` and creates database
    /// `shop` (table `accounts`, 3 rows) and user `app`@`127.0.0.1`.
    pub fn start() -> Mariadb {
        Mariadb::start_with(&[])
    }

    /// The same, also accepting TLS with the certificate in `certs`
    /// (`cert.pem`, `key.pem`, from [`crate::tls_cert`]).
    pub fn start_tls(certs: &Path) -> Mariadb {
        Mariadb::start_with(&[
            format!("--ssl-cert={}", certs.join("cert.pem").display()),
            format!("--ssl-key={}", certs.join("key.pem").display()),
        ])
    }

    fn start_with(extra: &[String]) -> Mariadb {
        let dir = tempfile::Builder::new()
            .prefix("ratatosk-mariadb")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let data = dir.path().join("data");
        let status = Command::new(tool("mariadb-install-db"))
            .args(["--user=root", "--auth-root-authentication-method=socket"])
            .arg(format!("--datadir={}", data.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run mariadb-install-db");
        assert!(status.success(), "mariadb-install-db failed");
        let port = free_port();
        let proc = Proc::spawn(
            "mariadbd",
            Command::new(tool("mariadbd"))
                .arg("--no-defaults")
                .arg("--user=root")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", dir.path().join("sock").display()))
                .arg(format!("--pid-file={}", dir.path().join("pid").display()))
                .arg(format!("--port={port}"))
                .args(["--bind-address=127.0.0.1", "--skip-log-bin"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(60));
        let db = Mariadb { port, proc, dir };
        db.wait_ready();
        db.root_sql(&format!(
            "CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '{APP_PASSWORD}';
             CREATE DATABASE shop;
             GRANT ALL ON shop.* TO 'app'@'127.0.0.1';
             CREATE TABLE shop.accounts (id INT PRIMARY KEY, name VARCHAR(64), balance INT);
             INSERT INTO shop.accounts VALUES (1,'alice',100),(2,'bob',250),(3,'carol',7);"
        ));
        db
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// Runs SQL as root over the Unix socket (not observed: no TCP).
    pub fn root_sql(&self, sql: &str) {
        let out = self.root_command(sql);
        assert!(
            out.status.success(),
            "mariadb -e failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn root_command(&self, sql: &str) -> std::process::Output {
        Command::new(tool("mariadb"))
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "-e", sql])
            .output()
            .expect("run mariadb")
    }

    /// Waits until the server answers over its socket.
    fn wait_ready(&self) {
        let start = Instant::now();
        while !self.root_command("SELECT 1").status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "mariadbd does not answer"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs a Python script with the lab's interpreter (PyMySQL and
/// mysql-connector-python installed by scripts/lab.sh); returns stdout.
pub fn lab_python(script: &str, args: &[&str]) -> String {
    let python = lab_dir().join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/lab.sh",
        python.display()
    );
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
