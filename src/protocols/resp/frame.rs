//! RESP2 request framing: is a whole command here, do we need more bytes, or is the input
//! broken for good.
//!
//! The answer keeps "need more bytes" apart from real errors, as mini-redis's
//! `Frame::check` does: [`Framer::check`] says [`Check::Incomplete`] or
//! [`Check::Error`], and only a [`Check::Complete`] command's arguments are read, with
//! [`Framer::args`]. Unlike a check that starts from the first byte every time, the
//! framer resumes where the previous read left it, so a command trickled in byte by byte
//! costs no more than one that arrives whole. This module knows nothing of commands or the
//! store.

/// The longest bulk string accepted by default, in bytes (redis's `proto-max-bulk-len`;
/// `Resp::with_max_bulk` sets another). The server's input cap bounds it too: a
/// command is held whole in the connection's input, which the server's budget counts.
pub const MAX_BULK: usize = 8 * 1024 * 1024;

/// The most arguments one multibulk command may announce.
///
/// Stricter than redis, which takes any count up to 2^31 - 1 (`*1048577` waits for its
/// arguments there, and is refused here): the framer keeps a 16-byte span per argument
/// found, memory the server's budget does not count, and an argument may be as short as
/// 6 bytes (`$0\r\n\r\n`), so without this bound the spans could take 2.7 times the
/// input cap. 65,536 arguments hold 1 MiB of spans at most.
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
    /// `$<length>` is not a number, is negative, or is above the framer's bound.
    BulkLength,
    /// A multibulk argument did not start with `$`; carries the byte found.
    ExpectedDollar(u8),
    /// An inline command line longer than [`MAX_INLINE`].
    InlineTooLong,
    /// An inline command line with a quote not closed, or not followed by a blank.
    UnbalancedQuotes,
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
            ProtocolError::InlineTooLong => out(b"too big inline request"),
            ProtocolError::UnbalancedQuotes => out(b"unbalanced quotes in request"),
        }
        out(b"\r\n");
    }
}

/// What [`Framer::check`] found at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A whole command of this many bytes; its arguments are in [`Framer::args`].
    Complete(usize),
    /// Not a whole command yet; nothing wrong so far.
    Incomplete,
    /// Broken for good.
    Error(ProtocolError),
}

/// How far the command at the front of the input has been scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Progress {
    /// Nothing of it is known yet (a `*<count>` line that has not ended counts as nothing:
    /// it is at most [`MAX_COUNT_LINE`] bytes, so reading it again is cheap).
    #[default]
    Start,
    /// An inline line whose first `scanned` bytes hold no `\n`.
    Inline {
        /// Bytes known to hold no `\n`.
        scanned: usize,
    },
    /// A multibulk command: `left` arguments still to come, the next starting at `at`.
    Multibulk {
        /// Arguments announced but not yet complete.
        left: usize,
        /// Where the next argument's `$<length>` line starts.
        at: usize,
    },
}

/// A resumable framer for the command at the front of a connection's input.
///
/// A server model offers the unconsumed input again from the same front, with new bytes
/// appended, until a command is whole. The framer keeps where it stopped and the
/// arguments found so far, so each call scans only what is new (plus at most one
/// `$<length>` line): a command costs time linear in its size however it is cut, instead
/// of being scanned again from its first byte on every read.
#[derive(Debug)]
pub struct Framer {
    /// Where the scan of the front command stands.
    progress: Progress,
    /// `(start, end)` of each argument found so far, within [`Framer::frame`].
    args: Vec<(usize, usize)>,
    /// An inline command's arguments, quotes and escapes resolved (a multibulk command's
    /// arguments are read where they lie in the input).
    inline: Vec<u8>,
    /// The longest bulk string accepted.
    max_bulk: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::with_max_bulk(MAX_BULK)
    }
}

/// Argument slots a framer keeps between commands; a larger command's are given back, so
/// an idle connection does not hold memory for the largest command it ever sent.
const KEEP_ARGS: usize = 16;

/// Bytes of inline arguments a framer keeps between commands (the rest is given back).
const KEEP_INLINE: usize = 256;

impl Framer {
    /// A framer that refuses a bulk string longer than `max_bulk` bytes with
    /// [`ProtocolError::BulkLength`], as redis refuses one over `proto-max-bulk-len`.
    pub fn with_max_bulk(max_bulk: usize) -> Self {
        Framer {
            progress: Progress::Start,
            args: Vec::new(),
            inline: Vec::new(),
            max_bulk,
        }
    }

