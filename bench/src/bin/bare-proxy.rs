//! Experiment only: the floor cost of an HTTP/1.1 proxy on this machine.
//! Usage: bare-proxy <listen-port> <backend-port> pool|inline
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type Conn = (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    hyper::client::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>,
);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[1].parse().unwrap();
    let backend: u16 = args[2].parse().unwrap();
    let inline = args[3] == "inline";
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let client = Arc::new(client);
    let rq = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).tcp_nodelay(true).build().unwrap();
    let use_rq = args[3] == "reqwest";
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let client = client.clone();
        let rq = rq.clone();
        tokio::spawn(async move {
            let slot: Arc<tokio::sync::Mutex<Option<Conn>>> = Arc::new(tokio::sync::Mutex::new(None));
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                let rq = rq.clone();
                let slot = slot.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let mut out = Request::post(format!("http://127.0.0.1:{backend}/mcp"))
                        .body(Full::new(body))
                        .unwrap();
                    for (k, v) in parts.headers.iter() {
                        if k == "mcp-session-id" || k == "mcp-protocol-version" || k == "content-type" || k == "accept" {
                            out.headers_mut().insert(k.clone(), v.clone());
                        }
                    }
                    let (status, bytes) = if use_rq {
                        let (p, b) = out.into_parts();
                        let mut r = rq.post(format!("http://127.0.0.1:{backend}/mcp")).body(b.collect().await.unwrap().to_bytes());
                        for (k, v) in p.headers.iter() { r = r.header(k, v); }
                        let res = tokio::time::timeout(std::time::Duration::from_secs(30), r.send()).await.unwrap().unwrap();
                        let status = res.status();
                        (status, res.bytes().await.unwrap())
                    } else if inline {
                        let mut guard = slot.lock().await;
                        if guard.is_none() {
                            let s = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await.unwrap();
                            s.set_nodelay(true).unwrap();
                            *guard = Some(hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap());
                        }
                        let (sender, conn) = guard.as_mut().unwrap();
                        let fut = async {
                            let res = sender.send_request(out).await.unwrap();
                            let status = res.status();
                            let b = res.into_body().collect().await.unwrap().to_bytes();
                            (status, b)
                        };
                        tokio::pin!(fut);
                        let mut conn = std::pin::Pin::new(conn);
                        loop {
                            tokio::select! {
                                biased;
                                r = &mut fut => break r,
                                _ = &mut conn => panic!("conn closed"),
                            }
                        }
                    } else {
                        let res = client.request(out).await.unwrap();
                        let status = res.status();
                        let b = res.into_body().collect().await.unwrap().to_bytes();
                        (status, b)
                    };
                    let mut res = Response::new(Full::new(bytes));
                    *res.status_mut() = status;
                    res.headers_mut().insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(res)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
