//! The behaviour suite (docs/guarantees.md and the README's Configuration), written once and run against
//! every store: each behaviour below is an `async fn(Kind)`, and `suite!` runs it against memory
//! and a real `redis-server`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use axum_redis_session::fred::prelude::Config;
use axum_redis_session::SessionEventKind::{
    Created, Cycle, Destroy, DestroyEverywhere, Login, Revoke, RevokeOthers,
};
use axum_redis_session::{
    Backend, MemoryStore, MetricsSnapshot, SessionEvent, SessionEventKind, SessionLayer,
};
use support::{session_key, unissued_token};
use support::{Browser, Cluster, Gate, RedisServer, SentinelGroup, TlsFiles};
use time::Duration;

#[derive(Clone)]
enum Kind {
    Memory,
    /// A `redis-server` of the test's own.
    Redis,
    /// The same, with the store's near-cache on.
    Cached,
    /// A topology shared by the whole suite; each behaviour gets its own key prefix on it.
    Shared(Config),
}

static PREFIXES: AtomicUsize = AtomicUsize::new(0);

/// An app on a fresh store of `kind`, with its layer configured by `configure`.
struct Harness {
    app: Router,
    gate: Gate,
    layer: SessionLayer,
    _redis: Option<RedisServer>,
}

impl Harness {
    async fn new(kind: Kind, configure: impl FnOnce(SessionLayer) -> SessionLayer) -> Self {
        // Each harness on a shared server writes under its own prefix.
        let prefix = format!("t{}:session:", PREFIXES.fetch_add(1, Ordering::Relaxed));
        let (store, redis): (Backend, _) = match &kind {
            Kind::Memory => (MemoryStore::default().into(), None),
            Kind::Redis => {
                let server = RedisServer::start();
                (
                    support::store_on(&server)
                        .await
                        .with_key_prefix(prefix)
                        .into(),
                    Some(server),
                )
            }
            Kind::Cached => {
                let server = RedisServer::start();
                let store = support::store_on(&server).await.with_key_prefix(prefix);
                (store.with_near_cache(1000).into(), Some(server))
            }
            Kind::Shared(config) => {
                let store = support::connected_store(config.clone()).await;
                (store.with_key_prefix(prefix).into(), None)
            }
        };
        let layer = configure(SessionLayer::new(store));
        let gate = Gate::default();
        Self {
            app: support::app(layer.clone(), gate.clone()),
            gate,
            layer,
            _redis: redis,
        }
    }

    async fn default(kind: Kind) -> Self {
        Self::new(kind, |layer| layer).await
    }

    fn browser(&self) -> Browser {
        Browser::new(self.app.clone())
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.layer.metrics().snapshot()
    }
}

macro_rules! suite {
    ($($behaviour:ident),* $(,)?) => {
        /// Every behaviour in turn on one shared topology.
        async fn run_suite(config: Config) {
            $(
                eprintln!("behaviour: {}", stringify!($behaviour));
                $behaviour(Kind::Shared(config.clone())).await;
            )*
        }

        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                super::$behaviour(super::Kind::Memory).await
            })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                super::$behaviour(super::Kind::Redis).await
            })*
        }
        mod near_cache {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                super::$behaviour(super::Kind::Cached).await
            })*
        }
    };
}

