//! The benchmark: our demo (near-cache off and on) against tower-sessions (fred Redis store, alone
//! and behind its moka cache) and bare axum, in one run on one machine, interleaved over rounds;
//! then the cached setups' coherence across two instances, the near-cache's memory, Redis's CPU per
//! request and lost updates. Run it with `bench/run.sh`, which builds what it needs.
//!
//! Options: `--rounds N` (3), `--warmup SECS` (1.5), `--duration SECS` (4.5), `--out DIR` (the
//! repository root: BENCHMARKS.md, bench/results/benchmarks.csv, bench/results/benchmarks.svg).
//!
//! `session-bench soak [--duration SECS] [--concurrency N]` (600, 64) runs the soak instead: see
//! `bench/soak.sh`.
//!
//! `session-bench coherence` runs only the coherence checks (two instances of each cached setup, our
//! near-cache after a plain write, `CLIENT KILL` and `FLUSHALL`), prints them and exits non-zero on a
//! stale read after a disruption (about 30 s; build first with `bench/run.sh` or cargo).

mod coherence;
mod cost;
mod load;
mod memory;
mod redis;
mod report;
mod soak;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use load::{Client, Route};
use redis::PrivateRedis;
use report::{
    Sample, BARE, CONCURRENCIES, OURS, OURS_CACHED, SERVERS, TOWER_SESSIONS, TOWER_SESSIONS_MOKA,
};
use testkit::Service;

struct Options {
    rounds: usize,
    warmup: Duration,
    duration: Duration,
    out: PathBuf,
}

impl Options {
    fn parse(root: &Path) -> Self {
        let mut options = Self {
            rounds: 3,
            warmup: Duration::from_millis(1500),
            duration: Duration::from_millis(4500),
            out: root.to_owned(),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        for pair in args.chunks(2) {
            let value = pair
                .get(1)
                .unwrap_or_else(|| panic!("{} needs a value", pair[0]));
            let secs = || Duration::from_secs_f64(value.parse().expect("seconds"));
            match pair[0].as_str() {
                "--rounds" => options.rounds = value.parse().expect("--rounds N"),
                "--warmup" => options.warmup = secs(),
                "--duration" => options.duration = secs(),
                "--out" => options.out = PathBuf::from(value),
                other => panic!("unknown option {other}"),
            }
        }
        assert!(options.rounds >= 1);
        options
    }
}

/// A server under test, stopped by its PID when dropped.
struct Server {
    process: Service,
    addr: SocketAddr,
}

impl Server {
    fn start(name: &str, target: &Path, redis_url: &str) -> Self {
        Self::spawn(name, Self::command(name, target, redis_url))
    }

