//! A RESP proxy between the store and a real Redis that forces id collisions: for the next `n` save
//! scripts that must write under a fresh id (`new` or `cycle`), it first creates that key itself,
//! from a connection of its own, then forwards the script. The real script then finds the key taken,
//! exactly as if the random id had collided.

use std::sync::{Arc, Mutex};

use axum_redis_session::fred::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use testkit::RedisServer;

/// The field a squatted key holds, so a test can tell it was never overwritten.
pub const SQUATTER_FIELD: &str = "squatter";

/// A proxy on a free loopback port in front of one `redis-server`.
pub struct Squatter {
    pub port: u16,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Fresh-id saves still to be made to collide.
    remaining: usize,
    /// The keys taken so far, in order.
    taken: Vec<String>,
}

impl Squatter {
    pub async fn start(server: &RedisServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = server.port;
        let squatter = server.probe().await;
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(relay(
                    client,
                    upstream,
                    squatter.clone(),
                    Arc::clone(&shared),
                ));
            }
        });
        Self {
            port,
            state,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Makes the next `n` fresh-id saves collide.
    pub fn collide_next(&self, n: usize) {
        self.state.lock().unwrap().remaining = n;
    }

    /// The keys squatted so far.
    pub fn taken(&self) -> Vec<String> {
        self.state.lock().unwrap().taken.clone()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Relays one connection, taking the target key of a fresh-id save first when asked to.
async fn relay(client: TcpStream, upstream: u16, squatter: Client, state: Arc<Mutex<State>>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let replies = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut reader = BufReader::new(client_read);
    while let Ok(Some(command)) = read_command(&mut reader).await {
        if let Some(key) = fresh_id_target(&command) {
            let take = {
                let mut state = state.lock().unwrap();
                let take = state.remaining > 0;
                if take {
                    state.remaining -= 1;
                    state.taken.push(key.clone());
                }
                take
            };
            if take {
                let _: () = squatter
                    .hset(key.as_str(), (SQUATTER_FIELD, "1"))
                    .await
                    .unwrap();
            }
        }
        if server_write.write_all(&encode(&command)).await.is_err() {
            break;
        }
    }
    replies.abort();
}

/// The key the create script must find free: `EVALSHA sha numkeys key… "create" mode …` with
/// mode `new` or `cycle` (a script's first argument is its name, create.lua's second its mode).
fn fresh_id_target(command: &[Vec<u8>]) -> Option<String> {
    let name = String::from_utf8_lossy(command.first()?).to_ascii_lowercase();
    if name != "evalsha" && name != "eval" {
        return None;
    }
    let keys: usize = String::from_utf8_lossy(command.get(2)?).parse().ok()?;
    let script = command.get(3 + keys)?;
    let mode = command.get(4 + keys)?;
    (script == b"create" && (mode == b"new" || mode == b"cycle"))
        .then(|| String::from_utf8_lossy(&command[3]).into_owned())
}

/// One command as a client sends it: an array of bulk strings. `None` at the end of the stream.
async fn read_command<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    let count = length(&line, b'*')?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_until(b'\n', &mut line).await?;
        let len = length(&line, b'$')?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).await?;
        arg.truncate(len);
        args.push(arg);
    }
    Ok(Some(args))
}

fn length(line: &[u8], marker: u8) -> std::io::Result<usize> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not RESP");
    if line.first() != Some(&marker) || !line.ends_with(b"\r\n") {
        return Err(invalid());
    }
    std::str::from_utf8(&line[1..line.len() - 2])
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(invalid)
}

fn encode(command: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", command.len()).into_bytes();
    for arg in command {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}
