//! Server instructions per request, which do not depend on how busy the machine is: each server
//! runs under callgrind with instrumentation off, switched on (`callgrind_control -i on`) only for
//! the measured requests of one route at c=1, then dumped and read back. Every server is measured in
//! [`RUNS`] separate runs (a new process each), which must agree within [`TOLERANCE`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::load::{Client, Route};
use crate::redis::PrivateRedis;
use crate::report::{BARE, OURS, OURS_CACHED, SERVERS, TOWER_SESSIONS, TOWER_SESSIONS_MOKA};
use crate::Server;

/// Requests sent before the measured ones, on the same connection and session.
pub const WARMUP: usize = 200;
/// Requests measured per server and route.
pub const MEASURED: usize = 2000;
/// Separate runs per server; their counts must agree within [`TOLERANCE`].
pub const RUNS: usize = 2;
/// The largest relative spread between runs that counts as a repeat.
pub const TOLERANCE: f64 = 0.02;

/// One server on one route: instructions per request in each run.
pub struct Cost {
    pub server: &'static str,
    pub route: Route,
    pub runs: Vec<f64>,
}

impl Cost {
    pub fn mean(&self) -> f64 {
        self.runs.iter().sum::<f64>() / self.runs.len() as f64
    }

    /// (max − min) / min over the runs.
    pub fn spread(&self) -> f64 {
        let min = self.runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.runs.iter().copied().fold(0.0, f64::max);
        (max - min) / min
    }
}

/// `command` run by callgrind, instrumentation off until switched on, profiles into `dir`.
fn under_callgrind(command: &Command, dir: &Path) -> Command {
    let mut wrapped = Command::new("valgrind");
    wrapped
        .args(["--tool=callgrind", "--instr-atstart=no", "--quiet"])
        .arg(format!(
            "--callgrind-out-file={}/callgrind.out",
            dir.display()
        ))
        .arg(command.get_program())
        .args(command.get_args())
        .stdout(Stdio::null());
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    wrapped
}

/// `callgrind_control <args> <pid>`, which waits until the server has done it.
fn control(pid: u32, args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("callgrind_control (apt-get install valgrind)");
    assert!(status.success(), "callgrind_control {args:?} failed");
}

/// The instructions of the newest dump in `dir` (`callgrind.out.<n>`, its `totals:` line).
fn dumped_instructions(dir: &Path) -> u64 {
    let newest: PathBuf = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let n: u32 = p.extension()?.to_str()?.parse().ok()?;
            Some((n, p))
        })
        .max()
        .expect("a callgrind dump")
        .1;
    let text = std::fs::read_to_string(&newest).unwrap();
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .expect("a totals line in the dump");
    let instructions = total.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        instructions > 0,
        "{}: no instructions counted",
        newest.display()
    );
    instructions
}

/// `n` requests of `route`, one after the other, each answered 2xx.
async fn send(client: &mut Client, server: &str, route: Route, n: usize) {
    for _ in 0..n {
        let reply = client.get(route.path()).await;
        assert!(reply.status.is_success(), "{server} {}", route.path());
    }
}

