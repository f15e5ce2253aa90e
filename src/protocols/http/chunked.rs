//! Decoding a chunked request body (RFC 9112, 7.1): chunk sizes, extensions (read and
//! ignored), chunk data (skipped, as the server skips every body) and the trailer section.
//!
//! One call reads one piece at the front of the input (a size line, some data, the CRLF
//! after the data, or one trailer line) and says how many bytes it took. "Need more
//! bytes" ([`Step::NeedMore`]) is kept apart from a framing error ([`Step::Bad`]): a body
//! split across any number of reads decodes exactly as if it came whole. Lines are bounded
//! by [`MAX_LINE`] and the trailer section by [`MAX_TRAILERS`], so what waits unconsumed is
//! bounded whatever the input cap.

/// The longest chunk-size line (size and extensions) or trailer line, CRLF included.
pub(super) const MAX_LINE: usize = 4096;

/// The most bytes the trailer section may take, lines and final CRLF included.
pub(super) const MAX_TRAILERS: usize = 8 * 1024;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes are still to come.
    Data(u64),
    /// After a chunk's data: expecting its CRLF.
    DataEnd,
    /// After the last (zero-size) chunk: trailer lines until an empty one; this many
    /// trailer bytes so far.
    Trailers(usize),
}

/// What one call made of the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Took this many bytes; the body goes on at this stage.
    Took(usize, Stage),
    /// Took this many bytes, which ended the body.
    Done(usize),
    /// Nothing taken: the piece at the front is not complete yet.
    NeedMore,
    /// The bytes can never become a valid chunked body.
    Bad,
}

/// Read the piece at the front of `input`, at `stage`.
pub(super) fn step(stage: Stage, input: &[u8]) -> Step {
    match stage {
        Stage::Size => match line(input) {
            Line::Whole(text, len) => match chunk_size(text) {
                Some(0) => Step::Took(len, Stage::Trailers(len)),
                Some(size) => Step::Took(len, Stage::Data(size)),
                None => Step::Bad,
            },
            Line::Partial => Step::NeedMore,
            Line::Bad => Step::Bad,
        },
        Stage::Data(left) => {
            // `taken <= input.len()`, a `usize`, so the cast cannot truncate.
            let taken = left.min(input.len() as u64) as usize;
            match left - taken as u64 {
                _ if taken == 0 => Step::NeedMore,
                0 => Step::Took(taken, Stage::DataEnd),
                rest => Step::Took(taken, Stage::Data(rest)),
            }
        }
        Stage::DataEnd => match input {
            [b'\r', b'\n', ..] => Step::Took(2, Stage::Size),
            [b'\n', ..] => Step::Took(1, Stage::Size),
            [] | [b'\r'] => Step::NeedMore,
            _ => Step::Bad,
        },
        Stage::Trailers(so_far) => match line(input) {
            Line::Whole(_, len) if so_far + len > MAX_TRAILERS => Step::Bad,
            Line::Whole(b"", len) => Step::Done(len),
            Line::Whole(text, len) if is_field_line(text) => {
                Step::Took(len, Stage::Trailers(so_far + len))
            }
            Line::Whole(..) | Line::Bad => Step::Bad,
            Line::Partial if so_far + input.len() > MAX_TRAILERS => Step::Bad,
            Line::Partial => Step::NeedMore,
        },
    }
}

/// A line at the front of the input.
enum Line<'a> {
    /// Its text without the line ending, and its length with it.
    Whole(&'a [u8], usize),
    /// No line ending yet, and not too long yet.
    Partial,
    /// Longer than [`MAX_LINE`], or a CR not followed by LF.
    Bad,
}

/// The line at the front of `input`, ended by CRLF or a bare LF (as request heads may be).
fn line(input: &[u8]) -> Line<'_> {
    let window = &input[..input.len().min(MAX_LINE)];
    let Some(lf) = window.iter().position(|&byte| byte == b'\n') else {
        return if input.len() >= MAX_LINE {
            Line::Bad
        } else {
            Line::Partial
        };
    };
    let text = window[..lf].strip_suffix(b"\r").unwrap_or(&window[..lf]);
    if text.contains(&b'\r') {
        return Line::Bad;
    }
    Line::Whole(text, lf + 1)
}

