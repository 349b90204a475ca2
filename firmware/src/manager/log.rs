//! The append log (seed 001, claims 1, 3, 4, 13): records of a primary
//! application, tagged by the firmware with the application and object,
//! read and trimmed by a backup reader of the same application.

use super::*;
use hitless_hdl::logring::parse_log;
use hitless_proto::msg::{flags, LogInfo};
use hitless_proto::Response;

/// Tag word 3's flag: the record was replicated from a master's log.
const ORIGIN_FLAG: u32 = 1;

/// An unread log record with the firmware's tag taken off.
pub(super) struct Tagged {
    pub offset: u32,
    pub seq: u64,
    pub app: u32,
    pub object: u32,
    /// A replicated record's offset in its master's log (tag bytes 8..12,
    /// with the replicated flag in 12..16).
    pub origin: Option<u32>,
    pub payload: Vec<u8>,
}

impl Tagged {
    /// The record's position in the pair's log (see
    /// `ReplState::log_delta`): the one in its tag, else (an unreplicated
    /// card's record) its offset.
    pub(super) fn pos(&self) -> u32 {
        self.origin.unwrap_or(self.offset)
    }
}

impl<C: Controller> MemoryManager<C> {
    /// This card's log offset `own` (its head) as a position in the
    /// pair's log; the offset itself on an unreplicated card.
    pub(super) fn log_position(&self, t: TierSel, own: u32) -> u32 {
        own.wrapping_add(self.repl.log_delta[t as usize])
    }

    /// Where APPEND puts a record of `len` payload bytes (with the tag)
    /// at `head`: there, or after a pad when it would cross the ring's
    /// end (the contract's rule, `hitless_hdl::logring`).
    fn next_record(&self, head: u32, len: usize) -> u32 {
        let size = self.geometry.log_size;
        let rec = hitless_hdl::contract::log_record_bytes((LOG_TAG + len) as u32);
        let at = if size == 0 { 0 } else { head % size };
        if size != 0 && u64::from(at) + u64::from(rec) > u64::from(size) {
            head.wrapping_add(size - at)
        } else {
            head
        }
    }

    /// The log's (head, tail) as positions: the head's, and the first
    /// unread record's when it is tagged (else the tail's).
    fn log_span(&self, t: TierSel, recs: &[Tagged], st: &TierRegs) -> (u32, u32) {
        let head = self.log_position(t, st.log_head);
        let tail = match recs.first() {
            Some(r) if r.origin.is_some() => r.pos(),
            _ => self.log_position(t, st.log_tail),
        };
        (head, tail)
    }

    /// The log's (head, tail) as positions, read from the card.
    pub(super) fn log_ends(&mut self, t: TierSel) -> R<(u32, u32)> {
        let (recs, st) = self.log_records(t)?;
        Ok(self.log_span(t, &recs, &st))
    }

