//! The outbox (notices waiting for delivery, tree `outbox`) and the mail
//! log (what became of each message, tree `mail`). What a notice holds is
//! the detector's ([`crate::detect::Queued`]); here it is kept by key.

use std::convert::Infallible;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::activity::damaged;
use super::state::transaction_err;
use super::value::{Value, decode, encode};
use super::{GENERATION, SEP, Store, StoreError, TREE_MAIL, TREE_OUTBOX, check_name, day_key};
use crate::types::{AccountId, Day};

/// A notice waiting in the outbox for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotice {
    pub day: Day,
    pub account: AccountId,
    /// `silent`, `reminder`, `recovered` or `stale_source`.
    pub kind: String,
    /// The notice as the detector wrote it (JSON).
    pub body: Vec<u8>,
    /// The receiver this copy is for, once delivery has routed the notice
    /// ([`Store::dispatch`]); `None` while it waits to be routed.
    pub receiver: Option<String>,
}

impl QueuedNotice {
    /// The outbox key: day · account · 0 · kind, and · 0 · receiver once
    /// routed.
    pub(super) fn key(&self) -> Result<Vec<u8>, StoreError> {
        let mut k = self.day.to_key().to_vec();
        k.extend_from_slice(check_name(self.account.as_str())?);
        k.push(SEP);
        k.extend_from_slice(check_name(&self.kind)?);
        if let Some(r) = &self.receiver {
            k.push(SEP);
            k.extend_from_slice(check_name(r)?);
        }
        Ok(k)
    }

    /// The same notice, routed to `receiver`.
    pub fn for_receiver(&self, receiver: &str) -> QueuedNotice {
        QueuedNotice {
            receiver: Some(receiver.to_string()),
            ..self.clone()
        }
    }

    /// The notice stored under an outbox key.
    pub(super) fn decode(k: &[u8], v: &[u8]) -> Result<QueuedNotice, StoreError> {
        let parsed = (|| {
            let day = day_key(k.get(..4)?)?;
            let rest = k.get(4..)?;
            let sep = rest.iter().position(|&b| b == SEP)?;
            let account = std::str::from_utf8(&rest[..sep]).ok()?;
            let tail = &rest[sep + 1..];
            let (kind, receiver) = match tail.iter().position(|&b| b == SEP) {
                Some(at) => (
                    &tail[..at],
                    Some(std::str::from_utf8(&tail[at + 1..]).ok()?.to_string()),
                ),
                None => (tail, None),
            };
            if account.is_empty() || kind.is_empty() || receiver.as_deref() == Some("") {
                return None;
            }
            Some(QueuedNotice {
                day,
                account: AccountId(account.to_string()),
                kind: std::str::from_utf8(kind).ok()?.to_string(),
                body: v.to_vec(),
                receiver,
            })
        })();
        parsed.ok_or_else(|| damaged("an outbox entry", k))
    }
}

/// An entry waiting to be routed (its key) and its copies (key, body).
type Move<'a> = (Vec<u8>, Vec<(Vec<u8>, &'a [u8])>);

impl Store {
    /// Queued notices, oldest day first.
    pub fn queued(&self) -> Result<Vec<QueuedNotice>, StoreError> {
        let mut out = Vec::new();
        for r in self.outbox.iter() {
            let (k, v) = r.map_err(|e| self.fail("reading the outbox", e))?;
            if k.as_ref() == GENERATION {
                continue;
            }
            out.push(QueuedNotice::decode(&k, &v)?);
        }
        Ok(out)
    }

    /// The copies routed to `receiver`, oldest day first; the others'
    /// bodies are not read into memory.
    pub fn queued_for(&self, receiver: &str) -> Result<Vec<QueuedNotice>, StoreError> {
        let mut suffix = vec![SEP];
        suffix.extend_from_slice(receiver.as_bytes());
        let mut out = Vec::new();
        for r in self.outbox.iter() {
            let (k, v) = r.map_err(|e| self.fail("reading the outbox", e))?;
            if k.as_ref() == GENERATION || !k.ends_with(&suffix) {
                continue;
            }
            let q = QueuedNotice::decode(&k, &v)?;
            if q.receiver.as_deref() == Some(receiver) {
                out.push(q);
            }
        }
        Ok(out)
    }

