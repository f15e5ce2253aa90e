//! TLS under both models: every protocol behind a rustls session, with a certificate made at
//! test time (never one committed), clients that verify it, and the hostile cases: junk,
//! silence, resets mid-handshake, slow readers, half-closes and a graceful stop.

#![cfg(feature = "tls")]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::trickle_until_closed;
use fixtures::server::{start_server, stop_checked, wait_connections};
use fixtures::{PATIENCE, eventually, for_each_model};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tcp_reactor::protocols::{Chat, Echo, Http, Resp};
use tcp_reactor::{CloseReason, Config, Handler, Model, Running, Server, tls_config};

for_each_model!(
    echo_over_tls_with_workers_and_a_verifying_client,
    many_handshakes_in_parallel,
    four_mebibytes_through_a_slow_reader_arrive_intact,
    half_close_gets_every_reply_then_close_notify,
    close_notify_on_graceful_stop,
    a_silent_client_is_closed_at_the_handshake_deadline_and_others_are_served,
    a_client_trickling_its_hello_is_closed_at_the_handshake_deadline_and_others_are_served,
    a_client_trickling_a_record_is_closed_at_the_idle_timeout,
    a_request_head_whose_record_trickles_gets_408_at_the_header_timeout,
    a_lingering_close_ends_at_the_linger_timeout_while_a_record_trickles,
    plaintext_and_junk_on_the_tls_port_are_closed_at_once,
    a_client_resetting_mid_handshake_does_not_disturb_others,
    output_written_before_the_handshake_completes_is_sent_after_it,
    chat_lines_sent_to_a_member_before_its_handshake_all_arrive_whole,
    large_writes_before_and_after_the_handshake_arrive_whole,
    output_waiting_for_a_handshake_past_the_output_cap_closes_the_member_with_a_reason,
    curl_gets_https_with_alpn_http11,
    the_load_generator_speaks_tls_and_verifies_every_byte,
    redis_cli_over_tls_against_resp,
    tls_begins_after_a_proxy_header_that_names_the_client,
    a_second_connection_resumes_by_ticket,
    a_tls12_client_with_no_common_signature_scheme_gets_handshake_failure,
    a_burst_of_one_byte_records_then_silence_is_all_echoed,
    records_split_at_every_byte_boundary_are_all_echoed
);

/// True when `openssl` runs; otherwise says which check is skipped.
fn have_openssl(check: &str) -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok();
    if !found {
        eprintln!("SKIP: openssl is not installed: {check}");
    }
    found
}

/// Run `openssl s_client` against the echo server at `port` with `args`: send one line
/// and wait for its echo (by then a TLS 1.3 session ticket, sent before any data, has
/// arrived too), then close stdin; its whole output. Bounded by `timeout 10`.
fn s_client(port: u16, args: &[&str]) -> String {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let _ = stdin.write_all(b"echo-me\n");
    let mut seen = String::new();
    let mut lines = io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line == "echo-me" {
            break;
        }
    }
    drop(stdin);
    for line in lines.map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
    }
    let output = child.wait_with_output().expect("openssl s_client ends");
    seen + &String::from_utf8_lossy(&output.stderr)
}

fn a_second_connection_resumes_by_ticket(model: Model) {
    if !have_openssl("session resumption") {
        return;
    }
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    let port = running.local_addr().port();
    for version in ["-tls1_2", "-tls1_3"] {
        let session = certificate.dir.path().join(format!("session{version}"));
        let session = session.to_str().expect("a UTF-8 path");
        let first = s_client(port, &[version, "-sess_out", session]);
        assert!(first.contains("\nNew, TLS"), "{version} first: {first}");
        let second = s_client(port, &[version, "-sess_in", session]);
        assert!(
            second.contains("\nReused, TLS"),
            "{version} not resumed: {second}"
        );
    }
}

