//! An `nginx` of our own in front of loopback upstreams: a private instance (config, logs, pid and
//! temp files in a temporary directory) on a free port, stopped by its PID when dropped.

use std::path::Path;
use std::process::{Command, Stdio};

use testkit::{free_port, Service};

use super::process::{request_with_headers, WireReply};

/// nginx in front of loopback ports, balancing round robin over each location's; every response
/// names the upstream that answered in `X-Upstream`.
pub struct Nginx {
    // Before `dir`: nginx stops before its directory is removed.
    process: Service,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in front of `upstreams` (ports on 127.0.0.1) and waits until it listens.
    pub fn start(upstreams: &[u16]) -> Self {
        Self::routing(&[("/", upstreams)])
    }

    /// Starts nginx sending each path to the upstreams of the longest location (a path prefix)
    /// it starts with, as one host in front of several apps.
    pub fn routing(locations: &[(&str, &[u16])]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port, locations)).unwrap();
        let error_log = dir.path().join("error.log");
        // `-e`: what nginx logs before it has read the config goes to our log too.
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nginx must be installed (apt-get install nginx-light): {e}")
            });
        let process = Service::new("nginx", child, port, || {
            std::fs::read_to_string(&error_log).unwrap_or_default()
        });
        Self { process, port, dir }
    }

    /// What nginx logged so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// One request through nginx (see [`request_with_headers`]).
    pub fn request(&self, method: &str, path: &str, cookie: Option<&str>, form: &str) -> WireReply {
        request_with_headers(self.port, method, path, cookie, form)
    }
}

/// A single-process nginx (`master_process off`, so the PID we hold is all of it) with every path it
/// writes under `dir`.
fn config(dir: &Path, port: u16, locations: &[(&str, &[u16])]) -> String {
    let dir = dir.display();
    let mut upstreams = String::new();
    let mut routes = String::new();
    for (n, (path, ports)) in locations.iter().enumerate() {
        let servers: String = ports
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p};\n"))
            .collect();
        upstreams.push_str(&format!("    upstream app{n} {{\n{servers}    }}\n"));
        routes.push_str(&format!(
            "        location {path} {{
            proxy_pass http://app{n};
            # A failing instance shows as a 502, not as a silent retry on the other one.
            proxy_next_upstream off;
            add_header X-Upstream $upstream_addr always;
        }}
"
        ));
    }
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # Bodies without a length (PHP's) end with the connection: our test client reads no chunks.
    chunked_transfer_encoding off;

{upstreams}
    server {{
        listen 127.0.0.1:{port};
{routes}    }}
}}
"
    )
}