    /// Routes notices: each entry waiting to be routed is replaced by one
    /// copy per receiver (none: it is dropped, a route said so), in one
    /// flushed transaction, so a notice is routed once and every receiver
    /// then delivers its copy on its own.
    pub fn dispatch(&self, routed: &[(QueuedNotice, Vec<String>)]) -> Result<(), StoreError> {
        if routed.is_empty() {
            return Ok(());
        }
        // Each waiting entry with its copies.
        let mut moves: Vec<Move<'_>> = Vec::new();
        let mut bytes = 0u64;
        for (q, receivers) in routed {
            if q.receiver.is_some() {
                continue;
            }
            let copies = receivers
                .iter()
                .map(|r| {
                    bytes += q.body.len() as u64;
                    Ok((q.for_receiver(r).key()?, q.body.as_slice()))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            moves.push((q.key()?, copies));
        }
        let mut w = self.begin(bytes)?;
        let outbox_gen = w.bump(TREE_OUTBOX).1;
        self.outbox
            .transaction(|outbox| {
                for (from, copies) in &moves {
                    // Routed already (or dropped by a snooze) since it was
                    // read: routing it again would deliver it twice.
                    if outbox.remove(from.as_slice())?.is_none() {
                        continue;
                    }
                    for (k, v) in copies {
                        outbox.insert(k.as_slice(), *v)?;
                    }
                }
                outbox.insert(GENERATION, &outbox_gen)?;
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            })
            .map_err(transaction_err(self, "routing the outbox"))?;
        w.finish()
    }

    /// Records what became of one message, atomically: the record under
    /// its Message-ID in `mail`, and its notices out of the outbox (none
    /// while it is only being retried). Durable before returning: called
    /// right after the SMTP server accepted, this is the whole window in
    /// which a crash could send the message again.
    pub fn record_mail<R: Value>(
        &self,
        message_id: &str,
        record: &R,
        done: &[QueuedNotice],
    ) -> Result<(), StoreError> {
        if message_id.is_empty() {
            return Err(StoreError::Backup(
                "a delivery record needs a Message-ID".into(),
            ));
        }
        let record = encode(record)?;
        let record = record.as_slice();
        let mut w = self.begin(record.len() as u64)?;
        let keys = done
            .iter()
            .map(QueuedNotice::key)
            .collect::<Result<Vec<_>, _>>()?;
        let mail_gen = w.bump(TREE_MAIL).1;
        let outbox_gen = (!keys.is_empty()).then(|| w.bump(TREE_OUTBOX).1);
        (&*self.outbox, &*self.mail)
            .transaction(|(outbox, mail)| {
                for k in &keys {
                    outbox.remove(k.as_slice())?;
                }
                if let Some(g) = &outbox_gen {
                    outbox.insert(GENERATION, g)?;
                }
                mail.insert(message_id.as_bytes(), record)?;
                mail.insert(GENERATION, &mail_gen)?;
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            })
            .map_err(transaction_err(self, "recording a delivery"))?;
        w.finish()
    }

    /// Every delivery record: (Message-ID, record).
    pub fn mail<R: Value>(&self) -> Result<Vec<(String, R)>, StoreError> {
        let mut out = Vec::new();
        for r in self.mail.iter() {
            let (k, v) = r.map_err(|e| self.fail("reading the delivery record", e))?;
            if k.as_ref() == GENERATION {
                continue;
            }
            let id = std::str::from_utf8(&k).map_err(|_| damaged("a delivery record", &k))?;
            let record = decode(&k, &v, format_args!("of {id}"))?;
            out.push((id.to_string(), record));
        }
        Ok(out)
    }

    /// The delivery record of one message.
    pub fn mail_record<R: Value>(&self, message_id: &str) -> Result<Option<R>, StoreError> {
        self.mail
            .get(message_id.as_bytes())
            .map_err(|e| self.fail("reading the delivery record", e))?
            .map(|v| decode(message_id.as_bytes(), &v, format_args!("of {message_id}")))
            .transpose()
    }
}
