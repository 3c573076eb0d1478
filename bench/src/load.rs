//! Virtual users: each has its own keep-alive HTTP/1.1 connection and its own cookie, like a browser.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{COOKIE, HOST, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// A route the benchmark drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`: never touches the session.
    Health,
    /// `GET /counter/peek` with a session cookie: a read.
    Peek,
    /// `GET /counter` with a session cookie: a read and a write.
    Counter,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Health, Route::Peek, Route::Counter];

    pub fn path(self) -> &'static str {
        match self {
            Route::Health => "/health",
            Route::Peek => "/counter/peek",
            Route::Counter => "/counter",
        }
    }
}

/// One connection with a cookie jar of one cookie.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    pub cookie: Option<String>,
}

/// A response's status and body.
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("server reachable");
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        Self {
            sender,
            cookie: None,
        }
    }

    /// Sends a request with the jar's cookie and keeps any cookie the response sets.
    pub async fn send(&mut self, method: Method, path: &str, body: &str) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "localhost");
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        self.sender.ready().await.expect("connection open");
        let response = self.sender.send_request(request).await.expect("response");
        if let Some(set) = response.headers().get(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, "").await
    }
}

/// What a load run measured over its measured window.
pub struct Measured {
    pub requests: u64,
    pub errors: u64,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    pub seconds: f64,
    /// Every request sent after set-up, warm-up included (for commands per request).
    pub sent: u64,
}

/// `concurrency` users on `route`: each first gets a session (for session routes), then the users
/// warm up and are measured. `snapshot` runs three times (the caller reads Redis's counters there):
/// after the set-up, when the measured window opens, and after the last response.
pub async fn run<T, F: std::future::Future<Output = T>>(
    addr: SocketAddr,
    route: Route,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    snapshot: impl Fn() -> F,
) -> (Measured, [T; 3]) {
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let mut client = Client::connect(addr).await;
        if route != Route::Health {
            // A session to read and write (the bare server has none and sets no cookie).
            let reply = client.get("/counter").await;
            assert!(reply.status.is_success(), "set-up request failed on {addr}");
        }
        clients.push(client);
    }
    let set_up = snapshot().await;
    let start = Instant::now() + warmup;
    let end = start + duration;
    let users: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let (mut requests, mut errors, mut sent) = (0, 0, 0);
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let reply = client.get(route.path()).await;
                    sent += 1;
                    if began >= start {
                        latency.saturating_record(began.elapsed().as_micros() as u64);
                        requests += 1;
                        errors += u64::from(!reply.status.is_success());
                    }
                }
                (latency, requests, errors, sent)
            })
        })
        .collect();
    let mut measured = Measured {
        requests: 0,
        errors: 0,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
        seconds: duration.as_secs_f64(),
        sent: 0,
    };
    tokio::time::sleep_until(start.into()).await;
    let opened = snapshot().await;
    for user in users {
        let (latency, requests, errors, sent) = user.await.unwrap();
        measured.latency.add(latency).unwrap();
        measured.requests += requests;
        measured.errors += errors;
        measured.sent += sent;
    }
    (measured, [set_up, opened, snapshot().await])
}

/// What survived when several clients shared one session.
pub struct Shared {
    /// Keys (one per client) whose last written value is still there.
    pub keys_kept: usize,
    pub clients: usize,
    /// The counter reached after every client incremented it `writes` times.
    pub counter: u64,
    pub increments: u64,
    /// The atomic phase (`POST /counter/incr`), for servers that have the route.
    pub atomic: Option<Atomic>,
}

/// The atomic phase: the same clients on the same cookie, each sending `POST /counter/incr`.
pub struct Atomic {
    /// Connections sharing the cookie.
    pub clients: usize,
    /// Requests sent, all clients together.
    pub requests: u64,
    /// How much `count` rose over the phase (`GET /counter/peek` before and after).
    pub reached: u64,
    /// Responses other than 2xx.
    pub non_2xx: u64,
    /// Distinct counts answered by 2xx responses within the phase's range (before, after]: each
    /// increment answers the count it made, so all of them when none is lost.
    pub distinct: u64,
    /// Wall time of the phase, from the first request sent to the last response received.
    pub seconds: f64,
}

