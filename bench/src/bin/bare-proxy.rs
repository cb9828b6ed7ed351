//! The reference row of the benchmark: a bare HTTP/1.1 reverse proxy (hyper server, hyper's
//! pooled client) with no authentication, no access check, no parsing and no logging. It shows
//! what two loopback sockets and HTTP/1.1 framing cost on the machine, i.e. the floor any
//! gateway built on hyper starts from. For benchmarking only.
//!
//! Usage: bare-proxy <listen-port> <backend-port>

use std::convert::Infallible;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Upstream = Client<HttpConnector, Full<Bytes>>;

const FORWARDED: [&str; 4] = [
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
];

async fn proxy(client: Upstream, backend: u16, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let answer = async {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let mut out = Request::post(format!("http://127.0.0.1:{backend}{}", parts.uri.path()))
            .body(Full::new(body))?;
        for (name, value) in &parts.headers {
            if FORWARDED.contains(&name.as_str()) {
                out.headers_mut().insert(name.clone(), value.clone());
            }
        }
        let res = client.request(out).await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok(Response::from_parts(parts, Full::new(body)))
    };
    answer.await.unwrap_or_else(|_| {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        res
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().context("listen port")?.parse()?;
    let backend: u16 = args.next().context("backend port")?.parse()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let client = client.clone();
                async move { Ok::<_, Infallible>(proxy(client, backend, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
