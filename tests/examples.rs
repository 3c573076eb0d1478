//! The examples as a user runs them: each serves what its header promises, and stops cleanly on the
//! SIGTERM a container runtime sends.

mod support;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{example_binary, request, session_key, token_of, ExampleProcess, RedisServer};

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

/// The counter example has no settings: it serves on 127.0.0.1:3000 with Redis on 127.0.0.1:6379,
/// and stops on Ctrl-C (SIGINT) once the requests in flight have their answer. With nothing on
/// 6379 (as in CI), its first save waits out the 1 s command timeout, so the request below is still
/// in flight when the signal comes.
#[test]
fn counter_example_finishes_the_request_in_flight_and_stops_on_ctrl_c() {
    assert!(
        TcpStream::connect("127.0.0.1:3000").is_err(),
        "the counter example listens on 127.0.0.1:3000, which something else holds"
    );
    let child = Command::new(example_binary("counter"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the counter example is built by `cargo test`");
    let mut counter = testkit::Service::new("counter", child, 3000, String::new);
    let redis_answers = TcpStream::connect("127.0.0.1:6379").is_ok();
    let in_flight = std::thread::spawn(|| request(3000, "GET", "/", None, ""));
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    let status = counter.signal_and_wait("INT", Duration::from_secs(5));
    let (code, _, body) = in_flight.join().expect("a whole response");
    assert!(status.success(), "counter exited with {status}");
    if redis_answers {
        assert_eq!(
            (code, body.as_str()),
            (200, "You have been here 1 times.\n")
        );
    } else {
        assert_eq!((code, body.as_str()), (503, "session store unavailable"));
        assert!(
            signalled.elapsed() > Duration::from_millis(500),
            "it waited for the request in flight"
        );
    }
}
