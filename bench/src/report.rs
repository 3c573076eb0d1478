//! Medians over rounds, ratios, and the outputs: a Markdown table, a CSV and an SVG chart.

use std::fmt::Write as _;

use crate::load::Route;

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
    pub vs_tower_sessions: Option<f64>,
    pub vs_bare: Option<f64>,
}

pub const SERVERS: [&str; 3] = ["bare axum", "tower-sessions", "axum-redis-session"];
pub const CONCURRENCIES: [usize; 2] = [1, 32];

fn median(mut values: Vec<f64>) -> f64 {
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
            let (bare, ts) = (rps_of(SERVERS[0]), rps_of(SERVERS[1]));
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
                    vs_tower_sessions: (server != SERVERS[1]).then_some(rps / ts),
                    vs_bare: (server != SERVERS[0]).then_some(rps / bare),
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
        "| route | c | server | req/s | p50 ms | p99 ms | vs tower-sessions | vs bare | Redis cmds/req | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {:.2} | {} |",
            r.route.path(),
            r.concurrency,
            r.server,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            ratio(r.vs_tower_sessions),
            ratio(r.vs_bare),
            r.commands,
            r.errors
        );
    }
    out
}

pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "round,server,route,concurrency,rps,p50_ms,p99_ms,redis_cmds_per_req,errors\n",
    );
    for s in samples {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.1},{:.3},{:.3},{:.3},{}",
            s.round,
            s.server,
            s.route.path(),
            s.concurrency,
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.commands,
            s.errors
        );
    }
    out
}

/// Which figure of a row a chart panel shows.
type Metric = fn(&Row) -> f64;

/// Two grouped bar charts, requests/s above and p99 below, one group per route and concurrency.
pub fn svg(rows: &[Row]) -> String {
    const COLOURS: [&str; 3] = ["#9e9e9e", "#e8833a", "#2f6db5"];
    let (width, panel, top) = (960.0, 260.0, 60.0);
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
        let x = 80.0 + i as f64 * 220.0;
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
        for (g, &(route, c)) in groups.iter().enumerate() {
            let gx = 50.0 + g as f64 * group_width;
            for (i, server) in SERVERS.iter().enumerate() {
                let v = value(route, c, server, *pick);
                let h = (panel - 40.0) * v / max;
                let x = gx + 10.0 + i as f64 * 40.0;
                let label = if p == 0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                };
                let _ = writeln!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"34\" height=\"{h:.1}\" fill=\"{}\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{label}</text>",
                    base - h,
                    COLOURS[i],
                    x + 17.0,
                    base - h - 4.0
                );
            }
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} c={c}</text>",
                gx + 70.0,
                base + 18.0,
                route.path()
            );
        }
    }
    out.push_str("</svg>\n");
    out
}
