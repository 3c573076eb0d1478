//! Sessions shared with a real Laravel HTTP app (`tests/laravel`: Laravel 8.83 from Debian's
//! `php-laravel-framework`, its HTTP kernel with `EncryptCookies` and `StartSession`, the `redis`
//! session driver over phpredis, the `web` session guard) on one `redis-server`, with either
//! cipher: a Laravel login seen by us, ours by Laravel, each side's cookie accepted by the other,
//! Laravel's `_token` and flash data kept through our writes, our logout ending its session.
//! Needs the `laravel` feature, and its example built: `cargo build --features laravel --examples
//! && cargo test --features laravel --test laravel`.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use axum::http::StatusCode;
use axum_redis_session::{Format, SessionLayer};
use support::{request_with_cookie, Browser, ExampleProcess, RedisServer};
use testkit::Service;

const APP_KEY: &str = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "base64:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const COOKIE: &str = "laravel_session";
/// Where Laravel's `web` guard keeps the user id.
const WEB_GUARD: &str = "login_web_59ba36addc2b2f9401580f014c7f58ea4e30989d";

/// The Laravel app of `tests/laravel`, served by `php -S` on a free port.
struct Laravel {
    service: Service,
    dir: PathBuf,
}

impl Laravel {
    /// Starts the app on `server`'s Redis with `cipher`; its caches and log go to a fresh folder.
    fn start(server: &RedisServer, cipher: &str) -> Self {
        let port = server.port.to_string();
        let dir = std::env::temp_dir().join(format!("laravel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        let service = Service::serve(
            "laravel",
            Command::new("sh")
                .args([
                    "-c",
                    r#"exec php -S "$ADDR" -t tests/laravel/public tests/laravel/public/index.php"#,
                ])
                .env("APP_KEY", APP_KEY)
                .env("APP_CIPHER", cipher)
                .env("REDIS_PORT", &port)
                .env("APP_PACKAGES_CACHE", dir.join("packages.php"))
                .env("APP_SERVICES_CACHE", dir.join("services.php"))
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap())),
            || read(&log),
        )
        .expect("php8.2-cli, php-redis and php-laravel-framework are installed");
        Self { service, dir }
    }

    /// `GET path` with the session cookie `cookie`, if any: the body, and the cookie Laravel sets.
    fn get(&self, path: &str, cookie: Option<&str>) -> (String, String) {
        let cookie = cookie.map(|value| format!("{COOKIE}={value}"));
        let reply = request_with_cookie(self.service.port, "GET", path, cookie.as_deref(), "");
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let set = reply.header("set-cookie").expect("Laravel sets its cookie");
        let value = set.split(';').next().unwrap();
        let value = value
            .strip_prefix(&format!("{COOKIE}="))
            .unwrap()
            .to_owned();
        (reply.body, value)
    }

    /// The whole session as Laravel reads it (`/show`), and the cookie it sets.
    fn show(&self, cookie: &str) -> (serde_json::Value, String) {
        let (body, cookie) = self.get("/show", Some(cookie));
        (serde_json::from_str(&body).unwrap(), cookie)
    }
}