fn a_tls12_client_with_no_common_signature_scheme_gets_handshake_failure(model: Model) {
    if !have_openssl("the handshake_failure alert") {
        return;
    }
    // The certificate's key is P-256: no ECDSA+SHA384 (P-384) signature can be made.
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    let port = running.local_addr().port();
    let output = s_client(port, &["-tls1_2", "-sigalgs", "ECDSA+SHA384"]);
    assert!(
        output.contains("alert handshake failure") && output.contains("alert number 40"),
        "no handshake_failure alert: {output}"
    );
    // A client it can serve still gets served.
    let output = s_client(port, &["-tls1_2"]);
    assert!(output.contains("\nNew, TLSv1.2"), "{output}");
}

/// A certificate for `localhost` and its key, written as PEM files in a fresh private
/// directory that is removed on drop, even when the test fails.
struct Certificate {
    /// The directory holding both files.
    dir: tempfile::TempDir,
}

impl Certificate {
    /// Generate a self-signed certificate and key.
    fn generate() -> Certificate {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen makes a certificate");
        let dir = tempfile::Builder::new()
            .prefix("tcp-reactor-tls-")
            .tempdir()
            .expect("a temporary directory");
        let certificate = Certificate { dir };
        std::fs::write(certificate.cert(), made.cert.pem()).expect("cert written");
        std::fs::write(certificate.key(), made.signing_key.serialize_pem()).expect("key written");
        certificate
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// A server configuration for this certificate.
    fn server(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        tls_config::server_from_pem(&self.cert(), &self.key(), alpn).expect("server config")
    }

    /// A client configuration trusting only this certificate.
    fn client(&self) -> Arc<ClientConfig> {
        tls_config::client_from_pem(Some(&self.cert())).expect("client config")
    }
}

/// Start `handler` over TLS with `certificate` under `model`.
fn start_tls<H: Handler>(
    handler: H,
    certificate: &Certificate,
    model: Model,
    config: Config,
) -> Running {
    let server = Server::new(handler).tls(certificate.server(&[]));
    start_server(server, model, config)
}

/// A verifying TLS client connected to `addr`, with timeouts of [`PATIENCE`].
type Client = StreamOwned<ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Client {
    let tcp = fixtures::client::connect(addr);
    let name = ServerName::try_from("localhost").expect("a server name");
    let session = ClientConnection::new(Arc::clone(config), name).expect("a client session");
    StreamOwned::new(session, tcp)
}

/// Send `message` and read the same bytes back.
#[track_caller]
fn echo_round(client: &mut Client, message: &[u8]) {
    client.write_all(message).expect("TLS write");
    let mut back = vec![0; message.len()];
    client.read_exact(&mut back).expect("TLS read of the echo");
    assert_eq!(back, message);
}

/// Wait until the raw socket is closed by the server; returns how long it took.
#[track_caller]
fn wait_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            // The server's alert, before its close.
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return started.elapsed(),
            Err(err) => panic!("the server did not close the connection: {err}"),
        }
    }
}

fn echo_over_tls_with_workers_and_a_verifying_client(model: Model) {
    let certificate = Certificate::generate();
    let server = Server::new(Echo).tls(certificate.server(&[])).workers(2);
    let running = start_server(server, model, Config::default());
    let config = certificate.client();
    let mut clients: Vec<Client> = (0..6)
        .map(|_| tls_connect(running.local_addr(), &config))
        .collect();
    for round in 0..3 {
        for (i, client) in clients.iter_mut().enumerate() {
            echo_round(client, format!("round {round} client {i}\n").as_bytes());
        }
    }
    let negotiated = clients[0].conn.protocol_version();
    assert_eq!(negotiated, Some(rustls::ProtocolVersion::TLSv1_3));
    let stats = stop_checked(running);
    assert_eq!(stats.accepted, 6);
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails_its_handshake() {
    let certificate = Certificate::generate();
    let stranger = Certificate::generate();
    let running = start_tls(Echo, &certificate, Model::Reactor, Config::default());
    let mut client = tls_connect(running.local_addr(), &stranger.client());
    let err = client.write_all(b"hello").and_then(|()| client.flush());
    let read = client.read(&mut [0; 16]);
    assert!(
        err.is_err() || read.is_err(),
        "a client must refuse a certificate it does not trust"
    );
    // The server goes on serving clients that do trust it.
    let mut good = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut good, b"still here");
}

