//! ring against aws-lc-rs as rustls providers: server CPU per TLS 1.3 handshake and
//! seal+open throughput, in memory.
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn pump(c: &mut ClientConnection, s: &mut ServerConnection) {
    loop {
        let mut moved = false;
        let mut buf = Vec::new();
        while c.wants_write() { c.write_tls(&mut buf).unwrap(); }
        if !buf.is_empty() { moved = true; let mut r = &buf[..]; while !r.is_empty() { s.read_tls(&mut r).unwrap(); s.process_new_packets().unwrap(); } }
        let mut buf = Vec::new();
        while s.wants_write() { s.write_tls(&mut buf).unwrap(); }
        if !buf.is_empty() { moved = true; let mut r = &buf[..]; while !r.is_empty() { c.read_tls(&mut r).unwrap(); c.process_new_packets().unwrap(); } }
        if !moved { break; }
    }
}

fn main() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    for (name, prov) in [("ring", rustls::crypto::ring::default_provider()), ("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider())] {
        let prov = Arc::new(prov);
        let server = Arc::new(ServerConfig::builder_with_provider(prov.clone()).with_safe_default_protocol_versions().unwrap()
            .with_no_client_auth().with_single_cert(vec![cert.clone()], key.clone_key()).unwrap());
        let mut roots = RootCertStore::empty(); roots.add(cert.clone()).unwrap();
        let client = Arc::new(ClientConfig::builder_with_provider(prov.clone()).with_safe_default_protocol_versions().unwrap()
            .with_root_certificates(roots).with_no_client_auth());
        let n = 2000;
        // Server-side handshake CPU: time only the server's processing.
        let mut server_time = std::time::Duration::ZERO;
        let start = Instant::now();
        for _ in 0..n {
            let mut c = ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
            let mut s = ServerConnection::new(server.clone()).unwrap();
            loop {
                let mut buf = Vec::new();
                while c.wants_write() { c.write_tls(&mut buf).unwrap(); }
                let t = Instant::now();
                let mut r = &buf[..]; while !r.is_empty() { s.read_tls(&mut r).unwrap(); s.process_new_packets().unwrap(); }
                let mut out = Vec::new();
                while s.wants_write() { s.write_tls(&mut out).unwrap(); }
                server_time += t.elapsed();
                if out.is_empty() && buf.is_empty() { break; }
                let mut r = &out[..]; while !r.is_empty() { c.read_tls(&mut r).unwrap(); c.process_new_packets().unwrap(); }
                if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() { break; }
            }
        }
        let total = start.elapsed();
        // Bulk: 64 MiB client -> server in 16 KiB writes, seal + open.
        let mut c = ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut s = ServerConnection::new(server.clone()).unwrap();
        pump(&mut c, &mut s);
        let chunk = vec![7u8; 16 * 1024];
        let mut sink = vec![0u8; 64 * 1024];
        let total_bytes = 64 * 1024 * 1024;
        let t = Instant::now();
        let mut sent = 0;
        while sent < total_bytes {
            c.writer().write_all(&chunk).unwrap();
            sent += chunk.len();
            pump(&mut c, &mut s);
            while let Ok(k) = s.reader().read(&mut sink) { if k == 0 { break; } }
        }
        let bulk = t.elapsed();
        let suite = s.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
        println!("{name}: {:.1} us server CPU per handshake ({:.1} us both sides), bulk seal+open {:.0} MB/s ({suite}, {:?})",
            server_time.as_secs_f64() * 1e6 / n as f64, total.as_secs_f64() * 1e6 / n as f64,
            total_bytes as f64 / bulk.as_secs_f64() / 1e6, s.protocol_version().unwrap());
    }
}