impl Drop for Laravel {
    fn drop(&mut self) {
        self.service.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The Redis key of the session Laravel's `/show` describes, found by its `_token`.
fn key_holding(server: &RedisServer, token: &str) -> String {
    let keys = server.cli(&["KEYS", "laravel_database_laravel_cache:*"]);
    let found: Vec<&str> = keys
        .lines()
        .filter(|key| server.cli(&["GET", key]).contains(token))
        .collect();
    assert_eq!(found.len(), 1, "{keys}");
    found[0].to_owned()
}

async fn shares_a_login_with_laravel(cipher: &str) {
    let server = RedisServer::start();
    let laravel = Laravel::start(&server, cipher);
    let format = Format::laravel(APP_KEY)
        .unwrap()
        .with_laravel_cipher(cipher)
        .unwrap();
    let store = support::store_on(&server).await.with_format(format);
    let app = support::demo::app(SessionLayer::new(store).with_secure(false));

    // Laravel's login and values, with a flash message for the next request.
    let (_, first) = laravel.get("/put?key=name&value=h%C3%A9llo", None);
    let (_, cookie) = laravel.get("/login?id=42", Some(&first));
    let (before, cookie) = laravel.show(&cookie);
    let (_, cookie) = laravel.get("/flash?value=saved", Some(&cookie));
    let token = before["_token"].as_str().unwrap().to_owned();
    let key = key_holding(&server, &token);

    // Seen by us; our write keeps `_token`, the flash message and the login as Laravel wrote them.
    let mut browser = Browser::with_cookie(app.clone(), Some(cookie)).with_cookie_name(COOKIE);
    assert_eq!(browser.get("/me").await.body, "42");
    assert_eq!(browser.get("/kv/name").await.body, "héllo");
    assert_eq!(
        browser.put("/kv/ours", "from axum").await.status,
        StatusCode::NO_CONTENT
    );
    let ttl: i64 = server.cli(&["TTL", &key]).trim().parse().unwrap();
    assert!((7000..=7200).contains(&ttl), "TTL {ttl}");
    let cookie = browser.cookie.clone().unwrap();
    let (after, cookie) = laravel.show(&cookie);
    assert_eq!(after["_token"], before["_token"]);
    assert_eq!(after["status"], "saved", "{after}");
    assert_eq!(
        after["_flash"],
        serde_json::json!({"old": ["status"], "new": []})
    );
    assert_eq!(after["ours"], "from axum");
    assert_eq!(laravel.get("/me", Some(&cookie)).0, "42");
    // Laravel ages its flash data as ever: the message is gone on the request after.
    assert_eq!(laravel.show(&cookie).0.get("status"), None);

    // Our login, under a new id, seen by Laravel; the old key is gone.
    let mut browser = Browser::with_cookie(app.clone(), Some(cookie)).with_cookie_name(COOKIE);
    assert_eq!(
        browser.post_form("/login", "user=7").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");
    let ours = browser.cookie.clone().unwrap();
    let (me, ours) = laravel.get("/me", Some(&ours));
    assert_eq!(me, "7");
    let (session, ours) = laravel.show(&ours);
    assert_eq!(session["_token"], before["_token"], "{session}");
    assert_eq!(session["name"], "héllo");

    // Our logout ends the session for Laravel too.
    let mut browser =
        Browser::with_cookie(app.clone(), Some(ours.clone())).with_cookie_name(COOKIE);
    assert_eq!(
        browser.post_form("/logout", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(laravel.get("/me", Some(&ours)).0, "guest");

    // A session we create first is Laravel's too, and our values are its.
    let mut fresh = Browser::new(app.clone()).with_cookie_name(COOKIE);
    assert_eq!(
        fresh.put("/kv/name", "ünïcode").await.status,
        StatusCode::NO_CONTENT
    );
    let (session, _) = laravel.show(fresh.cookie.as_deref().unwrap());
    assert_eq!(session["name"], "ünïcode", "{session}");

    // Laravel's cookie for that session's id, but made with another APP_KEY, fails our MAC check:
    // a new session for us, and the session it names is left as it was.
    let (_, theirs) = laravel.get("/put?key=kept&value=yes", None);
    let (before, _) = laravel.show(&theirs);
    let key = key_holding(&server, before["_token"].as_str().unwrap());
    let stored = server.cli(&["GET", &key]);
    let id = key.strip_prefix("laravel_database_laravel_cache:").unwrap();
    let forged = support::php_output(&[
        "tests/php/laravel_cookie.php",
        OTHER_KEY,
        cipher,
        "encrypt",
        COOKIE,
        id,
    ]);
    let mut stranger = Browser::with_cookie(app, Some(forged)).with_cookie_name(COOKIE);
    assert_eq!(stranger.get("/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        stranger.put("/kv/kept", "no").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(server.cli(&["GET", &key]), stored);
}

#[tokio::test]
async fn a_login_is_shared_with_a_laravel_app_with_aes_256_cbc_cookies() {
    shares_a_login_with_laravel("AES-256-CBC").await;
}

#[tokio::test]
async fn a_login_is_shared_with_a_laravel_app_with_aes_256_gcm_cookies() {
    shares_a_login_with_laravel("AES-256-GCM").await;
}

/// Runs `tests/php/laravel_next.php` (Laravel 9–13's bytes restated with PHP's own functions) and
/// returns what it prints.
fn laravel_next(args: &[&str]) -> String {
    support::php_output(&[&["tests/php/laravel_next.php"], args].concat())
}

/// What Laravel 8.83 cannot show: a session of Laravel 11+ (no `:` after the cache prefix, a
/// cookie made with a key since rotated into `APP_PREVIOUS_KEYS`) or of a 12.1+ skeleton (hyphens
/// in the key and the cookie's name), in either serialisation, read and written by us, and ours
/// read back by PHP's own functions with the current key.
#[tokio::test]
async fn laravel_11_to_13_sessions_are_shared_as_phps_own_functions_make_them() {
    let server = RedisServer::start();
    let port = server.port.to_string();
    let settings = [
        (
            "laravel_database_laravel_cache_",
            "laravel_session",
            "AES-256-CBC",
            "php",
        ),
        (
            "laravel-database-laravel-cache-",
            "laravel-session",
            "AES-256-GCM",
            "json",
        ),
    ];
    for (prefix, cookie, cipher, serialization) in settings {
        let format = Format::laravel(APP_KEY)
            .and_then(|format| format.with_laravel_previous_keys([OTHER_KEY]))
            .and_then(|format| format.with_laravel_cipher(cipher))
            .and_then(|format| format.with_laravel_serialization(serialization))
            .unwrap()
            .with_key_prefix(prefix);
        let store = support::store_on(&server).await.with_format(format);
        let layer = SessionLayer::new(store)
            .with_secure(false)
            .with_cookie_name(cookie);
        let app = support::demo::app(layer);

        let attributes = serde_json::json!({
            "_token": "t".repeat(40),
            WEB_GUARD: 42,
            "name": "héllo",
            "_flash": {"old": [], "new": []},
        });
        let old_cookie = laravel_next(&[
            "write",
            &port,
            prefix,
            cookie,
            OTHER_KEY,
            cipher,
            serialization,
            &attributes.to_string(),
        ]);
        let mut browser = Browser::with_cookie(app, Some(old_cookie)).with_cookie_name(cookie);
        assert_eq!(browser.get("/me").await.body, "42", "{prefix}");
        assert_eq!(browser.get("/kv/name").await.body, "héllo");
        assert_eq!(
            browser.put("/kv/ours", "from axum").await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            browser.post_form("/login", "user=7").await.status,
            StatusCode::NO_CONTENT
        );
        let ours = browser.cookie.clone().unwrap();
        let keys = server.cli(&["KEYS", &format!("{prefix}*")]);
        assert_eq!(keys.lines().count(), 1, "{keys}");
        let ttl: i64 = server.cli(&["TTL", keys.trim()]).trim().parse().unwrap();
        assert!((7000..=7200).contains(&ttl), "TTL {ttl}");

        let read = |keys: &str| {
            laravel_next(&[
                "read",
                &port,
                prefix,
                cookie,
                keys,
                cipher,
                serialization,
                &ours,
            ])
        };
        let seen: serde_json::Value = serde_json::from_str(&read(APP_KEY)).unwrap();
        assert_eq!(
            seen,
            serde_json::json!({
                "_token": "t".repeat(40),
                WEB_GUARD: 7,
                "name": "héllo",
                "_flash": {"old": [], "new": []},
                "ours": "from axum",
            }),
            "{prefix}"
        );
        // Our cookie is made with the current key only: the one rotated out does not read it.
        assert_eq!(read(OTHER_KEY), "(null)");
    }
}

/// `examples/shared_with_laravel.rs` as a user runs it: a login made through Laravel's `web`
/// guard is served by it, and its logout signs Laravel out too.
#[test]
fn the_laravel_example_serves_a_login_laravel_made_and_ends_it() {
    let server = RedisServer::start();
    let laravel = Laravel::start(&server, "AES-256-CBC");
    let (_, cookie) = laravel.get("/login?id=42", None);
    let url = server.url();
    let example = ExampleProcess::start(
        "shared_with_laravel",
        &[("REDIS_URL", &url), ("LARAVEL_APP_KEY", APP_KEY)],
    );
    let header = format!("{COOKIE}={cookie}");
    let me = request_with_cookie(example.port, "GET", "/me", Some(&header), "");
    assert_eq!(me.body, "42");
    let logout = request_with_cookie(example.port, "POST", "/logout", Some(&header), "");
    assert_eq!(logout.status, 200);
    assert_eq!(laravel.get("/me", Some(&cookie)).0, "guest");
}

/// While a Laravel request holds its session's `block()` lock, our write waits for it: Laravel
/// then writes back the value it read, and ours lands on top of it, so both changes stay.
#[tokio::test]
async fn our_write_waits_while_laravel_holds_its_session_block_lock_and_both_changes_stay() {
    let server = RedisServer::start();
    let laravel = Laravel::start(&server, "AES-256-CBC");
    let (session, cookie) = laravel.show(&laravel.get("/put?key=first&value=1", None).1);
    let key = key_holding(&server, session["_token"].as_str().unwrap());
    let id = key.strip_prefix("laravel_database_laravel_cache:").unwrap();
    let lock = format!("laravel_database_laravel_cache:session:{id}");
    let store = support::store_on(&server)
        .await
        .with_format(Format::laravel(APP_KEY).unwrap());
    let app = support::demo::app(SessionLayer::new(store).with_secure(false));
    let mut browser = Browser::with_cookie(app, Some(cookie.clone())).with_cookie_name(COOKIE);

    let port = laravel.service.port;
    let header = format!("{COOKIE}={cookie}");
    let slow =
        std::thread::spawn(move || request_with_cookie(port, "GET", "/slow", Some(&header), ""));
    let waited = support::put_once_unlocked(&server, &lock, &mut browser).await;
    assert_eq!(slow.join().unwrap().body, "ok");
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "{waited:?}"
    );
    let (session, _) = laravel.show(&cookie);
    assert_eq!(session["laravel"], "x", "{session}");
    assert_eq!(session["ours"], "y", "{session}");
    assert_eq!(session["first"], "1", "{session}");
}

/// What each request costs Redis in the Laravel format: as in every foreign format
/// ([`support::foreign_costs`]).
#[tokio::test]
async fn each_laravel_request_costs_the_round_trips_it_should() {
    let server = RedisServer::start();
    let format = Format::laravel(APP_KEY).unwrap();
    assert_eq!(
        support::foreign_costs(&server, format, COOKIE).await,
        support::FOREIGN_COSTS
    );
}