fn many_handshakes_in_parallel(model: Model) {
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    let addr = running.local_addr();
    let config = certificate.client();
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let config = Arc::clone(&config);
            thread::spawn(move || {
                let mut client = tls_connect(addr, &config);
                echo_round(&mut client, format!("client {i}").as_bytes());
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .expect("every client completes its handshake and echo");
    }
    let stats = stop_checked(running);
    assert_eq!(stats.accepted, 32);
}

fn four_mebibytes_through_a_slow_reader_arrive_intact(model: Model) {
    let certificate = Certificate::generate();
    let config = Config::default()
        .with_high_water(64 * 1024)
        .with_low_water(16 * 1024);
    let running = start_tls(Echo, &certificate, model, config);
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    // One rustls session serves both directions, so one thread drives both over a
    // nonblocking socket: write whatever the socket takes, read at most 32 KiB every
    // 2 ms. The server's output backs up on the encrypted side meanwhile.
    client.sock.set_nonblocking(true).expect("nonblocking");
    let mut back = Vec::with_capacity(payload.len());
    let mut written = 0;
    let mut buf = vec![0; 32 * 1024];
    let started = Instant::now();
    while back.len() < payload.len() {
        assert!(started.elapsed() < PATIENCE * 2, "the transfer stalled");
        if written < payload.len() && !client.conn.wants_write() {
            let end = payload.len().min(written + 16 * 1024);
            written += client
                .conn
                .writer()
                .write(&payload[written..end])
                .expect("sealed");
        }
        while client.conn.wants_write() {
            match client.conn.write_tls(&mut client.sock) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("TLS write: {err}"),
            }
        }
        match client.conn.read_tls(&mut client.sock) {
            Ok(0) => panic!("the server closed before echoing everything"),
            Ok(_) => {
                client.conn.process_new_packets().expect("valid records");
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("TLS read: {err}"),
        }
        match client.conn.reader().read(&mut buf) {
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("TLS read: {err}"),
        }
        thread::sleep(Duration::from_millis(2));
    }
    assert!(back == payload, "the echo differs from the payload");
}

fn half_close_gets_every_reply_then_close_notify(model: Model) {
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    client
        .write_all(b"before the half-close")
        .expect("TLS write");
    // close_notify, then TCP FIN: we send no more, and still read.
    client.conn.send_close_notify();
    client.flush().expect("close_notify written");
    client.sock.shutdown(Shutdown::Write).expect("FIN");
    let mut back = Vec::new();
    client
        .read_to_end(&mut back)
        .expect("the server ends with close_notify, not a truncation");
    assert_eq!(back, b"before the half-close");
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::Eof), 1);
}

fn close_notify_on_graceful_stop(model: Model) {
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut client, b"hello");
    let stopping = thread::spawn(move || running.stop());
    let mut rest = Vec::new();
    // read_to_end fails with UnexpectedEof on a TCP close without close_notify.
    client
        .read_to_end(&mut rest)
        .expect("the stop ends the TLS stream with close_notify");
    assert!(rest.is_empty());
    let stats = stopping.join().expect("joins").expect("stops");
    assert_eq!(stats.closed_by(CloseReason::Shutdown), 1);
}

fn a_silent_client_is_closed_at_the_handshake_deadline_and_others_are_served(model: Model) {
    let certificate = Certificate::generate();
    let config = Config::default().with_handshake_timeout(Duration::from_millis(300));
    let running = start_tls(Echo, &certificate, model, config);
    let mut silent = fixtures::client::connect(running.local_addr());
    let mut other = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut other, b"served meanwhile");
    let waited = wait_closed(&mut silent);
    assert!(
        waited >= Duration::from_millis(200),
        "closed after {waited:?}, before the handshake deadline"
    );
    echo_round(&mut other, b"still served");
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::HandshakeTimeout), 1);
}

/// A ClientHello for `certificate`'s server, as a client sends it first.
fn client_hello(certificate: &Certificate) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut session = ClientConnection::new(certificate.client(), name).expect("a client session");
    let mut hello = Vec::new();
    session.write_tls(&mut hello).expect("a ClientHello");
    hello
}

