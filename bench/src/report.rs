//! Medians over rounds, ratios, and the outputs: a Markdown table, a CSV and an SVG chart.

use std::fmt::Write as _;

use crate::load::{Atomic, Route};

/// One measured run of one server on one route at one concurrency.
#[derive(Clone, Debug)]
pub struct Sample {
    pub round: usize,
    pub server: &'static str,
    pub route: Route,
    pub concurrency: usize,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// Redis commands per request, Lua inner calls included (`INFO commandstats` delta).
    pub commands: f64,
    /// Redis's own CPU (`INFO cpu`, user + system) over the measured phase per request, µs.
    pub redis_cpu_us: f64,
}

/// Medians over the rounds for one server, route and concurrency.
#[derive(Clone, Debug)]
pub struct Row {
    pub server: &'static str,
    pub route: Route,
    pub concurrency: usize,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub commands: f64,
    pub errors: u64,
    pub redis_cpu_us: f64,
    pub vs_tower_sessions: Option<f64>,
    /// For our near-cache only: against the peer's cached setup.
    pub vs_moka: Option<f64>,
    pub vs_bare: Option<f64>,
}

pub const BARE: &str = "bare axum";
pub const TOWER_SESSIONS: &str = "tower-sessions";
pub const TOWER_SESSIONS_MOKA: &str = "tower-sessions (moka)";
pub const OURS: &str = "axum-redis-session";
pub const OURS_CACHED: &str = "axum-redis-session (near-cache)";
pub const SERVERS: [&str; 5] = [BARE, TOWER_SESSIONS, TOWER_SESSIONS_MOKA, OURS, OURS_CACHED];
pub const CONCURRENCIES: [usize; 2] = [1, 32];

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn summarize(samples: &[Sample]) -> Vec<Row> {
    let mut rows = Vec::new();
    for route in Route::ALL {
        for concurrency in CONCURRENCIES {
            let of = |server: &str| -> Vec<&Sample> {
                samples
                    .iter()
                    .filter(|s| {
                        s.server == server && s.route == route && s.concurrency == concurrency
                    })
                    .collect()
            };
            let rps_of = |server: &str| median(of(server).iter().map(|s| s.rps).collect());
            let (bare, ts, moka) = (
                rps_of(BARE),
                rps_of(TOWER_SESSIONS),
                rps_of(TOWER_SESSIONS_MOKA),
            );
            for server in SERVERS {
                let runs = of(server);
                let rps = median(runs.iter().map(|s| s.rps).collect());
                rows.push(Row {
                    server,
                    route,
                    concurrency,
                    rps,
                    p50_ms: median(runs.iter().map(|s| s.p50_ms).collect()),
                    p99_ms: median(runs.iter().map(|s| s.p99_ms).collect()),
                    commands: median(runs.iter().map(|s| s.commands).collect()),
                    errors: runs.iter().map(|s| s.errors).sum(),
                    redis_cpu_us: median(runs.iter().map(|s| s.redis_cpu_us).collect()),
                    vs_tower_sessions: (server != TOWER_SESSIONS).then_some(rps / ts),
                    vs_moka: (server == OURS_CACHED).then_some(rps / moka),
                    vs_bare: (server != BARE).then_some(rps / bare),
                });
            }
        }
    }
    rows
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"))
}

pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| route | c | server | req/s | p50 ms | p99 ms | vs tower-sessions | vs tower-sessions (moka) | vs bare | Redis cmds/req | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {:.2} | {} |",
            r.route.path(),
            r.concurrency,
            r.server,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            ratio(r.vs_tower_sessions),
            ratio(r.vs_moka),
            ratio(r.vs_bare),
            r.commands,
            r.errors
        );
    }
    out
}

pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "round,server,route,concurrency,rps,p50_ms,p99_ms,redis_cmds_per_req,errors,redis_cpu_us_per_req\n",
    );
    for s in samples {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.1},{:.3},{:.3},{:.3},{},{:.2}",
            s.round,
            s.server,
            s.route.path(),
            s.concurrency,
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.commands,
            s.errors,
            s.redis_cpu_us
        );
    }
    out
}

/// The row of `server` on `route` at c=32.
pub fn row<'a>(rows: &'a [Row], server: &str, route: Route) -> &'a Row {
    rows.iter()
        .find(|r| r.server == server && r.route == route && r.concurrency == 32)
        .expect("every server ran every route at c=32")
}

