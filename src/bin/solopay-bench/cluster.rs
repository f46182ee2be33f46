//! A PostgreSQL cluster of the bench's own, for the history phase: `initdb` and `pg_ctl` into a
//! temporary folder, on a free port, with autovacuum on (as production runs it), stopped and
//! removed when dropped. Never the shared server: filling it with a year of history would
//! disturb everyone else's work there.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

pub struct PrivateCluster {
    dir: PathBuf,
    port: u16,
    /// The server refuses to run as root: then it runs as the `postgres` OS user.
    as_root: bool,
}

impl PrivateCluster {
    /// Initialises and starts a cluster; `settings` are added to the server's command line.
    pub fn start(settings: &[&str]) -> Result<PrivateCluster> {
        let uid = Command::new("id").arg("-u").output()?.stdout;
        let as_root = String::from_utf8_lossy(&uid).trim() == "0";
        let dir = std::env::temp_dir().join(format!(
            "solopay-bench-cluster-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = PrivateCluster { dir, port, as_root };
        if as_root {
            cluster.run_plain("chown", &["postgres:", &cluster.dir.display().to_string()])?;
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                "data",
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 \
             -c autovacuum=on -c shared_buffers=512MB",
            cluster.port,
            cluster.dir.display()
        );
        for setting in settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                "data",
                "-l",
                "server.log",
                "-w",
                "-o",
                &options,
                "start",
            ],
        )?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:<port>`, without a database name.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of `initdb` and `pg_ctl`: `SOLOPAY_TEST_PG_BIN`, else the newest
    /// `/usr/lib/postgresql/*/bin`, else whatever `PATH` finds (as the tests find them).
    fn bin(program: &str) -> PathBuf {
        if let Some(dir) = std::env::var_os("SOLOPAY_TEST_PG_BIN") {
            return Path::new(&dir).join(program);
        }
        let version = |path: &PathBuf| {
            path.parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .and_then(|v| v.to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        };
        std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin").join(program))
            .filter(|path| path.exists())
            .max_by_key(version)
            .unwrap_or_else(|| program.into())
    }

    fn command(&self, program: &str) -> Command {
        let mut command = if self.as_root {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(Self::bin(program));
            command
        } else {
            Command::new(Self::bin(program))
        };
        command.current_dir(&self.dir).env("LC_ALL", "C");
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let output = self.command(program).args(args).output()?;
        if !output.status.success() {
            return Err(format!(
                "{program} {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(())
    }

    fn run_plain(&self, program: &str, args: &[&str]) -> Result<()> {
        let status = Command::new(program).args(args).status()?;
        if !status.success() {
            return Err(format!("{program} {args:?}: {status}").into());
        }
        Ok(())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", "data", "-m", "fast", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