suite!(
    counter_creates_then_updates_one_session,
    kv_values_are_stored_read_and_removed,
    cookie_is_set_only_when_a_session_is_created,
    reads_roll_the_idle_timeout_throttled,
    writes_roll_the_idle_timeout_once_it_runs_low,
    absolute_timeout_ends_an_active_session,
    a_cycled_session_keeps_its_absolute_deadline,
    cycle_id_keeps_data_and_kills_the_old_id,
    destroy_deletes_and_sends_a_matching_removal_cookie,
    logout_everywhere_ends_only_that_users_sessions,
    flash_is_read_exactly_once,
    oversized_change_is_refused_whole_with_413,
    server_error_responses_do_not_save,
    unknown_ids_are_never_adopted,
    concurrent_writes_to_different_keys_are_all_kept,
    logout_during_a_reading_request_stays_dead,
    logout_during_a_blind_write_stays_dead,
    malformed_cookies_are_no_session_and_never_fail,
    cookie_attributes_follow_the_security_defaults,
    persistent_cookie_carries_max_age,
    error_handler_shapes_session_errors,
    typed_sessions_keep_concurrent_changes_to_different_fields,
    concurrent_increments_all_count,
    an_increment_without_a_session_starts_one,
    an_increment_never_brings_back_a_destroyed_session,
    login_binds_the_user_and_never_keeps_the_old_id,
    login_fresh_drops_what_the_session_held,
    an_empty_user_is_refused_and_changes_nothing,
    a_logout_before_a_server_error_is_still_carried_out,
    the_user_reads_none_once_the_session_is_destroyed,
    sessions_per_user_are_capped_at_login,
    logout_everywhere_also_ends_the_asking_session,
    csrf_tokens_differ_on_every_call_and_all_verify,
    csrf_tokens_of_another_session_or_from_before_login_are_refused,
    malformed_csrf_tokens_are_refused_with_403,
    concurrent_first_csrf_tokens_of_one_session_all_verify,
    three_devices_are_listed_with_their_browsers_and_one_is_current,
    ending_a_device_by_its_handle_ends_only_that_session,
    logout_others_leaves_only_the_current_session,
    an_expired_session_is_never_listed,
    a_hook_hears_each_create_cycle_login_and_logout_once,
    a_hook_hears_logouts_everywhere_and_revokes_naming_the_sessions,
    a_hook_hears_nothing_of_refused_failed_or_read_only_requests,
    a_slow_hook_never_delays_a_response,
    a_panicking_hook_leaves_the_app_serving_and_hears_later_events,
    critical_sections_of_one_session_run_one_at_a_time,
    a_lock_holds_up_only_lockers_of_its_own_session,
    waiting_past_the_lock_bound_answers_409,
    a_lock_is_released_at_the_end_of_a_request_a_panic_or_a_dropped_request,
    a_holder_that_overran_its_lock_cannot_overwrite_the_next_holder,
    a_lock_is_renewed_for_as_long_as_its_holder_runs,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_on_a_cluster_of_three_masters_and_three_replicas() {
    let cluster = Cluster::start();
    run_suite(Config::from_url(&cluster.url()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_on_sentinel() {
    let group = SentinelGroup::start();
    run_suite(Config::from_url(&group.url()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_on_tls() {
    use axum_redis_session::fred::rustls::pki_types::pem::PemObject;
    use axum_redis_session::fred::rustls::pki_types::CertificateDer;
    use axum_redis_session::fred::rustls::{ClientConfig, RootCertStore};
    use axum_redis_session::fred::types::config::TlsConnector;

    let files = TlsFiles::generate();
    let server = files.server();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&files.ca).unwrap())
        .unwrap();
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = Config::from_url(&format!("rediss://127.0.0.1:{}", server.port)).unwrap();
    config.tls = Some(TlsConnector::from(client).into());
    run_suite(config).await;
}

async fn counter_creates_then_updates_one_session(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    assert_eq!(browser.get("/counter/peek").await.body, "0");
    assert_eq!(browser.get("/counter").await.body, "1");
    let first = browser.cookie.clone().expect("a session was created");
    assert_eq!(browser.get("/counter").await.body, "2");
    assert_eq!(browser.get("/counter/peek").await.body, "2");
    assert_eq!(
        browser.cookie.as_ref(),
        Some(&first),
        "the id stays the same"
    );
    let m = h.metrics();
    assert_eq!((m.creates, m.updates), (1, 1));
}

async fn kv_values_are_stored_read_and_removed(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    assert_eq!(
        browser.put("/kv/colour", "blue").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        browser.put("/kv/size", "L").await.status,
        StatusCode::NO_CONTENT
    );
    let colour = browser.get("/kv/colour").await;
    assert_eq!(
        (colour.status, colour.body.as_str()),
        (StatusCode::OK, "blue")
    );
    assert_eq!(
        browser.delete("/kv/colour").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        browser.get("/kv/colour").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(browser.get("/kv/size").await.body, "L");
    assert_eq!(
        browser.put("/kv/$user", "mallory").await.status,
        StatusCode::BAD_REQUEST
    );
}

async fn cookie_is_set_only_when_a_session_is_created(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    for path in ["/health", "/counter/peek", "/kv/none"] {
        assert_eq!(
            browser.get(path).await.set_cookie(),
            None,
            "{path} without a session"
        );
    }
    assert!(browser.get("/counter").await.set_cookie().is_some());
    for path in ["/counter", "/counter/peek", "/health"] {
        assert_eq!(
            browser.get(path).await.set_cookie(),
            None,
            "{path} on an existing session"
        );
    }
    assert_eq!(browser.put("/kv/a", "1").await.set_cookie(), None);
}

async fn reads_roll_the_idle_timeout_throttled(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_idle_timeout(Duration::seconds(2))).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    // Right after a write the TTL is fresh: a read must not rewrite it.
    browser.get("/counter/peek").await;
    assert_eq!((h.metrics().touches, h.metrics().touches_skipped), (0, 1));
    // Past a tenth of the idle timeout, a read rolls it, keeping the session alive past 2 s.
    tokio::time::sleep(StdDuration::from_millis(1200)).await;
    assert_eq!(browser.get("/counter/peek").await.body, "1");
    assert_eq!(h.metrics().touches, 1);
    tokio::time::sleep(StdDuration::from_millis(1200)).await;
    assert_eq!(
        browser.get("/counter/peek").await.body,
        "1",
        "alive 2.4 s after its last write"
    );
    // Left alone for longer than the idle timeout, it is gone.
    tokio::time::sleep(StdDuration::from_millis(2300)).await;
    assert_eq!(browser.get("/counter/peek").await.body, "0");
}

async fn writes_roll_the_idle_timeout_once_it_runs_low(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_idle_timeout(Duration::seconds(2))).await;
    let mut browser = h.browser();
    browser.put("/kv/a", "1").await;
    // Past a tenth of the idle timeout, a write rolls it, keeping the session alive past 2 s.
    tokio::time::sleep(StdDuration::from_millis(1200)).await;
    assert_eq!(
        browser.put("/kv/b", "2").await.status,
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(StdDuration::from_millis(1200)).await;
    assert_eq!(
        browser.get("/kv/a").await.body,
        "1",
        "alive 2.4 s after it was created"
    );
}

async fn absolute_timeout_ends_an_active_session(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_absolute_timeout(Duration::seconds(2))).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    for _ in 0..3 {
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        browser.get("/counter").await;
    }
    assert_eq!(browser.get("/counter/peek").await.body, "4");
    tokio::time::sleep(StdDuration::from_millis(700)).await;
    assert_eq!(
        browser.get("/counter/peek").await.body,
        "0",
        "dead 2.2 s after creation despite activity"
    );
}

/// A login (a cycle to a fresh id, across slots on a cluster) moves the session with the deadline
/// it was created with: it dies when the first id would have.
async fn a_cycled_session_keeps_its_absolute_deadline(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_absolute_timeout(Duration::seconds(2))).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let created = std::time::Instant::now();
    tokio::time::sleep(StdDuration::from_millis(1000)).await;
    browser.post_form("/login", "user=alice").await;
    assert_eq!(browser.get("/me").await.body, "alice");
    tokio::time::sleep_until((created + StdDuration::from_millis(2200)).into()).await;
    assert_eq!(
        browser.get("/me").await.status,
        StatusCode::UNAUTHORIZED,
        "dead 2.2 s after creation, the cycle notwithstanding"
    );
}

async fn cycle_id_keeps_data_and_kills_the_old_id(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let before = browser.cookie.clone().unwrap();
    let login = browser.post_form("/login", "user=alice").await;
    assert_eq!(login.status, StatusCode::NO_CONTENT);
    let after = browser.cookie.clone().unwrap();
    assert_ne!(before, after, "login moves the session to a new id");
    assert_eq!(browser.get("/me").await.body, "alice");
    assert_eq!(
        browser.get("/counter/peek").await.body,
        "1",
        "data moved with the id"
    );

    let mut old = Browser::with_cookie(h.app.clone(), Some(before));
    assert_eq!(old.get("/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old.get("/counter/peek").await.body, "0");
    assert_eq!(h.metrics().cycles, 1);
}

async fn destroy_deletes_and_sends_a_matching_removal_cookie(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_path("/").with_domain("example.com")).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let token = browser.cookie.clone().unwrap();
    let logout = browser.post_form("/logout", "").await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let removal = logout.set_cookie().expect("a removal cookie");
    for attribute in [
        "sid=;",
        "Max-Age=0",
        "Path=/",
        "Domain=example.com",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(removal.contains(attribute), "{removal} lacks {attribute}");
    }
    assert_eq!(logout.headers["cache-control"], "no-store");
    let mut old = Browser::with_cookie(h.app.clone(), Some(token));
    assert_eq!(old.get("/counter/peek").await.body, "0");
    assert_eq!(h.metrics().destroys, 1);
}

async fn logout_everywhere_ends_only_that_users_sessions(kind: Kind) {
    let h = Harness::default(kind).await;
    let (mut laptop, mut phone, mut bob) = (h.browser(), h.browser(), h.browser());
    assert_eq!(
        laptop.post_form("/logout-everywhere", "").await.status,
        StatusCode::UNAUTHORIZED
    );
    laptop.post_form("/login", "user=alice").await;
    phone.post_form("/login", "user=alice").await;
    bob.post_form("/login", "user=bob").await;
    phone.get("/counter").await;

    let reply = laptop.post_form("/logout-everywhere", "").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.set_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(phone.get("/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(phone.get("/counter/peek").await.body, "0");
    assert_eq!(bob.get("/me").await.body, "bob");
}

/// `GET /sessions` as JSON entries, most recently seen first.
async fn devices(browser: &mut Browser) -> Vec<serde_json::Value> {
    let reply = browser.get("/sessions").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// The handle `GET /sessions` on `browser` lists for its own session.
async fn own_handle(browser: &mut Browser) -> String {
    let listed = devices(browser).await;
    let current: Vec<_> = listed.iter().filter(|d| d["current"] == true).collect();
    assert_eq!(current.len(), 1, "{listed:?}");
    current[0]["id"].as_str().unwrap().to_owned()
}

async fn three_devices_are_listed_with_their_browsers_and_one_is_current(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut laptop = h.browser().with_user_agent("Laptop/1.0");
    assert_eq!(
        laptop.get("/sessions").await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut phone = h.browser().with_user_agent("Phone/2.0");
    let mut tablet = h.browser();
    let mut bob = h.browser().with_user_agent("Bob/1.0");
    let before = support::unix_ms();
    for browser in [&mut laptop, &mut phone, &mut tablet] {
        browser.post_form("/login", "user=alice").await;
    }
    bob.post_form("/login", "user=bob").await;
    laptop.get("/counter").await;

    let listed = devices(&mut laptop).await;
    assert_eq!(
        listed.len(),
        3,
        "alice's three sessions, not bob's: {listed:?}"
    );
    let mut agents: Vec<_> = listed.iter().map(|d| d["user_agent"].as_str()).collect();
    agents.sort();
    assert_eq!(agents, [None, Some("Laptop/1.0"), Some("Phone/2.0")]);
    let current: Vec<_> = listed.iter().filter(|d| d["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Laptop/1.0");
    let mut handles: Vec<&str> = listed.iter().map(|d| d["id"].as_str().unwrap()).collect();
    handles.sort_unstable();
    handles.dedup();
    assert_eq!(handles.len(), 3, "one handle each");
    let token = laptop.cookie.clone().unwrap();
    for device in &listed {
        let (created, seen) = (
            device["created"].as_i64().unwrap(),
            device["last_seen"].as_i64().unwrap(),
        );
        assert!(before - 1000 <= created && created <= seen && seen <= support::unix_ms() + 1000);
        assert!(
            device.get("ip").is_none(),
            "no IP unless the layer records it"
        );
        let handle = device["id"].as_str().unwrap();
        assert!(!handle.contains(&token) && handle != support::session_key("", &token));
    }
    let seen: Vec<i64> = listed
        .iter()
        .map(|d| d["last_seen"].as_i64().unwrap())
        .collect();
    assert!(
        seen.windows(2).all(|w| w[0] >= w[1]),
        "most recently seen first: {seen:?}"
    );
    assert_eq!(devices(&mut bob).await.len(), 1);
}

async fn ending_a_device_by_its_handle_ends_only_that_session(kind: Kind) {
    let h = Harness::default(kind).await;
    let (mut laptop, mut phone, mut bob) = (h.browser(), h.browser(), h.browser());
    laptop.post_form("/login", "user=alice").await;
    phone.post_form("/login", "user=alice").await;
    bob.post_form("/login", "user=bob").await;
    let phone_handle = own_handle(&mut phone).await;
    let bob_handle = own_handle(&mut bob).await;
    assert_eq!(
        h.browser()
            .delete(&format!("/sessions/{phone_handle}"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    for garbage in [
        bob_handle.as_str(),
        "nope",
        "0123456789abcdef0123456789abcdef",
    ] {
        let path = format!("/sessions/{garbage}");
        assert_eq!(
            laptop.delete(&path).await.status,
            StatusCode::NOT_FOUND,
            "{garbage}"
        );
    }
    assert_eq!(
        bob.get("/me").await.body,
        "bob",
        "another user's handle ends nothing"
    );

    let path = format!("/sessions/{phone_handle}");
    assert_eq!(laptop.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.get("/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(laptop.get("/me").await.body, "alice");
    assert_eq!(laptop.delete(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(devices(&mut laptop).await.len(), 1);

    // Its own handle: a logout.
    let own = format!("/sessions/{}", own_handle(&mut laptop).await);
    let reply = laptop.delete(&own).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.set_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(laptop.get("/me").await.status, StatusCode::UNAUTHORIZED);
}

async fn logout_others_leaves_only_the_current_session(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browsers: Vec<Browser> = (0..3).map(|_| h.browser()).collect();
    assert_eq!(
        browsers[0].post_form("/logout-others", "").await.status,
        StatusCode::UNAUTHORIZED
    );
    for browser in &mut browsers {
        browser.post_form("/login", "user=alice").await;
    }
    let mut bob = h.browser();
    bob.post_form("/login", "user=bob").await;
    let reply = browsers[0].post_form("/logout-others", "").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(
        reply.set_cookie().is_none(),
        "the asking session keeps its cookie"
    );
    for other in &mut browsers[1..] {
        assert_eq!(other.get("/me").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(browsers[0].get("/me").await.body, "alice");
    let listed = devices(&mut browsers[0]).await;
    assert_eq!(
        (listed.len(), &listed[0]["current"]),
        (1, &serde_json::Value::Bool(true))
    );
    assert_eq!(bob.get("/me").await.body, "bob");
    // The session that stayed still logs in again (a cycle) and out everywhere.
    browsers[0].post_form("/login", "user=alice").await;
    assert_eq!(browsers[0].get("/me").await.body, "alice");
}

async fn an_expired_session_is_never_listed(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_idle_timeout(Duration::seconds(2))).await;
    let (mut active, mut idle) = (h.browser(), h.browser());
    active.post_form("/login", "user=alice").await;
    idle.post_form("/login", "user=alice").await;
    assert_eq!(devices(&mut active).await.len(), 2);
    let started = std::time::Instant::now();
    while started.elapsed() < StdDuration::from_millis(2600) {
        assert_eq!(active.get("/me").await.body, "alice");
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    let listed = devices(&mut active).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["current"], true);
}

async fn flash_is_read_exactly_once(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    assert_eq!(
        browser.post_form("/flash", "message=Saved%21").await.status,
        StatusCode::NO_CONTENT
    );
    let first = browser.get("/flash").await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (StatusCode::OK, "Saved!")
    );
    let second = browser.get("/flash").await;
    assert_eq!(
        (second.status, second.body.as_str()),
        (StatusCode::NO_CONTENT, "")
    );
}

async fn oversized_change_is_refused_whole_with_413(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_max_bytes(300)).await;
    let mut fresh = h.browser();
    let refused = fresh.put("/kv/big", &"x".repeat(400)).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        refused.set_cookie(),
        None,
        "no cookie for a session that was not written"
    );

    let mut browser = h.browser();
    assert_eq!(
        browser.put("/kv/small", "ok").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        browser.put("/kv/big", &"x".repeat(400)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(browser.get("/kv/big").await.status, StatusCode::NOT_FOUND);
    assert_eq!(browser.get("/kv/small").await.body, "ok");
    assert_eq!((h.metrics().too_large, h.metrics().invalid), (2, 0));
}

async fn server_error_responses_do_not_save(kind: Kind) {
    let h = Harness::default(kind.clone()).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let failed = browser.get("/test/fail").await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(browser.get("/counter/peek").await.body, "1");

    let saving = Harness::new(kind, |l| l.with_save_on_server_error(true)).await;
    let mut browser = saving.browser();
    browser.get("/test/fail").await;
    assert_eq!(
        browser.get("/counter/peek").await.body,
        "1000",
        "saved when configured to"
    );
}

async fn unknown_ids_are_never_adopted(kind: Kind) {
    let h = Harness::default(kind).await;
    let forged = "0123456789ab4def8123456789abcdef".to_owned();
    let mut browser = Browser::with_cookie(h.app.clone(), Some(forged.clone()));
    let reply = browser.put("/kv/a", "1").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let issued = browser.cookie.clone().unwrap();
    assert_ne!(
        issued, forged,
        "a fresh id replaces the one the server never issued"
    );
    assert_eq!(browser.get("/kv/a").await.body, "1");
    let mut attacker = Browser::with_cookie(h.app.clone(), Some(forged));
    assert_eq!(attacker.get("/kv/a").await.status, StatusCode::NOT_FOUND);
}

async fn concurrent_writes_to_different_keys_are_all_kept(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let requests = (0..32).map(|i| {
        let mut b = browser.clone();
        tokio::spawn(async move { b.put(&format!("/kv/k{i}"), &i.to_string()).await.status })
    });
    for status in futures_join(requests).await {
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    for i in 0..32 {
        assert_eq!(
            browser.get(&format!("/kv/k{i}")).await.body,
            i.to_string(),
            "k{i} was kept"
        );
    }
}

async fn logout_during_a_reading_request_stays_dead(kind: Kind) {
    let h = Harness::default(kind).await;
    // A write of a few fields, then one of more than the Redis store's lean update script takes.
    for (ended, route) in [(1, "/test/slow-counter"), (2, "/test/slow-wide")] {
        let mut browser = h.browser();
        browser.get("/counter").await;
        let token = browser.cookie.clone();
        let mut slow = browser.clone();
        let pending = tokio::spawn(async move { slow.get(route).await });
        h.gate.wait_arrival().await;
        assert_eq!(
            browser.post_form("/logout", "").await.status,
            StatusCode::NO_CONTENT
        );
        h.gate.release();
        let late = pending.await.unwrap();
        assert_eq!(
            late.status,
            StatusCode::CONFLICT,
            "{route}: its changes were refused, not reported as saved"
        );
        assert_eq!(late.set_cookie(), None);
        assert_eq!(h.metrics().ended, ended, "counted as a session that ended");
        let mut old = Browser::with_cookie(h.app.clone(), token);
        assert_eq!(
            old.get("/counter/peek").await.body,
            "0",
            "{route}: the logged-out session did not come back"
        );
    }
}

async fn logout_during_a_blind_write_stays_dead(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.put("/kv/a", "1").await;
    let token = browser.cookie.clone();
    let mut slow = browser.clone();
    let pending = tokio::spawn(async move { slow.put("/test/slow-put", "late").await });
    h.gate.wait_arrival().await;
    browser.post_form("/logout", "").await;
    h.gate.release();
    let late = pending.await.unwrap();
    // It never read the session, so its write starts a new session under a new id.
    assert_eq!(late.status, StatusCode::NO_CONTENT);
    let fresh = cookie::Cookie::parse(late.set_cookie().unwrap().to_owned()).unwrap();
    assert_ne!(Some(fresh.value().to_owned()), token);
    let mut old = Browser::with_cookie(h.app.clone(), token);
    assert_eq!(
        old.get("/kv/a").await.status,
        StatusCode::NOT_FOUND,
        "old session stays dead"
    );
    assert_eq!(old.get("/kv/slow").await.status, StatusCode::NOT_FOUND);
}

async fn malformed_cookies_are_no_session_and_never_fail(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut real = h.browser();
    real.get("/counter").await;
    let cases = support::hostile_cookies(real.cookie.as_ref().unwrap());
    for case in &cases {
        let reply = h.browser().send_raw_cookies("/counter/peek", &[case]).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "0"),
            "cookie {case:?}"
        );
    }
    let loads_before = h.metrics().loads;
    for case in &cases {
        h.browser().send_raw_cookies("/counter/peek", &[case]).await;
    }
    assert_eq!(
        h.metrics().loads,
        loads_before,
        "no malformed id reached the store"
    );
    // One case sends the session cookie twice: counted each time, logged at debug only.
    assert_eq!(h.metrics().duplicate_cookies, 2);

    // A foreign cookie with UTF-8 or Latin-1 bytes beside the session cookie does not hide it.
    let token = real.cookie.clone().unwrap();
    for foreign in [&b"pref=caf\xc3\xa9"[..], b"pref=caf\xe9"] {
        let header = [foreign, b"; sid=", token.as_bytes()].concat();
        let reply = h
            .browser()
            .send_raw_cookies("/counter/peek", &[&header])
            .await;
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "1"));
    }
}

async fn cookie_attributes_follow_the_security_defaults(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    let reply = browser.get("/counter").await;
    let set = reply.set_cookie().unwrap();
    let token = browser.cookie.clone().unwrap();
    assert_eq!(
        set,
        format!("sid={token}; HttpOnly; SameSite=Lax; Secure; Path=/")
    );
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert!(
        browser
            .get("/counter")
            .await
            .headers
            .get("cache-control")
            .is_none(),
        "only where a cookie is set"
    );
}

async fn persistent_cookie_carries_max_age(kind: Kind) {
    let h = Harness::new(kind, |l| {
        l.with_persistent_cookie(true)
            .with_idle_timeout(Duration::hours(1))
    })
    .await;
    let mut browser = h.browser();
    let set = browser
        .get("/counter")
        .await
        .set_cookie()
        .unwrap()
        .to_owned();
    let max_age = cookie::Cookie::parse(set).unwrap().max_age().unwrap();
    assert!(
        (3590..=3600).contains(&max_age.whole_seconds()),
        "{max_age}"
    );
}

async fn error_handler_shapes_session_errors(kind: Kind) {
    let h = Harness::new(kind, |l| {
        l.with_max_bytes(50).with_error_handler(|error| {
            (
                error.status(),
                format!("custom {}", error.status().as_u16()),
            )
                .into_response()
        })
    })
    .await;
    let reply = h.browser().put("/kv/big", &"x".repeat(100)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "custom 413")
    );
}

/// Awaits every spawned request, in order.
async fn typed_sessions_keep_concurrent_changes_to_different_fields(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    assert_eq!(
        browser.put("/test/prefs/items", "tea").await.status,
        StatusCode::NO_CONTENT
    );
    // Reads the whole struct, items = ["tea"], and is held before it saves its new theme...
    let mut slow = browser.clone();
    let theme = tokio::spawn(async move { slow.put("/test/prefs/theme", "dark").await.status });
    h.gate.wait_arrival().await;
    // ...while another request adds an item.
    assert_eq!(
        browser.put("/test/prefs/items", "cake").await.status,
        StatusCode::NO_CONTENT
    );
    h.gate.release();
    assert_eq!(theme.await.unwrap(), StatusCode::NO_CONTENT);
    assert_eq!(
        browser.get("/test/prefs").await.body,
        r#"{"theme":"dark","items":["tea","cake"]}"#,
        "the stale items the slow request read were not written back over the new one"
    );
    assert_eq!(
        browser.get("/kv/theme").await.body,
        "dark",
        "each field is a session key of its own"
    );
}

/// `POST /critical` on a session of its own: the lock is there for its other requests.
async fn critical_session(h: &Harness) -> Browser {
    let mut browser = h.browser();
    browser.put("/kv/start", "1").await;
    browser
}

async fn critical_sections_of_one_session_run_one_at_a_time(kind: Kind) {
    let h = Harness::default(kind).await;
    let browser = critical_session(&h).await;
    // Collected, so that all eight are in flight before the first is awaited.
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let mut b = browser.clone();
            tokio::spawn(async move { b.post_form("/critical?hold_ms=50", "").await })
        })
        .collect();
    let mut values: Vec<u64> = Vec::new();
    for reply in futures_join(requests.into_iter()).await {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        values.push(reply.body.parse().unwrap());
    }
    values.sort_unstable();
    assert_eq!(values, (1..=8).collect::<Vec<_>>(), "each value once");
    let mut browser = browser;
    assert_eq!(browser.get("/kv/critical").await.body, "8");
}

async fn a_lock_holds_up_only_lockers_of_its_own_session(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut holder = critical_session(&h).await;
    let mut other = critical_session(&h).await;
    let mut same = holder.clone();
    let mut waiter = holder.clone();
    let hold = tokio::spawn(async move { holder.post_form("/critical?hold_ms=400", "").await });
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let reply = waiter.post_form("/critical?hold_ms=0", "").await;
        (reply, started.elapsed())
    });
    // Well under a hold: a lock on another session, a read of the held session that asks for none.
    for (browser, path, body) in [
        (&mut other, "/critical?hold_ms=0", "1"),
        (&mut same, "/kv/start", "1"),
    ] {
        let started = std::time::Instant::now();
        let reply = if path.starts_with("/critical") {
            browser.post_form(path, "").await
        } else {
            browser.get(path).await
        };
        let took = started.elapsed();
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, body));
        assert!(took < StdDuration::from_millis(130), "{path} took {took:?}");
    }
    assert_eq!(hold.await.unwrap().body, "1");
    let (reply, took) = waiting.await.unwrap();
    assert_eq!(
        reply.body, "2",
        "the second locker read what the first wrote"
    );
    assert!(
        took >= StdDuration::from_millis(200),
        "the second locker waited for the first: {took:?}"
    );
}

async fn waiting_past_the_lock_bound_answers_409(kind: Kind) {
    let wait = StdDuration::from_millis(300);
    let h = Harness::new(kind, |l| l.with_lock_wait(Duration::milliseconds(300))).await;
    let browser = critical_session(&h).await;
    let mut holder = browser.clone();
    let hold = tokio::spawn(async move { holder.post_form("/test/lock-gate", "").await });
    h.gate.wait_arrival().await;
    let started = std::time::Instant::now();
    let refused = browser.clone().post_form("/critical?hold_ms=0", "").await;
    let took = started.elapsed();
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert!(
        took >= wait && took < wait + StdDuration::from_millis(300),
        "409 after the bound: {took:?}"
    );
    h.gate.release();
    assert_eq!(hold.await.unwrap().body, "1");
    assert_eq!(browser.clone().get("/kv/critical").await.body, "1");
}

async fn a_lock_is_released_at_the_end_of_a_request_a_panic_or_a_dropped_request(kind: Kind) {
    // A lock that leaked would hold the session for its TTL (10 s); none of this may wait for it.
    let h = Harness::new(kind, |l| {
        l.with_lock_wait(Duration::ZERO)
            .with_lock_ttl(Duration::seconds(10))
    })
    .await;
    let browser = critical_session(&h).await;
    let try_lock = |browser: &Browser| {
        let mut browser = browser.clone();
        async move { browser.post_form("/critical?hold_ms=0", "").await }
    };
    // Taken by this request until the next one can get it, polled for a second at most.
    let free_within_a_second = |browser: &Browser| {
        let browser = browser.clone();
        async move {
            let started = std::time::Instant::now();
            loop {
                let reply = try_lock(&browser).await;
                if reply.status == StatusCode::OK {
                    return reply.body;
                }
                assert!(
                    started.elapsed() < StdDuration::from_secs(1),
                    "the lock was not released: {reply:?}"
                );
                tokio::time::sleep(StdDuration::from_millis(20)).await;
            }
        }
    };

    // The end of the request, with the guard dropped by the handler's end, not by the test.
    let mut holder = browser.clone();
    let held = tokio::spawn(async move { holder.post_form("/test/lock-gate", "").await });
    h.gate.wait_arrival().await;
    assert_eq!(try_lock(&browser).await.status, StatusCode::CONFLICT);
    h.gate.release();
    assert_eq!(held.await.unwrap().body, "1");
    assert_eq!(
        try_lock(&browser).await.body,
        "2",
        "free as soon as it answered"
    );

    // A handler that panics while it holds the lock.
    let mut holder = browser.clone();
    let panicking = tokio::spawn(async move { holder.post_form("/test/lock-panic", "").await });
    h.gate.wait_arrival().await;
    assert_eq!(try_lock(&browser).await.status, StatusCode::CONFLICT);
    h.gate.release();
    assert!(panicking.await.unwrap_err().is_panic());
    assert_eq!(
        free_within_a_second(&browser).await,
        "3",
        "nothing of the panic saved"
    );

    // A request whose future is dropped (the client went away) while it holds the lock.
    let mut holder = browser.clone();
    let dropped = tokio::spawn(async move { holder.post_form("/test/lock-gate", "").await });
    h.gate.wait_arrival().await;
    assert_eq!(try_lock(&browser).await.status, StatusCode::CONFLICT);
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());
    assert_eq!(free_within_a_second(&browser).await, "4");
}

async fn a_holder_that_overran_its_lock_cannot_overwrite_the_next_holder(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_lock_ttl(Duration::milliseconds(200))).await;
    let browser = critical_session(&h).await;
    // The stalled holder runs on a runtime of its own, whose one thread the handler blocks: nothing
    // renews its lock, as in a process paused (by GC, swap or a debugger) past the lock's TTL.
    let mut stalled = browser.clone();
    let stalled = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move { stalled.post_form("/test/lock-frozen?ms=1500", "").await })
    });
    h.gate.wait_arrival().await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    let next = browser.clone().post_form("/critical?hold_ms=0", "").await;
    assert_eq!(
        (next.status, next.body.as_str()),
        (StatusCode::OK, "1"),
        "the next holder got the expired lock"
    );
    let late = stalled.join().unwrap();
    assert_eq!(
        late.status,
        StatusCode::CONFLICT,
        "the overrun save refused: {late:?}"
    );
    assert_eq!(late.body, "session lock lost");
    assert_eq!(
        browser.clone().get("/kv/critical").await.body,
        "1",
        "the next holder's write stands"
    );
}

async fn a_lock_is_renewed_for_as_long_as_its_holder_runs(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_lock_ttl(Duration::milliseconds(200))).await;
    let browser = critical_session(&h).await;
    let mut holder = browser.clone();
    // Five TTLs long: only renewals keep the lock this request's.
    let hold = tokio::spawn(async move { holder.post_form("/critical?hold_ms=1000", "").await });
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let next = browser.clone().post_form("/critical?hold_ms=0", "").await;
    let held = hold.await.unwrap();
    assert_eq!((held.status, held.body.as_str()), (StatusCode::OK, "1"));
    assert_eq!((next.status, next.body.as_str()), (StatusCode::OK, "2"));
    assert!(
        started.elapsed() >= StdDuration::from_millis(800),
        "the next locker waited for the whole section: {:?}",
        started.elapsed()
    );
}

