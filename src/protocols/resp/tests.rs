//! Framing and command tests for [`Resp`], driven without sockets through the test driver.

use std::collections::HashMap;

use proptest::prelude::*;

use super::frame::parse_i64;
use super::reply::format_i64;
use super::*;
use crate::protocols::testkit::{drive, one_call, split_at};

/// Encode a command as a RESP multibulk array.
fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut wire = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        wire.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        wire.extend_from_slice(arg);
        wire.extend_from_slice(b"\r\n");
    }
    wire
}

/// Run `wire` through a fresh server and return the text it wrote and whether it closed.
fn run(wire: &[u8]) -> (String, bool) {
    let got = drive(&Resp::default(), &[wire]);
    (
        String::from_utf8_lossy(&got.output).into_owned(),
        got.closed,
    )
}

#[test]
fn each_command_gets_its_redis_reply() {
    let mut wire = Vec::new();
    for args in [
        &[&b"PING"[..]][..],
        &[b"ping", b"hi"],
        &[b"ECHO", b"a\r\nb"],
        &[b"GET", b"k"],
        &[b"SET", b"k", b"v"],
        &[b"get", b"k"],
        &[b"EXISTS", b"k", b"k", b"nope"],
        &[b"INCR", b"n"],
        &[b"INCR", b"n"],
        &[b"INCR", b"k"],
        &[b"DEL", b"k", b"n", b"nope"],
        &[b"GET", b"k"],
        &[b"SELECT", b"0"],
        &[b"SELECT", b"1"],
    ] {
        wire.extend(multibulk(args));
    }
    let want = "+PONG\r\n$2\r\nhi\r\n$4\r\na\r\nb\r\n$-1\r\n+OK\r\n$1\r\nv\r\n:2\r\n:1\r\n:2\r\n\
                -ERR value is not an integer or out of range\r\n:2\r\n$-1\r\n+OK\r\n\
                -ERR DB index is out of range\r\n";
    assert_eq!(run(&wire), (want.to_string(), false));
}

#[test]
fn counters_flushes_and_select_answer_as_redis_does() {
    let mut wire = Vec::new();
    for args in [
        &[&b"INCRBY"[..], b"n", b"10"][..],
        &[b"DECR", b"n"],
        &[b"DECRBY", b"n", b"-5"],
        &[b"INCRBY", b"n", b"x"],
        &[b"DECRBY", b"n", b"-9223372036854775808"],
        &[b"INCRBY", b"n", b"9223372036854775807"],
        &[b"DBSIZE"],
        &[b"FLUSHDB", b"now"],
        &[b"FLUSHALL", b"ASYNC"],
        &[b"DBSIZE"],
        &[b"SELECT", b"abc"],
        &[b"SELECT", b"00"],
        &[b"SELECT", b" 0"],
        &[b"SELECT", b"99999999999"],
        &[b"SELECT", b"-1"],
        &[b"SELECT", b"0"],
    ] {
        wire.extend(multibulk(args));
    }
    let not_integer = "-ERR value is not an integer or out of range\r\n";
    let want = format!(
        ":10\r\n:9\r\n:14\r\n{not_integer}-ERR decrement would overflow\r\n\
         -ERR increment or decrement would overflow\r\n:1\r\n-ERR syntax error\r\n+OK\r\n\
         :0\r\n{}-ERR DB index is out of range\r\n+OK\r\n",
        not_integer.repeat(4)
    );
    assert_eq!(run(&wire), (want, false));
}

#[test]
fn an_unknown_command_is_named_as_redis_names_it() {
    // C strings: cut at NUL; CR and LF become spaces; the argument list stops near 128.
    let long = [b'a'; 100];
    let wire = multibulk(&[b"NO\x01PE\0tail", b"x\ny", &long, &long, b"never"]);
    let want = format!(
        "-ERR unknown command 'NO\x01PE', with args beginning with: 'x y' '{}' '{}' \r\n",
        "a".repeat(100),
        "a".repeat(128 - 6 - 103)
    );
    assert_eq!(run(&wire), (want, false));
}

#[test]
fn one_data_call_runs_one_command_so_the_model_can_stop_between_them() {
    let ping = multibulk(&[b"PING"]);
    let (used, output) = one_call(&Resp::default(), &[&ping[..], b"PING\r\n", &ping].concat());
    assert_eq!((used, output), (ping.len(), b"+PONG\r\n".to_vec()));
}