/// `plaintext` sealed by `client`'s session into records, not sent yet.
fn sealed(client: &mut Client, plaintext: &[u8]) -> Vec<u8> {
    client
        .conn
        .writer()
        .write_all(plaintext)
        .expect("plaintext taken");
    let mut records = Vec::new();
    while client.conn.wants_write() {
        client.conn.write_tls(&mut records).expect("records");
    }
    records
}

/// Thousands of one-byte records in one write, then nothing: a read that stops once the
/// socket has been read short must still have taken every record (no new edge comes for
/// records left behind).
fn a_burst_of_one_byte_records_then_silence_is_all_echoed(model: Model) {
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut client, b"handshake done");
    let plaintext: Vec<u8> = (0..4000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut records = Vec::new();
    for byte in &plaintext {
        records.extend(sealed(&mut client, std::slice::from_ref(byte)));
    }
    assert!(records.len() > 20 * plaintext.len(), "one record per byte");
    client.sock.write_all(&records).expect("the burst");
    let mut back = vec![0; plaintext.len()];
    client.read_exact(&mut back).expect("every byte echoed");
    assert_eq!(back, plaintext);
    echo_round(&mut client, b"still served");
    drop(client);
    stop_checked(running);
}

/// Records whose bytes arrive split at every possible place (each write ends inside a
/// record, at a different offset) are each read once whole, and nothing is lost.
fn records_split_at_every_byte_boundary_are_all_echoed(model: Model) {
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut client, b"handshake done");
    let message = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let probe = sealed(&mut client, message);
    let record_len = probe.len();
    client.sock.write_all(&probe).expect("a probe record");
    client
        .read_exact(&mut [0; 36])
        .expect("the echo of the probe record");
    for cut in 1..record_len {
        let two = [sealed(&mut client, message), sealed(&mut client, message)].concat();
        // The first record and part of the second, then the rest after a pause.
        client
            .sock
            .write_all(&two[..record_len + cut])
            .expect("first part");
        client.sock.flush().expect("flush");
        thread::sleep(Duration::from_millis(2));
        client
            .sock
            .write_all(&two[record_len + cut..])
            .expect("the rest");
        let mut back = [0; 72];
        client.read_exact(&mut back).expect("both records echoed");
        assert_eq!(&back[..36], message, "cut at {cut}");
        assert_eq!(&back[36..], message, "cut at {cut}");
    }
    drop(client);
    stop_checked(running);
}

fn a_client_trickling_its_hello_is_closed_at_the_handshake_deadline_and_others_are_served(
    model: Model,
) {
    // The socket's receive timeout restarts with every byte: only the handshake's own
    // deadline, which a byte does not move, can close this client in time.
    let certificate = Certificate::generate();
    let config = Config::default().with_handshake_timeout(Duration::from_millis(300));
    let running = start_tls(Echo, &certificate, model, config);
    let mut other = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut other, b"served before");
    let hello = client_hello(&certificate);
    let slow = fixtures::client::connect(running.local_addr());
    let trickled = trickle_until_closed(&slow, &hello, true);
    assert!(
        trickled.sent < hello.len(),
        "the client was closed only after its whole hello ({} bytes) trickled in",
        hello.len()
    );
    echo_round(&mut other, b"served after");
    drop(other);
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::HandshakeTimeout), 1, "{stats}");
}

fn a_client_trickling_a_record_is_closed_at_the_idle_timeout(model: Model) {
    let certificate = Certificate::generate();
    let config = Config::default().with_idle_timeout(Some(Duration::from_millis(300)));
    let running = start_tls(Echo, &certificate, model, config);
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut client, b"progress");
    // A record's bytes are no input until the record is whole: no progress meanwhile.
    let record = sealed(&mut client, &[b'x'; 300]);
    let trickled = trickle_until_closed(&client.sock, &record, true);
    assert!(
        trickled.sent < record.len(),
        "the client was closed only after its whole record ({} bytes) trickled in",
        record.len()
    );
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::IdleTimeout), 1, "{stats}");
}