async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

async fn concurrent_increments_all_count(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let requests = (0..64).map(|_| {
        let mut b = browser.clone();
        tokio::spawn(async move { b.post_form("/counter/incr", "").await })
    });
    let mut values: Vec<u64> = futures_join(requests)
        .await
        .into_iter()
        .map(|reply| {
            assert_eq!(reply.status, StatusCode::OK);
            reply.body.parse().unwrap()
        })
        .collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (2..=65).collect::<Vec<u64>>(),
        "each saw its own value"
    );
    assert_eq!(browser.get("/counter/peek").await.body, "65");
}

async fn an_increment_without_a_session_starts_one(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    let reply = browser.post_form("/counter/incr", "").await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "1"));
    assert!(
        reply.set_cookie().is_some(),
        "a new session, with its cookie"
    );
    assert_eq!(browser.post_form("/counter/incr", "").await.body, "2");
    assert_eq!(browser.get("/counter/peek").await.body, "2");
}

async fn an_increment_never_brings_back_a_destroyed_session(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let old = browser.cookie.clone();
    // Logged out elsewhere, then an increment with the old cookie: a new session, not the old one.
    browser.clone().post_form("/logout", "").await;
    let reply = browser.post_form("/counter/incr", "").await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "1"));
    assert_ne!(browser.cookie, old, "a new id");
    assert_eq!(
        Browser::with_cookie(h.app.clone(), old.clone())
            .get("/counter/peek")
            .await
            .body,
        "0",
        "the old id stays dead"
    );

    // A request that read the session, then lost it to a logout before its increment: 409.
    let mut reader = h.browser();
    reader.get("/counter").await;
    let mut slow = reader.clone();
    let pending = tokio::spawn(async move { slow.post_form("/test/slow-incr", "").await });
    h.gate.wait_arrival().await;
    reader.post_form("/logout", "").await;
    h.gate.release();
    assert_eq!(pending.await.unwrap().status, StatusCode::CONFLICT);
}

