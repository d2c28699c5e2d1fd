//! Black-box tests of the proxy over real sockets on 127.0.0.1 port 0, with real WebSocket
//! clients and the real echo backend: one test binary (one link of pingora and kube instead of
//! one per file), a module per behaviour.

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod cli;
mod cores;
mod demo;
mod drain;
mod forwarded;
mod fuzz;
mod keepalive;
mod limits;
mod local_mode;
mod peers;
mod proxy_protocol;
mod relay;
mod reload;
mod routing;
mod smuggling;
mod tls;
mod tls_forwarding;
mod upgrades;
mod websocket;
