//! Adversarial probes of the axum keys (from a review of issue 21): odd and huge
//! forwarding headers, and what one client can do to a per-IP map with the default keys.
#![cfg(all(feature = "axum", feature = "tokio", feature = "tower"))]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request};
use palisade::Rejected;
use palisade::clock::FakeClock;
use palisade::keyed::axum::{ClientIp, HeaderKey};
use palisade::keyed::{Keyed, KeyedConfig};
use palisade::rate_limiter::RateLimiter;

const PEER: &str = "10.0.0.1:40000";

fn request(name: &str, values: &[&[u8]], peer: &str) -> Request<()> {
    let mut req = Request::new(());
    for v in values {
        req.headers_mut().append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    req
}

fn peer_ip() -> Option<IpAddr> {
    Some(PEER.parse::<SocketAddr>().unwrap().ip())
}

/// Odd values at the chosen entry never panic and never become a key the client chose.
#[test]
fn odd_forwarding_headers_fall_back_to_the_peer_without_panicking() {
    let odd: &[&[u8]] = &[
        b"\xff",
        b"1.2.3.4\xff",
        b"[fe80::1%25eth0]:80",
        b"[fe80::1%eth0]",
        b"fe80::1%25",
        b"1.2.3.4:65536x",
        b"[::1]:_",
        b"[[::1]]",
        b"01.2.3.4",
        b"1.2.3.04",
        b"0x7f.0.0.1",
        b"2130706433",
        b"::ffff:1.2.3.4:80",
    ];
    for &v in odd {
        for client in [
            ClientIp::behind_proxies(1).x_forwarded_for(),
            ClientIp::behind_proxies(1).forwarded(),
        ] {
            let name = if client == ClientIp::behind_proxies(1).forwarded() {
                "forwarded"
            } else {
                "x-forwarded-for"
            };
            let value = if name == "forwarded" {
                [b"for=", v].concat()
            } else {
                v.to_vec()
            };
            let key = client.key(&request(name, &[&value], PEER));
            assert_eq!(key, peer_ip(), "{:?}", String::from_utf8_lossy(&value));
        }
    }
    // Trusting more proxies than a usize can count is just "too few entries".
    let key = ClientIp::behind_proxies(usize::MAX)
        .x_forwarded_for()
        .key(&request("x-forwarded-for", &[b"1.2.3.4"], PEER));
    assert_eq!(key, peer_ip());
}

/// A megabyte of quotes, backslashes and commas is read in time linear in its length
/// (the test would take minutes if quadratic) and falls back to the peer.
#[test]
fn huge_pathological_forwarded_headers_are_linear_and_harmless() {
    for unit in [
        &b"\\\""[..],
        b"\"",
        b",",
        b"\\",
        b"for=\",",
        b"\\\\\"",
        b";for=\"",
    ] {
        let value: Vec<u8> = unit.iter().copied().cycle().take(1 << 20).collect();
        for proxies in [1, 2, 1000] {
            let key = ClientIp::behind_proxies(proxies).forwarded().key(&request(
                "forwarded",
                &[&value],
                PEER,
            ));
            assert_eq!(key, peer_ip(), "{:?}", String::from_utf8_lossy(unit));
            let key = ClientIp::behind_proxies(proxies)
                .x_forwarded_for()
                .key(&request("x-forwarded-for", &[&value], PEER));
            assert_eq!(key, peer_ip(), "{:?}", String::from_utf8_lossy(unit));
        }
    }
    // Many lines, each empty-ish.
    let lines: Vec<&[u8]> = vec![b" , ,"; 10_000];
    let key = ClientIp::behind_proxies(3).x_forwarded_for().key(&request(
        "x-forwarded-for",
        &lines,
        PEER,
    ));
    assert_eq!(key, peer_ip());
}

/// One IPv6 client holds a whole /64 (2^64 addresses). Keyed by full address, it could
/// fill a default map (10 000 keys) with 10 000 requests and lock every new client out
/// (`TooManyKeys`, 503 through ShedLayer). `ClientIp` keys IPv6 by /64 by default, so the
/// client gets one key and its own limit.
#[test]
fn one_ipv6_client_cannot_lock_new_clients_out_of_a_default_per_ip_map() {
    let clock = FakeClock::new();
    let config = RateLimiter::builder()
        .rate(10, Duration::from_secs(1))
        .build()
        .unwrap();
    let limiter = RateLimiter::with_timer_and_clock(
        config,
        |_: Duration| std::future::ready(()),
        clock.clone(),
    );
    let per_ip: Keyed<Option<IpAddr>, _, _> =
        Keyed::with_clock(KeyedConfig::default(), limiter, clock.clone());
    let client_ip = ClientIp::peer();
    let base = u128::from("2001:db8:1:2::".parse::<Ipv6Addr>().unwrap());
    for i in 0..u128::from(KeyedConfig::default().max_keys()) {
        let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(base + i + 1)), 443);
        let mut req = Request::new(());
        req.extensions_mut().insert(ConnectInfo(addr));
        // One key for the whole /64: the client is limited as one, past its burst.
        let _ = per_ip.try_acquire(&client_ip.key(&req));
    }
    assert_eq!(per_ip.len(), 1, "one /64, one key");
    clock.advance(Duration::from_secs(1));
    let mut newcomer = Request::new(());
    newcomer.extensions_mut().insert(ConnectInfo(
        "192.0.2.10:1234".parse::<SocketAddr>().unwrap(),
    ));
    let verdict = per_ip.try_acquire(&client_ip.key(&newcomer));
    assert!(
        !matches!(verdict, Err(Rejected::TooManyKeys(_))),
        "a new client locked out by one /64: {verdict:?}"
    );
}

/// `HeaderKey` keeps non-UTF-8 values lossily, so distinct values share one key. Noted, not
/// claimed as a defect (documented; real ids are ASCII): passes.
#[test]
fn header_keys_that_differ_only_in_invalid_bytes_share_a_key() {
    let by_key = HeaderKey::from_static("x-api-key");
    let a = by_key.key(&request("x-api-key", &[b"k\xff"], PEER));
    let b = by_key.key(&request("x-api-key", &[b"k\xfe"], PEER));
    assert_eq!(a, b);
}
