//! The live page and its data: `GET /` (one self-contained HTML page, compiled in),
//! `GET /live.json` (each worker's loop as the page draws it, documented in
//! docs/live.md), and step mode's `POST /step`, `/run`, `/pause`.
//!
//! A request for `/live.json` is what makes the workers record (see `watch`); the page
//! polls it. Everything a client controls (a Unix peer's address, payload bytes) leaves
//! here as a JSON string with `<`, `>` and `&` escaped too, and the page only ever puts
//! text into the document as text, never as markup.

use std::fmt::Write as _;

use super::request::Request;
use super::response::{Response, Source};
use crate::worker::watch::{IoRecord, TurnRecord, WorkerView};

/// The page: HTML, CSS and plain JS in one file, no other host, no build step.
const PAGE: &str = include_str!("live.html");

/// `GET /`: the live page.
pub(super) fn page(_request: &Request<'_>, _source: &Source) -> Response {
    Response::new(200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec())
}

/// `GET /live.json`: every worker's loop now; keeps the workers recording a while.
pub(super) fn json(_request: &Request<'_>, source: &Source) -> Response {
    let live = &source.stats.live;
    live.watch.touch();
    let body = render(source);
    Response::new(200, "application/json", body.into_bytes())
}

/// `POST /step`: run one more turn on each worker; only under step mode.
pub(super) fn step(_request: &Request<'_>, source: &Source) -> Response {
    control(source, |watch| watch.step())
}

/// `POST /run`: let the loop run freely; only under step mode.
pub(super) fn run(_request: &Request<'_>, source: &Source) -> Response {
    control(source, |watch| watch.set_paused(false))
}

/// `POST /pause`: stop the loop before its next turn; only under step mode.
pub(super) fn pause(_request: &Request<'_>, source: &Source) -> Response {
    control(source, |watch| watch.set_paused(true))
}

/// Apply a step-mode control, or refuse with `403` when the server is not in step mode:
/// nobody can pause or step a loop that was not started to be stepped.
fn control(source: &Source, change: impl FnOnce(&crate::worker::watch::Watch)) -> Response {
    let watch = &source.stats.live.watch;
    if !watch.step_mode() {
        return Response::new(
            403,
            "text/plain; charset=utf-8",
            b"Forbidden: the server was not started with --step\n".to_vec(),
        );
    }
    change(watch);
    let (paused, granted) = watch.state();
    Response::new(
        200,
        "application/json",
        format!("{{\"paused\":{paused},\"steps_granted\":{granted}}}\n").into_bytes(),
    )
}

/// The JSON document of `/live.json`.
fn render(source: &Source) -> String {
    let live = &source.stats.live;
    let snapshot = source.stats.snapshot();
    let (paused, granted) = live.watch.state();
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "{{\"version\":1,\"step_mode\":{},\"paused\":{},\"steps_granted\":{granted},\
         \"connections\":{},\"buffered_bytes\":{},\"workers\":[",
        live.watch.step_mode(),
        paused && live.watch.step_mode(),
        snapshot.connections,
        snapshot.buffered_bytes,
    );
    let mut views = live.watch.views();
    if let Some(rows) = live.watch.thread_rows() {
        threads_views(&mut views, rows);
    }
    for (index, view) in views.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let stats = snapshot.workers.get(index).cloned().unwrap_or_default();
        let accepted = snapshot.accepted_by_worker.get(index).copied();
        let _ = write!(
            out,
            "{{\"index\":{index},\"accepted\":{},\"bytes_in\":{},\"bytes_out\":{},",
            accepted.unwrap_or_default(),
            stats.bytes_in,
            stats.bytes_out
        );
        worker(&mut out, view);
        out.push('}');
    }
    out.push_str("]}\n");
    out
}

/// Under the threads model, each worker's view is its connections and their threads: it
/// has no turns, and its buffers are its threads' own.
fn threads_views(views: &mut [WorkerView], rows: Vec<(usize, crate::worker::watch::ConnRow)>) {
    for view in views.iter_mut() {
        view.model = "threads";
    }
    for (worker, row) in rows {
        if let Some(view) = views.get_mut(worker) {
            view.open += 1;
            view.rows.push(row);
        }
    }
    for view in views.iter_mut() {
        view.rows
            .sort_by_key(|row| row.id.parse::<u64>().unwrap_or(u64::MAX));
        view.rows.truncate(crate::worker::watch::TOP_ROWS);
    }
}

