//! Heap bytes a server-side rustls connection keeps after its handshake and one echo:
//! buffered ServerConnection against UnbufferedServerConnection.
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::ConnectionState;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 { LIVE.fetch_add(l.size() as isize, Ordering::Relaxed); unsafe { System.alloc(l) } }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) { LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed); unsafe { System.dealloc(p, l) } }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 { LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed); unsafe { System.realloc(p, l, n) } }
}
#[global_allocator]
static A: Counting = Counting;

fn live() -> isize { LIVE.load(Ordering::Relaxed) }

fn client_out(c: &mut ClientConnection) -> Vec<u8> { let mut v = Vec::new(); while c.wants_write() { c.write_tls(&mut v).unwrap(); } v }
fn client_in(c: &mut ClientConnection, mut d: &[u8]) { while !d.is_empty() { c.read_tls(&mut d).unwrap(); c.process_new_packets().unwrap(); } }

fn buffered(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (ServerConnection, ClientConnection) {
    let mut c = ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    c.writer().write_all(b"i").unwrap();
    for _ in 0..10 {
        let out = client_out(&mut c);
        let mut r = &out[..]; while !r.is_empty() { s.read_tls(&mut r).unwrap(); s.process_new_packets().unwrap(); }
        let mut b = [0u8; 16]; if let Ok(n) = s.reader().read(&mut b) { if n > 0 { s.writer().write_all(&b[..n]).unwrap(); } }
        let mut v = Vec::new(); while s.wants_write() { s.write_tls(&mut v).unwrap(); }
        client_in(&mut c, &v);
    }
    let mut b = [0u8; 1]; c.reader().read_exact(&mut b).unwrap();
    (s, c)
}

/// The unbuffered server keeps only its state: the caller's buffers are shared (here:
/// dropped after each step, as a reactor's shared buffers would be reused).
fn unbuffered(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (UnbufferedServerConnection, ClientConnection) {
    let mut c = ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = UnbufferedServerConnection::new(server.clone()).unwrap();
    c.writer().write_all(b"i").unwrap();
    let mut echoed = false;
    for _ in 0..10 {
        let mut incoming = client_out(&mut c);
        let mut used = 0;
        let mut outgoing = vec![0u8; 32 * 1024];
        let mut out_len = 0;
        let mut got: Vec<u8> = Vec::new();
        loop {
            let st = s.process_tls_records(&mut incoming[used..]);
            let discard = st.discard;
            let mut stop = false;
            match st.state.unwrap() {
                ConnectionState::ReadTraffic(mut t) => { while let Some(r) = t.next_record() { got.extend_from_slice(r.unwrap().payload); } }
                ConnectionState::EncodeTlsData(mut e) => { out_len += e.encode(&mut outgoing[out_len..]).unwrap(); }
                ConnectionState::TransmitTlsData(t) => { t.done(); }
                ConnectionState::BlockedHandshake => stop = true,
                ConnectionState::WriteTraffic(mut w) => {
                    if !got.is_empty() && !echoed { out_len += w.encrypt(&got, &mut outgoing[out_len..]).unwrap(); echoed = true; got.clear(); }
                    stop = true;
                }
                _ => stop = true,
            }
            used += discard;
            if stop { break; }
        }
        client_in(&mut c, &outgoing[..out_len]);
    }
    let mut b = [0u8; 1]; c.reader().read_exact(&mut b).unwrap();
    (s, c)
}

fn main() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let prov = Arc::new(rustls::crypto::ring::default_provider());
    let server = Arc::new(ServerConfig::builder_with_provider(prov.clone()).with_safe_default_protocol_versions().unwrap()
        .with_no_client_auth().with_single_cert(vec![cert.clone()], key).unwrap());
    let mut roots = RootCertStore::empty(); roots.add(cert).unwrap();
    let client = Arc::new(ClientConfig::builder_with_provider(prov).with_safe_default_protocol_versions().unwrap()
        .with_root_certificates(roots).with_no_client_auth());
    let n = 1000;
    let before = live();
    let pairs: Vec<_> = (0..n).map(|_| buffered(&server, &client)).collect();
    let servers: Vec<_> = pairs.into_iter().map(|(s, _)| s).collect();
    println!("buffered ServerConnection: {} bytes of heap per idle connection (+{} inline)", (live() - before) / n as isize, std::mem::size_of::<ServerConnection>());
    drop(servers);
    let before = live();
    let pairs: Vec<_> = (0..n).map(|_| unbuffered(&server, &client)).collect();
    let servers: Vec<_> = pairs.into_iter().map(|(s, _)| s).collect();
    println!("UnbufferedServerConnection: {} bytes of heap per idle connection (+{} inline)", (live() - before) / n as isize, std::mem::size_of::<UnbufferedServerConnection>());
    drop(servers);
}
