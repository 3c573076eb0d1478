//! Sessions shared with the real frameworks on one `redis-server`:
//! - PHP's own session module (phpredis, `session.save_handler = redis`, Debian's `php8.2-cli` with
//!   `php-redis`): values both ways, a nested array and an object PHP wrote kept byte for byte by
//!   our writes, a login PHP sees, our logout ending the PHP session, concurrent writes of ours all
//!   kept, our write waiting while phpredis' session lock is held; a hand-written save handler
//!   (`session:{id}` by SETEX); a PHP app and the demo behind one nginx, one browser's cookies;
//! - an Express app with express-session and connect-redis (`tests/express/app.js`): values both
//!   ways, our cookie accepted, a forged one refused, a TTL on the key after either side writes;
//! - the round trips each request costs, and the php and express examples run as users run them.

mod support;

use std::process::Command;

use axum::http::StatusCode;
use axum_redis_session::{Format, SessionLayer};
use support::{request_with_cookie, Browser, ExampleProcess, Nginx, RedisServer};
use testkit::Service;

/// PHP's arguments to run `code` with its session `id` started on `server` through phpredis (with
/// its session lock when `locking`); the session is written back when the script ends.
fn php_args(server: &RedisServer, id: &str, code: &str, locking: bool) -> Vec<String> {
    let script = format!("session_id($argv[1]); session_start(); {code}");
    [
        "-d".to_owned(),
        "session.save_handler=redis".to_owned(),
        "-d".to_owned(),
        format!("session.save_path=tcp://127.0.0.1:{}", server.port),
        "-d".to_owned(),
        "session.use_strict_mode=0".to_owned(),
        "-d".to_owned(),
        format!("redis.session.locking_enabled={}", u8::from(locking)),
        "-r".to_owned(),
        script,
        id.to_owned(),
    ]
    .into()
}

/// The Express app of `tests/express` on `server`'s Redis, verifying with `secrets` (`,` between).
fn express_app(server: &RedisServer, secrets: &str) -> Service {
    Service::serve(
        "express",
        Command::new("node")
            .arg("tests/express/app.js")
            .env("REDIS_URL", server.url())
            .env("SESSION_SECRET", secrets),
        String::new,
    )
    .expect("node is installed and `npm ci --prefix tests/express` has run")
}

