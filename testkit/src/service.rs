//! A child process that serves on a loopback port, stopped by its PID when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::free_port;

/// A running child process that listens on `port` (127.0.0.1); killed by its PID when dropped, so
/// a failing test leaves nothing behind.
pub struct Service {
    child: Child,
    pub port: u16,
}

impl Service {
    /// Waits until `child` accepts connections on `port`. Panics, with what `log` returns, if it
    /// exits first or has not listened within 10 s, so the failure says why.
    pub fn new(what: &str, child: Child, port: u16, log: impl Fn() -> String) -> Self {
        let mut service = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = service.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{what} did not listen on port {port} (exit: {exited:?}): {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        service
    }

    /// Starts `command` as an HTTP server on a free loopback port, which it is told in `ADDR`
    /// (`127.0.0.1:<port>`), with `COOKIE_SECURE=false` so that plain-http clients keep its cookies,
    /// and waits until it listens (see [`Service::new`]). An error is the spawn's.
    pub fn serve(
        what: &str,
        command: &mut Command,
        log: impl Fn() -> String,
    ) -> std::io::Result<Self> {
        let port = free_port();
        let child = command
            .env("ADDR", format!("127.0.0.1:{port}"))
            .env("COOKIE_SECURE", "false")
            .spawn()?;
        Ok(Self::new(what, child, port, log))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (by PID) and waits up to `limit` for the process to exit on its own.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal_and_wait("TERM", limit)
    }

    /// Sends `signal` (`TERM`, `INT`, …) by PID and waits up to `limit` for the process to exit on
    /// its own.
    pub fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {limit:?} after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process by its PID and waits for it to exit; nothing happens if it already has.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
