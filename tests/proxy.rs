//! The deployment users run: two demo instances on one Redis behind nginx, round robin. One client's
//! session is the same whichever instance answers, through login (id cycled) and logout.

mod support;

use std::collections::HashSet;

use support::{session_key, token_of, ExampleProcess, Nginx, RedisServer, WireReply};

/// The upstream nginx says answered, checked to be a single one of `instances` (no retry).
fn upstream(reply: &WireReply, instances: &HashSet<String>) -> String {
    let upstream = reply.header("x-upstream").expect("X-Upstream").to_owned();
    assert!(
        instances.contains(&upstream),
        "{upstream} not in {instances:?}"
    );
    upstream
}

/// `EXISTS` of the session key the token maps to.
fn stored(redis: &RedisServer, token: &str) -> bool {
    let key = session_key("session:", token);
    redis.cli(&["exists", &key]).trim() == "1"
}

#[test]
fn one_session_across_two_instances_behind_nginx() {
    let redis = RedisServer::start();
    let url = redis.url();
    let demos = [
        ExampleProcess::start("demo", &[("REDIS_URL", &url)]),
        ExampleProcess::start("demo", &[("REDIS_URL", &url)]),
    ];
    let instances: HashSet<String> = demos
        .iter()
        .map(|d| format!("127.0.0.1:{}", d.port))
        .collect();
    let nginx = Nginx::start(&demos.iter().map(|d| d.port).collect::<Vec<_>>());

    // Counting: 1, 2, 3, … with the first response's cookie, the instances taking turns.
    let first = nginx.request("GET", "/counter", None, "");
    assert_eq!((first.status, first.body.as_str()), (200, "1"), "{first:?}");
    let token = token_of(first.header("set-cookie").expect("a session cookie"));
    let mut answered = vec![upstream(&first, &instances)];
    for count in 2..=6 {
        let reply = nginx.request("GET", "/counter", Some(&token), "");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, count.to_string().as_str()),
            "{reply:?}"
        );
        if let Some(set_cookie) = reply.header("set-cookie") {
            assert_eq!(token_of(set_cookie), token, "the cookie is kept");
        }
        answered.push(upstream(&reply, &instances));
    }
    assert!(
        answered.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {answered:?}"
    );
    assert_eq!(answered.iter().cloned().collect::<HashSet<_>>(), instances);
    let key = session_key("session:", &token);
    assert_eq!(redis.cli(&["hget", &key, "count"]).trim(), "6");

    // Login cycles the id: the new cookie carries the session on, the old one is dead.
    let login = nginx.request("POST", "/login", Some(&token), "user=alice");
    assert_eq!(login.status, 204, "{login:?}");
    let user = token_of(login.header("set-cookie").expect("a cycled cookie"));
    assert_ne!(user, token, "the id is cycled");
    assert!(!stored(&redis, &token) && stored(&redis, &user));
    let mut answered = HashSet::new();
    for _ in 0..4 {
        let me = nginx.request("GET", "/me", Some(&user), "");
        assert_eq!((me.status, me.body.as_str()), (200, "alice"), "{me:?}");
        answered.insert(upstream(&me, &instances));
    }
    assert_eq!(answered, instances, "alice on both instances");
    let counter = nginx.request("GET", "/counter", Some(&user), "");
    assert_eq!(counter.body, "7", "the data moved with the id: {counter:?}");
    let old = nginx.request("GET", "/counter", Some(&token), "");
    assert_eq!(
        (old.status, old.body.as_str()),
        (200, "1"),
        "the old cookie gets a fresh session: {old:?}"
    );
    let fresh = token_of(old.header("set-cookie").expect("a fresh cookie"));
    assert!(fresh != token && fresh != user);

    // Logout: a removal cookie, the key gone, and neither instance knows alice any more.
    let logout = nginx.request("POST", "/logout", Some(&user), "");
    assert_eq!(logout.status, 204, "{logout:?}");
    let removal = logout.header("set-cookie").expect("a removal cookie");
    assert!(
        removal.starts_with("sid=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );
    assert!(!stored(&redis, &user), "the Redis key is gone");
    let mut answered = HashSet::new();
    for _ in 0..4 {
        let me = nginx.request("GET", "/me", Some(&user), "");
        assert_eq!(me.status, 401, "{me:?}");
        answered.insert(upstream(&me, &instances));
    }
    assert_eq!(answered, instances, "logged out on both instances");
}
