//! Redis for the tests: a real `redis-server` per test, a test binary re-run as a second
//! process, and a scripted peer that answers every command with fixed bytes.
//!
//! Everything here is blocking std code (threads, `std::net`, `std::process`), so it works the
//! same from `#[test]` and `#[tokio::test]`; each call is short (one loopback round trip).
//! Include it under a name other than `redis`, which would clash with the `redis` crate:
//!
//! ```ignore
//! #[path = "../support/redis.rs"]
//! mod redis_support;
//! ```
//!
//! Bounds are real time and generous (CI machines are small and busy); every loop is bounded
//! and panics with what it saw. Nothing here asserts on timing.

#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to answer its first PING.
const START_BOUND: Duration = Duration::from_secs(20);
/// Connect, read and write timeout of [`command_at`].
const IO_BOUND: Duration = Duration::from_secs(10);
/// How long a child test process may run.
const CHILD_BOUND: Duration = Duration::from_secs(60);
/// Attempts at a free port, for when another process takes the one we released.
const PORT_ATTEMPTS: usize = 5;

const INSTALL_HINT: &str = "redis-server is not on PATH. The redis tests start their own \
     server: install it with `apt-get install redis-server` (Debian/Ubuntu), or run \
     `bash .ci/run`, which installs it when missing.";

// ===== RedisServer =====

/// A `redis-server` of this test's own, on 127.0.0.1 at a free port, with a temporary
/// directory. Dropping it kills the process (by its id) and removes the directory.
///
/// Nothing is persisted (`--save ""`, no AOF): a [`restart`](Self::restart) comes back empty,
/// as a failover to a fresh instance would.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    pid: u32,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (with how to install it), or if it does not answer
    /// within a generous bound (with its log).
    pub fn start() -> RedisServer {
        // Built first, so that its Drop removes the directory if anything below panics.
        let mut server = RedisServer {
            port: 0,
            dir: temp_dir(),
            child: None,
            pid: 0,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            let mut child = spawn_server(server.port, &server.dir);
            match wait_for_pong(server.port, &server.dir, &mut child) {
                Ok(()) => {
                    server.pid = child.id();
                    server.child = Some(child);
                    return server;
                }
                // Between releasing the port and the server binding it, someone else took it.
                Err(log) if log.contains("Address already in use") && attempt < PORT_ATTEMPTS => {
                    stop(&mut child);
                    // The next attempt's failure must be judged on its own log.
                    let _ = fs::remove_file(server.dir.join("redis.log"));
                }
                Err(log) => {
                    stop(&mut child);
                    panic!(
                        "redis-server on port {} did not answer PING; its log:\n{log}",
                        server.port
                    );
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id of the current (or, after [`kill`](Self::kill), the last) server.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's working directory (its log is `redis.log` in there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server with SIGKILL and waits for it: afterwards connections to its port
    /// are refused. Does nothing if it is already stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }

    /// Starts the server again on the same port and directory (killing it first if it is
    /// running), and waits until it answers PING. It starts empty.
    ///
    /// # Panics
    ///
    /// If the server does not answer, for instance because another process took the port
    /// while it was down (with its log).
    pub fn restart(&mut self) {
        self.kill();
        let mut child = spawn_server(self.port, &self.dir);
        if let Err(log) = wait_for_pong(self.port, &self.dir, &mut child) {
            stop(&mut child);
            panic!(
                "redis-server restarted on port {} did not answer PING; its log:\n{log}",
                self.port
            );
        }
        self.pid = child.id();
        self.child = Some(child);
    }

    /// Sends one command on a fresh connection and returns the raw reply, e.g.
    /// `command(&["DBSIZE"])` is `":0\r\n"`. See [`command_at`].
    pub fn command(&self, args: &[&str]) -> String {
        command_at(self.port, args)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(&self.dir)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("pid", &self.pid)
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// A fresh directory under the system's temp dir, unique across processes and tests.
fn temp_dir() -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for _ in 0..100 {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "palisade-redis-{}-{seq}-{nanos}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
    panic!(
        "no free temporary directory name under {:?}",
        std::env::temp_dir()
    )
}

/// A port the kernel just handed out, released again so the server can bind it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

fn spawn_server(port: u16, dir: &Path) -> Child {
    // Appending keeps the first run's log readable after a restart.
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))
        .expect("open redis.log");
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
        Err(e) => panic!("cannot start redis-server: {e}"),
    }
}

/// Waits until a plain `PING` gets `+PONG`; on failure, gives back the log.
fn wait_for_pong(port: u16, dir: &Path, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + START_BOUND;
    loop {
        if ping(port) {
            return Ok(());
        }
        if let Some(status) = child.try_wait().expect("try_wait redis-server") {
            return Err(format!(
                "{}\n(redis-server exited: {status})",
                read_log(dir)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}\n(no PONG within {START_BOUND:?})",
                read_log(dir)
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn stop(child: &mut Child) {
    // An already exited child makes kill fail; wait still reaps it.
    let _ = child.kill();
    let _ = child.wait();
}

fn read_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("redis.log")).unwrap_or_else(|e| format!("(no log: {e})"))
}

// ===== commands over raw RESP =====

/// Sends one command to 127.0.0.1:`port` on a fresh connection and returns the raw reply
/// text, CRLFs included: `"+OK\r\n"`, `"$5\r\nvalue\r\n"`, `":1\r\n"`, `"$-1\r\n"`. Needs
/// no Redis client library, so a test can check what the library wrote.
///
/// # Panics
///
/// If the connection fails, the reply is not RESP, or it is not complete within a generous
/// bound.
pub fn command_at(port: u16, args: &[&str]) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, IO_BOUND)
        .unwrap_or_else(|e| panic!("connect to {addr} for {args:?}: {e}"));
    stream.set_read_timeout(Some(IO_BOUND)).unwrap();
    stream.set_write_timeout(Some(IO_BOUND)).unwrap();
    stream
        .write_all(&encode_command(args))
        .unwrap_or_else(|e| panic!("send {args:?} to {addr}: {e}"));
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match reply_len(&reply) {
            Ok(Some(len)) => {
                reply.truncate(len);
                return String::from_utf8_lossy(&reply).into_owned();
            }
            Ok(None) => {}
            Err(e) => panic!(
                "{args:?} to {addr}: {e}: {:?}",
                String::from_utf8_lossy(&reply)
            ),
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "{addr} closed the connection mid-reply to {args:?}: {:?}",
                String::from_utf8_lossy(&reply)
            ),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "reading the reply to {args:?} from {addr}: {e} (so far {:?})",
                String::from_utf8_lossy(&reply)
            ),
        }
    }
}

fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The length of the RESP2 reply at the start of `buf`, `None` while it is incomplete.
fn reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(line) = find_crlf(buf) else {
        return Ok(None);
    };
    let next = line + 2;
    match buf[0] {
        b'+' | b'-' | b':' => Ok(Some(next)),
        b'$' => match parse_len(&buf[1..line])? {
            None => Ok(Some(next)),
            Some(n) => Ok((buf.len() >= next + n + 2).then_some(next + n + 2)),
        },
        b'*' => {
            let Some(n) = parse_len(&buf[1..line])? else {
                return Ok(Some(next));
            };
            let mut at = next;
            for _ in 0..n {
                match reply_len(&buf[at..])? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(format!("no RESP reply starts with {:?}", other as char)),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// A `$`/`*` length: `None` for -1 (nil), an error for anything else that is not a count.
fn parse_len(digits: &[u8]) -> Result<Option<usize>, String> {
    let text = std::str::from_utf8(digits).map_err(|_| "length is not ASCII".to_string())?;
    if text == "-1" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("bad length {text:?}"))
}

// ===== the test binary as a second process =====

/// Set in a process started by [`spawn_self`], to the name of the test it runs.
pub const CHILD_ENV: &str = "PALISADE_NET_CHILD";

/// Runs one test of this test binary in a new process, with `envs` added to its environment
/// (fleet-wide limits need two processes sharing one Redis, without a `[[bin]]`). Its stdout
/// and stderr are piped; hand it to [`wait_ok`].
///
/// The child-mode test is an ordinary `#[test]` that returns at once unless [`is_child`], so
/// a plain `cargo test` passes over it:
///
/// ```ignore
/// #[test]
/// fn parent() {
///     let redis = RedisServer::start();
///     let child = spawn_self("child_takes_a_token", &[("REDIS_URL", &redis.url())]);
///     wait_ok(child);
/// }
///
/// #[test]
/// fn child_takes_a_token() {
///     if !is_child() {
///         return;
///     }
///     let url = std::env::var("REDIS_URL").unwrap();
///     // ...
/// }
/// ```
///
/// `test_name` is the test's full path within the binary (`child_takes_a_token`, or
/// `module::child_takes_a_token`); it is matched exactly.
pub fn spawn_self(test_name: &str, envs: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test_name)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("re-running {} for {test_name}: {e}", exe.display()))
}

