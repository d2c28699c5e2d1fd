//! A scripted fake API server for unit tests (kube-rs's `tower-test` convention): the test
//! answers each request the client makes, in order, and sees its method, path and body.

#![allow(clippy::unwrap_used)]

use ::kube::Client;
use ::kube::client::Body;
use http::{Request, Response};
use serde_json::{Value, json};
use tower_test::mock;

/// The test's end of the fake API server.
pub struct ApiServer(mock::Handle<Request<Body>, Response<Body>>);

/// One request the client made.
#[derive(Debug)]
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Value,
}

/// A client talking to a fake API server.
pub fn client() -> (Client, ApiServer) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "default"), ApiServer(handle))
}

/// A request taken and never answered: the call hangs while this is held.
pub type Held = mock::SendResponse<Response<Body>>;

impl ApiServer {
    /// Waits for the next request and answers it with `status` and `body`.
    pub async fn answer(&mut self, status: u16, body: Value) -> Seen {
        let (seen, send) = self.hold().await;
        let resp = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(resp);
        seen
    }

    /// Waits for the next request and does not answer it: the caller keeps the handle, and
    /// the client's call hangs as long as it is held.
    pub async fn hold(&mut self) -> (Seen, Held) {
        let (req, send) = self
            .0
            .next_request()
            .await
            .expect("the client sent a request");
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body_in = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let seen = Seen {
            method,
            path,
            query,
            content_type,
            body: body_in,
        };
        (seen, send)
    }

    /// Answers the next request with an error `Status` of `code`.
    pub async fn fail(&mut self, code: u16) -> Seen {
        let reason = match code {
            409 => "Conflict",
            403 => "Forbidden",
            _ => "InternalError",
        };
        self.answer(code, status(code, reason)).await
    }
}

/// A `Status` object as the API server sends with an error.
pub fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
           "reason": reason, "message": format!("{reason} (test)")})
}

/// A `Scale` answer.
pub fn scale(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": name, "namespace": "demo"},
           "spec": {"replicas": replicas}, "status": {"replicas": replicas}})
}