/// The targets, each with the figure measured in this run (c=32, medians), then the atomic
/// increments on one shared cookie of each server in `atomic`.
pub fn targets(rows: &[Row], atomic: &[(&str, &Atomic)]) -> String {
    let mut out = String::from(
        "| target (c=32, medians of rounds, unless it says otherwise) | measured | status |\n|---|---|---|\n",
    );
    let mut line = |target: String, measured: String, met: bool| {
        let status = if met { "met" } else { "**missed**" };
        let _ = writeln!(out, "| {target} | {measured} | {status} |");
    };
    let ratio_target =
        |server: &str, route: Route, vs: &str, pick: fn(&Row) -> Option<f64>, at_least: f64| {
            let r = pick(row(rows, server, route)).unwrap_or(0.0);
            (
                format!("{server}: `{}` ≥ {at_least}× {vs}", route.path()),
                format!("{r:.2}×"),
                r >= at_least,
            )
        };
    let vs_ts = |r: &Row| r.vs_tower_sessions;
    let vs_moka = |r: &Row| r.vs_moka;
    let vs_bare = |r: &Row| r.vs_bare;
    let checks = [
        ratio_target(OURS, Route::Peek, TOWER_SESSIONS, vs_ts, 1.0),
        ratio_target(OURS, Route::Counter, TOWER_SESSIONS, vs_ts, 1.0),
        ratio_target(OURS_CACHED, Route::Counter, TOWER_SESSIONS, vs_ts, 1.3),
        ratio_target(
            OURS_CACHED,
            Route::Counter,
            TOWER_SESSIONS_MOKA,
            vs_moka,
            1.1,
        ),
        ratio_target(OURS_CACHED, Route::Peek, TOWER_SESSIONS, vs_ts, 2.0),
        ratio_target(OURS_CACHED, Route::Peek, TOWER_SESSIONS_MOKA, vs_moka, 1.0),
        ratio_target(OURS_CACHED, Route::Peek, BARE, vs_bare, 0.9),
    ];
    for (target, measured, met) in checks {
        line(target, measured, met);
    }
    for server in [OURS, OURS_CACHED] {
        for route in [Route::Peek, Route::Counter] {
            let (ours, theirs) = (
                row(rows, server, route).p99_ms,
                row(rows, TOWER_SESSIONS, route).p99_ms,
            );
            line(
                format!(
                    "{server}: `{}` p99 no higher than {TOWER_SESSIONS}'",
                    route.path()
                ),
                format!("{ours:.2} ms against {theirs:.2} ms"),
                ours <= theirs,
            );
        }
    }
    for (ours, peer) in [(OURS, TOWER_SESSIONS), (OURS_CACHED, TOWER_SESSIONS_MOKA)] {
        let (a, b) = (
            row(rows, ours, Route::Counter).redis_cpu_us,
            row(rows, peer, Route::Counter).redis_cpu_us,
        );
        line(
            format!("{ours}: Redis CPU per `/counter` ≤ 1.5× {peer}"),
            format!("{a:.1} µs against {b:.1} µs ({:.2}×)", a / b),
            a <= 1.5 * b,
        );
    }
    for (server, a) in atomic {
        line(
            format!(
                "{server}: `POST /counter/incr`, {} clients on one cookie: 0 lost increments",
                a.clients
            ),
            format!(
                "{} lost ({} of {}, {} non-2xx)",
                a.lost(),
                a.reached,
                a.requests,
                a.non_2xx
            ),
            a.exact(),
        );
    }
    out
}

/// Which figure of a row a chart panel shows.
type Metric = fn(&Row) -> f64;

/// Two grouped bar charts, requests/s above and p99 below, one group per route and concurrency.
pub fn svg(rows: &[Row]) -> String {
    const COLOURS: [&str; 5] = ["#9e9e9e", "#e8833a", "#f4c542", "#2f6db5", "#5bb55b"];
    let (width, panel, top) = (1240.0, 260.0, 60.0);
    let groups: Vec<(Route, usize)> = Route::ALL
        .iter()
        .flat_map(|&r| CONCURRENCIES.iter().map(move |&c| (r, c)))
        .collect();
    let value = |route: Route, c: usize, server: &str, pick: fn(&Row) -> f64| {
        rows.iter()
            .find(|r| r.route == route && r.concurrency == c && r.server == server)
            .map_or(0.0, pick)
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        top + 2.0 * (panel + 70.0)
    );
    for (i, server) in SERVERS.iter().enumerate() {
        let x = 40.0 + i as f64 * 235.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"20\" width=\"14\" height=\"14\" fill=\"{}\"/><text x=\"{}\" y=\"32\">{server}</text>",
            COLOURS[i],
            x + 20.0
        );
    }
    let panels: [(&str, Metric); 2] = [
        ("requests per second (median of rounds)", |r| r.rps),
        ("p99 latency, ms (median of rounds)", |r| r.p99_ms),
    ];
    for (p, (title, pick)) in panels.iter().enumerate() {
        let y0 = top + p as f64 * (panel + 70.0);
        let max = groups
            .iter()
            .flat_map(|&(r, c)| SERVERS.iter().map(move |s| value(r, c, s, *pick)))
            .fold(0.0_f64, f64::max)
            .max(1e-9);
        let _ = writeln!(
            out,
            "<text x=\"40\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{title}</text>",
            y0 + 16.0
        );
        let base = y0 + panel;
        let _ = writeln!(
            out,
            "<line x1=\"40\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"black\"/>",
            width - 20.0
        );
        let group_width = (width - 80.0) / groups.len() as f64;
        let slot = (group_width - 20.0) / SERVERS.len() as f64;
        for (g, &(route, c)) in groups.iter().enumerate() {
            let gx = 50.0 + g as f64 * group_width;
            for (i, server) in SERVERS.iter().enumerate() {
                let v = value(route, c, server, *pick);
                let h = (panel - 40.0) * v / max;
                let x = gx + 10.0 + i as f64 * slot;
                let label = if p == 0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                };
                let _ = writeln!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{label}</text>",
                    base - h,
                    slot - 4.0,
                    COLOURS[i],
                    x + (slot - 4.0) / 2.0,
                    base - h - 4.0
                );
            }
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} c={c}</text>",
                gx + group_width / 2.0,
                base + 18.0,
                route.path()
            );
        }
    }
    out.push_str("</svg>\n");
    out
}