/// Runs `code` in PHP with its session `id` (see [`php_args`]), and returns what it prints.
fn php_session(server: &RedisServer, id: &str, code: &str) -> String {
    let args = php_args(server, id, code, false);
    support::php_output(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[tokio::test]
async fn a_session_is_shared_with_phps_own_session_module_both_ways() {
    let server = RedisServer::start();
    let store = support::store_on(&server).await.with_format(Format::php());
    let app = support::demo::app(SessionLayer::new(store).with_secure(false));
    let mut browser = Browser::new(app).with_cookie_name("PHPSESSID");

    // Ours first: PHP accepts the session we created and reads our values.
    assert_eq!(
        browser.put("/kv/name", "héllo").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(browser.get("/counter").await.body, "1");
    let id = browser.cookie.clone().expect("a PHPSESSID cookie");
    let key = format!("PHPREDIS_SESSION:{id}");
    assert_eq!(
        server.cli(&["GET", &key]).trim(),
        "name|s:6:\"héllo\";count|i:1;"
    );
    let read = php_session(
        &server,
        &id,
        r#"echo json_encode([$_SESSION["name"], $_SESSION["count"]]);"#,
    );
    assert_eq!(read, r#"["h\u00e9llo",1]"#);

    // PHP's values, read by us; its nested array survives our writes byte for byte.
    php_session(
        &server,
        &id,
        r#"$_SESSION["nested"] = ["a" => [1, 2, ["x" => "é"]], "n" => 42, 7 => 1.5];
        $_SESSION["object"] = new ArrayObject(["k" => "é"]);"#,
    );
    let nested = "nested|a:3:{s:1:\"a\";a:3:{i:0;i:1;i:1;i:2;i:2;a:1:{s:1:\"x\";s:2:\"é\";}}s:1:\"n\";i:42;i:7;d:1.5;}";
    let stored = server.cli(&["GET", &key]);
    assert!(stored.contains(nested));
    // A PHP object maps to no JSON: kept as PHP wrote it.
    // The last entry PHP wrote.
    let object = stored[stored.find("object|").unwrap()..].trim_end();
    assert!(
        object.starts_with("object|O:11:\"ArrayObject\""),
        "{object}"
    );
    assert_eq!(
        browser.get("/kv/object").await.status,
        StatusCode::NOT_FOUND
    );
    let json: serde_json::Value =
        serde_json::from_str(&browser.get("/kv/nested").await.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"a": [1, 2, {"x": "é"}], "n": 42, "7": 1.5})
    );
    assert_eq!(
        browser.put("/kv/other", "v").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(browser.get("/counter").await.body, "2");
    let stored = server.cli(&["GET", &key]);
    assert!(stored.contains(nested), "{stored}");
    assert!(stored.contains(object), "{stored}");
    assert!(stored.contains("other|s:1:\"v\";"), "{stored}");
    let ttl: i64 = server.cli(&["TTL", &key]).trim().parse().unwrap();
    assert!((7000..=7200).contains(&ttl), "TTL {ttl}");
    // PHP reads its object back from our write.
    assert_eq!(
        php_session(
            &server,
            &id,
            r#"echo get_class($_SESSION["object"]), $_SESSION["object"]["k"];"#
        ),
        "ArrayObjecté"
    );

    // Our login, seen by PHP under the new id; the old key is gone.
    assert_eq!(
        browser.post_form("/login", "user=alice").await.status,
        StatusCode::NO_CONTENT
    );
    let new_id = browser.cookie.clone().unwrap();
    assert_ne!(new_id, id);
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");
    assert_eq!(
        php_session(&server, &new_id, r#"echo $_SESSION["user"];"#),
        "alice"
    );
    assert_eq!(browser.get("/me").await.body, "alice");

    // Our logout ends the PHP session too.
    assert_eq!(
        browser.post_form("/logout", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .cli(&["EXISTS", &format!("PHPREDIS_SESSION:{new_id}")])
            .trim(),
        "0"
    );
    assert_eq!(
        php_session(&server, &new_id, r#"echo count($_SESSION);"#),
        "0"
    );
}

/// Our writes are compare-and-set of PHP's whole value: eight concurrent increments on one session
/// all count, and a write carrying the id of a session logged out meanwhile never brings it back.
#[tokio::test]
async fn concurrent_writes_to_a_php_session_all_count_and_a_logout_stays_done() {
    let server = RedisServer::start();
    let store = support::store_on(&server).await.with_format(Format::php());
    let app = support::demo::app(SessionLayer::new(store).with_secure(false));
    let mut browser = Browser::new(app).with_cookie_name("PHPSESSID");
    assert_eq!(
        browser.put("/kv/a", "x").await.status,
        StatusCode::NO_CONTENT
    );
    let id = browser.cookie.clone().unwrap();
    let key = format!("PHPREDIS_SESSION:{id}");

    let increments: Vec<_> = (0..8)
        .map(|_| {
            let mut browser = browser.clone();
            tokio::spawn(async move { browser.post_form("/counter/incr", "").await.status })
        })
        .collect();
    for increment in increments {
        assert_eq!(increment.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(server.cli(&["GET", &key]).trim(), "a|s:1:\"x\";count|i:8;");

    let mut stale = browser.clone();
    assert_eq!(
        browser.post_form("/logout", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");
    // The stale cookie's write starts a new session under a fresh id; the old key stays gone.
    assert_eq!(stale.put("/kv/b", "y").await.status, StatusCode::NO_CONTENT);
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");
    assert_ne!(stale.cookie.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn a_session_is_shared_with_express_session_and_connect_redis_both_ways() {
    let server = RedisServer::start();
    let format = Format::express(["new secret", "kc"]).unwrap();
    let store = support::store_on(&server).await.with_format(format);
    let app = support::demo::app(SessionLayer::new(store).with_secure(false));
    let mut browser = Browser::new(app.clone()).with_cookie_name("connect.sid");
    assert_eq!(
        browser.put("/kv/name", "héllo").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        browser.post_form("/login", "user=bob").await.status,
        StatusCode::NO_CONTENT
    );
    let cookie = format!("connect.sid={}", browser.cookie.clone().unwrap());

    let signed = browser.cookie.clone().unwrap();
    let id = signed
        .strip_prefix("s%3A")
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let key = format!("sess:{id}");
    let ttl = |server: &RedisServer| -> i64 { server.cli(&["TTL", &key]).trim().parse().unwrap() };
    let ours = ttl(&server);
    assert!(
        (7000..=7200).contains(&ours),
        "TTL {ours} after our write of {key}"
    );

    // express verifies with any of its secrets; the first, which signed ours, comes second there.
    let express = express_app(&server, "kc,new secret");
    let shown = request_with_cookie(express.port, "GET", "/show", Some(&cookie), "");
    let shown: serde_json::Value = serde_json::from_str(&shown.body).unwrap();
    assert_eq!(
        shown,
        serde_json::json!({
            "cookie": {"originalMaxAge": null, "expires": null, "httpOnly": true, "path": "/"},
            "name": "héllo",
            "user": "bob",
        })
    );

    assert_eq!(
        request_with_cookie(express.port, "GET", "/set", Some(&cookie), "").body,
        "ok"
    );
    assert!(
        (1..=86_400).contains(&ttl(&server)),
        "TTL after express wrote"
    );
    assert_eq!(browser.get("/kv/fromExpress").await.body, r#"{"n":[1,2]}"#);
    assert_eq!(browser.get("/me").await.body, "bob");

    // A forged signature is a new session; the session it named is left as it was.
    let before = server.cli(&["GET", &key]);
    let forged = format!("s%3A{id}.AAAA");
    let mut stranger = Browser::with_cookie(app, Some(forged)).with_cookie_name("connect.sid");
    assert_eq!(stranger.get("/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        stranger.put("/kv/name", "mallory").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(server.cli(&["GET", &key]), before);
    assert!(!stranger.cookie.as_deref().unwrap().contains(id));
}

/// What each request costs Redis in the php and express formats (Laravel's: `tests/laravel.rs`),
/// counted with MONITOR (see [`support::foreign_costs`]).
#[tokio::test]
async fn each_foreign_request_costs_the_round_trips_it_should() {
    let server = RedisServer::start();
    let express = Format::express(["s3cret"]).unwrap();
    for (format, cookie) in [(Format::php(), "PHPSESSID"), (express, "connect.sid")] {
        assert_eq!(
            support::foreign_costs(&server, format, cookie).await,
            support::FOREIGN_COSTS,
            "{cookie}"
        );
    }
}

/// `examples/shared_with_php.rs` as a user runs it: a login and a nested array PHP stored are
/// served by it, and its logout ends the PHP session.
#[test]
fn the_php_example_serves_a_login_php_made_and_ends_it() {
    let server = RedisServer::start();
    let id = "a2c4e6g8i0k2m4o6q8s0u2w4y6z8b0d2";
    php_session(
        &server,
        id,
        r#"$_SESSION["user"] = "alice"; $_SESSION["cart"] = [1, ["x" => "é"]];"#,
    );
    let example = ExampleProcess::start("shared_with_php", &[("REDIS_URL", &server.url())]);
    let cookie = format!("PHPSESSID={id}");
    let get = |path| request_with_cookie(example.port, "GET", path, Some(&cookie), "").body;
    assert_eq!(get("/me"), "alice");
    assert_eq!(get("/cart"), r#"[1,{"x":"é"}]"#);
    let logout = request_with_cookie(example.port, "POST", "/logout", Some(&cookie), "");
    assert_eq!(logout.status, 200);
    let key = format!("PHPREDIS_SESSION:{id}");
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");
    assert_eq!(get("/me"), "nobody");
}

/// `examples/shared_with_express.rs` as a user runs it: a login made by the Express app is served
/// by it.
#[test]
fn the_express_example_serves_a_login_express_made() {
    let server = RedisServer::start();
    let express = express_app(&server, "kc");
    let login = request_with_cookie(express.port, "GET", "/login?user=bob", None, "");
    assert_eq!(login.body, "ok");
    let set = login.header("set-cookie").expect("express' cookie");
    let cookie = set.split(';').next().unwrap().to_owned();
    let url = server.url();
    let example = ExampleProcess::start(
        "shared_with_express",
        &[("REDIS_URL", &url), ("SESSION_SECRET", "kc")],
    );
    let me = request_with_cookie(example.port, "GET", "/me", Some(&cookie), "");
    assert_eq!(me.body, "bob");
}

/// While PHP holds phpredis' session lock (`redis.session.locking_enabled`), our write waits for
/// it: PHP then writes back the value it read, and ours lands on top of it, so both changes stay.
/// Without the wait, PHP's save would overwrite ours.
#[tokio::test]
async fn our_write_waits_while_php_holds_its_session_lock_and_both_changes_stay() {
    let server = RedisServer::start();
    let store = support::store_on(&server).await.with_format(Format::php());
    let app = support::demo::app(SessionLayer::new(store).with_secure(false));
    let mut browser = Browser::new(app).with_cookie_name("PHPSESSID");
    browser.put("/kv/first", "1").await;
    let id = browser.cookie.clone().unwrap();
    let lock = format!("PHPREDIS_SESSION:{id}_LOCK");

    let code = r#"$_SESSION["php"] = "x"; usleep(700000);"#;
    let mut holder = Command::new("php")
        .args(php_args(&server, &id, code, true))
        .spawn()
        .unwrap();
    let waited = support::put_once_unlocked(&server, &lock, &mut browser).await;
    assert!(holder.wait().unwrap().success());
    assert_eq!(server.cli(&["EXISTS", &lock]).trim(), "0");
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "{waited:?}"
    );
    let stored = server.cli(&["GET", &format!("PHPREDIS_SESSION:{id}")]);
    assert!(stored.contains(r#"php|s:1:"x";"#), "{stored}");
    assert!(stored.contains(r#"ours|s:1:"y";"#), "{stored}");
}

/// A plain PHP app (`tests/php/app.php`, phpredis sessions in strict mode) and the demo behind one
/// nginx, as one host, with one client keeping its cookies as a browser does: PHP's login is seen
/// by the demo, a value the demo stores is read by PHP, and the demo's logout signs the client
/// out of PHP too, even with the old cookie sent again.
#[test]
fn a_php_app_and_the_demo_behind_one_nginx_share_one_browsers_login() {
    let server = RedisServer::start();
    let redis_port = server.port.to_string();
    let php = Service::serve(
        "php",
        Command::new("sh")
            .args([
                "-c",
                r#"exec php -d session.save_handler=redis -d "session.save_path=tcp://127.0.0.1:$REDIS_PORT" -d session.use_strict_mode=1 -S "$ADDR" tests/php/app.php"#,
            ])
            .env("REDIS_PORT", &redis_port)
            .stderr(std::process::Stdio::null()),
        String::new,
    )
    .expect("php8.2-cli with php-redis is installed");
    let url = server.url();
    let demo = ExampleProcess::start("demo", &[("REDIS_URL", &url), ("SESSION_FORMAT", "php")]);
    let nginx = Nginx::routing(&[("/php/", &[php.port]), ("/", &[demo.port])]);

    let mut jar: Option<String> = None;
    let port = nginx.port;
    assert_eq!(
        send(port, &mut jar, "GET", "/php/login?user=alice", ""),
        (200, "ok".to_owned())
    );
    let php_id = jar.clone().expect("PHP's cookie");
    assert_eq!(
        send(port, &mut jar, "GET", "/me", ""),
        (200, "alice".to_owned())
    );
    assert_eq!(send(port, &mut jar, "PUT", "/kv/theme", "dark").0, 204);
    assert_eq!(
        send(port, &mut jar, "GET", "/php/get?key=theme", ""),
        (200, r#""dark""#.to_owned())
    );
    assert_eq!(send(port, &mut jar, "POST", "/logout", "").0, 204);
    assert_eq!(jar, None, "the demo's logout removes the cookie");
    assert_eq!(
        send(port, &mut jar, "GET", "/php/me", ""),
        (200, "nobody".to_owned())
    );
    jar = Some(php_id.clone());
    assert_eq!(send(port, &mut jar, "GET", "/php/me", "").1, "nobody");
    let key = format!("PHPREDIS_SESSION:{php_id}");
    assert_eq!(server.cli(&["GET", &key]).trim(), "");

    // A session the demo creates first is one PHP's strict mode accepts: its key exists.
    jar = None;
    assert_eq!(send(port, &mut jar, "PUT", "/kv/theme", "light").0, 204);
    let ours = jar.clone().expect("the demo's cookie");
    assert_eq!(
        send(port, &mut jar, "GET", "/php/get?key=theme", ""),
        (200, r#""light""#.to_owned())
    );
    assert_eq!(jar, Some(ours));
}

/// One request to `port` with the `PHPSESSID` cookie in `jar`, which keeps what the response sets
/// (or removes), as a browser's cookie jar: the status and the body.
fn send(
    port: u16,
    jar: &mut Option<String>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let cookie = jar.as_ref().map(|id| format!("PHPSESSID={id}"));
    let reply = request_with_cookie(port, method, path, cookie.as_deref(), body);
    for (name, value) in &reply.headers {
        let Some(set) = value
            .strip_prefix("PHPSESSID=")
            .filter(|_| name == "set-cookie")
        else {
            continue;
        };
        let id = set.split(';').next().unwrap();
        let removed = id.is_empty() || value.contains("Max-Age=0");
        *jar = (!removed).then(|| id.to_owned());
    }
    (reply.status, reply.body)
}

/// A hand-written PHP save handler (`tests/php/handler.php`: `session:{id}` by SETEX) is the php
/// format with its prefix: its values read by us, ours by it, every key with a TTL.
#[tokio::test]
async fn a_session_is_shared_with_a_hand_written_php_save_handler() {
    let server = RedisServer::start();
    let port = server.port.to_string();
    let handler =
        |id: &str, code: &str| support::php_output(&["tests/php/handler.php", &port, id, code]);
    let format = Format::php().with_key_prefix("session:");
    let store = support::store_on(&server).await.with_format(format);
    let app = support::demo::app(SessionLayer::new(store).with_secure(false));
    let mut browser = Browser::new(app).with_cookie_name("PHPSESSID");
    assert_eq!(
        browser.put("/kv/name", "héllo").await.status,
        StatusCode::NO_CONTENT
    );
    let id = browser.cookie.clone().unwrap();
    let key = format!("session:{id}");
    let ttl: i64 = server.cli(&["TTL", &key]).trim().parse().unwrap();
    assert!((7000..=7200).contains(&ttl), "TTL {ttl}");
    assert_eq!(
        handler(&id, r#"echo $_SESSION["name"]; $_SESSION["n"] = [1, 2];"#),
        "héllo"
    );
    let ttl: i64 = server.cli(&["TTL", &key]).trim().parse().unwrap();
    assert!((1..=1440).contains(&ttl), "TTL {ttl} after PHP's SETEX");
    assert_eq!(browser.get("/kv/n").await.body, "[1,2]");
}
