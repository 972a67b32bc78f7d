//! Trust and the handshake relay: two-sided trust, relay queues, push delivery.

use super::*;

impl Registry {
    pub(super) fn pending_room(
        &self,
        map: &BTreeMap<(u32, u32), u64>,
        to: u32,
        from: u32,
    ) -> Result<(), String> {
        if map.contains_key(&(to, from)) || Data::count_to(map, to) < self.cfg.max_pending_per_node
        {
            Ok(())
        } else {
            Err(format!("too many pending trust requests for node {to}"))
        }
    }

    /// a trust pair needs both sides. A report records a wish; the pair forms when the
    /// peer wishes too (its own report, its handshake request, or its accepting response).
    pub(super) fn report_trust(
        &mut self,
        a: u32,
        b: u32,
        signature: &str,
        ctx: &Ctx,
        out: &mut Vec<Change>,
    ) -> HResult {
        self.verify(a, &format!("report_trust:{a}:{b}"), signature)?;
        self.live(b)?;
        self.counters.trust_reports += 1;
        let trusted = self.wish(a, b, ctx, out)?;
        let mut r = reply("report_trust");
        r.insert("trusted".into(), json!(trusted));
        Ok(r)
    }

    /// Records that `from` wants trust with `to`; forms the pair if `to` wants it too.
    /// Returns whether the pair exists afterwards.
    pub(super) fn wish(
        &mut self,
        from: u32,
        to: u32,
        ctx: &Ctx,
        out: &mut Vec<Change>,
    ) -> Result<bool, String> {
        let (a, b) = pair(from, to);
        if self.data.trust.contains(&(a, b)) {
            return Ok(true);
        }
        if from == to || self.data.intents.contains_key(&(from, to)) {
            self.apply(out, Change::Trust { a, b, on: true });
            self.apply(
                out,
                Change::Intent {
                    from: to,
                    to: from,
                    until_ms: None,
                },
            );
            self.apply(
                out,
                Change::Intent {
                    from,
                    to,
                    until_ms: None,
                },
            );
            return Ok(true);
        }
        self.pending_room(&self.data.intents, to, from)?;
        self.apply(
            out,
            Change::Intent {
                from,
                to,
                until_ms: Some(ctx.now_ms + self.cfg.relay_ttl_ms),
            },
        );
        Ok(false)
    }

