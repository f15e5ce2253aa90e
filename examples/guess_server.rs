//! A custom protocol with per-connection state: "guess the number".
//!
//! Each client gets its own secret number between 1 and 100 and guesses it, one line per
//! guess; the server answers `higher`, `lower` or `right in N guesses` and then closes.
//! A client that stays silent for 30 seconds is nudged once by a handler timer.
//!
//! Run with `cargo run --example guess_server [-- --threads]`, then `nc 127.0.0.1 8867`.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tcp_reactor::{CloseReason, ConnId, Context, Handler, Model, Server};

/// How long a silent player is given before a nudge.
const NUDGE_AFTER: Duration = Duration::from_secs(30);

/// The protocol: all state is per connection, so the handler itself is empty.
struct Guess;

/// One player's game.
struct Game {
    /// The number to guess.
    secret: u32,
    /// Guesses so far.
    guesses: u32,
}

impl Handler for Guess {
    type Session = Game;

    fn open(&self, ctx: &mut Context<'_>) -> Game {
        // No randomness crate needed for a game: std's hasher is keyed at random.
        let secret = (RandomState::new().hash_one(ctx.id()) % 100 + 1) as u32;
        ctx.write(b"I picked a number between 1 and 100. Your guess?\n");
        ctx.set_timer(NUDGE_AFTER);
        Game { secret, guesses: 0 }
    }

    fn data(&self, game: &mut Game, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        // Frame by line: without a newline, ask for more bytes.
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        ctx.set_timer(NUDGE_AFTER);
        let text = String::from_utf8_lossy(&input[..end]);
        match text.trim().parse::<u32>() {
            Ok(guess) => {
                game.guesses += 1;
                if guess < game.secret {
                    ctx.write(b"higher\n");
                } else if guess > game.secret {
                    ctx.write(b"lower\n");
                } else {
                    ctx.write(format!("right in {} guesses\n", game.guesses).as_bytes());
                    ctx.close();
                }
            }
            Err(_) => ctx.write(b"a number, please\n"),
        }
        end + 1
    }

    fn timer(&self, _game: &mut Game, ctx: &mut Context<'_>) {
        ctx.write(b"still there? type a number\n");
    }

    fn close(&self, game: Game, id: ConnId, reason: CloseReason) {
        println!("player {id} left ({reason}) after {} guesses", game.guesses);
    }
}

fn main() -> std::io::Result<()> {
    env_logger::init();
    let model = if std::env::args().any(|arg| arg == "--threads") {
        Model::Threads
    } else {
        Model::Reactor
    };
    let running = Server::new(Guess)
        .model(model)
        .bind("127.0.0.1:8867".parse().expect("an address"))?;
    println!("guess-the-number ({model:?}) on {}", running.local_addr());
    println!("{}", running.wait()?);
    Ok(())
}