/// Whether this process was started by [`spawn_self`].
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Waits (within a generous bound) for a [`spawn_self`] child and returns its stdout.
///
/// # Panics
///
/// With the child's output, if it failed, did not finish in time (it is killed), or ran no
/// test at all (a misspelt name matches nothing, and libtest counts that as success).
pub fn wait_ok(mut child: Child) -> String {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + CHILD_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            stop(&mut child);
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let outcome = match status {
        None => format!("did not finish within {CHILD_BOUND:?}"),
        Some(s) if !s.success() => format!("failed ({s})"),
        Some(_) if !stdout.contains("running 1 test") => "ran no test (is the name right?)".into(),
        Some(_) => return stdout,
    };
    panic!(
        "child process {} {outcome}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        child.id()
    );
}

/// Reads a pipe to its end on a thread, so a chatty child never blocks on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

// ===== RespPeer =====

/// A RESP peer on 127.0.0.1 that answers every command it reads with the same scripted
/// bytes, for replies a real server never sends (truncated, garbage, wrong type). Commands
/// are framed, so pipelined commands get one reply each; an empty reply never answers.
/// It stops, closing every connection, when dropped.
pub struct RespPeer {
    addr: SocketAddr,
    shared: Arc<PeerShared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct PeerShared {
    stopping: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
    commands: Mutex<Vec<Vec<String>>>,
}

impl RespPeer {
    /// Listens on a free port and answers each command with `reply`.
    pub fn start(reply: &'static [u8]) -> RespPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(PeerShared::default());
        let state = shared.clone();
        let acceptor = thread::spawn(move || {
            for stream in listener.incoming() {
                if state.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Ok(handle) = stream.try_clone() else {
                    continue;
                };
                state.connections.lock().unwrap().push(handle);
                let conn_state = state.clone();
                let handler = thread::spawn(move || serve(stream, reply, &conn_state));
                state.handlers.lock().unwrap().push(handler);
            }
        });
        RespPeer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.addr.port())
    }

    /// Every command read so far, in order, each as its arguments (`["PING"]`).
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.shared.commands.lock().unwrap().clone()
    }
}

impl Drop for RespPeer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocking accept, which then sees `stopping`.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // The acceptor is gone, so these lists are final; shutting a socket down wakes its
        // handler's blocking read.
        for conn in self.shared.connections.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
        let handlers: Vec<_> = self.shared.handlers.lock().unwrap().drain(..).collect();
        for handler in handlers {
            let _ = handler.join();
        }
    }
}

impl std::fmt::Debug for RespPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespPeer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn serve(mut stream: TcpStream, reply: &[u8], state: &PeerShared) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        loop {
            match command_frame(&buf) {
                // An empty inline line, which Redis ignores too.
                Ok(Some((len, args))) if args.is_empty() => {
                    buf.drain(..len);
                }
                Ok(Some((len, args))) => {
                    buf.drain(..len);
                    state.commands.lock().unwrap().push(args);
                    if !reply.is_empty() && stream.write_all(reply).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                // Not a command: a real server would drop such a client too.
                Err(_) => return,
            }
        }
    }
}

/// The command at the start of `buf` (its length and arguments), `None` while incomplete.
/// Clients send an array of bulk strings; an inline command (`PING\r\n`) is one line.
fn command_frame(buf: &[u8]) -> Result<Option<(usize, Vec<String>)>, String> {
    let Some(line) = find_crlf(buf) else {
        return Ok(None);
    };
    if buf[0] != b'*' {
        let text = String::from_utf8_lossy(&buf[..line]);
        let args = text.split_whitespace().map(str::to_owned).collect();
        return Ok(Some((line + 2, args)));
    }
    let count = parse_len(&buf[1..line])?.unwrap_or(0);
    let mut at = line + 2;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let rest = &buf[at..];
        let Some(line) = find_crlf(rest) else {
            return Ok(None);
        };
        if rest[0] != b'$' {
            return Err(format!("expected a bulk string, got {:?}", rest[0] as char));
        }
        let len = parse_len(&rest[1..line])?.ok_or("nil argument")?;
        let start = line + 2;
        if rest.len() < start + len + 2 {
            return Ok(None);
        }
        args.push(String::from_utf8_lossy(&rest[start..start + len]).into_owned());
        at += start + len + 2;
    }
    Ok(Some((at, args)))
}