impl Atomic {
    /// Requests per second of all clients together over the phase's wall time.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Increments the count did not get (extra ones are caught by `exact`).
    pub fn lost(&self) -> u64 {
        self.requests.saturating_sub(self.reached)
    }

    /// Every request answered 2xx with its own count, and the count rose by exactly the requests.
    pub fn exact(&self) -> bool {
        self.non_2xx == 0 && self.reached == self.requests && self.distinct == self.requests
    }
}

/// `clients` clients share one cookie: each writes its own key `writes` times, then each increments
/// the counter `writes` times. Whole-record stores lose writes here; delta stores must not. With
/// `atomic`, each then sends `POST /counter/incr` `writes` times on the same cookie.
pub async fn same_session(addr: SocketAddr, clients: usize, writes: usize, atomic: bool) -> Shared {
    let mut first = Client::connect(addr).await;
    first.send(Method::PUT, "/kv/start", "1").await;
    let cookie = first.cookie.clone().expect("a session cookie");

    let run_all = |make_path: fn(usize, usize) -> (Method, String, String)| {
        let cookie = cookie.clone();
        async move {
            let tasks: Vec<_> = (0..clients)
                .map(|client| {
                    let cookie = cookie.clone();
                    tokio::spawn(async move {
                        let mut c = Client::connect(addr).await;
                        c.cookie = Some(cookie);
                        for write in 0..writes {
                            let (method, path, body) = make_path(client, write);
                            c.send(method, &path, &body).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        }
    };
    run_all(|client, write| (Method::PUT, format!("/kv/k{client}"), write.to_string())).await;
    let last = (writes - 1).to_string();
    let mut keys_kept = 0;
    for client in 0..clients {
        keys_kept += usize::from(first.get(&format!("/kv/k{client}")).await.body == last);
    }
    run_all(|_, _| (Method::GET, "/counter".to_owned(), String::new())).await;
    let counter = peek(&mut first).await;
    let atomic = if atomic {
        Some(atomic_increments(addr, &mut first, &cookie, clients, writes).await)
    } else {
        None
    };
    Shared {
        keys_kept,
        clients,
        counter,
        increments: (clients * writes) as u64,
        atomic,
    }
}

/// The session's `count`, read through `client` (0 when unreadable).
async fn peek(client: &mut Client) -> u64 {
    client
        .get("/counter/peek")
        .await
        .body
        .trim()
        .parse()
        .unwrap_or(0)
}

/// `clients` connections on `cookie`, each sending `POST /counter/incr` `writes` times; the count
/// is read through `first` before and after.
async fn atomic_increments(
    addr: SocketAddr,
    first: &mut Client,
    cookie: &str,
    clients: usize,
    writes: usize,
) -> Atomic {
    let before = peek(first).await;
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut c = Client::connect(addr).await;
        c.cookie = Some(cookie.to_owned());
        connected.push(c);
    }
    let began = Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let (mut counts, mut non_2xx) = (Vec::with_capacity(writes), 0);
                for _ in 0..writes {
                    let reply = c.send(Method::POST, "/counter/incr", "").await;
                    if reply.status.is_success() {
                        counts.extend(reply.body.trim().parse::<u64>().ok());
                    } else {
                        non_2xx += 1;
                    }
                }
                (counts, non_2xx)
            })
        })
        .collect();
    let (mut counts, mut non_2xx) = (Vec::with_capacity(clients * writes), 0);
    for task in tasks {
        let (c, n) = task.await.unwrap();
        counts.extend(c);
        non_2xx += n;
    }
    let seconds = began.elapsed().as_secs_f64();
    let after = peek(first).await;
    counts.retain(|&c| c > before && c <= after);
    counts.sort_unstable();
    counts.dedup();
    Atomic {
        clients,
        requests: (clients * writes) as u64,
        reached: after.saturating_sub(before),
        non_2xx,
        distinct: counts.len() as u64,
        seconds,
    }
}
