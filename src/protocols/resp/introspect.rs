//! The commands clients send to look around: `INFO`, `CONFIG GET`, `HELLO`, `COMMAND`,
//! and the reply to a command that is not served. Each answers as redis 7.0 does, in
//! RESP2; none changes the store.

use super::frame::parse_i64;
use super::reply::{format_i64, no_newlines, write_bulk, write_integer, write_parts};
use super::{Args, COMMANDS, Resp};
use crate::Context;

impl Resp {
    /// `INFO [section...]`: the `memory` section (`used_memory`, the store's size as
    /// counted against its bound, and `maxmemory`, 0 for none) and the `keyspace` section,
    /// in redis's format; every section without one, unknown sections give nothing.
    pub(super) fn info(&self, ctx: &mut Context<'_>, args: Args<'_>) {
        let all = args.len() == 1
            || args.rest().any(|section| {
                [&b"all"[..], b"default", b"everything"]
                    .iter()
                    .any(|name| section.eq_ignore_ascii_case(name))
            });
        let wants = |name: &[u8]| all || args.rest().any(|s| s.eq_ignore_ascii_case(name));
        // Only this command formats text; it may allocate.
        let mut text = String::new();
        if wants(b"server") {
            text.push_str(&format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\n\
                 os:{}\r\narch_bits:{}\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\n\
                 server_name:tcp-reactor\r\nserver_version:{}\r\n",
                std::env::consts::OS,
                usize::BITS,
                std::process::id(),
                ctx.now().saturating_duration_since(self.started).as_secs(),
                env!("CARGO_PKG_VERSION"),
            ));
        }
        if wants(b"memory") {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            let used = self.store.used();
            let limit = self.store.limit().unwrap_or(0);
            text.push_str(&format!(
                "# Memory\r\nused_memory:{used}\r\nmaxmemory:{limit}\r\n\
                 maxmemory_policy:noeviction\r\n"
            ));
        }
        if wants(b"keyspace") {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            text.push_str("# Keyspace\r\n");
            let keys = self.store.len();
            if keys > 0 {
                text.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
            }
        }
        write_bulk(ctx, text.as_bytes());
    }

    /// `CONFIG GET name...`: the settings `redis-benchmark` asks for (`save`,
    /// `appendonly`) with the values of a store that never persists, and `maxmemory`;
    /// other names are not listed.
    pub(super) fn config(&self, ctx: &mut Context<'_>, args: Args<'_>) {
        if !args.get(1).eq_ignore_ascii_case(b"get") {
            ctx.write(b"-ERR unknown subcommand for 'config'\r\n");
            return;
        }
        let mut digits = [0; 20];
        let limit = format_i64(
            i64::try_from(self.store.limit().unwrap_or(0)).unwrap_or(i64::MAX),
            &mut digits,
        );
        let answer = |name: &[u8]| -> Option<(&'static [u8], &[u8])> {
            if name.eq_ignore_ascii_case(b"save") {
                Some((b"save", b""))
            } else if name.eq_ignore_ascii_case(b"appendonly") {
                Some((b"appendonly", b"no"))
            } else if name.eq_ignore_ascii_case(b"maxmemory") {
                Some((b"maxmemory", limit))
            } else {
                None
            }
        };
        let found = args.rest().skip(1).filter_map(answer).count();
        write_integer(ctx, b'*', 2 * found as i64);
        for (name, value) in args.rest().skip(1).filter_map(answer) {
            write_bulk(ctx, name);
            write_bulk(ctx, value);
        }
    }
}

/// The redis version reported by `HELLO` and `INFO`: the one whose replies these follow
/// (clients pick features by it).
pub const REDIS_VERSION: &str = "7.0.15";

/// `HELLO [protover [SETNAME name]]`: protocol 2 answers redis 7's map (as a flat array in
/// RESP2); 3 gets `-NOPROTO`, as from a redis without RESP3, so that clients fall back.
pub(super) fn hello(ctx: &mut Context<'_>, args: Args<'_>) {
    if args.len() >= 2 {
        match parse_i64(args.get(1)) {
            None => {
                ctx.write(b"-ERR Protocol version is not an integer or out of range\r\n");
                return;
            }
            Some(2) => {}
            Some(_) => {
                ctx.write(b"-NOPROTO sorry, this protocol version is not supported.\r\n");
                return;
            }
        }
    }
    // Options: SETNAME's name is taken and not kept (CLIENT is not served); others are
    // refused as redis words it.
    let mut at = 2;
    while at < args.len() {
        let option = args.get(at);
        if option.eq_ignore_ascii_case(b"setname") && at + 1 < args.len() {
            at += 2;
            continue;
        }
        write_parts(
            ctx,
            &[
                b"-ERR Syntax error in HELLO option '",
                &no_newlines(option.to_vec()),
                b"'\r\n",
            ],
        );
        return;
    }
    ctx.write(b"*14\r\n");
    for (name, value) in [
        (&b"server"[..], &b"redis"[..]),
        (b"version", REDIS_VERSION.as_bytes()),
    ] {
        write_bulk(ctx, name);
        write_bulk(ctx, value);
    }
    write_bulk(ctx, b"proto");
    ctx.write(b":2\r\n");
    write_bulk(ctx, b"id");
    write_integer(ctx, b':', ctx.id().0 as i64);
    for (name, value) in [(&b"mode"[..], &b"standalone"[..]), (b"role", b"master")] {
        write_bulk(ctx, name);
        write_bulk(ctx, value);
    }
    write_bulk(ctx, b"modules");
    ctx.write(b"*0\r\n");
}

/// `COMMAND COUNT` (the commands served), `COMMAND DOCS` (none: an empty map, which
/// redis-cli copes with); `COMMAND` alone lists nothing. Other subcommands get redis's
/// error.
pub(super) fn command_command(ctx: &mut Context<'_>, args: Args<'_>) {
    let sub = args.get(1);
    if args.len() == 1 || sub.eq_ignore_ascii_case(b"docs") {
        ctx.write(b"*0\r\n");
    } else if sub.eq_ignore_ascii_case(b"count") && args.len() == 2 {
        write_integer(ctx, b':', COMMANDS.len() as i64);
    } else {
        write_parts(
            ctx,
            &[
                b"-ERR unknown subcommand '",
                &no_newlines(sub.iter().copied().take(128).collect()),
                b"'. Try COMMAND HELP.\r\n",
            ],
        );
    }
}

/// `-ERR unknown command 'name', with args beginning with: 'a' 'b' `, built as redis
/// 7.0 builds it: the name and each argument end at their first NUL byte (redis formats
/// them as C strings), the name is cut at 128 bytes, arguments are added while the list
/// is under 128 bytes (the last one cut to fit), and CR and LF become spaces.
pub(super) fn unknown_command(ctx: &mut Context<'_>, args: Args<'_>) {
    let c_string = |text: &'_ [u8]| -> Vec<u8> {
        let end = text
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(text.len());
        text[..end].to_vec()
    };
    let mut name = c_string(args.get(0));
    name.truncate(128);
    let mut list = Vec::new();
    for arg in args.rest() {
        if list.len() >= 128 {
            break;
        }
        let mut arg = c_string(arg);
        arg.truncate(128 - list.len());
        list.push(b'\'');
        list.extend_from_slice(&arg);
        list.extend_from_slice(b"' ");
    }
    write_parts(
        ctx,
        &[
            b"-ERR unknown command '",
            &no_newlines(name),
            b"', with args beginning with: ",
            &no_newlines(list),
            b"\r\n",
        ],
    );
}
