//! The Redis test harness itself (tests/net/support/redis.rs): servers of a test's own that
//! start, stop, restart and run side by side; a test re-run as a second process; a scripted
//! RESP peer. Real sockets and processes: real time, generous bounds, no timing assertions.

#[path = "../support/redis.rs"]
mod redis_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use redis_support::{RedisServer, RespPeer, command_at, is_child, spawn_self, wait_ok};

fn refused(port: u16) -> bool {
    match TcpStream::connect(("127.0.0.1", port)) {
        Ok(_) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
    }
}

#[test]
fn a_server_starts_and_answers_ping() {
    let redis = RedisServer::start();
    assert_eq!(redis.command(&["PING"]), "+PONG\r\n");
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert!(redis.pid() > 0);
}

#[test]
fn set_then_get_round_trips_a_value() {
    let redis = RedisServer::start();
    assert_eq!(redis.command(&["SET", "k", "value"]), "+OK\r\n");
    assert_eq!(redis.command(&["GET", "k"]), "$5\r\nvalue\r\n");
    assert_eq!(redis.command(&["GET", "missing"]), "$-1\r\n");
    assert_eq!(redis.command(&["DBSIZE"]), ":1\r\n");
    assert_eq!(
        redis.command(&["MGET", "k", "missing"]),
        "*2\r\n$5\r\nvalue\r\n$-1\r\n"
    );
    assert!(redis.command(&["NOSUCHCOMMAND"]).starts_with("-ERR"));
}

#[test]
fn kill_refuses_connections_and_restart_serves_again_empty_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    let first = redis.pid();
    assert_eq!(redis.command(&["SET", "k", "v"]), "+OK\r\n");

    redis.kill();
    assert!(refused(port), "port {port} still accepts after kill");
    redis.kill();

    redis.restart();
    assert_eq!(redis.port(), port);
    assert_ne!(redis.pid(), first);
    assert_eq!(redis.command(&["PING"]), "+PONG\r\n");
    assert_eq!(redis.command(&["DBSIZE"]), ":0\r\n", "nothing is persisted");
    assert!(redis.log().contains("Ready to accept connections"));
}

#[test]
fn dropping_a_server_stops_it_and_removes_its_directory() {
    let redis = RedisServer::start();
    let (port, dir) = (redis.port(), redis.dir().to_owned());
    assert!(dir.join("redis.log").exists());
    drop(redis);
    assert!(refused(port), "port {port} still accepts after drop");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn two_servers_run_side_by_side_on_different_ports() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    assert_eq!(a.command(&["SET", "only-in-a", "1"]), "+OK\r\n");
    assert_eq!(a.command(&["EXISTS", "only-in-a"]), ":1\r\n");
    assert_eq!(b.command(&["EXISTS", "only-in-a"]), ":0\r\n");
}

#[test]
fn a_child_process_writes_a_key_the_parent_reads() {
    let redis = RedisServer::start();
    let port = redis.port().to_string();
    let child = spawn_self("child_writes_a_key", &[("REDIS_PORT", &port)]);
    wait_ok(child);
    assert_eq!(redis.command(&["GET", "from-child"]), "$5\r\nhello\r\n");
}

/// The child half of the test above; a plain run passes over it.
#[test]
fn child_writes_a_key() {
    if !is_child() {
        return;
    }
    let port: u16 = std::env::var("REDIS_PORT").unwrap().parse().unwrap();
    assert_eq!(command_at(port, &["SET", "from-child", "hello"]), "+OK\r\n");
}

#[test]
#[should_panic(expected = "ran no test")]
fn a_misspelt_child_name_fails_rather_than_passing_vacuously() {
    wait_ok(spawn_self("no_such_test", &[]));
}

#[test]
fn a_resp_peer_answers_each_command_with_its_scripted_bytes() {
    const TRUNCATED: &[u8] = b"$5\r\nhel";
    let peer = RespPeer::start(TRUNCATED);
    assert_eq!(peer.url(), format!("redis://127.0.0.1:{}/", peer.port()));

    let mut stream = TcpStream::connect(("127.0.0.1", peer.port())).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // Two commands in one write, the second split across writes: one answer each.
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET")
        .unwrap();
    stream.write_all(b"\r\n$1\r\nk\r\n").unwrap();
    let mut answers = [0u8; 2 * TRUNCATED.len()];
    stream.read_exact(&mut answers).unwrap();
    assert_eq!(&answers[..TRUNCATED.len()], TRUNCATED);
    assert_eq!(&answers[TRUNCATED.len()..], TRUNCATED);
    assert_eq!(peer.commands(), [vec!["PING"], vec!["GET", "k"]]);

    // Dropping the peer closes the connection the client still holds.
    drop(peer);
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn a_resp_peer_with_a_complete_reply_reads_like_a_server() {
    let peer = RespPeer::start(b"-ERR scripted\r\n");
    assert_eq!(command_at(peer.port(), &["PING"]), "-ERR scripted\r\n");
}