#[test]
fn startup_queries_of_redis_tools_are_answered() {
    let mut wire = multibulk(&[b"CONFIG", b"GET", b"save"]);
    wire.extend(multibulk(&[b"CONFIG", b"GET", b"appendonly"]));
    wire.extend(multibulk(&[b"CONFIG", b"GET", b"maxmemory"]));
    wire.extend(multibulk(&[b"COMMAND", b"DOCS"]));
    let want = "*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n\
                *2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n*0\r\n";
    assert_eq!(run(&wire), (want.to_string(), false));
}

#[test]
fn a_bounded_store_answers_writes_past_it_with_redis_oom_error() {
    // Room for two keys of one byte with values of 100 bytes.
    let entry = 1 + 100 + STORE_ENTRY_OVERHEAD;
    let resp = Resp::default().with_max_store(2 * entry);
    let value = [b'v'; 100];
    let mut wire = Vec::new();
    for args in [
        &[&b"SET"[..], b"a", &value][..],
        &[b"SET", b"b", &value],
        &[b"SET", b"c", &value],
        &[b"INCR", b"n"],
        &[b"GET", b"a"],
        &[b"EXISTS", b"a", b"c"],
        &[b"SET", b"a", b"smaller"],
        &[b"DEL", b"b"],
        &[b"SET", b"c", &value],
        &[b"CONFIG", b"GET", b"maxmemory"],
    ] {
        wire.extend(multibulk(args));
    }
    let got = drive(&resp, &[&wire]);
    let oom = String::from_utf8_lossy(OOM);
    let want = format!(
        "+OK\r\n+OK\r\n{oom}{oom}$100\r\n{}\r\n:1\r\n+OK\r\n:1\r\n+OK\r\n\
         *2\r\n$9\r\nmaxmemory\r\n${}\r\n{}\r\n",
        "v".repeat(100),
        (2 * entry).to_string().len(),
        2 * entry
    );
    assert_eq!(String::from_utf8_lossy(&got.output), want);
    assert!(resp.store_used() <= 2 * entry);
}

#[test]
fn info_reports_the_store_size_and_its_bound() {
    let resp = Resp::default().with_max_store(1 << 20);
    let mut wire = multibulk(&[b"SET", b"key", b"value"]);
    wire.extend(multibulk(&[b"INFO", b"memory"]));
    wire.extend(multibulk(&[b"INFO", b"KEYSPACE"]));
    wire.extend(multibulk(&[b"INFO", b"nothing"]));
    let got = String::from_utf8_lossy(&drive(&resp, &[&wire]).output).into_owned();
    let used = 3 + 5 + STORE_ENTRY_OVERHEAD;
    let memory = format!(
        "# Memory\r\nused_memory:{used}\r\nmaxmemory:1048576\r\nmaxmemory_policy:noeviction\r\n"
    );
    let keyspace = "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n";
    let want = format!(
        "+OK\r\n${}\r\n{memory}\r\n${}\r\n{keyspace}\r\n$0\r\n\r\n",
        memory.len(),
        keyspace.len()
    );
    assert_eq!(got, want);
    // Without a section: both.
    let all = drive(&resp, &[&multibulk(&[b"INFO"])]).output;
    let all = String::from_utf8_lossy(&all);
    assert!(
        all.contains("used_memory:") && all.contains("db0:keys=1"),
        "{all}"
    );
}

#[test]
fn incr_refuses_to_overflow() {
    let mut wire = multibulk(&[b"SET", b"n", b"9223372036854775806"]);
    wire.extend(multibulk(&[b"INCR", b"n"]));
    wire.extend(multibulk(&[b"INCR", b"n"]));
    let want = "+OK\r\n:9223372036854775807\r\n-ERR increment or decrement would overflow\r\n";
    assert_eq!(run(&wire).0, want);
}

