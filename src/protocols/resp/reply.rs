//! Writing RESP2 replies into a connection's output without allocating: integers, bulk
//! strings, and error text made safe to send.

use crate::Context;

/// Replace CR and LF by spaces (they would end the reply early), as redis does.
pub(super) fn no_newlines(mut text: Vec<u8>) -> Vec<u8> {
    for byte in &mut text {
        if *byte == b'\r' || *byte == b'\n' {
            *byte = b' ';
        }
    }
    text
}

/// Queue several byte strings in order.
pub(super) fn write_parts(ctx: &mut Context<'_>, parts: &[&[u8]]) {
    for part in parts {
        ctx.write(part);
    }
}

/// Queue `$<len>\r\n<bytes>\r\n`.
pub(super) fn write_bulk(ctx: &mut Context<'_>, bytes: &[u8]) {
    write_integer(ctx, b'$', bytes.len() as i64);
    ctx.write(bytes);
    ctx.write(b"\r\n");
}

/// Queue `<prefix><n>\r\n` (integer replies, bulk and array headers) without allocating.
pub(super) fn write_integer(ctx: &mut Context<'_>, prefix: u8, n: i64) {
    let mut line = [0; 23];
    line[0] = prefix;
    let mut digits = [0; 20];
    let text = format_i64(n, &mut digits);
    line[1..=text.len()].copy_from_slice(text);
    line[text.len() + 1..text.len() + 3].copy_from_slice(b"\r\n");
    ctx.write(&line[..text.len() + 3]);
}

/// Write `n` in decimal into `buf`, returning the digits used.
pub(super) fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}
