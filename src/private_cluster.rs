//! A PostgreSQL cluster of one's own: `initdb` and `pg_ctl` into a new temporary folder, on a
//! free port, for the tests that stop a server and for the benchmark's history phase, which
//! would disturb everyone else's work on the shared server. Run as the `postgres` OS user when
//! this process is root (the server refuses to run as root). Stopped at once and removed when
//! dropped.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivateCluster {
    dir: PathBuf,
    port: u16,
    as_root: bool,
}

impl PrivateCluster {
    /// Initialises a cluster, not started, in a new folder `<name>-<random>` of the temporary
    /// directory, with trust authentication for the `postgres` role.
    pub fn init(name: &str) -> io::Result<PrivateCluster> {
        let uid = Command::new("id").arg("-u").output()?.stdout;
        let as_root = String::from_utf8_lossy(&uid).trim() == "0";
        let dir = std::env::temp_dir().join(format!(
            "{name}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = PrivateCluster { dir, port, as_root };
        if as_root {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(&cluster.dir)
                .status()?;
            if !status.success() {
                return Err(io::Error::other(format!(
                    "cannot give {} to the postgres user: {status}",
                    cluster.dir.display()
                )));
            }
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
        Ok(cluster)
    }

    /// Starts the server, listening on 127.0.0.1 and a socket in its folder, with `settings`
    /// (`name=value`) on its command line; returns once it accepts connections.
    pub fn start(&self, settings: &[&str]) -> io::Result<()> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        for setting in settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        self.run(
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
        )
    }

    /// A fast shutdown: open sessions are terminated, as in a restart or a failover.
    pub fn stop(&self) -> io::Result<()> {
        self.run("pg_ctl", &["-D", "data", "-m", "fast", "-w", "stop"])
    }

    /// `postgres://postgres@127.0.0.1:<port>`, without a database name.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Its folder: `data/` and the server's log, `server.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of `initdb` and `pg_ctl`: `SOLOPAY_TEST_PG_BIN`, else the newest
    /// `/usr/lib/postgresql/*/bin`, else whatever `PATH` finds.
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

    fn run(&self, program: &str, args: &[&str]) -> io::Result<()> {
        let output = self.command(program).args(args).output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "{program} {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", "data", "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