fn a_request_head_whose_record_trickles_gets_408_at_the_header_timeout(model: Model) {
    let certificate = Certificate::generate();
    let http = Http::default().with_header_timeout(Some(Duration::from_millis(300)));
    let server = Server::new(http).tls(certificate.server(&[]));
    let running = start_server(server, model, Config::default());
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    // The head begins (the header timeout starts), then its next record trickles.
    client.write_all(b"GET / HTTP/1.1\r\n").expect("TLS write");
    client.flush().expect("sent");
    let mut rest = b"X-Padding: ".to_vec();
    rest.extend_from_slice(&[b'a'; 300]);
    rest.extend_from_slice(b"\r\nHost: a\r\n\r\n");
    let record = sealed(&mut client, &rest);
    let trickled = trickle_until_closed(&client.sock, &record, true);
    assert!(
        trickled.sent < record.len(),
        "the head was answered only after its whole record ({} bytes) trickled in",
        record.len()
    );
    // What the server sent, decrypted: the 408, then close_notify.
    let mut raw = &trickled.received[..];
    let mut reply = Vec::new();
    while !raw.is_empty() {
        client.conn.read_tls(&mut raw).expect("records");
        client.conn.process_new_packets().expect("valid records");
        let _ = client.conn.reader().read_to_end(&mut reply);
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
}

fn a_lingering_close_ends_at_the_linger_timeout_while_a_record_trickles(model: Model) {
    /// Consumes nothing: its input reaches the cap, and the connection closes lingering.
    #[derive(Debug)]
    struct Hoarder;
    impl Handler for Hoarder {
        type Session = ();
        fn open(&self, _: &mut tcp_reactor::Context<'_>) {}
        fn data(&self, _: &mut (), _: &mut tcp_reactor::Context<'_>, _: &[u8]) -> usize {
            0
        }
    }
    let certificate = Certificate::generate();
    let config = Config::default()
        .with_max_input(1024)
        .with_linger(Duration::from_millis(300));
    let running = start_tls(Hoarder, &certificate, model, config);
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    client.write_all(&[b'x'; 4096]).expect("TLS write");
    client.flush().expect("sent");
    // The server's close_notify and EOF: it is lingering, reading until our EOF.
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("close_notify, then EOF");
    let record = sealed(&mut client, &[b'y'; 300]);
    let trickled = trickle_until_closed(&client.sock, &record, false);
    assert!(
        trickled.sent < record.len(),
        "the lingering close waited for the whole record ({} bytes) to trickle in",
        record.len()
    );
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::InputLimit), 1, "{stats}");
}

fn plaintext_and_junk_on_the_tls_port_are_closed_at_once(model: Model) {
    let certificate = Certificate::generate();
    // A deadline far away: only the TLS error can close these clients in time.
    let config = Config::default().with_handshake_timeout(Duration::from_secs(60));
    let running = start_tls(Echo, &certificate, model, config);
    let mut other = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut other, b"before");
    for junk in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0xff; 64][..]] {
        let mut stream = fixtures::client::connect(running.local_addr());
        stream.write_all(junk).expect("junk sent");
        let waited = wait_closed(&mut stream);
        assert!(waited < PATIENCE, "junk kept the connection open");
    }
    echo_round(&mut other, b"after");
    let stats = stop_checked(running);
    assert_eq!(
        stats.closed_by(CloseReason::Error(io::ErrorKind::InvalidData)),
        2
    );
}

fn a_client_resetting_mid_handshake_does_not_disturb_others(model: Model) {
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    let mut other = tls_connect(running.local_addr(), &certificate.client());
    echo_round(&mut other, b"before");
    // Half of a real ClientHello, then a reset (SO_LINGER 0).
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut hello_session =
        ClientConnection::new(certificate.client(), name).expect("a client session");
    let mut hello = Vec::new();
    hello_session.write_tls(&mut hello).expect("a ClientHello");
    let stream = fixtures::client::connect(running.local_addr());
    (&stream)
        .write_all(&hello[..hello.len() / 2])
        .expect("half a hello sent");
    wait_connections(&running, 2);
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
    eventually("the reset client is closed", || running.connections() == 1);
    echo_round(&mut other, b"after");
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::Reset), 1);
}