/// One worker's view, as the members of its object.
fn worker(out: &mut String, view: &WorkerView) {
    let model = if view.model.is_empty() {
        "unrecorded"
    } else {
        view.model
    };
    let _ = write!(
        out,
        "\"model\":\"{model}\",\"turns\":{},\"turns_per_sec\":{:.1},\"steps_done\":{},\
         \"open\":{},\"buffered_in\":{},\"buffered_out\":{},\"events_histogram\":[",
        view.turns,
        view.turns_per_sec,
        view.steps_done,
        view.open,
        view.buffered_in,
        view.buffered_out
    );
    for (bucket, polls) in view.events_histogram.iter().enumerate() {
        let (min, max) = match bucket {
            0 => (0, 0),
            b if b == crate::worker::watch::BUCKETS - 1 => (1u64 << (b - 1), u64::MAX),
            b => (1u64 << (b - 1), (1u64 << b) - 1),
        };
        let max = if max == u64::MAX {
            "null".to_string()
        } else {
            max.to_string()
        };
        let comma = if bucket > 0 { "," } else { "" };
        let _ = write!(
            out,
            "{comma}{{\"min\":{min},\"max\":{max},\"polls\":{polls}}}"
        );
    }
    out.push_str("],\"last_turns\":[");
    for (i, turn) in view.history.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        turn_record(out, turn);
    }
    out.push_str("],\"timers\":[");
    for (i, (kind, conn, ms)) in view.timers.iter().enumerate() {
        let comma = if i > 0 { "," } else { "" };
        let _ = write!(out, "{comma}{{\"kind\":\"{kind}\",\"conn\":");
        string(out, conn);
        let _ = write!(out, ",\"in_ms\":{ms}}}");
    }
    out.push_str("],\"rows\":[");
    for (i, row) in view.rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        string(out, &row.id);
        out.push_str(",\"peer\":");
        string(out, &row.peer);
        out.push_str(",\"thread\":");
        string(out, &row.thread);
        let _ = write!(
            out,
            ",\"phase\":\"{}\",\"buffered_in\":{},\"buffered_out\":{},\"idle_ms\":{},\
             \"paused\":{}}}",
            row.phase, row.buffered_in, row.buffered_out, row.idle_ms, row.paused
        );
    }
    out.push(']');
}

/// One turn's record as a JSON object.
fn turn_record(out: &mut String, turn: &TurnRecord) {
    let _ = write!(
        out,
        "{{\"turn\":{},\"events\":{},\"accepted\":{},\"read\":{},\"written\":{},\"mail\":{},\
         \"timers_fired\":{},\"reaped\":{},\"ready\":[",
        turn.turn,
        turn.events,
        turn.accepted,
        turn.read,
        turn.written,
        turn.mail,
        turn.timers_fired,
        turn.reaped
    );
    for (i, ready) in turn.ready.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"token\":");
        string(out, &ready.token);
        out.push_str(",\"flags\":[");
        for (j, flag) in ready.flags.iter().enumerate() {
            let comma = if j > 0 { "," } else { "" };
            let _ = write!(out, "{comma}\"{flag}\"");
        }
        out.push_str("]}");
    }
    out.push_str("],\"io\":[");
    for (i, io) in turn.io.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        io_record(out, io);
    }
    out.push_str("]}");
}

/// One read or write as a JSON object; its first bytes as a string in which bytes outside
/// printable ASCII (and the backslash) are written `\xNN`.
fn io_record(out: &mut String, io: &IoRecord) {
    out.push_str("{\"conn\":");
    string(out, &io.conn);
    let _ = write!(out, ",\"op\":\"{}\",\"len\":{},\"first\":", io.op, io.len);
    string(out, &printable(&io.first));
    out.push('}');
}

/// `bytes` as printable ASCII, other bytes (and `\`) as `\xNN`.
pub(crate) fn printable(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        if (0x20..0x7f).contains(&byte) && byte != b'\\' {
            text.push(byte as char);
        } else {
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text
}

/// `text` as a JSON string. Beyond what JSON requires, `<`, `>` and `&` are written as
/// `\u00XX`, so the document holds no markup even if something renders it as HTML.
pub(crate) fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' | '>' | '&' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_bytes_become_text_without_markup() {
        let mut out = String::new();
        string(&mut out, &printable(b"<script>alert(\"x\")</script>\r\n\\"));
        assert_eq!(
            out,
            r#""\u003cscript\u003ealert(\"x\")\u003c/script\u003e\\x0d\\x0a\\x5c""#
        );
    }
}
