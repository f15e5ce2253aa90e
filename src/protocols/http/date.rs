//! The `Date` header line every reply carries (RFC 9110, 6.6.1), formatted at most once a
//! second per thread and copied from a cache otherwise, as nginx keeps its `ngx_cached_http_time`.
//!
//! A thread-local cache, not a shared one: the reactor is one thread, and under the
//! thread-per-client model a shared cache would put a lock or an atomic on every reply of
//! every thread. A reply within the second its line was made for reads no clock (the turn's
//! clock, `Context::now`, tells when the second is over) and copies 37 bytes.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`: an IMF-fixdate is always 29 bytes.
pub(super) const DATE_LINE_LEN: usize = 37;

/// The cached line and until when it holds: the instant the next second begins, read on
/// the turn's clock (`Context::now`), so a reply within the same second reads no clock at
/// all, as nginx caches its time once per turn of its loop.
type Cached = (Option<Instant>, [u8; DATE_LINE_LEN]);

thread_local! {
    /// This thread's line and its validity (each worker and client thread keeps its own).
    static CACHE: Cell<Cached> = const { Cell::new((None, [0; DATE_LINE_LEN])) };
}

#[cfg(feature = "fuzzing")]
thread_local! {
    /// Under fuzzing, dates are frozen at the epoch so that runs compare.
    static FROZEN: Cell<bool> = const { Cell::new(false) };
}

/// Freeze this thread's dates at the epoch (fuzzing only: replies then compare byte for
/// byte however the input was cut).
#[cfg(feature = "fuzzing")]
pub(crate) fn freeze() {
    FROZEN.with(|frozen| frozen.set(true));
}

/// The `Date: <IMF-fixdate>\r\n` line for a reply made at `now` (the turn's clock): the
/// cached line while `now` is before the next second, else the wall clock read and the
/// line formatted again.
pub(super) fn date_line(now: Instant) -> [u8; DATE_LINE_LEN] {
    #[cfg(feature = "fuzzing")]
    if FROZEN.with(Cell::get) {
        return format_line(0);
    }
    CACHE.with(|cache| {
        let (until, line) = cache.get();
        if until.is_some_and(|until| now < until) {
            return line;
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = format_line(since.as_secs());
        let left = Duration::from_secs(1)
            .saturating_sub(Duration::from_nanos(u64::from(since.subsec_nanos())));
        cache.set((Some(now + left), line));
        line
    })
}

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
        let line = date_line(Instant::now());
        let text = std::str::from_utf8(&line[6..DATE_LINE_LEN - 2]).unwrap();
        let parsed = httpdate::parse_http_date(text).unwrap();
        let age = SystemTime::now().duration_since(parsed).unwrap();
        assert!(age < Duration::from_secs(5), "{text}");
    }

    #[test]
    fn the_line_is_kept_until_the_next_second_on_the_turns_clock() {
        let now = Instant::now();
        let first = date_line(now);
        // Within the same second of the turn's clock: the cached line, whatever the wall
        // clock says meanwhile.
        assert_eq!(date_line(now), first);
        // Two seconds later on the turn's clock, the line is made again, for a later second.
        let later = date_line(now + Duration::from_secs(2));
        let parse = |line: &[u8; DATE_LINE_LEN]| {
            let text = std::str::from_utf8(&line[6..DATE_LINE_LEN - 2])
                .unwrap()
                .to_owned();
            httpdate::parse_http_date(&text).unwrap()
        };
        assert!(parse(&later) >= parse(&first));
    }
}