/// Instructions per request of `server` on each route, in one run (a new process).
async fn one_run(name: &'static str, target: &Path, redis: &PrivateRedis) -> Vec<(Route, f64)> {
    let dir = std::env::temp_dir().join(format!("session-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    redis.flushall().await;
    let command = under_callgrind(&Server::command(name, target, &redis.url()), &dir);
    let server = Server::spawn(name, command);
    let mut out = Vec::new();
    // `/health` last: the session routes start what a store starts on first use (the near-cache's
    // tracking), which would otherwise land in its window.
    for route in [Route::Peek, Route::Counter, Route::Health] {
        let mut client = Client::connect(server.addr).await;
        if route != Route::Health {
            // A session to read and write (the bare server sets no cookie).
            client.get("/counter").await;
        }
        send(&mut client, name, route, WARMUP).await;
        control(server.pid(), &["--instr=on"]);
        send(&mut client, name, route, MEASURED).await;
        control(server.pid(), &["--instr=off"]);
        control(server.pid(), &["--dump"]);
        out.push((route, dumped_instructions(&dir) as f64 / MEASURED as f64));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Every server on every route, [`RUNS`] times, the runs of one server interleaved with the others'.
pub async fn measure(target: &Path, redis: &PrivateRedis) -> Vec<Cost> {
    let mut costs: Vec<Cost> = SERVERS
        .iter()
        .flat_map(|&server| {
            Route::ALL.iter().map(move |&route| Cost {
                server,
                route,
                runs: Vec::new(),
            })
        })
        .collect();
    for run in 0..RUNS {
        for &name in &SERVERS {
            for (route, per_request) in one_run(name, target, redis).await {
                eprintln!(
                    "run {} {name:>31} {:>14} {per_request:>9.0} instructions/request",
                    run + 1,
                    route.path()
                );
                let cost = costs
                    .iter_mut()
                    .find(|c| c.server == name && c.route == route)
                    .unwrap();
                cost.runs.push(per_request);
            }
        }
    }
    costs
}

fn of(costs: &[Cost], server: &str, route: Route) -> f64 {
    costs
        .iter()
        .find(|c| c.server == server && c.route == route)
        .map_or(f64::NAN, Cost::mean)
}

/// The Markdown section: the table, then the targets it decides.
pub fn markdown(costs: &[Cost]) -> String {
    let mut md = format!(
        "## Server instructions per request (callgrind)\n\n\
         Reproduce: `bench/cost.sh`. Each server runs under `valgrind --tool=callgrind --instr-atstart=no`; \
         one connection (c=1) sends {WARMUP} requests of a route on its own session, then instrumentation is \
         switched on for {MEASURED} requests and off again, and the dump's instruction count is divided by \
         {MEASURED}. It counts every thread of the server (HTTP, session layer, Redis client, runtime) and \
         nothing of the load generator or Redis. {RUNS} runs, each a new process; the table shows their mean \
         and their spread (the tool fails above {tol:.0} %).\n\n\
         | server | route | instructions/request | vs {TOWER_SESSIONS} | vs {TOWER_SESSIONS_MOKA} | vs {BARE} | spread between runs |\n\
         |---|---|---|---|---|---|---|\n",
        tol = TOLERANCE * 100.0
    );
    for c in costs {
        let mean = c.mean();
        let vs = |other: &str| {
            if other == c.server {
                "—".to_owned()
            } else {
                format!("{:.2}×", mean / of(costs, other, c.route))
            }
        };
        let _ = writeln!(
            md,
            "| {} | `{}` | {:.1} k | {} | {} | {} | {:.2} % |",
            c.server,
            c.route.path(),
            mean / 1000.0,
            vs(TOWER_SESSIONS),
            vs(TOWER_SESSIONS_MOKA),
            vs(BARE),
            c.spread() * 100.0
        );
    }
    md.push_str("\n| target | measured | status |\n|---|---|---|\n");
    for (ours, peer) in [(OURS, TOWER_SESSIONS), (OURS_CACHED, TOWER_SESSIONS_MOKA)] {
        for route in [Route::Peek, Route::Counter] {
            let (a, b) = (of(costs, ours, route), of(costs, peer, route));
            let _ = writeln!(
                md,
                "| {ours}: `{}` instructions/request ≤ {peer} | {:.1} k against {:.1} k ({:.2}×) | {} |",
                route.path(),
                a / 1000.0,
                b / 1000.0,
                a / b,
                if a <= b { "met" } else { "**missed**" }
            );
        }
    }
    md
}

/// One row per server, route and run.
pub fn csv(costs: &[Cost]) -> String {
    let mut out = String::from("server,route,run,instructions_per_request\n");
    for c in costs {
        for (run, value) in c.runs.iter().enumerate() {
            let _ = writeln!(
                out,
                "{},{},{},{value:.0}",
                c.server,
                c.route.path(),
                run + 1
            );
        }
    }
    out
}
