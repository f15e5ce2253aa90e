//! What the metrics endpoint answers: a table of routes (a path, the methods it takes, and
//! a function from the request and the [`Source`] to a [`Response`]), and the replies to
//! requests no route takes.
//!
//! Adding a route is one row in [`ROUTES`] and one function. Nothing here touches a
//! socket: the endpoint's loop parses a request, asks [`respond`], and sends the bytes.

use super::live;
use super::request::{Invalid, Request};
use super::response::{Response, Source};
use super::{CONTENT_TYPE, render};

/// One route: a path, the methods it answers, and how.
struct Route {
    /// The path it serves, exactly (the query is ignored).
    path: &'static str,
    /// The methods it answers. A route that takes `GET` takes `HEAD` too: the same head,
    /// no body.
    methods: &'static [&'static str],
    /// The reply to a request for it.
    answer: fn(&Request<'_>, &Source) -> Response,
}

/// Every route the endpoint serves.
const ROUTES: &[Route] = &[
    Route {
        path: "/metrics",
        methods: &["GET"],
        answer: metrics,
    },
    Route {
        path: "/",
        methods: &["GET"],
        answer: live::page,
    },
    Route {
        path: "/live.json",
        methods: &["GET"],
        answer: live::json,
    },
    Route {
        path: "/step",
        methods: &["POST"],
        answer: live::step,
    },
    Route {
        path: "/run",
        methods: &["POST"],
        answer: live::run,
    },
    Route {
        path: "/pause",
        methods: &["POST"],
        answer: live::pause,
    },
    Route {
        path: "/healthz",
        methods: &["GET"],
        answer: healthz,
    },
];

/// `GET /healthz`, for a load balancer's health check: `200` while serving, `503` from
/// the moment a stop or an upgrade begins until the process exits.
fn healthz(_request: &Request<'_>, source: &Source) -> Response {
    let (status, body) = if source.stats.is_draining() {
        (503, "draining\n")
    } else {
        (200, "ok\n")
    };
    Response::new(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

/// `GET /metrics`: the Prometheus text exposition of a fresh snapshot.
fn metrics(_request: &Request<'_>, source: &Source) -> Response {
    Response::new(
        200,
        CONTENT_TYPE,
        render(&source.stats.snapshot()).into_bytes(),
    )
}

/// The reply to `request`: its route's answer, `405` with `Allow` when the path is served
/// but not with this method, `404` when no route serves the path.
pub(crate) fn respond(request: &Request<'_>, source: &Source) -> Response {
    let Some(route) = ROUTES.iter().find(|route| route.path == request.path) else {
        return Response::text(404);
    };
    let takes = |method: &str| route.methods.contains(&method);
    if takes(request.method) || (request.method == "HEAD" && takes("GET")) {
        return (route.answer)(request, source);
    }
    let mut allow = route.methods.join(", ");
    if takes("GET") {
        allow.push_str(", HEAD");
    }
    let mut response = Response::text(405);
    response.allow = Some(allow);
    response
}

/// The reply to bytes that can never become an acceptable request.
pub(crate) fn refuse(invalid: Invalid) -> Response {
    Response::text(match invalid {
        Invalid::Malformed => 400,
        Invalid::HeadTooLarge => 431,
        Invalid::BodyTooLarge => 413,
        Invalid::NotImplemented => 501,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LiveStats;
    use crate::metrics::request::{Parsed, parse};
    use crate::metrics::response::reason;
    use crate::worker::Live;

    /// A source over a server that has never run.
    fn source() -> Source {
        Source {
            stats: LiveStats::new(std::sync::Arc::new(Live::default())),
        }
    }

    /// The reply to `input`, which must be one whole request, as text.
    #[track_caller]
    fn reply(input: &[u8]) -> String {
        let Parsed::Request(request) = parse(input) else {
            panic!("not a whole request: {input:?}");
        };
        let response = respond(&request, &source());
        let bytes = response.to_bytes(request.method == "HEAD", !request.keep_alive, 1);
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn metrics_answer_get_and_head_with_the_exposition() {
        let get = reply(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.contains("tcp_reactor_connections_open 0\n"), "{get}");
        let head = reply(b"HEAD /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
        let (head, body) = head.split_once("\r\n\r\n").expect("a head");
        assert!(head.contains("Content-Length: "), "{head}");
        assert!(!head.contains("Content-Length: 0\r\n"), "{head}");
        assert_eq!(body, "");
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
        assert!(
            reply(b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n")
                .starts_with("HTTP/1.1 404 Not Found\r\n")
        );
        let post = reply(b"POST /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        assert!(post.contains("\r\nConnection: close\r\n"), "{post}");
    }

    #[test]
    fn every_refusal_has_its_status() {
        for (invalid, status) in [
            (Invalid::Malformed, 400),
            (Invalid::HeadTooLarge, 431),
            (Invalid::BodyTooLarge, 413),
            (Invalid::NotImplemented, 501),
        ] {
            let response = refuse(invalid);
            assert_eq!(response.status, status);
            assert!(!reason(status).is_empty());
        }
    }
}