    /// The command that runs the server `name` against `redis_url`.
    fn command(name: &str, target: &Path, redis_url: &str) -> Command {
        let peer = |kind: &str| {
            let mut c = Command::new(target.join("peer"));
            c.arg(kind);
            c
        };
        let mut command = match name {
            OURS => Command::new(target.join("examples/demo")),
            OURS_CACHED => {
                let mut c = Command::new(target.join("examples/demo"));
                c.env("SESSION_NEAR_CACHE", "100000");
                c
            }
            TOWER_SESSIONS => peer("tower-sessions"),
            TOWER_SESSIONS_MOKA => peer("tower-sessions-moka"),
            BARE => peer("bare"),
            other => panic!("no server named {other}"),
        };
        command
            .env("REDIS_URL", redis_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        command
    }

    /// Starts `command` (see [`Server::command`]) and waits until it listens.
    fn spawn(name: &str, mut command: Command) -> Self {
        let process = Service::serve(name, &mut command, String::new)
            .unwrap_or_else(|e| panic!("{name}: {e} (build with bench/run.sh)"));
        let addr = SocketAddr::from(([127, 0, 0, 1], process.port));
        Self { process, addr }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Round trips and Redis commands (Lua inner calls included) per request, counted with MONITOR.
struct Profile {
    server: &'static str,
    case: &'static str,
    round_trips: f64,
    commands: f64,
}

async fn profile(server: &'static str, addr: SocketAddr, redis: &PrivateRedis) -> Vec<Profile> {
    const N: u64 = 20;
    // Client 0 never has a session; client 1 gets one first.
    let mut clients = [Client::connect(addr).await, Client::connect(addr).await];
    clients[1].get("/counter").await;
    let cases = [
        ("GET /health", 0, "/health"),
        ("GET /counter/peek, no cookie", 0, "/counter/peek"),
        ("GET /counter/peek, cookie", 1, "/counter/peek"),
        ("GET /counter, cookie", 1, "/counter"),
    ];
    let mut out = Vec::new();
    for (case, who, path) in cases {
        let client = &mut clients[who];
        let received = redis
            .monitor(async {
                for _ in 0..N {
                    client.get(path).await;
                }
            })
            .await;
        let top = received.round_trips() as u64;
        let inner = received.0.len() as u64 - top;
        out.push(Profile {
            server,
            case,
            round_trips: top as f64 / N as f64,
            commands: (top + inner) as f64 / N as f64,
        });
    }
    out
}

/// Rounds piped per design in [`write_designs`].
const REPLAYS: usize = 20_000;

/// What each design of the common write costs Redis, beside the peer's calls: Redis CPU per round
/// (µs), [`REPLAYS`] rounds piped on one connection. Our scripts are replayed exactly as the demo
/// sent them (from MONITOR): `fast_update.lua` for a `GET /counter`, `update.lua` for a `PUT /kv/x`
/// (a write without a read); the transaction is the design of plain commands weighed against it.
async fn write_designs(target: &Path, redis: &PrivateRedis) -> Vec<(&'static str, f64)> {
    let server = Server::start(OURS, target, &redis.url());
    let mut client = Client::connect(server.addr).await;
    client.get("/counter").await;
    client.get("/counter").await;
    let received = redis
        .monitor(async {
            client.get("/counter").await;
            client.send(hyper::Method::PUT, "/kv/x", "1").await;
        })
        .await;
    drop(server);
    let sent = |script: &str| -> Vec<String> {
        received
            .0
            .iter()
            .find(|c| {
                c.name == "evalsha"
                    && !c.from_script
                    && c.args().get(4).map(String::as_str) == Some(script)
            })
            .unwrap_or_else(|| panic!("the demo's {script}.lua call on MONITOR"))
            .args()
    };
    let (fast, update) = (sent("fast_update"), sent("update"));
    let key = fast[3].clone();
    let command = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let record = "x".repeat(120);
    let expires = redis.hget(&key, "$expires").await;
    let designs: [(&'static str, Vec<Vec<String>>); 7] = [
        (
            "`SET … EX` of a 120-byte string (tower-sessions' write)",
            vec![command(&["SET", "floor:record", &record, "EX", "7200"])],
        ),
        (
            "`GET` of it (tower-sessions' read)",
            vec![command(&["GET", "floor:record"])],
        ),
        (
            "`HSET` of one field of the session",
            vec![command(&["HSET", &key, "count", "7"])],
        ),
        (
            "`HGETALL` of the session (our read)",
            vec![command(&["HGETALL", &key])],
        ),
        (
            "`MULTI` `HSET` `HINCRBY` `HINCRBY` `PEXPIREAT` `HEXISTS` `EXEC` (plain commands)",
            vec![
                command(&["MULTI"]),
                command(&["HSET", &key, "count", "7"]),
                command(&["HINCRBY", &key, "$version", "1"]),
                command(&["HINCRBY", &key, "$size", "0"]),
                command(&["PEXPIREAT", &key, &expires]),
                command(&["HEXISTS", &key, "$created"]),
                command(&["EXEC"]),
            ],
        ),
        (
            "`EVALSHA` `fast_update.lua` as the demo sent it (our common write)",
            vec![fast],
        ),
        (
            "`EVALSHA` `update.lua` as the demo sent it (a write without a read)",
            vec![update],
        ),
    ];
    let mut out = Vec::new();
    for (name, commands) in designs {
        out.push((name, redis.cpu_per_round(REPLAYS, &commands).await));
    }
    out
}

/// The two-instance runs of both cached setups, then our near-cache's disruptions; printed as they
/// finish.
async fn check_coherence(
    target: &Path,
    redis: &PrivateRedis,
) -> (Vec<coherence::Coherence>, [coherence::Disruption; 3]) {
    let mut coherent = Vec::new();
    for name in [OURS_CACHED, TOWER_SESSIONS_MOKA] {
        let c = coherence::two_instances(name, target, redis).await;
        eprintln!(
            "coherence {name}: {} tries, {} stale reads, {} never seen, p50 {} µs, max {} µs",
            c.tries,
            c.stale_reads,
            c.never_seen,
            c.seen_after.value_at_quantile(0.5),
            c.seen_after.max()
        );
        coherent.push(c);
    }
    let disruptions = coherence::disruptions(OURS_CACHED, target, redis).await;
    for d in &disruptions {
        eprintln!(
            "{}: {} reads, {} stale (µs after: {:?}), {} 503, {} errors, {} never seen",
            d.what, d.reads, d.stale, d.stale_after_us, d.unavailable, d.errors, d.never_seen
        );
    }
    (coherent, disruptions)
}

/// The 1-minute load average: how busy the shared machine was apart from us.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024);
    let version = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "{cores} cores ({cpu}), {memory} GiB; {}; {}. Load generator, server and Redis share these cores.",
        version("redis-server"),
        version("rustc")
    )
}

/// Where, under `--out`, the generated CSV and SVG go; BENCHMARKS.md itself stays at `--out`.
const RESULTS_DIR: &str = "bench/results";

/// The markers around the section of BENCHMARKS.md that `bench/run.sh` writes.
const GENERATED: Markers = Markers {
    start: "<!-- generated by bench/run.sh: everything up to the end marker is replaced -->",
    end: "<!-- end of generated section -->",
};
/// The markers around the section of BENCHMARKS.md that `bench/cost.sh` writes.
const GENERATED_COST: Markers = Markers {
    start: "<!-- generated by bench/cost.sh: everything up to the end marker is replaced -->",
    end: "<!-- end of the cost section -->",
};

struct Markers {
    start: &'static str,
    end: &'static str,
}

/// `previous` with the section between `markers` replaced by `generated` (appended if it has
/// none); hand-written text around it stays.
fn splice_generated(previous: &str, generated: &str, markers: &Markers) -> String {
    let section = format!("{}\n{generated}{}\n", markers.start, markers.end);
    match (previous.find(markers.start), previous.find(markers.end)) {
        (Some(start), Some(end)) if start < end => {
            format!(
                "{}{section}{}",
                &previous[..start],
                &previous[end + markers.end.len()..].trim_start_matches('\n')
            )
        }
        _ if previous.is_empty() => section,
        _ => format!("{}\n\n{section}", previous.trim_end()),
    }
}

/// Rewrites `markers`' section of `out`/BENCHMARKS.md with `generated`.
fn write_section(out: &Path, generated: &str, markers: &Markers) {
    let path = out.join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, splice_generated(&previous, generated, markers)).unwrap();
}

#[tokio::main]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| root.join("target"), PathBuf::from)
        .join("release");
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("soak") {
        let value = |flag: &str, default: u64| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .map_or(default, |v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{flag} takes a number"))
                })
        };
        let duration = Duration::from_secs(value("--duration", 600));
        let passed = soak::run(&target, duration, value("--concurrency", 64) as usize).await;
        std::process::exit(if passed { 0 } else { 1 });
    }
    if args.get(1).map(String::as_str) == Some("coherence") {
        // The coherence checks alone, printed (about a minute).
        let redis = PrivateRedis::start().await;
        let (_, disruptions) = check_coherence(&target, &redis).await;
        let stale: u64 = disruptions.iter().map(|d| d.stale).sum();
        // `exit` runs no destructors: stop the private redis-server first.
        drop(redis);
        std::process::exit(i32::from(stale > 0));
    }
    if args.get(1).map(String::as_str) == Some("cost") {
        // Instructions per request under callgrind (a few minutes): see bench/cost.sh.
        let redis = PrivateRedis::start().await;
        let costs = cost::measure(&target, &redis).await;
        drop(redis);
        let md = cost::markdown(&costs);
        println!("{md}");
        let results = root.join(RESULTS_DIR);
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("cost.csv"), cost::csv(&costs)).unwrap();
        write_section(&root, &md, &GENERATED_COST);
        let unsteady: Vec<String> = costs
            .iter()
            .filter(|c| c.spread() > cost::TOLERANCE)
            .map(|c| {
                format!(
                    "{} {} ({:.1} %)",
                    c.server,
                    c.route.path(),
                    c.spread() * 100.0
                )
            })
            .collect();
        if !unsteady.is_empty() {
            eprintln!(
                "runs disagree by more than {:.0} %: {}",
                cost::TOLERANCE * 100.0,
                unsteady.join(", ")
            );
            std::process::exit(1);
        }
        return;
    }
    let options = Options::parse(&root);
    let redis = PrivateRedis::start().await;
    let started = Instant::now();
    let load_before = load_average();

    let mut samples = Vec::new();
    let mut profiles = Vec::new();
    for round in 0..options.rounds {
        // Rotate the order each round so no server always runs first on a cold machine.
        for offset in 0..SERVERS.len() {
            let name = SERVERS[(round + offset) % SERVERS.len()];
            redis.flushall().await;
            let server = Server::start(name, &target, &redis.url());
            for route in Route::ALL {
                for concurrency in CONCURRENCIES {
                    let (measured, [set_up, opened, after]) = load::run(
                        server.addr,
                        route,
                        concurrency,
                        options.warmup,
                        options.duration,
                        || redis.snapshot(),
                    )
                    .await;
                    let sample = Sample {
                        round,
                        server: name,
                        route,
                        concurrency,
                        rps: measured.requests as f64 / measured.seconds,
                        p50_ms: measured.latency.value_at_quantile(0.50) as f64 / 1000.0,
                        p99_ms: measured.latency.value_at_quantile(0.99) as f64 / 1000.0,
                        errors: measured.errors,
                        commands: after.commands_since(&set_up) as f64
                            / measured.sent.max(1) as f64,
                        redis_cpu_us: (after.cpu_us - opened.cpu_us)
                            / measured.requests.max(1) as f64,
                    };
                    eprintln!(
                        "round {} {name:>31} {:>14} c={concurrency:<2} {:>8.0} req/s p50 {:.2} ms p99 {:.2} ms cmds/req {:.2} Redis CPU {:.1} µs/req errors {}",
                        round + 1,
                        route.path(),
                        sample.rps,
                        sample.p50_ms,
                        sample.p99_ms,
                        sample.commands,
                        sample.redis_cpu_us,
                        sample.errors
                    );
                    samples.push(sample);
                }
            }
            if round == 0 && name != BARE {
                profiles.extend(profile(name, server.addr, &redis).await);
            }
        }
    }
    let load_rounds = load_average();
    eprintln!(
        "interleaved rounds done at {:.0} s (load average {load_rounds})",
        started.elapsed().as_secs_f64()
    );

    let mut shared = Vec::new();
    for name in &SERVERS[1..] {
        redis.flushall().await;
        let server = Server::start(name, &target, &redis.url());
        // Only our demo has the atomic route.
        let atomic = [OURS, OURS_CACHED].contains(name);
        let result = load::same_session(server.addr, 8, 500, atomic).await;
        eprintln!(
            "same session {name}: {}/{} keys kept, counter {} of {}",
            result.keys_kept, result.clients, result.counter, result.increments
        );
        if let Some(a) = &result.atomic {
            eprintln!(
                "same session {name}: POST /counter/incr reached {} of {}, {} distinct counts, \
                 {} non-2xx, {:.2} s, {:.0} req/s",
                a.reached,
                a.requests,
                a.distinct,
                a.non_2xx,
                a.seconds,
                a.rps()
            );
            // BENCHMARKS.md publishes this as exact: fail here rather than print a loss.
            assert!(
                a.exact(),
                "{name}: the atomic POST /counter/incr lost increments or failed on one shared cookie: \
                 the count rose by {} for {} requests ({} distinct counts answered, {} non-2xx responses)",
                a.reached,
                a.requests,
                a.distinct,
                a.non_2xx
            );
        }
        shared.push((*name, result));
    }

    let (coherent, disruptions) = check_coherence(&target, &redis).await;

    let mut memory = Vec::new();
    for name in [OURS_CACHED, OURS] {
        let m = memory::measure(name, &target, &redis).await;
        eprintln!(
            "memory {name}: RSS {} KiB -> {} KiB, {} of {} sample re-reads from the cache, {:.0} s",
            m.start_kib,
            m.after_kib,
            m.sample_hits,
            memory::SAMPLE,
            m.elapsed.as_secs_f64()
        );
        memory.push(m);
    }

    redis.flushall().await;
    let floor = redis.floor().await;
    redis.flushall().await;
    let designs = write_designs(&target, &redis).await;
    let total = started.elapsed().as_secs_f64();

    let rows = report::summarize(&samples);
    let atomic: Vec<(&str, &load::Atomic)> = shared
        .iter()
        .filter_map(|(name, r)| r.atomic.as_ref().map(|a| (*name, a)))
        .collect();
    let table = report::markdown_table(&rows);
    println!("{table}");
    let results = options.out.join(RESULTS_DIR);
    std::fs::create_dir_all(&results).unwrap();
    std::fs::write(results.join("benchmarks.csv"), report::csv(&samples)).unwrap();
    std::fs::write(results.join("benchmarks.svg"), report::svg(&rows)).unwrap();

    let mut md = String::new();
    let _ = write!(
        md,
        "# Benchmarks\n\n\
         axum-redis-session (the `demo` example), with its near-cache off and on (`SESSION_NEAR_CACHE=100000`), \
         against **tower-sessions 0.14 with tower-sessions-redis-store 0.16** (fred), the same behind \
         tower-sessions' own `CachingSessionStore` with **tower-sessions-moka-store 0.15** (100,000 sessions), \
         and **bare axum** (same routes, no session), measured in one run on one machine, each server in turn \
         over {rounds} interleaved rounds; figures are medians of the rounds. Each virtual user keeps its own \
         HTTP/1.1 connection and its own cookie; session routes start from a session created before the \
         warm-up ({warmup:?}), then run for {duration:?}.\n\n\
         Reproduce: `bench/run.sh` (installs redis-server if missing, builds in release, writes this file, \
         `bench/results/benchmarks.csv` and `bench/results/benchmarks.svg`). Options: `--rounds`, `--warmup`, \
         `--duration`.\n\n\
         Machine: {machine}\n\nTotal run time: {total:.0} s. The machine is shared: its 1-minute load average \
         was {load_before} when the run started and {load_rounds} after the interleaved rounds (2 would be \
         both cores busy), so other work ran beside the benchmark and the figures are noisier than on an idle \
         machine.\n\n\
         ![requests per second and p99 per route and server](bench/results/benchmarks.svg)\n\n\
         ## Targets\n\n{targets}\n\
         ## Throughput and latency\n\n{table}\n\
         Ratios compare requests/s. Redis cmds/req is the `INFO commandstats` delta over every request of the run \
         divided by the requests, Lua commands run inside our scripts included (and, with the near-cache on, its \
         tracking heartbeats).\n\n\
         ## Redis round trips per request (MONITOR, 20 requests each)\n\n\
         | server | request | round trips | commands incl. Lua inner |\n|---|---|---|---|\n",
        rounds = options.rounds,
        warmup = options.warmup,
        duration = options.duration,
        machine = machine(),
        targets = report::targets(&rows, &atomic),
    );
    for p in &profiles {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} |",
            p.server, p.case, p.round_trips, p.commands
        );
    }
    let _ = write!(
        md,
        "\n## Coherence of the cached setups, two instances on one Redis\n\n\
         A session is created on instance 1 (`GET /counter`) and read there (`GET /counter/peek`) until it is \
         hot. Each try then writes it on instance 2 (`GET /counter`, same cookie) and, once that response has \
         arrived, reads it on instance 1 until the new count comes back, giving up after {give_up:?}. A stale read \
         answered the old count after the write's response. Seen after: from the write's response to the \
         response of the first read that answered the new count (one loopback round trip at least). Tries stop \
         at {tries} or after {budget:?}, whichever comes first.\n\n\
         | setup | tries | stale reads | tries with a stale read | seen after p50 | p99 | max | never seen within {give_up:?} | read errors |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        give_up = coherence::GIVE_UP,
        tries = coherence::TRIES,
        budget = coherence::BUDGET,
    );
    for c in &coherent {
        let seen = |q: f64| {
            if c.seen_after.is_empty() {
                "—".to_owned()
            } else {
                format!("{} µs", c.seen_after.value_at_quantile(q))
            }
        };
        let _ = writeln!(
            md,
            "| {}{} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
            c.server,
            c.hits.map_or_else(String::new, |h| format!(
                " ({h} reads on instance 1 served from its cache)"
            )),
            c.tries,
            if c.budget_hit { " (time budget)" } else { "" },
            c.stale_reads,
            c.tries_with_stale,
            seen(0.5),
            seen(0.99),
            if c.seen_after.is_empty() {
                "—".to_owned()
            } else {
                format!("{} µs", c.seen_after.max())
            },
            c.never_seen,
            c.errors
        );
    }
    let _ = write!(
        md,
        "\nOur near-cache alone, one instance, {n} tries each (the first two alternating): a fresh session made \
         hot (a read served from the cache, per `/metrics`), then the disruption, then reads until the new value \
         (limit 5 s). Stale: a 200 with the old count after the disruption was complete (its reply had \
         arrived); a 503 while the store reconnects is not stale. The first row is the control: a write with \
         nothing else happening, where the invalidation races the next read.\n\n\
         | disruption | reads | stale reads | stale reads came (µs after the disruption) | 503s | other errors | new value not seen within 5 s |\n\
         |---|---|---|---|---|---|---|\n",
        n = coherence::DISRUPTIONS,
    );
    for d in &disruptions {
        let after: Vec<String> = d.stale_after_us.iter().map(u64::to_string).collect();
        let _ = writeln!(
            md,
            "| {}{} | {} | {} | {} | {} | {} | {} |",
            d.what,
            if d.killed > 0 {
                format!(" ({} connections closed per try)", d.killed)
            } else {
                String::new()
            },
            d.reads,
            d.stale,
            if after.is_empty() {
                "—".to_owned()
            } else {
                after.join(", ")
            },
            d.unavailable,
            d.errors,
            d.never_seen
        );
    }
    let _ = write!(
        md,
        "\n## Memory: the demo holding {n} sessions\n\n\
         The demo alone on the private Redis: {n} sessions created (`GET /counter`, no cookie, 32 clients), each \
         read once more (`GET /counter/peek`), then `VmRSS` from `/proc/<pid>/status`. A sample of {sample} \
         sessions read a third time shows how many the cache holds.\n\n\
         | demo | RSS at start | RSS after the traffic | sample re-reads served by the near-cache | time |\n|---|---|---|---|---|\n",
        n = memory::SESSIONS,
        sample = memory::SAMPLE,
    );
    for m in &memory {
        let _ = writeln!(
            md,
            "| {} | {:.1} MiB | {:.1} MiB | {} of {} | {:.0} s |",
            m.server,
            m.start_kib as f64 / 1024.0,
            m.after_kib as f64 / 1024.0,
            m.sample_hits,
            memory::SAMPLE,
            m.elapsed.as_secs_f64()
        );
    }
    let extra = memory[0].after_kib as f64 - memory[1].after_kib as f64;
    let _ = writeln!(
        md,
        "\nThe near-cache costs {:.1} MiB more, {:.0} bytes per cached session.",
        extra / 1024.0,
        extra * 1024.0 / memory::SESSIONS as f64
    );
    let _ = write!(
        md,
        "\n## Redis's CPU per request\n\n\
         The change in Redis's own `used_cpu_user + used_cpu_sys` (`INFO cpu`) over each measured phase of \
         the throughput runs above, divided by the requests of that phase: parsing, Lua, socket work and, \
         with a near-cache, its tracking, alike. c=32, medians of rounds.\n\n\
         | route | server | Redis CPU µs/request | vs {TOWER_SESSIONS} | vs {TOWER_SESSIONS_MOKA} | Redis cmds/req |\n\
         |---|---|---|---|---|---|\n"
    );
    for route in [Route::Peek, Route::Counter] {
        let cpu = |server: &str| report::row(&rows, server, route).redis_cpu_us;
        for server in &SERVERS[1..] {
            let vs = |peer: &str| {
                if peer == *server {
                    "—".to_owned()
                } else {
                    format!("{:.2}×", cpu(server) / cpu(peer))
                }
            };
            let _ = writeln!(
                md,
                "| `{}` | {server} | {:.1} | {} | {} | {:.2} |",
                route.path(),
                cpu(server),
                vs(TOWER_SESSIONS),
                vs(TOWER_SESSIONS_MOKA),
                report::row(&rows, server, route).commands
            );
        }
    }
    let hset = designs
        .iter()
        .find(|(name, _)| name.starts_with("`HSET`"))
        .map_or(f64::NAN, |(_, us)| *us);
    let _ = write!(
        md,
        "\n## The common write: what each design costs Redis\n\n\
         Redis's own CPU (`INFO cpu`, user + system) per call, {REPLAYS} calls piped by `redis-cli --pipe` on \
         one connection, on a session the demo wrote: parsing and execution, with the socket work of a round \
         trip (one per row, alike) shared out among many calls. Our scripts are replayed exactly as the demo \
         sent them (captured with MONITOR).\n\n\
         | call | Redis CPU µs per call | vs `HSET` |\n|---|---|---|\n"
    );
    for (name, us) in &designs {
        let _ = writeln!(md, "| {name} | {us:.2} | {:.2}× |", us / hset);
    }
    let _ = write!(
        md,
        "\n## Same session, concurrent clients\n\n8 clients share one cookie. Each writes its own key 500 times \
         (`PUT /kv/k{{i}}`), then each increments `/counter` 500 times (`GET`, a read-modify-write in the \
         handler). Then, on our demo only, each sends `POST /counter/incr` 500 times on the same cookie: an \
         increment done by Redis in a script (`Session::increment`). It adds to the same `count`, so the table \
         shows how much it rose (`GET /counter/peek` before and after); req/s is the 4000 requests of the 8 \
         clients together over the phase's wall time.\n\n\
         | server | keys whose last write survived | `/counter` reached (of 4000) | `POST /counter/incr` reached (of 4000) | `POST /counter/incr` req/s (8 clients, one cookie) |\n\
         |---|---|---|---|---|\n"
    );
    for (name, r) in &shared {
        let (reached, rps) = r.atomic.as_ref().map_or_else(
            || ("—".to_owned(), "—".to_owned()),
            |a| {
                (
                    format!("{} of {}", a.reached, a.requests),
                    format!("{:.0} ({} in {:.2} s)", a.rps(), a.requests, a.seconds),
                )
            },
        );
        let _ = writeln!(
            md,
            "| {name} | {} of {} | {} | {reached} | {rps} |",
            r.keys_kept, r.clients, r.counter
        );
    }
    let non_2xx: u64 = atomic.iter().map(|(_, a)| a.non_2xx).sum();
    let _ = write!(
        md,
        "\n{TOWER_SESSIONS} offers no atomic increment (its store loads and saves whole records), so its \
         two setups show — for `POST /counter/incr`.\n\n\
         A read-modify-write counter loses increments under every session layer when requests race (each \
         reads the old value); what a session layer controls is whether writes to *different* keys survive. \
         The atomic route loses none: with the near-cache off and on, the count rose by exactly 4000, each \
         response answered a count no other response answered, and {non_2xx} responses were other than 2xx \
         (the benchmark fails on any lost increment or non-2xx response).\n\n\
         ## The Redis floor, same server, same run\n\n`redis-benchmark -c 32 -n 100000` against the private \
         server, with nothing else in the way:\n\n| command | requests/s | µs per call in Redis |\n|---|---|---|\n"
    );
    for f in &floor {
        let _ = writeln!(md, "| {} | {:.0} | {:.2} |", f.name, f.rps, f.usec_per_call);
    }
    write_section(&options.out, &md, &GENERATED);
    eprintln!(
        "wrote BENCHMARKS.md, {RESULTS_DIR}/benchmarks.csv, {RESULTS_DIR}/benchmarks.svg in {} ({total:.0} s)",
        options.out.display()
    );
}
