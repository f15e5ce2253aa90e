//! RESP2 request framing: is a whole command here, do we need more bytes, or is the input
//! broken for good.
//!
//! Split as mini-redis splits it: [`check`] only answers that question (and never
//! allocates), [`parse`] then walks a frame already checked and records where each
//! argument lies. This module knows nothing of commands or the store.

/// The longest bulk string accepted, in bytes (the server's input cap bounds it too).
pub const MAX_BULK: usize = 512 * 1024;

/// The most arguments one multibulk command may announce.
pub const MAX_ARGS: usize = 64 * 1024;

/// The longest inline command line (typed into `nc` or `telnet`), in bytes.
pub const MAX_INLINE: usize = 64 * 1024;

/// The longest `*<count>` or `$<length>` line after its first byte, CRLF included.
const MAX_COUNT_LINE: usize = 24;

/// Input that can never become a valid command; the connection gets this error and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*<count>` is not a number, or is too large.
    MultibulkLength,
    /// `$<length>` is not a number, is negative, or is above [`MAX_BULK`].
    BulkLength,
    /// A multibulk argument did not start with `$`; carries the byte found.
    ExpectedDollar(u8),
    /// A bulk string was not followed by CRLF.
    MissingCrlf,
    /// An inline command line longer than [`MAX_INLINE`].
    InlineTooLong,
}

impl ProtocolError {
    /// Write the RESP error reply for this error (redis words it the same way).
    pub fn write_reply(self, out: &mut impl FnMut(&[u8])) {
        out(b"-ERR Protocol error: ");
        match self {
            ProtocolError::MultibulkLength => out(b"invalid multibulk length"),
            ProtocolError::BulkLength => out(b"invalid bulk length"),
            ProtocolError::ExpectedDollar(byte) => {
                // Only printable bytes are echoed: a reply line must not contain CR or LF.
                let shown = if byte.is_ascii_graphic() { byte } else { b'?' };
                out(b"expected '$', got '");
                out(&[shown]);
                out(b"'");
            }
            ProtocolError::MissingCrlf => out(b"expected CRLF after bulk string"),
            ProtocolError::InlineTooLong => out(b"too big inline request"),
        }
        out(b"\r\n");
    }
}

/// What [`check`] found at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A whole command of this many bytes.
    Complete(usize),
    /// Not a whole command yet; nothing wrong so far.
    Incomplete,
    /// Broken for good.
    Error(ProtocolError),
}

/// Decide whether `input` starts with a whole command.
///
/// The answer for a prefix never contradicts the answer for the whole: a length that is
/// too long is refused by its length alone, not by how much has arrived.
pub fn check(input: &[u8]) -> Check {
    match input.first() {
        None => Check::Incomplete,
        Some(b'*') => check_multibulk(input),
        Some(_) => match find_newline(input, 0, MAX_INLINE) {
            Line::End(newline) => Check::Complete(newline + 1),
            Line::NotYet => Check::Incomplete,
            Line::TooLong => Check::Error(ProtocolError::InlineTooLong),
        },
    }
}

/// Check `*<count>\r\n` followed by `count` bulk strings.
fn check_multibulk(input: &[u8]) -> Check {
    let (count, mut at) = match count_line(input, 0, ProtocolError::MultibulkLength) {
        Ok(Some(found)) => found,
        Ok(None) => return Check::Incomplete,
        Err(err) => return Check::Error(err),
    };
    if count > MAX_ARGS as i64 {
        return Check::Error(ProtocolError::MultibulkLength);
    }
    for _ in 0..count.max(0) {
        let Some(&first) = input.get(at) else {
            return Check::Incomplete;
        };
        if first != b'$' {
            return Check::Error(ProtocolError::ExpectedDollar(first));
        }
        let (len, start) = match count_line(input, at, ProtocolError::BulkLength) {
            Ok(Some(found)) => found,
            Ok(None) => return Check::Incomplete,
            Err(err) => return Check::Error(err),
        };
        if !(0..=MAX_BULK as i64).contains(&len) {
            return Check::Error(ProtocolError::BulkLength);
        }
        // In range 0..=MAX_BULK, so it fits a usize.
        let end = start + len as usize;
        match input.get(end..end + 2) {
            None => return Check::Incomplete,
            Some(b"\r\n") => at = end + 2,
            Some(_) => return Check::Error(ProtocolError::MissingCrlf),
        }
    }
    Check::Complete(at)
}

/// Record in `args` the `(start, end)` of every argument of `frame`, a whole command as
/// found by [`check`]. An empty `args` means there is nothing to run (an empty line, `*0`).
pub fn parse(frame: &[u8], args: &mut Vec<(usize, usize)>) -> Result<(), ProtocolError> {
    args.clear();
    if frame.first() == Some(&b'*') {
        parse_multibulk(frame, args)
    } else {
        split_inline(frame, args);
        Ok(())
    }
}

/// Walk a checked multibulk frame. The errors cannot happen after a successful check; they
/// are reported rather than assumed away.
fn parse_multibulk(frame: &[u8], args: &mut Vec<(usize, usize)>) -> Result<(), ProtocolError> {
    let Ok(Some((count, mut at))) = count_line(frame, 0, ProtocolError::MultibulkLength) else {
        return Err(ProtocolError::MultibulkLength);
    };
    for _ in 0..count.max(0) {
        let Ok(Some((len, start))) = count_line(frame, at, ProtocolError::BulkLength) else {
            return Err(ProtocolError::BulkLength);
        };
        let end = start + usize::try_from(len).map_err(|_| ProtocolError::BulkLength)?;
        args.push((start, end));
        at = end + 2;
    }
    Ok(())
}

/// Split an inline command line on spaces and tabs (quotes are not interpreted).
fn split_inline(frame: &[u8], args: &mut Vec<(usize, usize)>) {
    let mut start = None;
    for (at, &byte) in frame.iter().enumerate() {
        let blank = matches!(byte, b' ' | b'\t' | b'\r' | b'\n');
        match (blank, start) {
            (false, None) => start = Some(at),
            (true, Some(from)) => {
                args.push((from, at));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        args.push((from, frame.len()));
    }
}

/// Where a line ends, if it does.
enum Line {
    /// Index of its `\n`.
    End(usize),
    /// No `\n` yet, and fewer than the limit bytes so far.
    NotYet,
    /// No `\n` within the limit.
    TooLong,
}

/// Find the `\n` ending the line that starts at `from`, looking at most `limit` bytes.
fn find_newline(input: &[u8], from: usize, limit: usize) -> Line {
    let window = &input[from..input.len().min(from + limit)];
    match window.iter().position(|&byte| byte == b'\n') {
        Some(offset) => Line::End(from + offset),
        None if window.len() < limit => Line::NotYet,
        None => Line::TooLong,
    }
}

/// Read the line `<prefix><number>\r\n` starting at `from`: the number and the index just
/// past the line, `None` when the line has not ended yet, `err` when it is no number.
fn count_line(
    input: &[u8],
    from: usize,
    err: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    match find_newline(input, from + 1, MAX_COUNT_LINE) {
        Line::NotYet => Ok(None),
        Line::TooLong => Err(err),
        Line::End(newline) => {
            let digits = input[from + 1..newline].strip_suffix(b"\r").ok_or(err)?;
            let number = parse_i64(digits).ok_or(err)?;
            Ok(Some((number, newline + 1)))
        }
    }
}

/// Parse a decimal integer exactly: optional `-`, then digits, no overflow.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        // Accumulate negatively so i64::MIN parses too.
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}