fn output_written_before_the_handshake_completes_is_sent_after_it(model: Model) {
    // A handler that writes at open: its output waits for the handshake.
    #[derive(Debug)]
    struct Greeter;
    impl Handler for Greeter {
        type Session = ();
        fn open(&self, ctx: &mut tcp_reactor::Context<'_>) {
            ctx.write(b"welcome\n");
        }
        fn data(&self, _: &mut (), ctx: &mut tcp_reactor::Context<'_>, input: &[u8]) -> usize {
            ctx.write(input);
            input.len()
        }
    }
    let certificate = Certificate::generate();
    // Without session tickets the server writes nothing once the handshake completes, so
    // no writable edge comes to flush the greeting: the transport itself must.
    let mut tls = (*certificate.server(&[])).clone();
    tls.send_tls13_tickets = 0;
    let server = Server::new(Greeter).tls(Arc::new(tls));
    let running = start_server(server, model, Config::default());
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    // Complete the handshake without sending data: the greeting must follow it.
    while client.conn.is_handshaking() {
        client
            .conn
            .complete_io(&mut client.sock)
            .expect("handshake");
    }
    let mut greeting = [0; 8];
    client.read_exact(&mut greeting).expect("the greeting");
    assert_eq!(&greeting, b"welcome\n");
    echo_round(&mut client, b"and echo");
}

/// The `n`th line of a burst: `line NNNN ` and padding to `len` bytes, without its `\n`.
fn burst_line(n: usize, len: usize) -> Vec<u8> {
    let mut line = format!("line {n:04} ").into_bytes();
    line.resize(len, b'x');
    line
}

/// A chat room over TLS under `model` with `config`; member A has connected (and joined)
/// but not begun its handshake; members B (the sender) and C (a witness) have completed
/// theirs. B sends `lines` lines of `len` bytes, and C reads them all, so that most of
/// them are queued for A before its handshake. Returns the server, A's socket, B and C.
fn chat_burst_before_a_handshake(
    certificate: &Certificate,
    model: Model,
    config: Config,
    lines: usize,
    len: usize,
) -> (Running, TcpStream, Client, io::BufReader<Client>) {
    let running = start_tls(Chat::new(), certificate, model, config);
    let a = fixtures::client::connect(running.local_addr());
    wait_connections(&running, 1);
    let mut b = tls_connect(running.local_addr(), &certificate.client());
    let mut c = tls_connect(running.local_addr(), &certificate.client());
    echo_membership(&mut b, &mut c);
    let sending = {
        let mut burst = Vec::new();
        for n in 0..lines {
            burst.extend_from_slice(&burst_line(n, len));
            burst.push(b'\n');
        }
        burst
    };
    b.write_all(&sending).expect("the burst sent");
    b.flush().expect("sent");
    let mut c = io::BufReader::new(c);
    for n in 0..lines {
        let line = read_line(&mut c);
        assert!(line.ends_with(&burst_line(n, len)), "C's line {n}");
    }
    (running, a, b, c)
}

/// Make sure B's and C's handshakes are complete and both are in the room: B says hello
/// and C hears it.
fn echo_membership(b: &mut Client, c: &mut Client) {
    b.write_all(b"hello\n").expect("hello sent");
    b.flush().expect("sent");
    let line = read_line(&mut io::BufReader::new(c));
    assert!(
        line.ends_with(b"hello"),
        "{}",
        String::from_utf8_lossy(&line)
    );
}

/// One line, without its `\n`.
#[track_caller]
fn read_line(reader: &mut impl io::BufRead) -> Vec<u8> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).expect("a line");
    assert_eq!(line.pop(), Some(b'\n'), "a whole line");
    line
}

