//! A real gRPC server on 127.0.0.1 (tonic-health's service: no protoc needed) behind a
//! layer that fails requests on command with a trailers-only status, as a struggling server
//! does. It stops when its handle is dropped.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tower::{Layer, Service};

/// What the server does with one request, instead of serving it at once.
#[derive(Debug, Clone, Copy)]
pub enum Trouble {
    /// Answer with this status, trailers-only.
    Fail(tonic::Code),
    /// Serve it after this long.
    Delay(std::time::Duration),
    /// Answer with this bare HTTP status, no `grpc-status` and no body, as an L7 proxy in
    /// front of the server does when it has no healthy upstream.
    Http(u16),
}

#[derive(Default)]
pub struct Script {
    troubles: Mutex<VecDeque<Trouble>>,
    hits: AtomicUsize,
}

pub struct GrpcServer {
    pub addr: SocketAddr,
    script: Arc<Script>,
    task: JoinHandle<()>,
}

impl GrpcServer {
    /// Serves the health service, reporting every service as SERVING.
    pub async fn start() -> Self {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let script = Arc::new(Script::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chaos = ChaosLayer(script.clone());
        let task = tokio::spawn(async move {
            // Keep the reporter alive as long as the server.
            let _reporter = reporter;
            tonic::transport::Server::builder()
                .layer(chaos)
                .add_service(health)
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        GrpcServer { addr, script, task }
    }

    /// Fails the next requests with these codes, one each.
    pub fn fail_next(&self, codes: impl IntoIterator<Item = tonic::Code>) {
        self.then(codes.into_iter().map(Trouble::Fail));
    }

    /// Queues troubles for the next requests, one each.
    pub fn then(&self, troubles: impl IntoIterator<Item = Trouble>) {
        self.script.troubles.lock().unwrap().extend(troubles);
    }

    /// Requests that reached the server (failed on command or not).
    pub fn hits(&self) -> usize {
        self.script.hits.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct ChaosLayer(Arc<Script>);

impl<S> Layer<S> for ChaosLayer {
    type Service = Chaos<S>;

    fn layer(&self, inner: S) -> Chaos<S> {
        Chaos {
            inner,
            script: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Chaos<S> {
    inner: S,
    script: Arc<Script>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Chaos<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        self.script.hits.fetch_add(1, Ordering::SeqCst);
        let trouble = self.script.troubles.lock().unwrap().pop_front();
        match trouble {
            // A trailers-only answer: the status in the headers, no message.
            Some(Trouble::Fail(code)) => {
                let resp = tonic::Status::new(code, "failing on command").into_http();
                Box::pin(async move { Ok(resp) })
            }
            Some(Trouble::Http(code)) => {
                let mut resp = http::Response::new(ResBody::default());
                *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
                Box::pin(async move { Ok(resp) })
            }
            Some(Trouble::Delay(d)) => {
                let served = self.inner.call(req);
                Box::pin(async move {
                    tokio::time::sleep(d).await;
                    served.await
                })
            }
            None => Box::pin(self.inner.call(req)),
        }
    }
}