    pub(super) fn forget_wishes(&mut self, out: &mut Vec<Change>, x: u32, y: u32) {
        for (from, to) in [(x, y), (y, x)] {
            if self.data.intents.contains_key(&(to, from)) {
                self.apply(
                    out,
                    Change::Intent {
                        from,
                        to,
                        until_ms: None,
                    },
                );
            }
            if self.data.asks.contains_key(&(to, from)) {
                self.apply(
                    out,
                    Change::Ask {
                        from,
                        to,
                        until_ms: None,
                    },
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn request_handshake(
        &mut self,
        from: u32,
        to: u32,
        justification: &str,
        signature: &str,
        ctx: &Ctx,
        out: &mut Vec<Change>,
        pushes: &mut Vec<Push>,
    ) -> HResult {
        self.verify(from, &format!("handshake:{from}:{to}"), signature)?;
        self.live(to)?;
        let queued = self.data.inbox.get(&to).map(|i| &i.requests);
        if queued.is_some_and(|q| q.iter().any(|e| e.from == from)) {
            return Err(format!(
                "handshake request from {from} already pending for {to}"
            ));
        }
        if queued.is_some_and(|q| q.len() >= MAX_REQUESTS) {
            return Err(format!("handshake inbox of node {to} is full"));
        }
        self.pending_room(&self.data.asks, to, from)?;
        let until = ctx.now_ms + self.cfg.relay_ttl_ms;
        self.apply(
            out,
            Change::Ask {
                from,
                to,
                until_ms: Some(until),
            },
        );
        if !self.data.trust.contains(&pair(from, to)) {
            self.wish(from, to, ctx, out)?;
        }
        let entry = HsRequest {
            from,
            justification: justification.to_string(),
            at_ms: ctx.now_ms,
        };
        if self.subscribed.contains_key(&to) {
            pushes.push(Push {
                to,
                event: event("handshake_request", request_entry(&entry), entry.at_ms),
            });
        } else {
            self.apply(out, Change::Request { to, entry });
        }
        self.counters.handshake_requests += 1;
        let mut r = reply("request_handshake");
        r.insert("status".into(), json!("delivered"));
        Ok(r)
    }

    /// a response is accepted only for a request the peer actually made (and still has
    /// outstanding); the accept then forms the pair, since both sides have now agreed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_handshake(
        &mut self,
        b: u32,
        a: u32,
        accept: bool,
        signature: &str,
        ctx: &Ctx,
        out: &mut Vec<Change>,
        pushes: &mut Vec<Push>,
    ) -> HResult {
        self.verify(b, &format!("respond:{b}:{a}"), signature)?;
        self.live(a)?;
        if !self.data.asks.contains_key(&(b, a)) {
            return Err(format!(
                "no pending handshake request from node {a} to node {b}"
            ));
        }
        self.apply(
            out,
            Change::Ask {
                from: a,
                to: b,
                until_ms: None,
            },
        );
        // Take back an undelivered request: it has been answered.
        if let Some(inbox) = self.data.inbox.get(&b) {
            if inbox.requests.iter().any(|e| e.from == a) {
                let mut keep = inbox.clone();
                keep.requests.retain(|e| e.from != a);
                self.apply(out, Change::Drain { node: b });
                for entry in keep.requests {
                    self.apply(out, Change::Request { to: b, entry });
                }
                for entry in keep.responses {
                    self.apply(out, Change::Response { to: b, entry });
                }
            }
        }
        if accept {
            let (x, y) = pair(a, b);
            if !self.data.trust.contains(&(x, y)) {
                self.apply(
                    out,
                    Change::Trust {
                        a: x,
                        b: y,
                        on: true,
                    },
                );
            }
            self.forget_intents(out, a, b);
        } else {
            self.forget_intents(out, a, b);
        }
        let entry = HsResponse {
            from: b,
            accept,
            at_ms: ctx.now_ms,
        };
        if self.subscribed.contains_key(&a) {
            pushes.push(Push {
                to: a,
                event: event("handshake_response", response_entry(&entry), entry.at_ms),
            });
        } else {
            self.apply(out, Change::Response { to: a, entry });
        }
        let mut r = reply("respond_handshake");
        r.insert("accept".into(), json!(accept));
        r.insert("peer_id".into(), json!(a));
        Ok(r)
    }

    pub(super) fn forget_intents(&mut self, out: &mut Vec<Change>, x: u32, y: u32) {
        for (from, to) in [(x, y), (y, x)] {
            if self.data.intents.contains_key(&(to, from)) {
                self.apply(
                    out,
                    Change::Intent {
                        from,
                        to,
                        until_ms: None,
                    },
                );
            }
        }
    }

    pub(super) fn flush_to_subscriber(
        &mut self,
        node: u32,
        out: &mut Vec<Change>,
        pushes: &mut Vec<Push>,
    ) {
        let Some(inbox) = self.data.inbox.get(&node).cloned() else {
            return;
        };
        self.apply(out, Change::Drain { node });
        for e in &inbox.requests {
            pushes.push(Push {
                to: node,
                event: event("handshake_request", request_entry(e), e.at_ms),
            });
        }
        for e in &inbox.responses {
            pushes.push(Push {
                to: node,
                event: event("handshake_response", response_entry(e), e.at_ms),
            });
        }
    }

    /// A subscription stream of `node` ended.
    pub fn unsubscribe(&mut self, node: u32) {
        if let Some(n) = self.subscribed.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                self.subscribed.remove(&node);
            }
        }
    }

    /// Puts back pushed events that could not be written (the stream broke), so the node gets
    /// them by its next poll or subscription.
    pub fn requeue(&mut self, events: &[Push]) -> Vec<Change> {
        let mut out = Vec::new();
        for p in events {
            let at_ms = p
                .event
                .get("timestamp_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let from = p
                .event
                .get("from_node_id")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32;
            let change = match p.event.get("type").and_then(Value::as_str) {
                Some("handshake_request") => Change::Request {
                    to: p.to,
                    entry: HsRequest {
                        from,
                        justification: p
                            .event
                            .get("justification")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        at_ms,
                    },
                },
                _ => Change::Response {
                    to: p.to,
                    entry: HsResponse {
                        from,
                        accept: p
                            .event
                            .get("accept")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        at_ms,
                    },
                },
            };
            self.apply(&mut out, change);
        }
        out
    }
}