#[test]
fn incr_refuses_leading_zeros_and_negative_zero_as_redis_does() {
    let mut wire = Vec::new();
    for value in [&b"01"[..], b"-0", b"-01", b"00"] {
        wire.extend(multibulk(&[b"SET", b"n", value]));
        wire.extend(multibulk(&[b"INCR", b"n"]));
    }
    wire.extend(multibulk(&[b"SET", b"n", b"-1"]));
    wire.extend(multibulk(&[b"INCR", b"n"]));
    let refused = "+OK\r\n-ERR value is not an integer or out of range\r\n";
    let want = format!("{}+OK\r\n:0\r\n", refused.repeat(4));
    assert_eq!(run(&wire), (want, false));
}

#[test]
fn unknown_commands_and_bad_arity_are_errors_and_the_client_stays() {
    let mut wire = multibulk(&[b"FLY", b"a\r\n", b"b"]);
    wire.extend(multibulk(&[b"GET"]));
    wire.extend(multibulk(&[b"SET", b"k", b"v", b"EXPIRES", b"10"]));
    wire.extend(multibulk(&[b"PING"]));
    let want = "-ERR unknown command 'FLY', with args beginning with: 'a  ' 'b' \r\n\
                -ERR wrong number of arguments for 'get' command\r\n-ERR syntax error\r\n+PONG\r\n";
    assert_eq!(run(&wire), (want.to_string(), false));
}

#[test]
fn inline_commands_work_as_typed_in_a_terminal() {
    let (out, closed) = run(b"PING\r\n\r\nset  k\tvalue\nGET k\r\nECHO\r\n");
    let want =
        "+PONG\r\n+OK\r\n$5\r\nvalue\r\n-ERR wrong number of arguments for 'echo' command\r\n";
    assert_eq!((out.as_str(), closed), (want, false));
}

#[test]
fn quit_replies_then_closes() {
    let mut wire = multibulk(&[b"QUIT"]);
    wire.extend(multibulk(&[b"PING"]));
    assert_eq!(run(&wire), ("+OK\r\n".to_string(), true));
}

