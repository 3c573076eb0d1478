//! What the integration tests and the benchmark both need: `redis-server` processes and
//! topologies of their own on free loopback ports, a `MONITOR` tap that counts what Redis receives,
//! and child processes that serve on a port, each stopped by its PID.

mod server;
mod service;
mod topology;

pub use server::{free_port, Monitor, Received, RedisServer, Seen};
pub use service::Service;
pub use topology::{wait_for, Cluster, SentinelGroup, TlsFiles, SERVICE};
