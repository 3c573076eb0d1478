//! A TCP proxy whose target can change between connections, as a DNS name, a load balancer or a
//! virtual IP can send a connection made again by host name to another server.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// A proxy on a free loopback port; each connection goes to the target of the moment.
pub struct SplitRoute {
    pub port: u16,
    target: Arc<AtomicU16>,
    accept: tokio::task::JoinHandle<()>,
}

impl SplitRoute {
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(target));
        let current = Arc::clone(&target);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = current.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        // Without it, Nagle's algorithm holds a large command back 40 ms.
                        let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            port,
            target,
            accept,
        }
    }

    /// Connections made from now on go to `target`; those made before stay where they are.
    pub fn reroute(&self, target: u16) {
        self.target.store(target, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for SplitRoute {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
