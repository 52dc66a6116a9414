//! Request/reply across processes: four client processes calling two server processes,
//! every reply checked against its request; a server killed mid-call (pending and later
//! calls fail `PeerDead` promptly, a restarted server takes reconnected clients); a client
//! killed while connected (the server drops it and its rings are freed, nothing in
//! /dev/shm).

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{RING_VAR, ROLE_VAR, role, rounds, wait_bounded};
use shmring::Error;
use shmring::rpc::{Client, Server, ServerConfig};

const RUN_LIMIT: Duration = Duration::from_secs(240);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A service name unique to this run.
fn service(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("test-{tag}-{}-{nanos}", std::process::id())
}

/// Runs this binary's `rpc_child` test with `role`, stdout piped.
fn spawn(role: &str, service: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rpc_child", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .env(RING_VAR, service)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child test process")
}

/// Waits until `child` prints a line starting with `word`.
fn wait_for_line(child: &mut Child, word: &str) {
    let out = child.stdout.as_mut().unwrap();
    let mut reader = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "child ended before saying {word}"
        );
        if line.contains(word) {
            return;
        }
    }
}

/// Request `seq` of client `id`: header (client, seq), then bytes derived from both.
fn request(id: u32, seq: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let mut state = (seq ^ u64::from(id) << 48).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = 12 + (state >> 58) as usize * 3;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push(state as u8);
    }
}

/// The server's answer to `body`: its checksum, its first 12 bytes, and the caller's pid
/// and uid as the server saw them.
fn answer(body: &[u8], pid: u32, uid: u32, out: &mut [u8]) -> usize {
    out[..4].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
    out[4..16].copy_from_slice(&body[..12]);
    out[16..20].copy_from_slice(&pid.to_le_bytes());
    out[20..24].copy_from_slice(&uid.to_le_bytes());
    24
}

/// Serves until `calls` calls are answered (0: forever).
fn serve(service: &str, calls: u64, stall_after: Option<u64>) {
    let mut server = Server::bind(service, &ServerConfig::new()).unwrap();
    println!("serving");
    let mut served = 0u64;
    while calls == 0 || served < calls {
        let request = match server.recv_timeout(RUN_LIMIT) {
            Ok(request) => request,
            Err(e) => panic!("server: {e}"),
        };
        if stall_after == Some(served) {
            // Holds this call without answering, for the kill test.
            println!("stalled");
            std::thread::sleep(RUN_LIMIT);
        }
        let caller = *request.caller();
        request
            .reply_with(24, |body, out| answer(body, caller.pid, caller.uid, out))
            .unwrap();
        served += 1;
    }
}

/// Calls `calls` times, alternating between `services`, checking every reply.
fn call_many(services: &[&str], id: u32, calls: u64) {
    let mut clients: Vec<Client> = services
        .iter()
        .map(|s| Client::connect(s).unwrap())
        .collect();
    let (mut req, mut reply) = (Vec::new(), Vec::new());
    let uid = rustix_uid();
    for seq in 0..calls {
        request(id, seq, &mut req);
        let client = &mut clients[(seq % services.len() as u64) as usize];
        let n = client.call_timeout(&req, &mut reply, CALL_TIMEOUT).unwrap();
        assert_eq!(n, 24);
        assert_eq!(
            &reply[..4],
            &crc32fast::hash(&req).to_le_bytes(),
            "call {seq}"
        );
        assert_eq!(&reply[4..16], &req[..12], "reply to another call");
        assert_eq!(
            &reply[16..20],
            &std::process::id().to_le_bytes(),
            "caller pid"
        );
        assert_eq!(&reply[20..24], &uid.to_le_bytes(), "caller uid");
    }
}

fn rustix_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap()
}

#[test]
fn rpc_child() {
    let Some((role, service)) = role() else {
        return;
    };
    let parts: Vec<&str> = role.split(':').collect();
    match parts[..] {
        ["serve", calls] => serve(&service, calls.parse().unwrap(), None),
        ["stall"] => serve(&service, 0, Some(3)),
        ["call", other, id, calls] => call_many(
            &[&service, other],
            id.parse().unwrap(),
            calls.parse().unwrap(),
        ),
        ["idle"] => {
            let mut client = Client::connect(&service).unwrap();
            let mut reply = Vec::new();
            let mut req = Vec::new();
            for seq in 0..10 {
                request(9, seq, &mut req);
                client.call_timeout(&req, &mut reply, CALL_TIMEOUT).unwrap();
            }
            println!("connected");
            std::thread::sleep(RUN_LIMIT);
        }
        _ => panic!("unknown role {role}"),
    }
}

