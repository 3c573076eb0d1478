//! A `MONITOR` tap on a `redis-server`, and what it reports read back: each command's name,
//! arguments and time, the round trips and writes among them, the calls of each session script.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::RedisServer;

/// One command as `MONITOR` reported it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Sent by a script rather than by a client.
    pub from_script: bool,
    /// Lower-case command name.
    pub name: String,
    /// The whole line, for searching.
    pub line: String,
}

impl Seen {
    /// The command and its arguments, unescaped (see [`monitor_args`]).
    pub fn args(&self) -> Vec<String> {
        monitor_args(&self.line)
    }

    /// When Redis received it: the line's `<time>`, in seconds since the Unix epoch.
    pub fn at(&self) -> f64 {
        let time = self.line[1..].split(' ').next().unwrap_or_default();
        time.parse()
            .unwrap_or_else(|_| panic!("a MONITOR line starts with its time: {}", self.line))
    }

    /// Whether the command changes data.
    pub fn writes(&self) -> bool {
        WRITES.contains(&self.name.as_str())
    }
}

/// Everything Redis receives, via `MONITOR` on a raw connection.
///
/// Not fred's `monitor::run`: its parser (fred 10.1) drops every argument from the first one that is
/// empty or escaped (a newline, a backslash, a non-ASCII byte), and the session scripts' arguments
/// are often empty, so searches in `line` would miss what Redis received.
pub struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    probe: Client,
    marks: u64,
    tap: tokio::task::JoinHandle<()>,
}

/// The commands Redis received for one request.
#[derive(Debug)]
pub struct Received(pub Vec<Seen>);

/// Commands that change data.
const WRITES: &[&str] = &[
    "hset",
    "hincrby",
    "hdel",
    "del",
    "pexpire",
    "expire",
    "zadd",
    "zrem",
    "zremrangebyscore",
    "set",
];

impl Received {
    /// The round trips, each with the commands it ran: a client's command with the commands its
    /// script ran (MONITOR lists them right after the call).
    pub fn calls(&self) -> Vec<&[Seen]> {
        let mut calls = Vec::new();
        let mut start = 0;
        for (i, c) in self.0.iter().enumerate() {
            if c.from_script {
                continue;
            }
            if i > start {
                calls.push(&self.0[start..i]);
            }
            start = i;
        }
        if start < self.0.len() {
            calls.push(&self.0[start..]);
        }
        calls
    }

    /// Round trips: commands a client sent, as opposed to those its
    /// scripts ran.
    pub fn round_trips(&self) -> usize {
        self.calls().len()
    }

    /// Commands that changed data, wherever they ran.
    pub fn writes(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|c| c.writes())
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Round trips that changed data: client commands that write, or whose script
    /// wrote.
    pub fn writing_round_trips(&self) -> usize {
        self.calls()
            .iter()
            .filter(|call| call.iter().any(Seen::writes))
            .count()
    }

    /// Round trips of the named session script. Each script's first argument is its name:
    /// `EVALSHA sha numkeys key… name …`.
    pub fn script_calls(&self, script: &str) -> usize {
        self.0
            .iter()
            .filter(|c| !c.from_script && (c.name == "evalsha" || c.name == "eval"))
            .filter(|c| {
                let args = c.args();
                let keys: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
                args.get(3 + keys).map(String::as_str) == Some(script)
            })
            .count()
    }

    pub fn any_line_contains(&self, needle: &str) -> bool {
        self.0.iter().any(|c| c.line.contains(needle))
    }
}

impl Monitor {
    pub async fn start(server: &RedisServer) -> Self {
        // Connected first, so its handshake is not among what the monitor reports.
        let probe = server.probe().await;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"MONITOR\r\n").await.unwrap();
        let mut reader = BufReader::new(read);
        let mut ok = String::new();
        reader.read_line(&mut ok).await.unwrap();
        assert!(ok.starts_with("+OK"), "MONITOR refused: {ok}");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let tap = tokio::spawn(async move {
            let _keep_open = write;
            let mut line = String::new();
            while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push(std::mem::take(&mut line));
            }
        });
        let mut monitor = Self {
            lines,
            probe,
            marks: 0,
            tap,
        };
        monitor.mark().await;
        monitor
    }

    /// Sends a marker and waits until MONITOR has reported it, so everything before it is in.
    async fn mark(&mut self) {
        self.marks += 1;
        let marker = format!("monitor-mark-{}", self.marks);
        let _: String = self.probe.echo(marker.as_str()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&marker))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("MONITOR never reported {marker}");
    }

    /// What every one of `monitors` received since its previous take, one monitor after another.
    pub async fn take_all(monitors: &mut [Monitor]) -> Received {
        let mut all = Vec::new();
        for monitor in monitors {
            all.extend(monitor.take().await.0);
        }
        Received(all)
    }

    /// The commands received since the previous call (or since the monitor started).
    pub async fn take(&mut self) -> Received {
        self.mark().await;
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        let seen = lines
            .into_iter()
            .filter(|line| line.starts_with('+') && !line.contains("monitor-mark-"))
            .filter_map(|line| {
                // `+<time> [<db> <client>] "<command>" "<arg>"…`, the client `lua` for a script's.
                let from_script = line.contains(" lua]");
                let name = line.split('"').nth(1)?.to_ascii_lowercase();
                Some(Seen {
                    from_script,
                    name,
                    line,
                })
            })
            .collect();
        Received(seen)
    }
}

impl Drop for Monitor {
    /// Closes the connection: a monitor costs Redis work on every command it runs.
    fn drop(&mut self) {
        self.tap.abort();
    }
}

/// The arguments of a `MONITOR` line (`+<time> [<db> <client>] "<command>" "<arg>"…`), unescaped.
pub fn monitor_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut bytes = Vec::new();
        loop {
            match chars.next() {
                None | Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => bytes.push(b'\n'),
                    Some('r') => bytes.push(b'\r'),
                    Some('t') => bytes.push(b'\t'),
                    Some('a') => bytes.push(7),
                    Some('b') => bytes.push(8),
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).collect();
                        bytes.push(u8::from_str_radix(&hex, 16).expect("\\xHH in MONITOR"));
                    }
                    Some(other) => bytes.extend(other.to_string().as_bytes()),
                    None => break,
                },
                Some(other) => bytes.extend(other.to_string().as_bytes()),
            }
        }
        args.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    args
}