async fn login_binds_the_user_and_never_keeps_the_old_id(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let before = browser.cookie.clone();
    assert_eq!(
        browser.post_form("/login", "user=alice").await.status,
        StatusCode::NO_CONTENT
    );
    assert_ne!(browser.cookie, before, "login gives a new id");
    assert_eq!(browser.get("/me").await.body, "alice");
    assert_eq!(browser.get("/counter/peek").await.body, "1", "data kept");
    // Another user logging in on the same browser: a new id again.
    let alice = browser.cookie.clone();
    browser.post_form("/login", "user=bob").await;
    assert_ne!(browser.cookie, alice);
    assert_eq!(browser.get("/me").await.body, "bob");
    let mut stale = Browser::with_cookie(h.app.clone(), before);
    assert_eq!(stale.get("/me").await.status, StatusCode::UNAUTHORIZED);
}

async fn login_fresh_drops_what_the_session_held(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let before = browser.cookie.clone();
    browser.post_form("/test/login-fresh", "alice").await;
    assert_ne!(browser.cookie, before);
    assert_eq!(browser.get("/me").await.body, "alice");
    assert_eq!(browser.get("/counter/peek").await.body, "0");
}

/// `login("")` is a typed 400 that records nothing: the user stays, the id stays, the data stays
/// (here through `login_fresh`, which would otherwise also have cleared the session).
async fn an_empty_user_is_refused_and_changes_nothing(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.post_form("/login", "user=alice").await;
    browser.get("/counter").await;
    let before = browser.cookie.clone();
    let refused = browser.post_form("/test/login-fresh", "").await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (StatusCode::BAD_REQUEST, "empty user id")
    );
    assert_eq!(browser.cookie, before, "no new id");
    assert_eq!(browser.get("/me").await.body, "alice");
    assert_eq!(
        browser.get("/counter/peek").await.body,
        "1",
        "nothing cleared"
    );
    assert_eq!(
        browser.post_form("/login", "user=").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(browser.get("/me").await.body, "alice");
}

