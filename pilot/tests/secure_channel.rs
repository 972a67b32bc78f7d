//! The secure channel of port 443: our two sides together, and our client against a server
//! written here from the spec's byte layout (`spec/services.md` §7.6) with the primitives
//! directly, as a reference peer would speak it.

mod daemon_support;

use daemon_support::{make_trust, within, Rendezvous};
use pilot::daemon::ipc;
use pilot::driver::Driver;
use pilot::net::{seeded_rng, MemStorage};
use pilot::services::secure;
use pilot::services::secure::{client, server};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::{Digest, Sha256};
use std::io::ErrorKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x25519_dalek::{PublicKey, StaticSecret};

fn spec_key(shared: &[u8]) -> LessSafeKey {
    let key: [u8; 32] = Sha256::new()
        .chain_update(b"pilot-secure-v1:")
        .chain_update(shared)
        .finalize()
        .into();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap())
}

fn spec_record(key: &LessSafeKey, prefix: [u8; 4], counter: u64, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&prefix);
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    let mut body = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
        .unwrap();
    let mut out = ((12 + body.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn both_sides_carry_data_in_order() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let serving = tokio::spawn(async move {
        let mut s = server(b, &mut seeded_rng(2)).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(&got[..10]).await.unwrap();
        s.shutdown().await.unwrap();
        got
    });
    let mut c = client(a, &mut seeded_rng(1)).await.unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 249) as u8).collect();
    for part in data.chunks(70_000) {
        c.write_all(part).await.unwrap();
    }
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.unwrap();
    assert_eq!(serving.await.unwrap(), data);
    assert_eq!(back, data[..10]);
}

#[tokio::test]
async fn our_client_against_a_server_built_from_the_spec() {
    let (a, mut peer) = tokio::io::duplex(64 << 10);
    let talking = tokio::spawn(async move {
        let mut c = client(a, &mut seeded_rng(3)).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        c.flush().await.unwrap();
        let mut reply = [0u8; 4];
        c.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"pong");
        // The next record is a replay of the first: refused.
        let mut more = [0u8; 1];
        c.read(&mut more).await.unwrap_err().kind()
    });
    // The client speaks first: its 32-byte key, then ours.
    let mut theirs = [0u8; 32];
    peer.read_exact(&mut theirs).await.unwrap();
    let secret = StaticSecret::from([9u8; 32]);
    peer.write_all(PublicKey::from(&secret).as_bytes())
        .await
        .unwrap();
    let key = spec_key(secret.diffie_hellman(&PublicKey::from(theirs)).as_bytes());

    let mut head = [0u8; 16];
    peer.read_exact(&mut head).await.unwrap();
    let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
    assert_eq!(len, 12 + 4 + 16);
    assert_eq!(&head[4..16], &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
    let mut body = vec![0u8; len - 12];
    peer.read_exact(&mut body).await.unwrap();
    let nonce = Nonce::assume_unique_for_key(head[4..16].try_into().unwrap());
    let plain = key.open_in_place(nonce, Aad::empty(), &mut body).unwrap();
    assert_eq!(plain, b"ping");

    let pong = spec_record(&key, [0, 0, 0, 1], 1, b"pong");
    peer.write_all(&pong).await.unwrap();
    peer.write_all(&pong).await.unwrap();
    assert_eq!(talking.await.unwrap(), ErrorKind::InvalidData);
}

#[tokio::test]
async fn reflected_tampered_and_oversized_records_end_the_stream() {
    for bad in ["reflected", "tampered", "oversized", "truncated"] {
        let (a, mut peer) = tokio::io::duplex(64 << 10);
        let reading = tokio::spawn(async move {
            let mut c = client(a, &mut seeded_rng(4)).await.unwrap();
            let mut buf = [0u8; 8];
            c.read(&mut buf).await.map_err(|e| e.kind())
        });
        let mut theirs = [0u8; 32];
        peer.read_exact(&mut theirs).await.unwrap();
        let secret = StaticSecret::from([5u8; 32]);
        peer.write_all(PublicKey::from(&secret).as_bytes())
            .await
            .unwrap();
        let key = spec_key(secret.diffie_hellman(&PublicKey::from(theirs)).as_bytes());
        let record = match bad {
            // The client's own prefix, as if its record were sent back to it.
            "reflected" => spec_record(&key, [0, 0, 0, 2], 1, b"mirror"),
            "tampered" => {
                let mut r = spec_record(&key, [0, 0, 0, 1], 1, b"data");
                let last = r.len() - 1;
                r[last] ^= 0x80;
                r
            }
            "oversized" => vec![0x01, 0, 0, 1],
            _ => spec_record(&key, [0, 0, 0, 1], 1, b"data")[..10].to_vec(),
        };
        peer.write_all(&record).await.unwrap();
        drop(peer);
        let want = if bad == "truncated" {
            ErrorKind::UnexpectedEof
        } else {
            ErrorKind::InvalidData
        };
        assert_eq!(reading.await.unwrap(), Err(want), "{bad}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out_the_key_exchange() {
    let (a, _peer) = tokio::io::duplex(1024);
    let err = server(a, &mut seeded_rng(6)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_talk_through_their_daemons_on_port_443() {
    let rv = Rendezvous::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = rv.daemon(31).await;
    let mut config = rv.config();
    config.public = true;
    let b = rv.daemon_with(32, config, MemStorage::new()).await;
    make_trust(&a.handle, &b.handle).await;
    let mut drivers = Vec::new();
    for (name, daemon) in [("a.sock", &a), ("b.sock", &b)] {
        let path = dir.path().join(name);
        let listener = ipc::bind(&path).await.unwrap();
        tokio::spawn(ipc::serve(listener, daemon.handle.clone()));
        drivers.push(within(Driver::connect(&path)).await.unwrap());
    }
    let mut listener = within(drivers[1].listen(secure::SECURE_PORT))
        .await
        .unwrap();
    let serving = tokio::spawn(async move {
        let mut channel = secure::accept(&mut listener).await.unwrap();
        let mut got = [0u8; 6];
        channel.read_exact(&mut got).await.unwrap();
        channel.write_all(&got).await.unwrap();
        channel.flush().await.unwrap();
        got
    });
    let mut channel = within(secure::dial(&drivers[0], b.handle.address()))
        .await
        .unwrap();
    channel.write_all(b"secret").await.unwrap();
    channel.flush().await.unwrap();
    let mut back = [0u8; 6];
    within(channel.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"secret");
    assert_eq!(&within(serving).await.unwrap(), b"secret");
}