    /// Decide whether `input` starts with a whole command, resuming the previous scan.
    ///
    /// `input` must start where it started on the previous call (that call's input plus
    /// bytes appended), until [`Framer::finish`]. The answer for a prefix never contradicts
    /// the answer for the whole: a length that is too long is refused by its length alone,
    /// not by how much has arrived.
    pub fn check(&mut self, input: &[u8]) -> Check {
        if self.seen() > input.len() {
            // Not the input the scan was made on: start again rather than trust it.
            self.finish();
        }
        if self.progress == Progress::Start {
            match input.first() {
                None => return Check::Incomplete,
                Some(b'*') => match count_line(input, 0, ProtocolError::MultibulkLength) {
                    Ok(None) => return Check::Incomplete,
                    Err(err) => return Check::Error(err),
                    Ok(Some((count, _))) if count > MAX_ARGS as i64 => {
                        return Check::Error(ProtocolError::MultibulkLength);
                    }
                    Ok(Some((count, at))) => {
                        // `*0` and `*-1` are whole commands with nothing to run, as in redis.
                        let left = usize::try_from(count).unwrap_or(0);
                        self.progress = Progress::Multibulk { left, at };
                    }
                },
                Some(_) => self.progress = Progress::Inline { scanned: 0 },
            }
        }
        match self.progress {
            Progress::Start => Check::Incomplete,
            Progress::Inline { scanned } => self.check_inline(input, scanned),
            Progress::Multibulk { left, at } => self.check_multibulk(input, left, at),
        }
    }

    /// The arguments of the command [`check`](Framer::check) last found whole, as
    /// `(start, end)` within [`frame`](Framer::frame). Empty means there is nothing to run
    /// (an empty line, `*0`).
    pub fn args(&self) -> &[(usize, usize)] {
        &self.args
    }

    /// The bytes [`args`](Framer::args) index into, for the command found whole at the
    /// front of `input`: `input` itself for a multibulk command, the framer's own copy of
    /// an inline command's arguments (its quotes and escapes resolved).
    pub fn frame<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match self.progress {
            Progress::Inline { .. } => &self.inline,
            _ => input,
        }
    }

    /// Forget the command at the front (it was run, or the input is dropped), ready for the
    /// next one, and give back the room a large command took.
    pub fn finish(&mut self) {
        self.progress = Progress::Start;
        self.args.clear();
        self.args.shrink_to(KEEP_ARGS);
        self.inline.clear();
        self.inline.shrink_to(KEEP_INLINE);
    }

    /// Room kept for arguments, in arguments (tests and fuzz targets check that it shrinks).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn args_capacity(&self) -> usize {
        self.args.capacity()
    }

    /// Bytes of the front command the scan has already relied on.
    fn seen(&self) -> usize {
        match self.progress {
            Progress::Start => 0,
            Progress::Inline { scanned } => scanned,
            Progress::Multibulk { at, .. } => at,
        }
    }

    /// Look for the `\n` ending an inline line, from byte `scanned` on.
    fn check_inline(&mut self, input: &[u8], scanned: usize) -> Check {
        let window = input.len().min(MAX_INLINE);
        match input[scanned..window]
            .iter()
            .position(|&byte| byte == b'\n')
        {
            Some(offset) => {
                let newline = scanned + offset;
                // Checking again before `finish` finds the same line at once.
                self.progress = Progress::Inline { scanned: newline };
                // redis drops one `\r` before the `\n`.
                let line = &input[..newline];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if split_inline(line, &mut self.inline, &mut self.args) {
                    Check::Complete(newline + 1)
                } else {
                    Check::Error(ProtocolError::UnbalancedQuotes)
                }
            }
            None if window < MAX_INLINE => {
                self.progress = Progress::Inline { scanned: window };
                Check::Incomplete
            }
            None => Check::Error(ProtocolError::InlineTooLong),
        }
    }

    /// Read the `left` bulk strings still to come, the next at `at`, recording each one
    /// that is whole so that it is never read again.
    fn check_multibulk(&mut self, input: &[u8], mut left: usize, mut at: usize) -> Check {
        while left > 0 {
            match bulk_at(input, at, self.max_bulk) {
                Ok(Some((start, end))) => {
                    self.args.push((start, end));
                    left -= 1;
                    at = end + 2;
                }
                Ok(None) => {
                    self.progress = Progress::Multibulk { left, at };
                    return Check::Incomplete;
                }
                Err(err) => return Check::Error(err),
            }
        }
        // Checking again before `finish` answers the same, without adding arguments.
        self.progress = Progress::Multibulk { left: 0, at };
        Check::Complete(at)
    }
}

/// Read the bulk string `$<length>\r\n<bytes>\r\n` starting at `at`: the span of its bytes
/// once it is whole, `None` while it is not. As redis, the two bytes after the string are
/// skipped without a look (`*1\r\n$4\r\nPINGxx` is `PING`).
fn bulk_at(
    input: &[u8],
    at: usize,
    max_bulk: usize,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let Some(&first) = input.get(at) else {
        return Ok(None);
    };
    if first != b'$' {
        return Err(ProtocolError::ExpectedDollar(first));
    }
    let Some((len, start)) = count_line(input, at, ProtocolError::BulkLength)? else {
        return Ok(None);
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= max_bulk)
        .ok_or(ProtocolError::BulkLength)?;
    let end = start + len;
    if input.len() < end + 2 {
        return Ok(None);
    }
    Ok(Some((start, end)))
}

