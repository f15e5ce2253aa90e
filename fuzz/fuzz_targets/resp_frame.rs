//! The RESP framer (`protocols::resp::frame`), which resumes an unfinished command's scan
//! where the previous read left it. The input's prefix grows read by read, as a server
//! offers it; at every step the resumed framer must give a fresh framer's verdict and
//! arguments, a whole command or an error must stay so whatever follows, consumed counts
//! and argument spans stay inside the input, a multibulk command's arguments encode back
//! to the same arguments, and a framer gives back the room of a large command.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_reactor::fuzzing::{Check, Framer, MAX_INLINE};
use tcp_reactor_fuzz::Plan;

/// Argument slots a framer may keep between commands (`KEEP_ARGS` in the framer).
const KEEP_ARGS: usize = 16;

/// The arguments `framer` found in the command of `len` bytes at the front of `input`.
fn args(framer: &Framer, input: &[u8], len: usize) -> Vec<Vec<u8>> {
    let frame = framer.frame(&input[..len]);
    let mut previous_end = 0;
    framer
        .args()
        .iter()
        .map(|&(start, end)| {
            assert!(
                previous_end <= start && start <= end && end <= frame.len(),
                "span {start}..{end}"
            );
            previous_end = end;
            frame[start..end].to_vec()
        })
        .collect()
}

/// Check a whole command of `len` bytes at the front of `input`, its arguments `found`.
fn check_command(input: &[u8], len: usize, found: &[Vec<u8>]) {
    assert!(
        len > 0 && len <= input.len(),
        "complete at {len} of {} bytes",
        input.len()
    );
    let wire = if input[0] == b'*' {
        // Encoded canonically, the same arguments frame to the same arguments.
        let mut wire = format!("*{}\r\n", found.len()).into_bytes();
        for arg in found {
            wire.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            wire.extend_from_slice(arg);
            wire.extend_from_slice(b"\r\n");
        }
        wire
    } else {
        // An inline line ends at its `\n`; its arguments, each written in double quotes
        // with every byte as `\xHH`, split into the same arguments.
        assert_eq!(input[len - 1], b'\n');
        assert!(!input[..len - 1].contains(&b'\n'));
        let mut wire = b"x".to_vec();
        for arg in found {
            wire.extend_from_slice(b" \"");
            for byte in arg {
                wire.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
            }
            wire.push(b'"');
        }
        wire.extend_from_slice(b"\r\n");
        wire
    };
    if wire.len() >= MAX_INLINE {
        // Too long to send inline: the round trip does not apply.
        return;
    }
    let mut again = Framer::default();
    assert_eq!(again.check(&wire), Check::Complete(wire.len()));
    let mut again_args = args(&again, &wire, wire.len());
    if input[0] != b'*' {
        again_args.remove(0);
    }
    assert_eq!(again_args, found);
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = Plan::parse(data) else {
        return;
    };
    let stream = plan.stream;
    let mut framer = Framer::default();
    // Where the command being framed starts.
    let mut front = 0;
    let mut steps = 0;
    for cut in plan.cuts() {
        // Offer the same front again, with the new read appended, until it is not whole.
        loop {
            steps += 1;
            let input = &stream[front..cut];
            let verdict = framer.check(input);
            let mut fresh = Framer::default();
            assert_eq!(
                verdict,
                fresh.check(input),
                "resumed and fresh framers disagree"
            );
            // What the whole stream gives from this front; compared only while it is cheap.
            let whole = (steps <= 64).then(|| {
                let mut whole = Framer::default();
                (whole.check(&stream[front..]), whole)
            });
            match verdict {
                Check::Complete(len) => {
                    let found = args(&framer, input, len);
                    assert_eq!(found, args(&fresh, input, len));
                    // Checking again before `finish` finds the same command.
                    assert_eq!(framer.check(input), verdict);
                    assert_eq!(args(&framer, input, len), found);
                    if let Some((whole_verdict, whole)) = whole {
                        assert_eq!(whole_verdict, verdict, "more bytes changed a whole command");
                        assert_eq!(args(&whole, &stream[front..], len), found);
                    }
                    check_command(input, len, &found);
                    framer.finish();
                    assert!(
                        framer.args_capacity() <= KEEP_ARGS,
                        "{}",
                        framer.args_capacity()
                    );
                    front += len;
                }
                Check::Incomplete => break,
                Check::Error(_) => {
                    if let Some((whole_verdict, _)) = whole {
                        assert_eq!(whole_verdict, verdict, "more bytes changed an error");
                    }
                    return;
                }
            }
        }
    }
});