#[test]
fn broken_framing_gets_a_protocol_error_and_closes() {
    for (wire, error) in [
        (&b"*x\r\n"[..], "invalid multibulk length"),
        (b"*99999999\r\n", "invalid multibulk length"),
        (b"*1\r\n:1\r\n", "expected '$', got ':'"),
        (b"*1\r\n$-2\r\n", "invalid bulk length"),
        (b"*1\r\n$999999999\r\n", "invalid bulk length"),
        (
            b"*1111111111111111111111111111111",
            "invalid multibulk length",
        ),
    ] {
        let want = format!("-ERR Protocol error: {error}\r\n");
        assert_eq!(
            run(wire),
            (want, true),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    let long_inline = vec![b'a'; MAX_INLINE];
    let want = "-ERR Protocol error: too big inline request\r\n".to_string();
    assert_eq!(run(&long_inline), (want, true));
}

#[test]
fn commands_before_a_protocol_error_are_answered() {
    let mut wire = multibulk(&[b"PING"]);
    wire.extend_from_slice(b"*1\r\n$-2\r\nxyz");
    let want = "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n";
    assert_eq!(run(&wire), (want.to_string(), true));
}

#[test]
fn the_two_bytes_after_a_bulk_are_skipped_unread_as_redis_does() {
    // redis answers `*1\r\n$4\r\nPINGxx` with +PONG; what follows is the next command.
    let (out, closed) = run(b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n");
    assert_eq!((out.as_str(), closed), ("+PONG\r\n+PONG\r\n", false));
}

#[test]
fn a_bulk_is_bounded_by_the_setting() {
    let value = vec![b'v'; 1000];
    let set = multibulk(&[b"SET", b"k", &value]);
    let got = drive(&Resp::default().with_max_bulk(1000), &[&set]);
    assert_eq!((&got.output[..], got.closed), (&b"+OK\r\n"[..], false));
    let got = drive(&Resp::default().with_max_bulk(999), &[&set]);
    let want = b"-ERR Protocol error: invalid bulk length\r\n";
    assert_eq!((&got.output[..], got.closed), (&want[..], true));
    // The default lets redis's "Very big payload" (4 MiB) through.
    let big = vec![b'x'; 4 << 20];
    let got = drive(&Resp::default(), &[&multibulk(&[b"SET", b"k", &big])]);
    assert_eq!((&got.output[..], got.closed), (&b"+OK\r\n"[..], false));
}

#[test]
fn partial_command_waits_without_reply() {
    let got = drive(&Resp::default(), &[b"*2\r\n$3\r\nGET\r\n$1\r\n"]);
    assert!(got.output.is_empty() && !got.closed);
    assert_eq!(got.leftover, 17);
}

#[test]
fn the_store_is_shared_between_connections() {
    let resp = Resp::default();
    drive(&resp, &[&multibulk(&[b"SET", b"shared", b"yes"])]);
    let got = drive(&resp, &[&multibulk(&[b"GET", b"shared"])]);
    assert_eq!(got.output, b"$3\r\nyes\r\n");
}

#[test]
fn integers_format_at_the_extremes() {
    let mut buf = [0; 20];
    for n in [0, 7, -7, 10, i64::MAX, i64::MIN] {
        assert_eq!(format_i64(n, &mut buf), n.to_string().as_bytes());
    }
    for text in [
        "0",
        "7",
        "-7",
        "10",
        "9223372036854775807",
        "-9223372036854775808",
    ] {
        assert_eq!(parse_i64(text.as_bytes()), text.parse().ok(), "{text}");
    }
    // redis's string2ll refuses leading zeros and a negative zero.
    for text in [
        "",
        "-",
        "+1",
        "1 ",
        " 1",
        "9223372036854775808",
        "--1",
        "1a",
        "01",
        "-0",
        "-01",
        "00",
    ] {
        assert_eq!(parse_i64(text.as_bytes()), None, "{text}");
    }
}

/// One generated command, valid in framing (it may still be refused by the server).
#[derive(Debug, Clone)]
enum Command {
    Set(Vec<u8>, Vec<u8>),
    Get(Vec<u8>),
    Del(Vec<Vec<u8>>),
    Exists(Vec<Vec<u8>>),
    Incr(Vec<u8>),
    Ping(Option<Vec<u8>>),
    Echo(Vec<u8>),
}

impl Command {
    fn args(&self) -> Vec<Vec<u8>> {
        let word = |w: &str| w.as_bytes().to_vec();
        match self {
            Command::Set(k, v) => vec![word("SET"), k.clone(), v.clone()],
            Command::Get(k) => vec![word("get"), k.clone()],
            Command::Del(keys) => [vec![word("DEL")], keys.clone()].concat(),
            Command::Exists(keys) => [vec![word("Exists")], keys.clone()].concat(),
            Command::Incr(k) => vec![word("INCR"), k.clone()],
            Command::Ping(None) => vec![word("PING")],
            Command::Ping(Some(m)) => vec![word("PING"), m.clone()],
            Command::Echo(m) => vec![word("ECHO"), m.clone()],
        }
    }

    /// Inline form when every argument survives whitespace splitting, else multibulk.
    fn encode(&self, inline: bool, into: &mut Vec<u8>) {
        let args = self.args();
        let plain = |a: &Vec<u8>| !a.is_empty() && a.iter().all(u8::is_ascii_alphanumeric);
        if inline && args.iter().all(plain) {
            into.extend(args.join(&b' '));
            into.extend_from_slice(b"\r\n");
        } else {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            into.extend(multibulk(&refs));
        }
    }

    /// The reply redis gives, from a plain model of its data.
    fn expected(&self, model: &mut HashMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
        let bulk = |v: &[u8]| [format!("${}\r\n", v.len()).as_bytes(), v, b"\r\n"].concat();
        match self {
            Command::Set(k, v) => {
                model.insert(k.clone(), v.clone());
                b"+OK\r\n".to_vec()
            }
            Command::Get(k) => model.get(k).map_or(b"$-1\r\n".to_vec(), |v| bulk(v)),
            Command::Del(keys) => {
                let n = keys.iter().filter(|k| model.remove(*k).is_some()).count();
                format!(":{n}\r\n").into_bytes()
            }
            Command::Exists(keys) => {
                let n = keys.iter().filter(|k| model.contains_key(*k)).count();
                format!(":{n}\r\n").into_bytes()
            }
            Command::Incr(k) => {
                // redis takes only the canonical form: the one `to_string` gives back.
                let old = model.get(k).map_or(Some(0), |v| {
                    let text = std::str::from_utf8(v).ok()?;
                    text.parse::<i64>().ok().filter(|n| n.to_string() == text)
                });
                match old.map(|n| n.checked_add(1)) {
                    None => b"-ERR value is not an integer or out of range\r\n".to_vec(),
                    Some(None) => b"-ERR increment or decrement would overflow\r\n".to_vec(),
                    Some(Some(n)) => {
                        model.insert(k.clone(), n.to_string().into_bytes());
                        format!(":{n}\r\n").into_bytes()
                    }
                }
            }
            Command::Ping(None) => b"+PONG\r\n".to_vec(),
            Command::Ping(Some(m)) | Command::Echo(m) => bulk(m),
        }
    }
}

/// Encode `commands` back to back, then overwrite the byte at each `(index, byte)` of
/// `damage` (indexes wrap around the length).
fn damaged_wire(commands: &[(Command, bool)], damage: &[(usize, u8)]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (command, inline) in commands {
        command.encode(*inline, &mut wire);
    }
    for &(at, byte) in damage {
        let at = at % wire.len();
        wire[at] = byte;
    }
    wire
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![&b"a"[..], b"b", b"key3", b"\r\n", b""]).prop_map(<[u8]>::to_vec)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        Just(b"9223372036854775807".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (key(), value()).prop_map(|(k, v)| Command::Set(k, v)),
        key().prop_map(Command::Get),
        prop::collection::vec(key(), 1..4).prop_map(Command::Del),
        prop::collection::vec(key(), 1..4).prop_map(Command::Exists),
        key().prop_map(Command::Incr),
        prop::option::of(value()).prop_map(Command::Ping),
        value().prop_map(Command::Echo),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pipelined_commands_get_exactly_the_replies_of_a_model(
        commands in prop::collection::vec((command(), any::<bool>()), 1..30),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut model = HashMap::new();
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (command, inline) in &commands {
            command.encode(*inline, &mut wire);
            want.extend(command.expected(&mut model));
        }
        let got = drive(&Resp::default(), &split_at(&wire, &cuts));
        prop_assert_eq!(String::from_utf8_lossy(&got.output), String::from_utf8_lossy(&want));
        prop_assert!(!got.closed);
        prop_assert_eq!(got.leftover, 0);
    }

    #[test]
    fn arbitrary_bytes_frame_the_same_whole_or_split(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = drive(&Resp::default(), &[&bytes]);
        let split = drive(&Resp::default(), &split_at(&bytes, &cuts));
        prop_assert_eq!(whole.output, split.output);
        prop_assert_eq!(whole.closed, split.closed);
    }

    #[test]
    fn damaged_commands_frame_the_same_whole_or_split(
        commands in prop::collection::vec((command(), any::<bool>()), 1..8),
        damage in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let wire = damaged_wire(&commands, &damage);
        let whole = drive(&Resp::default(), &[&wire]);
        let split = drive(&Resp::default(), &split_at(&wire, &cuts));
        prop_assert_eq!(whole.output, split.output);
        prop_assert_eq!(whole.closed, split.closed);
    }
}

/// Offer `wire` to one framer the way a server model does (the front stays, bytes are
/// appended at each cut, a whole command is consumed) and check every verdict, and the
/// arguments of every whole command, against a fresh framer that scans from the first
/// byte. Returns the verdicts, for the caller to look at.
fn resumed_matches_fresh(wire: &[u8], cuts: &[usize]) -> Result<Vec<Check>, TestCaseError> {
    let mut ends: Vec<usize> = cuts.iter().map(|&cut| cut % (wire.len() + 1)).collect();
    ends.push(wire.len());
    ends.sort_unstable();
    let mut resumed = frame::Framer::default();
    let mut front = 0;
    let mut verdicts = Vec::new();
    for end in ends {
        loop {
            let input = &wire[front..end];
            let verdict = resumed.check(input);
            let mut fresh = frame::Framer::default();
            prop_assert_eq!(verdict, fresh.check(input), "front {} end {}", front, end);
            verdicts.push(verdict);
            match verdict {
                Check::Complete(len) => {
                    prop_assert_eq!(resumed.args(), fresh.args());
                    // Asking again before `finish` changes nothing.
                    prop_assert_eq!(resumed.check(input), verdict);
                    prop_assert_eq!(resumed.args(), fresh.args());
                    resumed.finish();
                    front += len;
                }
                Check::Incomplete => break,
                Check::Error(_) => return Ok(verdicts),
            }
        }
    }
    Ok(verdicts)
}

#[test]
fn a_finished_large_command_gives_its_room_back() {
    let args: Vec<Vec<u8>> = (0..MAX_ARGS).map(|i| i.to_string().into_bytes()).collect();
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let wire = multibulk(&refs);
    let mut framer = frame::Framer::default();
    assert_eq!(framer.check(&wire), Check::Complete(wire.len()));
    assert_eq!(framer.args().len(), MAX_ARGS);
    framer.finish();
    assert!(framer.args().is_empty());
    assert!(
        framer.args_capacity() <= 16,
        "kept room for {} arguments",
        framer.args_capacity()
    );
}

#[test]
fn a_command_trickled_byte_by_byte_is_framed_like_a_whole_one() {
    let mut wire = multibulk(&[b"SET", b"key", b"a value\r\nwith CRLF"]);
    wire.extend_from_slice(b"PING   hello\r\n*0\r\n*-1\r\n");
    let cuts: Vec<usize> = (0..wire.len()).collect();
    let verdicts = resumed_matches_fresh(&wire, &cuts).unwrap();
    let whole: Vec<usize> = verdicts
        .iter()
        .filter_map(|verdict| match verdict {
            Check::Complete(len) => Some(*len),
            _ => None,
        })
        .collect();
    assert_eq!(whole, [47, 14, 4, 5]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resumed_framing_gives_the_verdicts_and_args_of_a_fresh_scan_for_any_cut(
        commands in prop::collection::vec((command(), any::<bool>()), 1..8),
        damage in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        noise in prop::collection::vec(any::<u8>(), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut wire = damaged_wire(&commands, &damage);
        wire.extend(noise);
        resumed_matches_fresh(&wire, &cuts)?;
    }
}

/// The arguments an inline line splits into, or `None` for unbalanced quotes.
fn inline_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut framer = frame::Framer::default();
    match framer.check(line) {
        frame::Check::Complete(len) => {
            let frame = framer.frame(&line[..len]);
            Some(
                framer
                    .args()
                    .iter()
                    .map(|&(start, end)| frame[start..end].to_vec())
                    .collect(),
            )
        }
        frame::Check::Error(frame::ProtocolError::UnbalancedQuotes) => None,
        other => panic!("{other:?}"),
    }
}

#[test]
fn inline_lines_split_as_redis_sdssplitargs_does() {
    let words = |list: &[&[u8]]| Some(list.iter().map(|w| w.to_vec()).collect::<Vec<_>>());
    for (line, want) in [
        (
            &b"SET k \"a b\\x41\\n\"\r\n"[..],
            words(&[b"SET", b"k", b"a bA\n"]),
        ),
        (b"SET k 'x y'\n", words(&[b"SET", b"k", b"x y"])),
        (b"a\"b c\"  \t''\r\n", words(&[b"ab c", b""])),
        (
            b"\"\\r\\t\\b\\a\\\\\\\"\\q\\xZZ\\x7e\"\n",
            words(&[b"\r\t\x08\x07\\\"qxZZ~"]),
        ),
        (b"'it\\'s' 'a\\b'\n", words(&[b"it's", b"a\\b"])),
        (b"a\x0bb \x0c c\n", words(&[b"a\x0bb", b"c"])),
        (b"GET k\0 ignored\n", words(&[b"GET", b"k"])),
        (b"   \r\n", words(&[])),
        (b"set \"\"\"test-key\"\"\" test-value\r\n", None),
        (b"set \"open\n", None),
        (b"set 'open\r\n", None),
        (b"set \"a\"b\n", None),
        (b"set 'a'b\n", None),
        (b"set \"a\\\"\n", None),
    ] {
        assert_eq!(
            inline_args(line),
            want,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn unbalanced_inline_quotes_get_redis_error_and_close() {
    let (out, closed) = run(b"SET k \"a b\\x41\\n\"\r\nGET k\r\nset \"\"\"k\"\"\" v\r\nPING\r\n");
    let want = "+OK\r\n$5\r\na bA\n\r\n-ERR Protocol error: unbalanced quotes in request\r\n";
    assert_eq!((out.as_str(), closed), (want, true));
}
