//! Real HTTP servers on 127.0.0.1 for the tests: any axum app, one that answers from a
//! script, one that drops every connection. Each stops when its handle is dropped.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the scripted server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with this status, and a `Retry-After` header when given.
    Status(u16, Option<&'static str>),
    /// Wait this long, then answer 200.
    Slow(Duration),
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    hits: Mutex<Vec<Instant>>,
}

/// An axum app served on 127.0.0.1 (a free port) until this is dropped.
pub struct Serving {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Serving {
    pub async fn start(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Serving { addr, task }
    }

    /// As [`start`](Self::start), with each request carrying its connection's peer address
    /// as `ConnectInfo<SocketAddr>` (what per-client keys read).
    pub async fn start_with_connect_info(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap();
        });
        Serving { addr, task }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server that answers each request with the next scripted reply, or 200 "ok" when the
/// script is empty, and records when each request arrived.
pub struct Scripted {
    pub addr: SocketAddr,
    script: Arc<Script>,
    _serving: Serving,
}

impl Scripted {
    pub async fn start() -> Self {
        let script = Arc::new(Script::default());
        let state = script.clone();
        let app = Router::new().fallback(any(move || {
            let state = state.clone();
            async move { answer(&state).await }
        }));
        let serving = Serving::start(app).await;
        Scripted {
            addr: serving.addr,
            script,
            _serving: serving,
        }
    }

    /// Queues replies for the next requests.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.replies.lock().unwrap().extend(replies);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// When each request arrived, in order.
    pub fn hits(&self) -> Vec<Instant> {
        self.script.hits.lock().unwrap().clone()
    }
}

async fn answer(script: &Script) -> Response {
    script.hits.lock().unwrap().push(Instant::now());
    let next = script.replies.lock().unwrap().pop_front();
    match next {
        None => (StatusCode::OK, "ok").into_response(),
        Some(Reply::Slow(d)) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "slow ok").into_response()
        }
        Some(Reply::Status(code, retry_after)) => {
            let mut resp = StatusCode::from_u16(code).unwrap().into_response();
            if let Some(after) = retry_after {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(after));
            }
            resp
        }
    }
}

/// A server that accepts connections and closes them at once, counting them.
pub struct Dropping {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Dropping {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Dropping {
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Dropping {
    fn drop(&mut self) {
        self.task.abort();
    }
}