async fn a_logout_before_a_server_error_is_still_carried_out(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.post_form("/login", "user=alice").await;
    let before = browser.cookie.clone();
    let reply = browser.post_form("/test/logout-then-fail", "").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.set_cookie().is_some_and(|c| c.contains("Max-Age=0")),
        "the removal cookie is sent: {reply:?}"
    );
    let mut stale = Browser::with_cookie(h.app.clone(), before);
    assert_eq!(stale.get("/me").await.status, StatusCode::UNAUTHORIZED);
}

async fn the_user_reads_none_once_the_session_is_destroyed(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.post_form("/login", "user=alice").await;
    assert_eq!(
        browser.post_form("/test/destroy-then-user", "").await.body,
        "none"
    );
}

async fn sessions_per_user_are_capped_at_login(kind: Kind) {
    let h = Harness::new(kind, |l| l.with_max_sessions_per_user(2)).await;
    let mut browsers: Vec<Browser> = (0..3).map(|_| h.browser()).collect();
    for browser in &mut browsers {
        browser.post_form("/login", "user=alice").await;
        assert_eq!(browser.get("/me").await.body, "alice");
        // Expiry times a few milliseconds apart, so "expires first" is the first login.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The third login ended the session that expires first: the first one.
    let statuses: Vec<StatusCode> = futures_join(browsers.iter().map(|b| {
        let mut b = b.clone();
        tokio::spawn(async move { b.get("/me").await.status })
    }))
    .await;
    assert_eq!(
        statuses,
        vec![StatusCode::UNAUTHORIZED, StatusCode::OK, StatusCode::OK]
    );
    // Another user is not affected by alice's cap.
    let mut bob = h.browser();
    bob.post_form("/login", "user=bob").await;
    assert_eq!(browsers[2].get("/me").await.body, "alice");
    assert_eq!(bob.get("/me").await.body, "bob");
}

async fn logout_everywhere_also_ends_the_asking_session(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut first = h.browser();
    first.post_form("/login", "user=alice").await;
    let mut second = h.browser();
    second.post_form("/login", "user=alice").await;
    let before = second.cookie.clone();
    assert_eq!(
        second.post_form("/logout-everywhere", "").await.status,
        StatusCode::NO_CONTENT
    );
    for cookie in [first.cookie.clone(), before] {
        let mut stale = Browser::with_cookie(h.app.clone(), cookie);
        assert_eq!(stale.get("/me").await.status, StatusCode::UNAUTHORIZED);
    }
}

/// `POST /csrf/check` as `browser`, with `token` in `X-CSRF-Token` (or no such header).
async fn csrf_check(browser: &Browser, token: Option<&str>) -> StatusCode {
    let headers: Vec<(&str, &str)> = token.map(|t| ("x-csrf-token", t)).into_iter().collect();
    browser
        .post_with_headers("/csrf/check", &headers)
        .await
        .status
}

/// Characters of a CSRF token: 64 bytes (a mask, then the masked secret) in unpadded base64url.
const CSRF_TOKEN_LEN: usize = 86;

async fn csrf_tokens_differ_on_every_call_and_all_verify(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    let first = browser.get("/csrf").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first.set_cookie().is_some(),
        "the session the token belongs to was created"
    );
    let second = browser.get("/csrf").await;
    assert_eq!(second.set_cookie(), None, "and kept: {second:?}");
    assert_ne!(second.body, first.body, "masked anew on every call");
    for token in [&first.body, &second.body] {
        assert_eq!(token.len(), CSRF_TOKEN_LEN, "{token}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "base64url: {token}"
        );
        assert_eq!(
            csrf_check(&browser, Some(token)).await,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(csrf_check(&browser, None).await, StatusCode::FORBIDDEN);
}

async fn csrf_tokens_of_another_session_or_from_before_login_are_refused(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    let before = browser.get("/csrf").await.body;
    let other = h.browser().get("/csrf").await.body;
    assert_eq!(
        csrf_check(&browser, Some(&other)).await,
        StatusCode::FORBIDDEN,
        "another session's"
    );
    assert_eq!(
        csrf_check(&browser, Some(&before)).await,
        StatusCode::NO_CONTENT
    );

    // A login cycles the id, and the secret with it.
    let old_cookie = browser.cookie.clone();
    browser.post_form("/login", "user=alice").await;
    assert_eq!(
        csrf_check(&browser, Some(&before)).await,
        StatusCode::FORBIDDEN,
        "from before the login"
    );
    let replayed = Browser::with_cookie(h.app.clone(), old_cookie);
    assert_eq!(
        csrf_check(&replayed, Some(&before)).await,
        StatusCode::FORBIDDEN,
        "nor with the cookie it was issued for: that id no longer names a session"
    );
    let after = browser.get("/csrf").await.body;
    assert_eq!(
        csrf_check(&browser, Some(&after)).await,
        StatusCode::NO_CONTENT
    );

    // A token issued after a login in the same request is already the new id's.
    let issued = browser.post_form("/test/login-then-csrf", "bob").await;
    assert_eq!(issued.status, StatusCode::OK);
    assert!(issued.set_cookie().is_some(), "a new id: {issued:?}");
    assert_eq!(
        csrf_check(&browser, Some(&issued.body)).await,
        StatusCode::NO_CONTENT,
        "issued by the login's own request"
    );
    assert_eq!(
        csrf_check(&browser, Some(&after)).await,
        StatusCode::FORBIDDEN,
        "from before the second login"
    );
    // So is one issued by a request that starts its session and logs in.
    let mut newcomer = h.browser();
    let issued = newcomer.post_form("/test/login-then-csrf", "carol").await;
    assert_eq!(
        csrf_check(&newcomer, Some(&issued.body)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(newcomer.get("/me").await.body, "carol");
}

async fn malformed_csrf_tokens_are_refused_with_403(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    let token = browser.get("/csrf").await.body;
    assert_eq!(token.len(), CSRF_TOKEN_LEN, "{token}");
    // One bit of the mask flipped: well-formed, but it unmasks to another secret.
    let mut flipped = token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases = [
        String::new(),
        token[1..].to_owned(),
        format!("{token}A"),
        "!".repeat(CSRF_TOKEN_LEN),
        format!("+{}", &token[1..]),
        format!("{}=", &token[..CSRF_TOKEN_LEN - 1]),
        "0".repeat(32),
        flipped,
        "A".repeat(1 << 20),
    ];
    for garbage in &cases {
        assert_eq!(
            csrf_check(&browser, Some(garbage)).await,
            StatusCode::FORBIDDEN,
            "{garbage:.100}"
        );
    }
    assert_eq!(
        csrf_check(&browser, Some(&token)).await,
        StatusCode::NO_CONTENT,
        "the session's own still verifies"
    );
}

/// A session that exists but never asked for a token gets one from eight requests at once, all
/// of which loaded it before any asked: with nothing stored, there is no first use to race on.
async fn concurrent_first_csrf_tokens_of_one_session_all_verify(kind: Kind) {
    let h = Harness::default(kind).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..support::CSRF_TOGETHER {
        let mut browser = browser.clone();
        tasks.spawn(async move { browser.get("/test/csrf-together").await });
    }
    let replies = tokio::time::timeout(StdDuration::from_secs(10), tasks.join_all())
        .await
        .expect("every request reached the barrier");
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.set_cookie(), None, "the same session: {reply:?}");
        assert_eq!(
            csrf_check(&browser, Some(&reply.body)).await,
            StatusCode::NO_CONTENT,
            "{reply:?}"
        );
    }
}

/// What a lifecycle hook heard, in the order it heard it.
struct Heard(tokio::sync::mpsc::UnboundedReceiver<SessionEvent>);

/// A hook that hands every event it hears to the [`Heard`] returned with it.
fn hear() -> (impl FnMut(&SessionEvent) + Send + 'static, Heard) {
    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    let hook = move |event: &SessionEvent| {
        let _ = sender.send(event.clone());
    };
    (hook, Heard(received))
}

/// The key id prefix of the session whose cookie carries `token`: how logs name it.
fn prefix(token: &str) -> String {
    session_key("", token)[..8].to_owned()
}

/// The session token a browser holds.
fn token(browser: &Browser) -> String {
    browser.cookie.clone().expect("a session cookie")
}

impl Heard {
    /// The next event the hook hears (it hears them on a thread of its own, soon after).
    async fn next(&mut self) -> SessionEvent {
        tokio::time::timeout(StdDuration::from_secs(5), self.0.recv())
            .await
            .expect("the hook hears an event within 5 s")
            .expect("the hook is alive")
    }

    /// Asserts that the next event is `kind`, for the session whose cookie is `token`, moved
    /// from `previous`'s, bound to `user`; and that it names sessions by their key id prefix only,
    /// never by a token or a whole key id.
    async fn expect(
        &mut self,
        kind: SessionEventKind,
        token: &str,
        previous: Option<&str>,
        user: Option<&str>,
    ) {
        let event = self.next().await;
        let shown = format!("{event:?}");
        for secret in [Some(token), previous].into_iter().flatten() {
            assert!(!shown.contains(secret), "a token in {shown}");
            assert!(
                !shown.contains(&session_key("", secret)),
                "a key id in {shown}"
            );
        }
        assert_eq!(
            (event.kind, event.key, event.previous, event.user.as_deref()),
            (kind, prefix(token), previous.map(prefix), user),
            "{shown}"
        );
    }

    /// Asserts that the hook hears nothing more for a while.
    async fn silent(&mut self) {
        let more = tokio::time::timeout(StdDuration::from_millis(300), self.0.recv()).await;
        assert!(more.is_err(), "heard {more:?}");
    }
}

async fn a_hook_hears_each_create_cycle_login_and_logout_once(kind: Kind) {
    let (hook, mut heard) = hear();
    let h = Harness::new(kind, |l| l.with_hook(hook)).await;
    let mut browser = h.browser();
    browser.get("/counter").await;
    let created = token(&browser);
    heard.expect(Created, &created, None, None).await;
    // Reads and updates are no lifecycle events: the next one heard is the cycle.
    browser.get("/counter/peek").await;
    browser.get("/counter").await;
    browser.post_form("/test/cycle", "").await;
    let cycled = token(&browser);
    heard.expect(Cycle, &cycled, Some(&created), None).await;
    // A login is one event: not also a cycle.
    browser.post_form("/login", "user=alice").await;
    let alice = token(&browser);
    heard
        .expect(Login, &alice, Some(&cycled), Some("alice"))
        .await;
    // A cycle that read the session knows its user.
    browser.post_form("/test/read-then-cycle", "").await;
    let moved = token(&browser);
    heard
        .expect(Cycle, &moved, Some(&alice), Some("alice"))
        .await;
    // A logout names the session's user though the request never read it.
    browser.post_form("/logout", "").await;
    heard.expect(Destroy, &moved, None, Some("alice")).await;
    // A login without a session writes a new one: one login, not also a create.
    let mut fresh = h.browser();
    fresh.post_form("/test/login-fresh", "bob").await;
    heard.expect(Login, &token(&fresh), None, Some("bob")).await;
    heard.silent().await;
}

async fn a_hook_hears_logouts_everywhere_and_revokes_naming_the_sessions(kind: Kind) {
    let (hook, mut heard) = hear();
    let h = Harness::new(kind, |l| l.with_hook(hook)).await;
    let (mut laptop, mut phone, mut tablet, mut desk) =
        (h.browser(), h.browser(), h.browser(), h.browser());
    for browser in [&mut laptop, &mut phone, &mut tablet, &mut desk] {
        browser.post_form("/login", "user=alice").await;
        heard
            .expect(Login, &token(browser), None, Some("alice"))
            .await;
    }
    let (laptop_token, phone_token) = (token(&laptop), token(&phone));

    // Another session ended by its handle: a revoke, naming that session.
    let path = format!("/sessions/{}", own_handle(&mut phone).await);
    assert_eq!(laptop.delete(&path).await.status, StatusCode::NO_CONTENT);
    heard
        .expect(Revoke, &phone_token, None, Some("alice"))
        .await;
    // The asking session's own handle: a logout.
    let path = format!("/sessions/{}", own_handle(&mut laptop).await);
    assert_eq!(laptop.delete(&path).await.status, StatusCode::NO_CONTENT);
    heard
        .expect(Destroy, &laptop_token, None, Some("alice"))
        .await;
    // The other devices logged out: one event, naming the session that stays.
    let status = tablet.post_form("/logout-others", "").await.status;
    assert_eq!(status, StatusCode::NO_CONTENT);
    heard
        .expect(RevokeOthers, &token(&tablet), None, Some("alice"))
        .await;
    assert_eq!(desk.get("/me").await.status, StatusCode::UNAUTHORIZED);
    // Logged out everywhere: one event, naming the asking session.
    let tablet_token = token(&tablet);
    let status = tablet.post_form("/logout-everywhere", "").await.status;
    assert_eq!(status, StatusCode::NO_CONTENT);
    heard
        .expect(DestroyEverywhere, &tablet_token, None, Some("alice"))
        .await;
    heard.silent().await;
}

async fn a_hook_hears_nothing_of_refused_failed_or_read_only_requests(kind: Kind) {
    let (hook, mut heard) = hear();
    let h = Harness::new(kind, |l| l.with_max_bytes(300).with_hook(hook)).await;
    let mut browser = h.browser();
    let big = "x".repeat(400);
    // Nothing written: a new session too large (413), a login too large, a failed handler (500).
    assert_eq!(
        browser.put("/kv/big", &big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let status = browser
        .post_form("/test/login-with-note", &big)
        .await
        .status;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let status = browser.get("/test/fail").await.status;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // Nothing there: a read and a logout under an id nobody issued.
    let mut stranger = Browser::with_cookie(h.app.clone(), Some(unissued_token(1)));
    assert_eq!(stranger.get("/counter/peek").await.status, StatusCode::OK);
    stranger.post_form("/logout", "").await;
    // So the first event heard is this create.
    browser.get("/counter").await;
    let live = token(&browser);
    heard.expect(Created, &live, None, None).await;

    // A read, an update and a refused update of a live session, then its logout: only the logout.
    browser.get("/counter/peek").await;
    browser.get("/counter").await;
    assert_eq!(
        browser.put("/kv/big", &big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    browser.post_form("/logout", "").await;
    heard.expect(Destroy, &live, None, None).await;
    // A logout of the session already ended finds nothing to end.
    Browser::with_cookie(h.app.clone(), Some(live))
        .post_form("/logout", "")
        .await;
    let mut next = h.browser();
    next.get("/counter").await;
    heard.expect(Created, &token(&next), None, None).await;
    heard.silent().await;
}

async fn a_slow_hook_never_delays_a_response(kind: Kind) {
    let (mut forward, mut heard) = hear();
    let slow = move |event: &SessionEvent| {
        std::thread::sleep(StdDuration::from_secs(1));
        forward(event);
    };
    let h = Harness::new(kind, |l| l.with_hook(slow)).await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert_eq!(h.browser().get("/counter").await.body, "1");
        let elapsed = started.elapsed();
        assert!(elapsed < StdDuration::from_millis(500), "{elapsed:?}");
    }
    for _ in 0..3 {
        assert_eq!(heard.next().await.kind, Created);
    }
}

async fn a_panicking_hook_leaves_the_app_serving_and_hears_later_events(kind: Kind) {
    let (mut forward, mut heard) = hear();
    let panicking = move |event: &SessionEvent| {
        assert_ne!(event.kind, Created, "a hook that panics at new sessions");
        forward(event);
    };
    let h = Harness::new(kind, |l| l.with_hook(panicking)).await;
    let mut browser = h.browser();
    assert_eq!(browser.get("/counter").await.body, "1");
    assert_eq!(h.browser().get("/counter").await.body, "1");
    let created = token(&browser);
    assert_eq!(
        browser.post_form("/login", "user=alice").await.status,
        StatusCode::NO_CONTENT
    );
    heard
        .expect(Login, &token(&browser), Some(&created), Some("alice"))
        .await;
    assert_eq!(browser.get("/counter").await.body, "2");
    assert_eq!(h.metrics().hook_events_dropped, 0);
}