#[test]
fn four_clients_two_servers() {
    if role().is_some() {
        return;
    }
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (a, b) = (service("a"), service("b"));
    let calls = rounds(100_000);
    const CLIENTS: u64 = 4;
    // Each client alternates between the servers: each server answers half of all calls.
    let per_server = CLIENTS * calls / 2;
    let mut servers = [
        spawn(&format!("serve:{per_server}"), &a),
        spawn(&format!("serve:{per_server}"), &b),
    ];
    for server in &mut servers {
        wait_for_line(server, "serving");
    }
    let start = Instant::now();
    let mut clients: Vec<Child> = (0..CLIENTS)
        .map(|id| spawn(&format!("call:{b}:{id}:{calls}"), &a))
        .collect();
    for client in &mut clients {
        assert!(wait_bounded(client, RUN_LIMIT).success(), "a client failed");
    }
    let elapsed = start.elapsed();
    for server in &mut servers {
        assert!(wait_bounded(server, RUN_LIMIT).success(), "a server failed");
    }
    let total = CLIENTS * calls;
    println!(
        "{total} calls from {CLIENTS} client processes to 2 servers in {elapsed:.2?} \
         ({:.0} calls/s), every reply checked",
        total as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn a_killed_server_fails_calls_promptly_and_a_restarted_one_takes_reconnects() {
    if role().is_some() {
        return;
    }
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = service("kill-server");
    let shm_before = dev_shm();
    let mut server = spawn("stall", &name);
    wait_for_line(&mut server, "serving");
    let mut client = Client::connect(&name).unwrap();
    let (mut req, mut reply) = (Vec::new(), Vec::new());
    for seq in 0..3 {
        request(1, seq, &mut req);
        client.call_timeout(&req, &mut reply, CALL_TIMEOUT).unwrap();
    }
    // The fourth call is held by the server; kill it while the client waits.
    let pid = server.id();
    let killer = std::thread::spawn(move || {
        let mut server = server;
        wait_for_line(&mut server, "stalled");
        std::thread::sleep(Duration::from_millis(50));
        let killed = Instant::now();
        libc_kill(pid);
        let _ = server.wait();
        killed
    });
    request(1, 3, &mut req);
    let pending = client.call_timeout(&req, &mut reply, CALL_TIMEOUT);
    let failed = Instant::now();
    let killed = killer.join().unwrap();
    assert!(
        matches!(pending, Err(Error::PeerDead { .. })),
        "pending call: {pending:?}"
    );
    let detection = failed.saturating_duration_since(killed);
    println!("pending call failed PeerDead {detection:?} after the server was killed");
    assert!(detection < Duration::from_secs(2), "{detection:?}");
    // Later calls fail at once.
    let later = Instant::now();
    assert!(matches!(
        client.call_timeout(&req, &mut reply, CALL_TIMEOUT),
        Err(Error::PeerDead { .. })
    ));
    assert!(later.elapsed() < Duration::from_secs(1));
    // A restarted server: the client reconnects and calls again.
    let mut restarted = spawn("serve:1", &name);
    wait_for_line(&mut restarted, "serving");
    // The killed server's armed doorbell (a socket file) was removed by its successor.
    assert_eq!(
        dev_shm(),
        shm_before,
        "the killed server left files in /dev/shm"
    );
    client.reconnect().unwrap();
    request(1, 4, &mut req);
    client.call_timeout(&req, &mut reply, CALL_TIMEOUT).unwrap();
    assert_eq!(&reply[4..16], &req[..12]);
    assert!(wait_bounded(&mut restarted, RUN_LIMIT).success());
    // Nobody serves it now.
    assert!(matches!(
        Client::connect(&name),
        Err(Error::NotFound { .. })
    ));
}

fn libc_kill(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Entries of /dev/shm.
fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_killed_client_is_dropped_and_its_rings_freed() {
    if role().is_some() {
        return;
    }
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = service("kill-client");
    let shm_before = dev_shm();
    let mut server = Server::bind(&name, &ServerConfig::new()).unwrap();
    let fds_idle = open_fds();
    let mut child = spawn("idle", &name);
    // Serve its ten calls, then look for the kill.
    let mut served = 0;
    while served < 10 {
        let request = server.recv_timeout(CALL_TIMEOUT).unwrap();
        let caller = *request.caller();
        assert_eq!(caller.pid, child.id(), "SO_PEERCRED names the client");
        request
            .reply_with(24, |body, out| answer(body, caller.pid, caller.uid, out))
            .unwrap();
        served += 1;
    }
    wait_for_line(&mut child, "connected");
    assert_eq!(server.clients(), 1);
    assert!(open_fds() > fds_idle, "the connection holds descriptors");
    // Rings are anonymous: the only new entry is the server's doorbell directory (its
    // readiness socket, for sleeping), no segment.
    let added: Vec<String> = dev_shm()
        .into_iter()
        .filter(|n| !shm_before.contains(n))
        .collect();
    assert!(
        added.iter().all(|n| n.starts_with("shmring-bells-")),
        "segments in /dev/shm: {added:?}"
    );
    let killed = Instant::now();
    libc_kill(child.id());
    let _ = child.wait();
    // Its stdout pipe is the one descriptor of ours that is not the server's.
    drop(child);
    // The server notices within a receive or two.
    while server.clients() > 0 {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "client never dropped"
        );
        match server.recv_timeout(Duration::from_millis(100)) {
            Err(Error::Timeout) => {}
            other => panic!("{:?}", other.map(|r| r.id())),
        }
    }
    println!("killed client dropped after {:?}", killed.elapsed());
    // Its rings went with it: the server holds no descriptor of them any more.
    assert_eq!(open_fds(), fds_idle);
    assert_eq!(dev_shm(), shm_before);
    // The server goes on serving others.
    let server_thread = std::thread::spawn(move || {
        let request = server.recv_timeout(CALL_TIMEOUT).unwrap();
        request.reply(b"still here").unwrap();
    });
    let mut client = Client::connect(&name).unwrap();
    let mut reply = Vec::new();
    client
        .call_timeout(b"hello", &mut reply, CALL_TIMEOUT)
        .unwrap();
    assert_eq!(reply, b"still here");
    server_thread.join().unwrap();
}

#[test]
fn calls_in_flight_timeouts_and_bad_input() {
    if role().is_some() {
        return;
    }
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = service("pipeline");
    let mut server = Server::bind(&name, &ServerConfig::new().ring_capacity(4096)).unwrap();
    assert!(matches!(
        Server::bind(&name, &ServerConfig::new()),
        Err(Error::AlreadyExists { .. })
    ));
    // The server welcomes clients while it looks for requests.
    let connecting = {
        let name = name.clone();
        std::thread::spawn(move || Client::connect(&name))
    };
    while !connecting.is_finished() {
        assert!(matches!(server.try_recv(), Err(Error::WouldBlock)));
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut client = connecting.join().unwrap().unwrap();
    assert_eq!(client.max_request(), 4096 / 2 - 8 - 8);
    // Three calls in flight, answered in order, the second deferred.
    let ids: Vec<u64> = (0..3u8).map(|i| client.start(&[i]).unwrap()).collect();
    let first = server.try_recv().unwrap();
    assert_eq!((first.id(), first.body()), (ids[0], &[0u8][..]));
    first.reply(b"r0").unwrap();
    let second = server.try_recv().unwrap().defer().unwrap();
    let mut out = Vec::new();
    assert_eq!(client.try_reply(ids[0], &mut out).unwrap(), 2);
    assert!(matches!(
        client.try_reply(ids[1], &mut out),
        Err(Error::WouldBlock)
    ));
    server.reply(second, b"r1").unwrap();
    let third = server.try_recv().unwrap();
    assert_eq!(third.body(), [2]);
    third.reply(b"r2").unwrap();
    assert_eq!(client.reply(ids[1], None, |b| b.to_vec()).unwrap(), b"r1");
    assert_eq!(client.reply(ids[2], None, |b| b.to_vec()).unwrap(), b"r2");
    // A call that times out; its late reply is dropped, the next call gets its own.
    assert!(matches!(
        client.call_timeout(b"late", &mut out, Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    server.try_recv().unwrap().reply(b"too late").unwrap();
    let helper = std::thread::spawn(move || {
        let request = server.recv_timeout(CALL_TIMEOUT).unwrap();
        let body = request.body().to_vec();
        request.reply(&body).unwrap();
        server
    });
    client
        .call_timeout(b"next", &mut out, CALL_TIMEOUT)
        .unwrap();
    assert_eq!(out, b"next");
    let mut server = helper.join().unwrap();
    // Too large is refused before anything is sent.
    let big = vec![0u8; client.max_request() + 1];
    assert!(matches!(
        client.start(&big),
        Err(Error::MessageTooLarge { .. })
    ));
    assert!(matches!(server.try_recv(), Err(Error::WouldBlock)));
    assert!(matches!(
        Client::connect(&service("nobody")),
        Err(Error::NotFound { .. })
    ));
    assert!(Server::bind("", &ServerConfig::new()).is_err());
}