/// Split an inline command line (without its line end) into arguments as redis's
/// `sdssplitargs` does, writing them into `out` and their spans into `args`; false if its
/// quotes are unbalanced.
///
/// Arguments are separated by blanks (C's `isspace`). Within `"..."`, `\n \r \t \b \a`
/// and `\xHH` stand for their bytes and `\` before any other byte for that byte; within
/// `'...'`, `\'` stands for `'`. A quote may open mid-argument (`a"b c"` is `ab c`), but
/// a closing quote must be followed by a blank or the end of the line. A NUL byte ends the
/// line, as it ends the C string redis splits.
fn split_inline(line: &[u8], out: &mut Vec<u8>, args: &mut Vec<(usize, usize)>) -> bool {
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    // The byte at `i`, 0 past the end (the C string's terminator).
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let blank = |byte: u8| matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    out.clear();
    args.clear();
    let mut p = 0;
    loop {
        while blank(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return true;
        }
        let start = out.len();
        let (mut in_double, mut in_single, mut done) = (false, false, false);
        while !done {
            let byte = at(p);
            if in_double {
                match (byte, at(p + 1)) {
                    (b'\\', b'x')
                        if at(p + 2).is_ascii_hexdigit() && at(p + 3).is_ascii_hexdigit() =>
                    {
                        out.push(hex_value(at(p + 2)) * 16 + hex_value(at(p + 3)));
                        p += 3;
                    }
                    (b'\\', next) if next != 0 => {
                        p += 1;
                        out.push(match next {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    (b'"', next) if next != 0 && !blank(next) => return false,
                    (b'"', _) => done = true,
                    (0, _) => return false,
                    _ => out.push(byte),
                }
            } else if in_single {
                match (byte, at(p + 1)) {
                    (b'\\', b'\'') => {
                        p += 1;
                        out.push(b'\'');
                    }
                    (b'\'', next) if next != 0 && !blank(next) => return false,
                    (b'\'', _) => done = true,
                    (0, _) => return false,
                    _ => out.push(byte),
                }
            } else {
                match byte {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => out.push(byte),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push((start, out.len()));
    }
}

/// The value of an ASCII hex digit.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
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
#[inline]
fn count_line(
    input: &[u8],
    from: usize,
    err: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    // Nearly every count line a client sends is a few plain digits: read them in one pass.
    // Anything else (a sign, a line not ended yet, a malformed one) takes the general path,
    // which gives every verdict.
    match plain_count_line(input, from) {
        Some(found) => Ok(Some(found)),
        None => count_line_general(input, from, err),
    }
}

/// The fast path of [`count_line`]: `<prefix><digits>\r\n` with 1 to 18 digits and no
/// leading zero (so no overflow, and exactly what [`parse_i64`] accepts); `None` for
/// anything else, which is then left to the general path.
#[inline]
fn plain_count_line(input: &[u8], from: usize) -> Option<(i64, usize)> {
    let line = input.get(from + 1..)?;
    let digits = line
        .iter()
        .take(18)
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 || (digits > 1 && line[0] == b'0') || line.get(digits..digits + 2)? != b"\r\n" {
        return None;
    }
    let value = line[..digits]
        .iter()
        .fold(0i64, |value, &digit| value * 10 + i64::from(digit - b'0'));
    Some((value, from + 1 + digits + 2))
}

/// [`count_line`] for any input: finds the line's end first, then parses what it holds.
fn count_line_general(
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

/// Parse a decimal integer as redis's `string2ll` does: an optional `-`, then digits
/// with no leading zero, no overflow. `0` alone is zero; `-0`, `01`, `+1` and blanks are
/// not integers (redis refuses them in `INCR` and in `*`/`$` lines alike).
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || digits[0] == b'0' {
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

#[cfg(test)]
mod fast_path_tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes a count line is made of, so that random lines often look like real ones.
    fn count_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => b'0'..=b'9',
                1 => Just(b'-'),
                1 => Just(b'\r'),
                1 => Just(b'\n'),
                1 => Just(b'+'),
                1 => any::<u8>(),
            ],
            0..30,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The fast path gives the general path's verdict on every line, cut anywhere.
        #[test]
        fn count_line_agrees_with_the_general_path(body in count_bytes(), cut in 0usize..32) {
            let mut input = vec![b'$'];
            input.extend_from_slice(&body);
            let input = &input[..input.len().min(cut + 1)];
            prop_assert_eq!(
                count_line(input, 0, ProtocolError::BulkLength),
                count_line_general(input, 0, ProtocolError::BulkLength)
            );
        }
    }

    #[test]
    fn plain_lines_take_the_fast_path() {
        assert_eq!(plain_count_line(b"*2\r\n$3", 0), Some((2, 4)));
        assert_eq!(plain_count_line(b"x$16\r\n", 1), Some((16, 6)));
        assert_eq!(plain_count_line(b"$0\r\n", 0), Some((0, 4)));
        assert_eq!(plain_count_line(b"$01\r\n", 0), None);
        assert_eq!(plain_count_line(b"$-1\r\n", 0), None);
        assert_eq!(plain_count_line(b"$12\r", 0), None);
        assert_eq!(
            plain_count_line(b"$999999999999999999\r\n", 0),
            Some((999_999_999_999_999_999, 21))
        );
        assert_eq!(plain_count_line(b"$1000000000000000000\r\n", 0), None);
    }
}
