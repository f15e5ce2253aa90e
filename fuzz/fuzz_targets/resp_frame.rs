//! The RESP framer (`protocols::resp::frame`), which resumes an unfinished command's scan
//! where the previous read left it. The input's prefix grows read by read, as a server
//! offers it; at every step the resumed framer must give a fresh framer's verdict and
//! arguments, a whole command or an error must stay so whatever follows, consumed counts
//! and argument spans stay inside the input, a multibulk command's arguments encode back
//! to the same arguments, and a framer gives back the room of a large command.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_reactor::fuzzing::{Check, Framer};
use tcp_reactor_fuzz::Plan;

/// Argument slots a framer may keep between commands (`KEEP_ARGS` in the framer).
const KEEP_ARGS: usize = 16;

/// The arguments `framer` found, as bytes of `input`.
fn args<'a>(framer: &Framer, input: &'a [u8], len: usize) -> Vec<&'a [u8]> {
    let mut previous_end = 0;
    framer
        .args()
        .iter()
        .map(|&(start, end)| {
            assert!(
                previous_end <= start && start <= end && end <= len,
                "span {start}..{end}"
            );
            previous_end = end;
            &input[start..end]
        })
        .collect()
}

/// Check a whole command of `len` bytes at the front of `input`, its arguments `found`.
fn check_command(input: &[u8], len: usize, found: &[&[u8]]) {
    assert!(
        len > 0 && len <= input.len(),
        "complete at {len} of {} bytes",
        input.len()
    );
    if input[0] == b'*' {
        // Encoded canonically, the same arguments frame to the same arguments.
        let mut wire = format!("*{}\r\n", found.len()).into_bytes();
        for arg in found {
            wire.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            wire.extend_from_slice(arg);
            wire.extend_from_slice(b"\r\n");
        }
        let mut again = Framer::default();
        assert_eq!(again.check(&wire), Check::Complete(wire.len()));
        assert_eq!(args(&again, &wire, wire.len()), found);
    } else {
        // An inline line: words with no blank in them, and the line ends at its `\n`.
        assert_eq!(input[len - 1], b'\n');
        assert!(!input[..len - 1].contains(&b'\n'));
        for arg in found {
            assert!(
                !arg.is_empty() && !arg.iter().any(|b| b" \t\r\n".contains(b)),
                "{arg:?}"
            );
        }
    }
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
