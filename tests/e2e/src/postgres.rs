//! A private PostgreSQL 15 cluster for the end-to-end tests: initdb into
//! a temporary directory owned by the `postgres` user, password
//! authentication (`-A password`: the password crosses the wire in clear,
//! so a leak would show), the server on a free loopback port, stopped
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::{Proc, free_port, tool, wait_for_port};

/// The password of the `postgres` role in every test cluster.
pub const PG_PASSWORD: &str = "Pw-e2e-s3cret-7q";
/// The database the tests use (created at start, with `accounts` and
/// pgbench's tables).
pub const PG_DB: &str = "labdb";

/// The lab's Python (psycopg 3 is installed there).
pub fn lab_python() -> PathBuf {
    let p =
        PathBuf::from(std::env::var("RATATOSK_LAB").unwrap_or_else(|_| "/opt/ratatosk-lab".into()))
            .join("bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/lab.sh",
        p.display()
    );
    p
}

/// Debian keeps the server binaries off PATH: the newest installed.
pub fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let p = e.path().join("bin").join(name);
            p.is_file().then_some((v, p))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("PostgreSQL's `{name}` is not installed (scripts/lab.sh)"))
}

fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("a postgres user (the postgresql package creates it)");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().expect("uid"), f[3].parse().expect("gid"))
}

/// `cmd ARGS` as the postgres user.
fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new(tool("setpriv"));
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    c
}

pub struct Postgres {
    pub port: u16,
    pub proc: Proc,
    pub dir: tempfile::TempDir,
}

impl Postgres {
    /// initdb, start, wait, create [`PG_DB`] with an `accounts` table and
    /// pgbench's tables (scale 1).
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// [`Postgres::start`] with `ssl=on` and the certificate and key of
    /// `certs` (a [`crate::tls_cert`] directory).
    pub fn start_tls(certs: &Path) -> Postgres {
        Postgres::start_with(Some(certs))
    }

    fn start_with(certs: Option<&Path>) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("ratatosk-pg-")
            .tempdir()
            .expect("temp dir");
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, format!("{PG_PASSWORD}\n")).expect("write pwfile");
        std::os::unix::fs::chown(&pw, Some(uid), Some(gid)).expect("chown");
        let data = dir.path().join("data");
        let out = as_postgres(&pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "password",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pw.display()))
            .current_dir(dir.path())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ssl = Vec::new();
        if let Some(certs) = certs {
            // The server refuses a key others can read.
            for f in ["cert.pem", "key.pem"] {
                let to = dir.path().join(f);
                std::fs::copy(certs.join(f), &to).expect("copy certificate");
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("chown");
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .expect("chmod");
            }
            ssl = vec![
                "-c".to_string(),
                "ssl=on".to_string(),
                "-c".to_string(),
                format!("ssl_cert_file={}", dir.path().join("cert.pem").display()),
                "-c".to_string(),
                format!("ssl_key_file={}", dir.path().join("key.pem").display()),
            ];
        }
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let proc = Proc::spawn(
            "postgres",
            as_postgres(&pg_bin("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=32",
                ])
                .args(&ssl)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        wait_for_port(port, Duration::from_secs(30));
        let pg = Postgres { port, proc, dir };
        pg.psql("postgres", &format!("CREATE DATABASE {PG_DB}"));
        pg.psql(
            PG_DB,
            "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric); \
             INSERT INTO accounts SELECT g, 'owner' || g, g * 10 FROM generate_series(1, 50) g",
        );
        let out = pg
            .client(&tool("pgbench"))
            .args(["-i", "-s", "1", "-q", PG_DB])
            .output()
            .expect("pgbench -i");
        assert!(
            out.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    /// A libpq client command (psql, pgbench) aimed at this server.
    pub fn client(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .env("PGPASSWORD", PG_PASSWORD)
        .stdin(Stdio::null());
        c
    }

    /// `psql -c SQL` on `db`; panics on failure.
    pub fn psql(&self, db: &str, sql: &str) -> Output {
        let out = self.try_psql(db, sql);
        assert!(
            out.status.success(),
            "psql -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `psql -c SQL` on `db`, whatever its status.
    pub fn try_psql(&self, db: &str, sql: &str) -> Output {
        self.client(&tool("psql"))
            .args(["-d", db, "-X", "-q", "-c", sql])
            .output()
            .expect("run psql")
    }

    /// The postmaster's pid (its backends are its children).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// A libpq connection string for psycopg.
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={PG_DB} user=postgres password={PG_PASSWORD} sslmode=disable",
            self.port
        )
    }
}
