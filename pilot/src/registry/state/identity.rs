//! Identity: `register` (with the optional proof of possession) and `rotate_key`.

use super::*;

impl Registry {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn register(
        &mut self,
        public_key: &str,
        listen_addr: &str,
        owner: &str,
        hostname: &str,
        proof: Proof<'_>,
        ctx: &Ctx,
        out: &mut Vec<Change>,
    ) -> HResult {
        let key = decode_key(public_key);
        let known = key.and_then(|k| self.data.key_idx.get(&k).copied());
        let class = if known.is_some() {
            Class::Reregistration
        } else {
            Class::NewRegistration
        };
        let ip = ctx.peer.ip();
        if !self.limiter.allow(class, ip, ctx.now_ms) {
            return Err(format!("rate limited: too many registrations from {ip}"));
        }
        if public_key.is_empty() {
            return Err("registration requires public_key".into());
        }
        let mut hostname_error = None;
        let mut hostname = hostname;
        if !hostname.is_empty() {
            if let Err(e) = validate_hostname(hostname) {
                hostname_error = Some(e);
                hostname = "";
            }
        }
        let key = key.ok_or("invalid public_key: must be base64 of 32 bytes")?;
        let proven = self.check_proof(&key, public_key, &proof, known, ctx)?;
        let addr = real_addr(ctx.peer, listen_addr);
        let owner_box = (!owner.is_empty()).then(|| Box::from(owner));

        let id = match known {
            Some(id) => {
                let mut node = match self.data.nodes.get(&id) {
                    // Live: only the endpoint and freshness move. Q-5: without proof of
                    // possession a known key may not change the owner or anything else.
                    Some(n) if !n.dormant => n.clone(),
                    // Dormant (reaped): comes back with its attributes, private until the
                    // daemon sets its visibility again, as after any registration.
                    Some(n) => {
                        let mut n = n.clone();
                        n.dormant = false;
                        n.public = false;
                        n
                    }
                    // Deregistered: a fresh record under the same ID (§7.2 case 2).
                    None => {
                        let owner = owner_box
                            .clone()
                            .filter(|o| self.data.owner_idx.get(o).is_none_or(|x| *x == id));
                        if let Some(o) = &owner {
                            if !self.data.owner_idx.contains_key(o) {
                                self.apply(
                                    out,
                                    Change::Owner {
                                        owner: o.to_string(),
                                        id,
                                    },
                                );
                            }
                        }
                        Node::fresh(key, owner, ctx.now_ms)
                    }
                };
                let unchanged =
                    self.data.nodes.get(&id) == Some(&node) && node.real_addr == Some(addr);
                if let Some(ts) = proven {
                    node.proven_at = ts;
                    // Proof of possession may bind an owner to a node that has none.
                    if node.owner.is_none() {
                        if let Some(o) = owner_box.clone() {
                            if !self.data.owner_idx.contains_key(&o) {
                                self.apply(
                                    out,
                                    Change::Owner {
                                        owner: o.to_string(),
                                        id,
                                    },
                                );
                                node.owner = Some(o);
                            }
                        }
                    }
                }
                let unchanged = unchanged && proven.is_none();
                node.real_addr = Some(addr);
                node.last_seen_ms = ctx.now_ms;
                if unchanged {
                    // A daemon coming back with the same endpoint: only freshness moves, and
                    // freshness is not persisted (a restart grants a grace period instead).
                    if let Some(n) = self.data.nodes.get_mut(&id) {
                        n.last_seen_ms = n.last_seen_ms.max(ctx.now_ms);
                    }
                } else {
                    self.put_node(out, id, &node);
                }
                id
            }
            None => {
                // an owner label already bound to a node proves nothing, so it never moves
                // that node to a new key. The new key gets a new node, without the owner.
                let owner = owner_box.filter(|o| !self.data.owner_idx.contains_key(o));
                let id = self.data.next_node;
                let next = id.checked_add(1).ok_or("node IDs exhausted")?;
                self.apply(out, Change::NextNode { next });
                self.apply(
                    out,
                    Change::Key {
                        key: crate::registry::auth::encode_key(&key),
                        id: Some(id),
                    },
                );
                if let Some(o) = &owner {
                    self.apply(
                        out,
                        Change::Owner {
                            owner: o.to_string(),
                            id,
                        },
                    );
                }
                let mut node = Node::fresh(key, owner, ctx.now_ms);
                node.real_addr = Some(addr);
                node.proven_at = proven.unwrap_or(0);
                self.put_node(out, id, &node);
                id
            }
        };

        let mut applied = None;
        if !hostname.is_empty() {
            let holder = self.data.host_idx.get(hostname).copied();
            if holder.is_none() || holder == Some(id) {
                let mut node = self.live(id)?.clone();
                if node.hostname.as_deref() != Some(hostname) {
                    node.hostname = Some(Box::from(hostname));
                    self.put_node(out, id, &node);
                }
                applied = Some(hostname);
            }
        }
        self.counters.registrations += 1;
        let mut r = reply("register");
        r.insert("node_id".into(), json!(id));
        r.insert("network_id".into(), json!(0));
        r.insert("address".into(), json!(address(id)));
        r.insert("public_key".into(), json!(public_key));
        if let Some(h) = applied {
            r.insert("hostname".into(), json!(h));
        }
        if let Some(e) = hostname_error {
            r.insert("hostname_error".into(), json!(e));
        }
        Ok(r)
    }

