//! Connections: admission (rate and caps), the request loop, and push streams.

use super::*;

pub(super) async fn accept_loop<N: Network, C: WallClock>(
    _net: N,
    listener: N::Listener,
    shared: Arc<Shared<C>>,
    acceptor: Option<TlsAcceptor>,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut errors = 0u32;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                errors = 0;
                x
            }
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, errors, "registry accept failed");
                if errors >= 10 {
                    tracing::error!("registry listener gave up after 10 consecutive errors");
                    return;
                }
                let pause =
                    Duration::from_millis(100 * u64::from(errors)).min(Duration::from_secs(2));
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let Some(guard) = ConnGuard::admit(&shared, peer) else {
            continue;
        };
        let shared = shared.clone();
        let done = done.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(&shared, stream, peer).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => connection(&shared, tls, peer).await,
                        _ => tracing::debug!(%peer, "TLS handshake failed"),
                    }
                }
            }
            drop(guard);
            drop(done);
        });
    }
}

/// Counts a connection against its source's and the global cap while it lives.
struct ConnGuard<C> {
    shared: Arc<Shared<C>>,
    key: u128,
}

impl<C: WallClock> ConnGuard<C> {
    fn admit(shared: &Arc<Shared<C>>, peer: SocketAddr) -> Option<Self> {
        let now = shared.now_ms();
        if !shared.lock().reg.allow_connection(peer.ip(), now) {
            tracing::debug!(%peer, "connection refused: rate limited");
            return None;
        }
        let key = source_key(peer.ip());
        let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = conns.values().sum();
        let mine = conns.entry(key).or_default();
        if *mine >= shared.cfg.max_conns_per_source || total >= shared.cfg.max_conns {
            tracing::debug!(%peer, "connection refused: too many open connections");
            return None;
        }
        *mine += 1;
        Some(ConnGuard {
            shared: shared.clone(),
            key,
        })
    }
}

impl<C> Drop for ConnGuard<C> {
    fn drop(&mut self) {
        let mut conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = conns.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                conns.remove(&self.key);
            }
        }
    }
}

/// Reads one frame within the idle timeout; `None` ends the connection.
pub(super) async fn next_frame<R: AsyncRead + Unpin, C>(
    shared: &Shared<C>,
    stream: &mut R,
) -> Option<Object> {
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        biased;
        _ = stopped(&mut shutdown) => None,
        r = tokio::time::timeout(shared.cfg.idle_timeout, frame::read_frame(stream, MAX_FRAME)) => match r {
            Ok(Ok(Some(obj))) => Some(obj),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "registry connection dropped: bad frame");
                None
            }
            _ => None,
        },
    }
}

pub(super) async fn connection<T, C>(shared: &Arc<Shared<C>>, stream: T, peer: SocketAddr)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: WallClock,
{
    // Buffered reads: a frame's prefix and body usually arrive in one system call.
    let mut stream = tokio::io::BufReader::new(stream);
    let mut first = true;
    while let Some(obj) = next_frame(shared, &mut stream).await {
        let kind = Kind::from_type(obj.get("type").and_then(Value::as_str).unwrap_or(""));
        if kind == Kind::SubscribeReplication && first {
            replication::serve_subscriber(shared, stream, &obj).await;
            return;
        }
        first = false;
        let started = tokio::time::Instant::now();
        let ctx = Ctx {
            peer,
            now_ms: shared.now_ms(),
        };
        let (reply, ticket, sub) = handle(shared, &obj, kind, &ctx);
        let reply = if shared.durable(ticket).await {
            reply
        } else {
            error_reply("storage failure: the change could not be made durable")
        };
        shared
            .durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(kind, started.elapsed().as_secs_f64());
        let wrote = frame::write_encoded(&mut stream, &frame::encode(&reply))
            .await
            .is_ok();
        if let Some((node, rx)) = sub {
            if wrote {
                push_stream(shared, stream, node, rx).await;
            } else {
                end_subscription(shared, node, rx, Vec::new());
            }
            return;
        }
        if !wrote {
            return;
        }
    }
}

/// A push stream being set up: the node and where its events arrive.
type Subscription = (u32, mpsc::UnboundedReceiver<Object>);

/// Runs one request through the state machine under the lock. Returns the reply, the ticket
/// that must be durable before it is sent, and the push stream it opened, if any.
pub(super) fn handle<C: WallClock>(
    shared: &Shared<C>,
    obj: &Object,
    kind: Kind,
    ctx: &Ctx,
) -> (Object, u64, Option<Subscription>) {
    let mut locked = shared.lock();
    let out = locked.reg.handle_frame(obj, ctx);
    let ok = out.reply.get("error").is_none();
    // Register the push stream before the queued events are handed over, so none can slip
    // past it.
    let sub = (kind == Kind::SubscribeHandshakes && ok).then(|| {
        let node = obj.get("node_id").and_then(Value::as_u64).unwrap_or(0) as u32;
        let (tx, rx) = mpsc::unbounded_channel();
        shared
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node)
            .or_default()
            .insert(0, tx);
        (node, rx)
    });
    if kind == Kind::Promote && ok {
        shared.hub.stop_following();
    }
    let ticket = if out.changes.is_empty() && out.pushes.is_empty() {
        locked.read_ticket(obj, &out.reply)
    } else {
        shared.submit(&mut locked, out.changes, out.pushes);
        locked.ticket
    };
    (out.reply, ticket, sub)
}

/// A subscribed connection: events flow out; the client only closes it.
pub(super) async fn push_stream<T, C>(
    shared: &Arc<Shared<C>>,
    stream: T,
    node: u32,
    mut rx: mpsc::UnboundedReceiver<Object>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: WallClock,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut shutdown = shared.shutdown.clone();
    let mut lost = Vec::new();
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            event = rx.recv() => match event {
                Some(event) => {
                    if frame::write_encoded(&mut writer, &frame::encode(&event)).await.is_err() {
                        lost.push(event);
                        break;
                    }
                }
                None => break,
            },
            // Anything the client sends (or its EOF) ends the stream.
            _ = tokio::io::AsyncReadExt::read(&mut reader, &mut probe) => break,
        }
    }
    end_subscription(shared, node, rx, lost);
}

/// Ends a push stream: events it did not write go back to the node's queues.
pub(super) fn end_subscription<C: WallClock>(
    shared: &Shared<C>,
    node: u32,
    mut rx: mpsc::UnboundedReceiver<Object>,
    mut lost: Vec<Object>,
) {
    rx.close();
    while let Ok(event) = rx.try_recv() {
        lost.push(event);
    }
    let mut locked = shared.lock();
    locked.reg.unsubscribe(node);
    if !lost.is_empty() {
        let pushes: Vec<Push> = lost
            .into_iter()
            .map(|event| Push { to: node, event })
            .collect();
        let changes = locked.reg.requeue(&pushes);
        shared.submit(&mut locked, changes, Vec::new());
    }
}
