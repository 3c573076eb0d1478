//! Real topologies built from `redis-server` / `redis-sentinel` processes on loopback: a cluster of
//! three masters and three replicas, a master and replica watched by three sentinels, and the
//! certificate files of a TLS server.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::server::{free_port, RedisServer};

/// Polls `ready` every 50 ms until it holds, failing the test with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// Six cluster-enabled nodes; after [`Cluster::form`], three masters with one replica each.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start() -> Self {
        let cluster = Self::start_unformed();
        cluster.form();
        cluster
    }

    /// The six nodes, running but not yet joined into a cluster.
    pub fn start_unformed() -> Self {
        let nodes = (0..6)
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        Self { nodes }
    }

    /// Joins the nodes (`redis-cli --cluster create … --cluster-replicas 1`) and waits until every
    /// node reports all slots served.
    pub fn form(&self) {
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            output.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        wait_for("cluster formation", Duration::from_secs(30), || {
            self.healthy()
        });
    }

    /// Every live node sees the cluster as ok, with all slots served and every node known.
    pub fn healthy(&self) -> bool {
        self.nodes.iter().all(|node| {
            let info = node.cli(&["cluster", "info"]);
            info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
        })
    }

    /// A `redis-cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let mut nodes = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port));
        let first = nodes.next().unwrap();
        let rest: Vec<String> = nodes.map(|n| format!("node={n}")).collect();
        format!("redis-cluster://{first}?{}", rest.join("&"))
    }

    /// Ports of the nodes that are masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.cli(&["role"]).starts_with("master"))
            .map(|n| n.port)
            .collect()
    }

    /// Ports of the masters that hold `key`.
    pub fn holders(&self, key: &str) -> Vec<u16> {
        self.masters()
            .into_iter()
            .filter(|&port| self.node(port).cli(&["exists", key]).trim() == "1")
            .collect()
    }

    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes.iter().find(|n| n.port == port).unwrap()
    }

    /// Stops one node by its PID and forgets it, so health checks skip it.
    pub fn kill(&mut self, port: u16) {
        let at = self.nodes.iter().position(|n| n.port == port).unwrap();
        self.nodes.remove(at).stop();
    }
}

/// A master and its replica, watched by three sentinels under the service name `mymaster`.
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
    _configs: tempfile::TempDir,
}

pub const SERVICE: &str = "mymaster";

impl SentinelGroup {
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        wait_for("replication", Duration::from_secs(10), || {
            replica
                .cli(&["info", "replication"])
                .contains("master_link_status:up")
        });
        let configs = tempfile::tempdir().unwrap();
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let conf = configs.path().join(format!("sentinel-{i}.conf"));
                let text = format!(
                    "port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 5000\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    master = master.port
                );
                std::fs::write(&conf, text).unwrap();
                RedisServer::spawn("redis-sentinel", port, vec![conf.to_str().unwrap().to_owned()], Vec::new())
            })
            .collect::<Vec<_>>();
        let group = Self {
            master,
            replica,
            sentinels,
            _configs: configs,
        };
        wait_for(
            "sentinels to see each other and the replica",
            Duration::from_secs(20),
            || {
                group.sentinels.iter().all(|s| {
                    let info = s.cli(&["sentinel", "master", SERVICE]);
                    info.contains("num-other-sentinels\n2") && info.contains("num-slaves\n1")
                })
            },
        );
        group
    }

    /// A `redis-sentinel://` URL naming all three sentinels.
    pub fn url(&self) -> String {
        let first = self.sentinels[0].port;
        let rest: Vec<String> = self.sentinels[1..]
            .iter()
            .map(|s| format!("node=127.0.0.1:{}", s.port))
            .collect();
        format!(
            "redis-sentinel://127.0.0.1:{first}?sentinelServiceName={SERVICE}&{}",
            rest.join("&")
        )
    }

    /// The port the sentinels name as master now.
    pub fn current_master(&self) -> Option<u16> {
        let reply = self.sentinels[0].cli(&["sentinel", "get-master-addr-by-name", SERVICE]);
        reply.lines().nth(1)?.trim().parse().ok()
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made at test time, in the PEM files
/// `redis-server` and `redis-cli` read.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFiles {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "session-test-ca");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        Self {
            ca: write("ca.crt", ca.pem()),
            cert: write("server.crt", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            _dir: dir,
        }
    }

    /// A server that accepts only TLS connections.
    pub fn server(&self) -> RedisServer {
        let port = free_port();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--tls-cert-file",
            self.cert.to_str().unwrap(),
            "--tls-key-file",
            self.key.to_str().unwrap(),
            "--tls-ca-cert-file",
            self.ca.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ];
        let cli = vec![
            "--tls".into(),
            "--cacert".into(),
            self.ca.to_str().unwrap().to_owned(),
        ];
        RedisServer::spawn(
            "redis-server",
            port,
            args.iter().map(|a| a.to_string()).collect(),
            cli,
        )
    }
}