    /// Checks the optional proof of possession of a registration (our extension, Q-5):
    /// Ed25519 by the registered key over `register:<public_key>:<timestamp>`, the timestamp
    /// within 5 minutes of the registry's clock and newer than the last one accepted (so a
    /// captured request cannot be replayed). A node that proved possession once may not
    /// register unsigned again. Returns the accepted timestamp.
    pub(super) fn check_proof(
        &mut self,
        key: &[u8; 32],
        public_key: &str,
        proof: &Proof<'_>,
        known: Option<u32>,
        ctx: &Ctx,
    ) -> Result<Option<u64>, String> {
        let last = known
            .and_then(|id| self.data.nodes.get(&id))
            .map_or(0, |n| n.proven_at);
        if proof.signature.is_empty() {
            if last > 0 {
                return Err(format!(
                    "node {} registers with proof of possession: unsigned registration refused",
                    known.unwrap_or(0)
                ));
            }
            return Ok(None);
        }
        let now_s = ctx.now_ms / 1000;
        if proof.timestamp.abs_diff(now_s) > PROOF_WINDOW_SECS {
            return Err(format!(
                "register: timestamp {} is not within {PROOF_WINDOW_SECS} s of the registry's clock ({now_s})",
                proof.timestamp
            ));
        }
        if proof.timestamp <= last {
            return Err("register: signature replayed or older than the last registration".into());
        }
        let challenge = format!("register:{public_key}:{}", proof.timestamp);
        self.verifier
            .verify(key, &challenge, proof.signature)
            .map_err(|e| auth_err("register", e))?;
        Ok(Some(proof.timestamp))
    }

    pub(super) fn rotate_key(
        &mut self,
        id: u32,
        signature: &str,
        new_key: &str,
        ctx: &Ctx,
        out: &mut Vec<Change>,
    ) -> HResult {
        if signature.is_empty() {
            return Err("rotate_key requires a signature".into());
        }
        if new_key.is_empty() {
            return Err("rotate_key requires new_public_key".into());
        }
        let key =
            decode_key(new_key).ok_or("invalid new_public_key: must be base64 of 32 bytes")?;
        self.verify(id, &format!("rotate:{id}"), signature)?;
        if let Some(other) = self.data.key_idx.get(&key) {
            if *other != id {
                return Err(format!("public key already belongs to node {other}"));
            }
        }
        let mut node = self.live(id)?.clone();
        let old = crate::registry::auth::encode_key(&node.key);
        self.apply(out, Change::Key { key: old, id: None });
        self.apply(
            out,
            Change::Key {
                key: new_key.to_string(),
                id: Some(id),
            },
        );
        node.key = key;
        node.last_seen_ms = ctx.now_ms;
        self.put_node(out, id, &node);
        let mut r = reply("rotate_key");
        r.insert("node_id".into(), json!(id));
        r.insert("address".into(), json!(address(id)));
        r.insert("public_key".into(), json!(new_key));
        Ok(r)
    }
}
