//! What the endpoint's routes answer from and answer with: the [`Source`] (the running
//! server's live statistics) and a [`Response`] before it is written. Types only, shared by
//! the routes, the live page and the endpoint's loop.

use super::LiveStats;

/// What routes answer from: the running server's live statistics.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Snapshots of the server's counters and gauges.
    pub(crate) stats: LiveStats,
}

/// A reply before it is written: the endpoint adds `Content-Length` and `Connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The `Content-Type` of the body.
    pub(crate) content_type: &'static str,
    /// The `Allow` header of a `405`.
    pub(crate) allow: Option<String>,
    /// The body (left out of the bytes sent for `HEAD`, not out of `Content-Length`).
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A reply with `body` of `content_type`.
    pub(super) fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type,
            allow: None,
            body,
        }
    }

    /// A reply whose body is its reason phrase, as plain text.
    pub(crate) fn text(status: u16) -> Self {
        let body = format!("{}\n", reason(status)).into_bytes();
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// The bytes to send: status line, headers and (unless `head_only`) the body. `close`
    /// says the connection closes after it; `minor_version` is the request's, so that an
    /// HTTP/1.0 client that asked to stay open hears `Connection: keep-alive`.
    pub(crate) fn to_bytes(&self, head_only: bool, close: bool, minor_version: u8) -> Vec<u8> {
        // Every reply is dated (RFC 9110, section 6.6.1): an origin server with a clock
        // must send `Date`.
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            httpdate::fmt_http_date(std::time::SystemTime::now()),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = &self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        } else if minor_version == 0 {
            head.push_str("Connection: keep-alive\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The reason phrase of each status the endpoint sends.
pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        403 => "Forbidden",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}
