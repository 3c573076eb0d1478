//! The examples as a user runs them: each serves what its header promises, and stops cleanly on the
//! SIGTERM a container runtime sends.

mod support;

use std::time::Duration;

use support::{request, session_key, token_of, ExampleProcess, RedisServer};

#[test]
fn typed_example_keeps_each_cart_field_in_its_own_hash_field() {
    let server = RedisServer::start();
    let mut typed = ExampleProcess::start("typed", &[("REDIS_URL", &server.url())]);
    let (status, set_cookie, body) = request(typed.port, "POST", "/cart/items", None, "item=tea");
    assert_eq!((status, body.as_str()), (200, "1 items\n"));
    let token = token_of(&set_cookie.expect("a session cookie"));
    let sid = Some(token.as_str());
    assert_eq!(
        request(typed.port, "POST", "/cart/items", sid, "item=cake").2,
        "2 items\n"
    );
    assert_eq!(
        request(typed.port, "POST", "/cart/coupon", sid, "code=SPRING").0,
        200
    );
    assert_eq!(
        request(typed.port, "GET", "/cart", sid, "").2,
        r#"{"items":["tea","cake"],"coupon":"SPRING"}"#
    );
    let key = session_key("session:", &token);
    assert_eq!(
        server.cli(&["hget", &key, "items"]).trim(),
        r#"["tea","cake"]"#
    );
    assert_eq!(server.cli(&["hget", &key, "coupon"]).trim(), r#""SPRING""#);

    assert_eq!(request(typed.port, "DELETE", "/cart", sid, "").0, 200);
    assert_eq!(
        request(typed.port, "GET", "/cart", sid, "").2,
        r#"{"items":[]}"#
    );
    assert_eq!(
        server.cli(&["hexists", &key, "coupon"]).trim(),
        "0",
        "a field the value skips is removed"
    );
    assert!(typed.terminate(Duration::from_secs(5)).success());
}

#[test]
fn examples_stop_gracefully_on_sigterm() {
    let server = RedisServer::start();
    for name in ["demo", "login", "typed"] {
        let mut example = ExampleProcess::start(name, &[("REDIS_URL", &server.url())]);
        let status = example.terminate(Duration::from_secs(5));
        assert!(status.success(), "{name} exited with {status}");
    }
}
