//! What the integration tests and the benchmark both need: `redis-server` processes and
//! topologies of their own on free loopback ports, a `MONITOR` tap that counts what Redis receives,
//! the Redis key a session cookie maps to, and child processes that serve on a port, each stopped by
//! its PID.

mod key;
mod monitor;
mod server;
mod service;
mod topology;

pub use key::session_key;
pub use monitor::{monitor_args, Monitor, Received, Seen};
pub use server::{free_port, kill_other_clients, RedisServer};
pub use service::Service;
pub use topology::{wait_for, Cluster, SentinelGroup, TlsFiles, SERVICE};