fn chat_lines_sent_to_a_member_before_its_handshake_all_arrive_whole(model: Model) {
    // 200 KB: more than rustls keeps by default (64 KiB) before a handshake completes.
    const LINES: usize = 200;
    const LEN: usize = 1000;
    let certificate = Certificate::generate();
    let (running, a, mut b, c) =
        chat_burst_before_a_handshake(&certificate, model, Config::default(), LINES, LEN);
    let name = ServerName::try_from("localhost").expect("a server name");
    let session = ClientConnection::new(certificate.client(), name).expect("a client session");
    let mut a = io::BufReader::new(StreamOwned::new(session, a));
    assert!(read_line(&mut a).ends_with(b"] hello"));
    for n in 0..LINES {
        let line = read_line(&mut a);
        assert!(
            line.ends_with(&burst_line(n, LEN)),
            "line {n} reached A whole: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        );
    }
    // The next message starts a line of its own.
    b.write_all(b"after\n").expect("sent");
    b.flush().expect("sent");
    assert!(read_line(&mut a).ends_with(b"] after"));
    drop((a, b, c));
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::OutputLimit), 0, "{stats}");
}

fn large_writes_before_and_after_the_handshake_arrive_whole(model: Model) {
    /// Writes `size` bytes at open (before the handshake) and again for each input.
    #[derive(Debug)]
    struct Large(Vec<u8>);
    impl Handler for Large {
        type Session = ();
        fn open(&self, ctx: &mut tcp_reactor::Context<'_>) {
            ctx.write(&self.0);
        }
        fn data(&self, _: &mut (), ctx: &mut tcp_reactor::Context<'_>, input: &[u8]) -> usize {
            ctx.write(&self.0);
            input.len()
        }
    }
    // Each larger than what rustls keeps by default (64 KiB), in one write.
    const SIZE: usize = 300 * 1024;
    let payload = fixtures::client::pseudo_random_bytes(7, SIZE);
    let certificate = Certificate::generate();
    let running = start_tls(
        Large(payload.clone()),
        &certificate,
        model,
        Config::default(),
    );
    let mut client = tls_connect(running.local_addr(), &certificate.client());
    let mut got = vec![0; SIZE];
    client.read_exact(&mut got).expect("the greeting");
    assert!(got == payload, "the greeting arrived whole");
    client.write_all(b"again").expect("sent");
    client.read_exact(&mut got).expect("the reply");
    assert!(got == payload, "the reply arrived whole");
    drop(client);
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::OutputLimit), 0, "{stats}");
}

fn output_waiting_for_a_handshake_past_the_output_cap_closes_the_member_with_a_reason(
    model: Model,
) {
    let certificate = Certificate::generate();
    let config = Config::default()
        .with_max_output(100 * 1024)
        .with_high_water(32 * 1024)
        .with_low_water(8 * 1024);
    let (running, a, b, c) = chat_burst_before_a_handshake(&certificate, model, config, 200, 1000);
    // A is closed, not left with part of its output: its handshake cannot complete.
    let name = ServerName::try_from("localhost").expect("a server name");
    let session = ClientConnection::new(certificate.client(), name).expect("a client session");
    let mut a = StreamOwned::new(session, a);
    let mut rest = Vec::new();
    assert!(
        a.read_to_end(&mut rest).is_err() || rest.is_empty(),
        "A got {} bytes",
        rest.len()
    );
    eventually("A is closed", || running.connections() == 2);
    drop((b, c));
    let stats = stop_checked(running);
    assert_eq!(stats.closed_by(CloseReason::OutputLimit), 1, "{stats}");
}

fn curl_gets_https_with_alpn_http11(model: Model) {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP: curl is not installed");
        return;
    }
    let certificate = Certificate::generate();
    let server = Server::new(Http::default()).tls(certificate.server(&[b"http/1.1"]));
    let running = start_server(server, model, Config::default());
    let port = running.local_addr().port();
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_version}",
            "--cacert",
        ])
        .arg(certificate.cert())
        .arg(format!("https://localhost:{port}/a"))
        .arg(format!("https://localhost:{port}/b"))
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "curl failed: {output:?}");
    assert_eq!(stdout.matches("Hello, world!").count(), 2, "{stdout}");
    assert!(stdout.contains("\n1.1"), "ALPN http/1.1 expected: {stdout}");
}