/// The size of a chunk-size line: `1*HEXDIG [ chunk-ext ]`, at most 15 hex digits (so it
/// cannot overflow), extensions checked for their shape and ignored.
fn chunk_size(text: &[u8]) -> Option<u64> {
    let digits = text
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let size = text[..digits].iter().fold(0u64, |n, &digit| {
        // Only hex digits are here (`take_while` above).
        n * 16 + u64::from(char::from(digit).to_digit(16).unwrap_or(0))
    });
    let rest = &text[digits..];
    // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): whitespace may only
    // lead to a `;`, and nothing in it may be a control byte.
    let rest_trimmed = rest.trim_ascii_start();
    let ext_ok = rest_trimmed.is_empty() && rest.iter().all(|&b| b == b' ' || b == b'\t')
        || rest_trimmed.first() == Some(&b';')
            && rest_trimmed[1..].iter().any(|&b| is_tchar(b))
            && rest_trimmed
                .iter()
                .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b));
    ext_ok.then_some(size)
}

/// A trailer field line: `token ":" value`, with no control bytes in the value.
fn is_field_line(text: &[u8]) -> bool {
    let Some(colon) = text.iter().position(|&byte| byte == b':') else {
        return false;
    };
    colon > 0
        && text[..colon].iter().all(|&b| is_tchar(b))
        && text[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || b >= b' ' && b != 0x7f)
}

/// A `tchar` of RFC 9110 (5.6.2): a byte allowed in a token.
pub(super) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `body` whole; the bytes it took, or None on a framing error or if it never ends.
    fn decode(body: &[u8]) -> Option<usize> {
        let (mut stage, mut at) = (Stage::Size, 0);
        loop {
            match step(stage, &body[at..]) {
                Step::Took(n, next) => (stage, at) = (next, at + n),
                Step::Done(n) => return Some(at + n),
                Step::NeedMore | Step::Bad => return None,
            }
        }
    }

    #[test]
    fn sizes_extensions_and_trailers_decode() {
        for body in [
            &b"0\r\n\r\n"[..],
            b"5\r\nhello\r\n0\r\n\r\n",
            b"A;name=value\r\n0123456789\r\n0\r\n\r\n",
            b"a ; x\r\n0123456789\r\n0;y=\"q\"\r\nX-Sum: 1\r\nOther:\r\n\r\n",
            b"3\nabc\n0\n\n",
            b"00000000000001\r\nz\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                decode(body),
                Some(body.len()),
                "{:?}",
                body.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn framing_errors_are_bad_not_need_more() {
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"1000000000000000\r\n",
            b"5 x\r\n",
            b"5\rX\n",
            b"5\r\nhelloX",
            b"0\r\nno colon\r\n",
            b"0\r\n: empty name\r\n",
            b"3;\x01\r\n",
        ] {
            let (mut stage, mut at) = (Stage::Size, 0);
            let end = loop {
                match step(stage, &body[at..]) {
                    Step::Took(n, next) => (stage, at) = (next, at + n),
                    other => break other,
                }
            };
            assert_eq!(end, Step::Bad, "{:?}", body.escape_ascii().to_string());
        }
    }

    #[test]
    fn an_unfinished_piece_needs_more_until_its_bound() {
        assert_eq!(step(Stage::Size, b"5"), Step::NeedMore);
        assert_eq!(step(Stage::Size, b"5\r"), Step::NeedMore);
        assert_eq!(step(Stage::DataEnd, b"\r"), Step::NeedMore);
        assert_eq!(step(Stage::Size, &[b'1'; MAX_LINE - 1]), Step::NeedMore);
        assert_eq!(step(Stage::Size, &[b'1'; MAX_LINE]), Step::Bad);
        assert_eq!(step(Stage::Trailers(MAX_TRAILERS - 4), b"X: 12"), Step::Bad);
    }

    #[test]
    fn data_is_taken_as_it_comes() {
        assert_eq!(step(Stage::Data(10), b"abc"), Step::Took(3, Stage::Data(7)));
        assert_eq!(
            step(Stage::Data(3), b"abcdef"),
            Step::Took(3, Stage::DataEnd)
        );
        assert_eq!(step(Stage::Data(3), b""), Step::NeedMore);
    }
}
