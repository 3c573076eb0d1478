//! The README's promise that a session is readable from any language, kept: its "Reading a session
//! from Python" snippet, taken from README.md as it stands, runs under `/usr/bin/python3` (with
//! Debian's `python3-redis`) against a real `redis-server` holding a session the demo's routes
//! wrote, and must print what the session holds.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{Browser, RedisServer};

/// The Python that runs the snippet: a system interpreter, where Debian's `python3-redis` lives (a
/// `python3` earlier on the PATH may be another Python without the module).
const PYTHON: &str = "/usr/bin/python3";

/// The line of README.md that introduces the snippet; the ```` ```python ```` block after it is run.
const MARKER: &str = "Reading a session from Python:";

/// What the test puts before the snippet: the `request` a web framework would give it, holding the
/// browser's cookie, and `redis.Redis()` pointed at the test's server instead of the default port.
/// Port and token come as arguments: `python3 - PORT TOKEN`.
const HARNESS: &str = r#"import functools, sys, types
import redis
redis.Redis = functools.partial(redis.Redis, host="127.0.0.1", port=int(sys.argv[1]))
request = types.SimpleNamespace(cookies={"sid": sys.argv[2]})
"#;

/// The body of the first ```` ```python ```` block after `MARKER` in README.md.
fn readme_snippet() -> String {
    let readme = include_str!("../README.md");
    let (_, after) = readme
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("README.md no longer has the line {MARKER:?}"));
    let (_, block) = after
        .split_once("```python\n")
        .unwrap_or_else(|| panic!("README.md has no ```python block after {MARKER:?}"));
    let (code, _) = block
        .split_once("\n```")
        .expect("the README's Python block is closed");
    code.to_owned()
}

/// Fails, naming the package, unless the system Python can import `redis`.
fn require_python_redis() {
    let status = Command::new(PYTHON)
        .args(["-c", "import redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("{PYTHON} is needed to run the README's Python (apt-get install python3): {e}")
        });
    assert!(
        status.success(),
        "{PYTHON} cannot import redis: the cross-language test needs Debian's package \
         `python3-redis` (apt-get install python3-redis)"
    );
}

/// Runs the README's snippet, behind the harness, against the server on `port` with the cookie
/// value `token`; returns what it printed.
fn run_snippet(port: u16, token: &str) -> String {
    let script = format!("{HARNESS}\n{}\n", readme_snippet());
    let mut child = Command::new(PYTHON)
        .args(["-", &port.to_string(), token])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {PYTHON}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the README's Python snippet failed ({}):\n{}\n--- script ---\n{script}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the snippet prints UTF-8")
}

#[tokio::test]
async fn the_readme_python_snippet_reads_the_session() {
    require_python_redis();
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    for _ in 0..3 {
        browser.get("/counter").await;
    }
    browser.post_form("/login", "user=alice").await;
    let token = browser.cookie.clone().expect("the session has a cookie");

    // What the session holds, as the application sees it.
    let count = browser.get("/counter/peek").await.body;
    let user = browser.get("/me").await.body;
    assert_eq!((count.as_str(), user.as_str()), ("3", "alice"));

    let printed = run_snippet(server.port, &token);
    assert_eq!(
        printed.trim_end(),
        format!("{count} {user}"),
        "the README's snippet prints `count user` as the session holds them"
    );
}