    /// The unread records of a tier's log: (record, app, object, payload).
    pub(super) fn log_records(&mut self, t: TierSel) -> R<(Vec<Tagged>, TierRegs)> {
        let st = self.tier_regs(t)?;
        let size = self.geometry.log_size;
        let g0 = NvGeometry {
            region_size: 0,
            log_size: size,
            data_size: 0,
        };
        let base = g0.log_base() as usize;
        let mut image = vec![0u8; base + size as usize];
        let unread = st.log_head.wrapping_sub(st.log_tail);
        if unread > size {
            return fail(
                Code::Device,
                "log head is beyond its tail by more than the ring",
            );
        }
        // Read [tail, head) in at most two pieces (the ring wraps), in
        // scratch-sized chunks.
        let (_, scratch) = self.ctl.scratch();
        let mut done = 0u32;
        while done < unread {
            let pos = st.log_tail.wrapping_add(done) % size;
            let n = (unread - done)
                .min(size - pos)
                .min(MAX_TRANSFER)
                .min(scratch as u32);
            // READ needs 8-aligned offsets; records are 8-aligned.
            let (sbase, _) = self.ctl.scratch();
            self.op(
                Descriptor {
                    opcode: Opcode::Read as u8,
                    flags: tier_flag(t),
                    key: self.log_key,
                    host_addr: sbase,
                    nv_offset: pos,
                    len: n,
                    ..Default::default()
                },
                "read the log",
            )?;
            let at = base + pos as usize;
            self.ctl
                .scratch_read(0, &mut image[at..at + n as usize])
                .map_err(ctl)?;
            done += n;
        }
        let recs = parse_log(&image, &g0, st.log_head, st.log_tail)
            .map_err(|e| Failure::new(Code::Device, format!("log damaged: {e}")))?;
        let mut out = Vec::new();
        for r in recs {
            if !r.crc_ok || r.data.len() < LOG_TAG {
                tracing::warn!(offset = r.offset, "log record fails its CRC; skipped");
                continue;
            }
            let u = |i: usize| {
                u32::from_le_bytes([r.data[i], r.data[i + 1], r.data[i + 2], r.data[i + 3]])
            };
            out.push(Tagged {
                offset: r.offset,
                seq: r.seq,
                app: u(0),
                object: u(4),
                origin: (u(12) & ORIGIN_FLAG != 0).then(|| u(8)),
                payload: r.data[LOG_TAG..].to_vec(),
            });
        }
        Ok((out, st))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn log_append(
        &mut self,
        host: &mut dyn HostMemory,
        app: u32,
        object: u32,
        t: TierSel,
        f: u32,
        addr: u64,
        len: u32,
    ) -> R<Response> {
        let max = MAX_TRANSFER - LOG_TAG as u32;
        if len == 0 || len > max {
            return fail(Code::Invalid, format!("a log record holds 1..={max} bytes"));
        }
        if f & flags::OVERWRITE != 0 {
            // Overwrite mode may only drop this application's records.
            let (recs, _) = self.log_records(t)?;
            if let Some(r) = recs.iter().find(|r| r.app != app) {
                return fail(
                    Code::Foreign,
                    format!(
                        "overwrite would drop application {}'s record at {}",
                        r.app, r.offset
                    ),
                );
            }
        }
        let mut data = vec![0u8; len as usize];
        host.read(addr, &mut data).map_err(host_err)?;
        // A replicated card's master tags its record with its position in
        // the pair's log, which its slaves keep.
        let pos = match self.repl.journal {
            Some(_) => {
                let head = self.tier_regs(t)?.log_head;
                let at = self.next_record(head, data.len());
                Some(self.log_position(t, at))
            }
            None => None,
        };
        let own = self.append_tagged(t, app, object, pos, &data)?;
        if pos.is_some_and(|p| p != self.log_position(t, own)) {
            tracing::warn!(own, "a log record is not where the ring's rule put it");
        }
        let offset = pos.unwrap_or(own);
        self.journal(|| crate::replication::Change::LogAppend {
            app,
            object,
            tier: t as u32,
            offset,
            data,
        });
        if f & flags::OVERWRITE != 0 {
            self.log_trim(t, own)?;
            self.journal(|| crate::replication::Change::LogTrim {
                tier: t as u32,
                to: offset,
            });
        }
        Ok(Response::Appended { offset })
    }

    /// APPEND `data` with the firmware's tag (application, object, and for
    /// a replicated record its master's offset); the record's offset.
    pub(super) fn append_tagged(
        &mut self,
        t: TierSel,
        app: u32,
        object: u32,
        origin: Option<u32>,
        data: &[u8],
    ) -> R<u32> {
        let max = MAX_TRANSFER as usize - LOG_TAG;
        if data.is_empty() || data.len() > max {
            return fail(Code::Invalid, format!("a log record holds 1..={max} bytes"));
        }
        let mut payload = vec![0u8; LOG_TAG + data.len()];
        payload[0..4].copy_from_slice(&app.to_le_bytes());
        payload[4..8].copy_from_slice(&object.to_le_bytes());
        if let Some(o) = origin {
            payload[8..12].copy_from_slice(&o.to_le_bytes());
            payload[12..16].copy_from_slice(&ORIGIN_FLAG.to_le_bytes());
        }
        payload[LOG_TAG..].copy_from_slice(data);
        self.ctl.scratch_write(STAGING, &payload).map_err(ctl)?;
        let append = Descriptor {
            opcode: Opcode::Append as u8,
            flags: tier_flag(t),
            key: self.log_key,
            host_addr: self.ctl.scratch().0 + STAGING as u64,
            len: payload.len() as u32,
            ..Default::default()
        };
        let c = self.op_with(append, "append", |st| {
            (st == Status::LogFull).then(|| {
                Failure::new(
                    Code::LogFull,
                    "the append log is full: the reader must read and trim first",
                )
            })
        })?;
        Ok(c.info)
    }

    pub(super) fn log_trim(&mut self, t: TierSel, to: u32) -> R<()> {
        self.op(
            Descriptor {
                opcode: Opcode::LogTrim as u8,
                flags: tier_flag(t),
                key: self.log_key,
                aux: to,
                ..Default::default()
            },
            "trim the log",
        )?;
        Ok(())
    }

    /// Trim `app`'s records before position `to` (a record's position or
    /// the head's: a log cursor).
    pub(super) fn log_trim_checked(&mut self, t: TierSel, app: u32, to: u32) -> R<()> {
        let (recs, st) = self.log_records(t)?;
        let (head, tail) = self.log_span(t, &recs, &st);
        if to.wrapping_sub(tail) > head.wrapping_sub(tail) {
            return fail(
                Code::Invalid,
                format!("trim to {to:#x} is outside the unread log [{tail:#x}, {head:#x}]"),
            );
        }
        // The position as this card's offset.
        let to = match recs.iter().find(|r| r.pos() == to) {
            Some(r) => r.offset,
            None if to == head => st.log_head,
            None => return fail(Code::Invalid, format!("{to:#x} is not a record boundary")),
        };
        let span = to.wrapping_sub(st.log_tail);
        if let Some(r) = recs
            .iter()
            .find(|r| r.offset.wrapping_sub(st.log_tail) < span && r.app != app)
        {
            return fail(
                Code::Foreign,
                format!(
                    "the range holds application {}'s record at {:#x}",
                    r.app, r.offset
                ),
            );
        }
        self.log_trim(t, to)
    }

    pub(super) fn log_read(
        &mut self,
        host: &mut dyn HostMemory,
        app: u32,
        t: TierSel,
        addr: u64,
        cap: u32,
    ) -> R<Response> {
        let (recs, st) = self.log_records(t)?;
        let (head, tail) = self.log_span(t, &recs, &st);
        let mine: Vec<_> = recs.into_iter().filter(|r| r.app == app).collect();
        let needed: usize = mine.iter().map(|r| align8(r.payload.len())).sum();
        if needed > cap as usize {
            return Err(Failure::too_small(needed as u64));
        }
        let mut data = Vec::with_capacity(needed);
        let mut infos = Vec::new();
        for Tagged {
            offset,
            seq,
            object,
            payload,
            origin,
            ..
        } in mine
        {
            let li = LogInfo {
                object,
                offset: origin.unwrap_or(offset),
                seq,
                len: payload.len() as u32,
                data_offset: data.len() as u32,
            };
            infos.push(li);
            data.extend_from_slice(&payload);
            data.resize(align8(data.len()), 0);
        }
        if !data.is_empty() {
            host.write(addr, &data).map_err(host_err)?;
        }
        Ok(Response::Log {
            records: infos,
            head,
            tail,
        })
    }
}
