//! The `Date` header line every reply carries (RFC 9110, 6.6.1), formatted at most once a
//! second per thread and copied from a cache otherwise, as nginx keeps its `ngx_cached_http_time`.
//!
//! A thread-local cache, not a shared one: the reactor is one thread, and under the
//! thread-per-client model a shared cache would put a lock or an atomic on every reply of
//! every thread. A request costs one read of the clock (a vDSO call) and a 37-byte copy.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`: an IMF-fixdate is always 29 bytes.
pub(super) const DATE_LINE_LEN: usize = 37;

/// A formatted line, and the second (since the epoch) it was formatted for.
type Cached = (u64, [u8; DATE_LINE_LEN]);

thread_local! {
    /// This thread's line; `u64::MAX` until the first reply formats one.
    static CACHE: Cell<Cached> = const { Cell::new((u64::MAX, [0; DATE_LINE_LEN])) };
}

#[cfg(feature = "fuzzing")]
thread_local! {
    /// Set by the fuzz targets: every line is the epoch's, so that two runs of the same
    /// input give the same bytes whatever second each ran in.
    static FROZEN: Cell<bool> = const { Cell::new(false) };
}

/// Make this thread's `Date` lines the epoch's from now on (fuzz targets only).
#[cfg(feature = "fuzzing")]
pub(crate) fn freeze() {
    FROZEN.with(|frozen| frozen.set(true));
}

/// The `Date` line for now, CRLF included.
pub(super) fn date_line() -> [u8; DATE_LINE_LEN] {
    #[cfg(feature = "fuzzing")]
    if FROZEN.with(Cell::get) {
        return format_line(0);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHE.with(|cache| {
        let (second, line) = cache.get();
        if second == now {
            return line;
        }
        let line = format_line(now);
        cache.set((now, line));
        line
    })
}

/// Format the line for `second` since the epoch (the once-a-second path).
fn format_line(second: u64) -> [u8; DATE_LINE_LEN] {
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
    let mut line = *b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n";
    // Years after 9999 would not fit; the epoch's line stands in for them.
    if date.len() == DATE_LINE_LEN - 8 {
        line[6..DATE_LINE_LEN - 2].copy_from_slice(date.as_bytes());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_an_imf_fixdate() {
        assert_eq!(
            &format_line(784_111_777),
            b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        );
        assert_eq!(&format_line(0), b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    }

    #[test]
    fn the_cached_line_parses_as_now() {
        let line = date_line();
        let text = std::str::from_utf8(&line[6..DATE_LINE_LEN - 2]).unwrap();
        let parsed = httpdate::parse_http_date(text).unwrap();
        let age = SystemTime::now().duration_since(parsed).unwrap();
        assert!(age < Duration::from_secs(5), "{text}");
    }
}
