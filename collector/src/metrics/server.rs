//! The HTTP side: `GET /metrics` serves the latest rendered text (tiny_http), nothing else.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;

/// Threads answering scrapes: one slow client cannot hold up the others.
const HTTP_THREADS: usize = 2;
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The latest rendered exposition, swapped in whole by the main loop.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Arc<String>>>);

impl Shared {
    pub fn set(&self, text: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(text);
    }

    fn get(&self) -> Arc<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Binds and serves on background threads; returns the bound address.
pub fn serve(addr: SocketAddr, text: Shared) -> Result<SocketAddr, String> {
    let server = tiny_http::Server::http(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    let server = Arc::new(server);
    for i in 0..HTTP_THREADS {
        let server = Arc::clone(&server);
        let text = text.clone();
        thread::Builder::new()
            .name(format!("metrics-http-{i}"))
            .spawn(move || answer_forever(&server, &text))
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    }
    Ok(bound)
}

fn answer_forever(server: &tiny_http::Server, text: &Shared) {
    let header = |k: &str, v: &str| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok();
    loop {
        let Ok(request) = server.recv() else { return };
        let path = request.url().split('?').next().unwrap_or("");
        let get = matches!(request.method(), tiny_http::Method::Get | tiny_http::Method::Head);
        let response = match (get, path) {
            (true, "/metrics") => {
                let body = text.get();
                let mut r = tiny_http::Response::from_data(body.as_bytes().to_vec());
                if let Some(h) = header("Content-Type", CONTENT_TYPE) {
                    r.add_header(h);
                }
                r
            }
            (true, "/") => tiny_http::Response::from_string("leakscope listen: metrics at /metrics\n"),
            (false, _) => tiny_http::Response::from_string("only GET\n").with_status_code(405),
            _ => tiny_http::Response::from_string("not found: metrics are at /metrics\n").with_status_code(404),
        };
        // A client that went away is its own problem.
        let _ = request.respond(response);
    }
}