fn redis_cli_over_tls_against_resp(model: Model) {
    if Command::new("redis-cli").arg("--version").output().is_err() {
        eprintln!("SKIP: redis-cli (redis-tools) is not installed");
        return;
    }
    let certificate = Certificate::generate();
    let running = start_tls(Resp::default(), &certificate, model, Config::default());
    let port = running.local_addr().port().to_string();
    let cli = |args: &[&str]| {
        let output = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(certificate.cert())
            .args(["-h", "localhost", "-p", &port])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(output.status.success(), "redis-cli failed: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "greeting", "over tls"]), "OK");
    assert_eq!(cli(&["GET", "greeting"]), "over tls");
}

#[test]
fn a_missing_or_mismatched_key_is_one_clear_error() {
    let certificate = Certificate::generate();
    let other = Certificate::generate();
    let missing = Path::new("/nonexistent/key.pem");
    let err = tls_config::server_from_pem(&certificate.cert(), missing, &[]).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
    let err = tls_config::server_from_pem(&certificate.cert(), &other.key(), &[])
        .expect_err("a key of another certificate");
    assert!(err.to_string().contains("do not go together"), "{err}");
}

fn the_load_generator_speaks_tls_and_verifies_every_byte(model: Model) {
    let certificate = Certificate::generate();
    let running = start_tls(Echo, &certificate, model, Config::default());
    // 64 KiB messages, 4 in flight: records split across reads and writes both ways.
    for (size, pipeline, messages) in [(100, 4, 1003), (64 * 1024, 4, 40)] {
        let args = tcp_reactor::load::LoadArgs {
            addr: running.local_addr().into(),
            connections: 7,
            size,
            pipeline,
            messages: Some(messages),
            timeout: Some(60.0),
            quiet: true,
            tls: true,
            ca: Some(certificate.cert()),
            ..Default::default()
        };
        let report = tcp_reactor::load::run(&args).expect("the load runs");
        assert_eq!(report.error_count(), 0, "{:?}", report.failure_line());
        assert_eq!(report.connected, 7);
        assert_eq!(report.messages, messages);
        assert_eq!(report.bytes, messages * size as u64);
    }
}

#[test]
fn serve_with_a_missing_unreadable_or_mismatched_key_prints_one_line_and_exits_1() {
    let certificate = Certificate::generate();
    let other = Certificate::generate();
    let garbage = certificate.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("garbage written");
    let cases = [
        (certificate.cert(), PathBuf::from("/nonexistent/key.pem")),
        (certificate.cert(), garbage.clone()),
        (garbage, certificate.key()),
        (certificate.cert(), other.key()),
    ];
    for (cert, key) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_tcp-reactor"))
            .args(["serve", "--addr", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{cert:?} {key:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("tcp-reactor: error: "), "{stderr}");
    }
}

/// Greets each client with the peer `Context::peer_addr` names, then echoes.
struct PeerGreeter;

impl Handler for PeerGreeter {
    type Session = ();

    fn open(&self, ctx: &mut tcp_reactor::Context<'_>) {
        ctx.write(format!("{}\n", ctx.peer_addr()).as_bytes());
    }

    fn data(&self, _: &mut (), ctx: &mut tcp_reactor::Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

fn tls_begins_after_a_proxy_header_that_names_the_client(model: Model) {
    use tcp_reactor::proxy_header::{Cidr, SendProxy, encode};
    let certificate = Certificate::generate();
    let config =
        Config::default().with_proxy_protocol_from(["127.0.0.1".parse::<Cidr>().expect("a block")]);
    let running = start_tls(PeerGreeter, &certificate, model, config);
    for version in [SendProxy::V1, SendProxy::V2] {
        // The balancer's header in the clear, then the client's TLS.
        let mut tcp = fixtures::client::connect(running.local_addr());
        let client = "192.0.2.7:4711".parse().unwrap();
        tcp.write_all(&encode(version, client, running.local_addr()))
            .expect("send the header");
        let name = ServerName::try_from("localhost").expect("a server name");
        let session = ClientConnection::new(certificate.client(), name).expect("a client session");
        let mut tls = StreamOwned::new(session, tcp);
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).expect("TLS read of the greeting");
            line.push(byte[0]);
        }
        assert_eq!(line, b"192.0.2.7:4711\n", "{version:?}");
        echo_round(&mut tls, b"over tls");
    }
    stop_checked(running);
}
