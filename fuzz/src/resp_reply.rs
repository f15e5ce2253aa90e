//! RESP2 replies, read strictly: what a client library would accept.

/// Split `output` into whole RESP2 replies and return each one's bytes; `Err` names the
/// first thing a client would reject (a malformed line, a bulk string whose length lies,
/// bytes left over).
pub fn split(output: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut replies = Vec::new();
    let mut at = 0;
    while at < output.len() {
        let end = reply(output, at)?;
        replies.push(&output[at..end]);
        at = end;
    }
    Ok(replies)
}

/// The end of the reply that starts at `at`.
fn reply(output: &[u8], at: usize) -> Result<usize, String> {
    let (line, next) = line(output, at)?;
    let (&kind, text) = line
        .split_first()
        .ok_or_else(|| format!("empty line at {at}"))?;
    match kind {
        b'+' | b'-' if !text.is_empty() || kind == b'+' => Ok(next),
        b':' => number(text, at).map(|_| next),
        b'$' => match number(text, at)? {
            -1 => Ok(next),
            len if len >= 0 => {
                let end = usize::try_from(len).map_or(usize::MAX, |len| next.saturating_add(len));
                match output.get(end..end.saturating_add(2)) {
                    Some(b"\r\n") => Ok(end + 2),
                    _ => Err(format!("bulk string at {at} is not {len} bytes and CRLF")),
                }
            }
            len => Err(format!("bulk length {len} at {at}")),
        },
        b'*' => match number(text, at)? {
            -1 => Ok(next),
            count if count >= 0 => (0..count).try_fold(next, |at, _| reply(output, at)),
            count => Err(format!("array length {count} at {at}")),
        },
        _ => Err(format!("reply at {at} starts with {kind:#04x}")),
    }
}

/// The line at `at` without its CRLF, and where the next one starts. A line holds no CR
/// or LF of its own.
fn line(output: &[u8], at: usize) -> Result<(&[u8], usize), String> {
    let rest = &output[at..];
    let end = rest
        .iter()
        .position(|&byte| byte == b'\r' || byte == b'\n')
        .ok_or_else(|| format!("line at {at} does not end"))?;
    if rest.get(end..end + 2) != Some(b"\r\n") {
        return Err(format!("line at {at} ends without CRLF"));
    }
    Ok((&rest[..end], at + end + 2))
}

/// A decimal integer as RESP writes it.
fn number(text: &[u8], at: usize) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|n: &i64| n.to_string().as_bytes() == text)
        .ok_or_else(|| format!("not a number at {at}: {:?}", String::from_utf8_lossy(text)))
}
