//! An application's own state (seed 004 claim 1's "protocol state"): a set
//! of TLV records the active instance of an application keeps on the card
//! in brackets, and the standby instance reads after a takeover.
//!
//! A bracket is `begin`, any number of `put`/`remove`, then `end`. Nothing
//! reaches the card before `end`, which stores the whole new state as one
//! set: one store is one replication bracket, so the card and its peer
//! apply all of a bracket's records or none of them (a master that dies
//! before the close is never half-applied on the slave, and a store that
//! is not acknowledged leaves the old state). Dropping a bracket without
//! `end` abandons it.
//!
//! The state is a canonical TLV message (`hitless_proto::tlv`, kind
//! [`STATE_KIND`]): field 0 is the generation (counts the brackets ended),
//! every other field a record under its tag. A reader keeps the records
//! whose tags it does not know, so an older and a newer release of the
//! application read each other's state (seed 004 claims 8–12).
//!
//! One writer per application: `begin` reads the state, `end` replaces it,
//! so two instances writing at once would lose each other's records. The
//! active instance writes, the standby only reads (until it takes over).

use crate::error::{Error, Result};
use crate::firmware::{Firmware, Session};
use hitless_proto::msg::Code;
use hitless_proto::tlv::{Builder, Message, MAX_BODY};
use std::collections::BTreeMap;

/// The TLV message kind of an application state.
pub const STATE_KIND: u8 = 0x70;
/// The field holding the generation; records use the other tags.
const GENERATION: u16 = 0;

/// An application's state: its records by tag, and how many brackets made
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    pub generation: u64,
    pub records: BTreeMap<u16, Vec<u8>>,
}

impl AppState {
    /// The canonical encoding (records in tag order).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Builder::new(STATE_KIND).u64(GENERATION, self.generation);
        for (tag, value) in &self.records {
            b = b.bytes(*tag, value);
        }
        b.finish()
    }

    /// Decode a stored state; a set that is not one is an error, not an
    /// empty state.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: String| Error::BadCompletion(format!("not an application state: {why}"));
        let m = Message::decode(bytes).map_err(|e| bad(e.to_string()))?;
        if m.kind != STATE_KIND {
            return Err(bad(format!("message kind {:#x}", m.kind)));
        }
        let generation = m.u64_or(GENERATION, 0).map_err(|e| bad(e.to_string()))?;
        let records = m
            .tags()
            .filter(|&t| t != GENERATION)
            .map(|t| (t, m.bytes_or_empty(t).to_vec()))
            .collect();
        Ok(Self {
            generation,
            records,
        })
    }

    /// A record's value.
    pub fn get(&self, tag: u16) -> Option<&[u8]> {
        self.records.get(&tag).map(Vec::as_slice)
    }
}

/// Where an application keeps its state: a set of its session.
#[derive(Clone, Copy, Debug)]
pub struct StateSet {
    pub object: u32,
    /// The cold tier (survives a power cut) rather than the warm one.
    pub cold: bool,
}

/// The application's state as the card holds it; empty when it has never
/// ended a bracket.
pub fn read(fw: &mut dyn Firmware, s: &Session, at: StateSet) -> Result<AppState> {
    match fw.restore(s, at.object) {
        Ok((_, bytes)) => AppState::decode(&bytes),
        Err(Error::Firmware {
            code: Code::NotFound,
            ..
        }) => Ok(AppState::default()),
        Err(e) => Err(e),
    }
}

/// An open bracket of changes to the application's state.
pub struct Bracket<'a> {
    fw: &'a mut dyn Firmware,
    session: Session,
    at: StateSet,
    state: AppState,
    changed: bool,
}

/// Open a bracket on the state the card holds now.
pub fn begin<'a>(fw: &'a mut dyn Firmware, s: &Session, at: StateSet) -> Result<Bracket<'a>> {
    let state = read(fw, s, at)?;
    Ok(Bracket {
        fw,
        session: s.clone(),
        at,
        state,
        changed: false,
    })
}

impl Bracket<'_> {
    /// Set a record (tag 0 is the generation's, refused).
    pub fn put(&mut self, tag: u16, value: &[u8]) -> Result<()> {
        if tag == GENERATION {
            return Err(Error::InvalidArgument(
                "record tag 0 is the state's generation; use tags 1..=65535".into(),
            ));
        }
        self.state.records.insert(tag, value.to_vec());
        self.changed = true;
        Ok(())
    }

    /// Remove a record.
    pub fn remove(&mut self, tag: u16) {
        self.changed |= self.state.records.remove(&tag).is_some();
    }

    /// The state as the bracket would leave it.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Close the bracket: store the new state as one set (all of its
    /// records or none). Returns the state stored. A bracket that changed
    /// nothing stores nothing.
    pub fn end(mut self) -> Result<AppState> {
        if !self.changed {
            return Ok(self.state);
        }
        self.state.generation += 1;
        let bytes = self.state.encode();
        if bytes.len() > MAX_BODY {
            return Err(Error::InvalidArgument(format!(
                "the state would be {} bytes; at most {MAX_BODY} fit in one set",
                bytes.len()
            )));
        }
        self.fw
            .store(&self.session, self.at.object, 0, 0, self.at.cold, &bytes)?;
        Ok(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::{FwStatus, LogRead, OpenFlags, Secret};
    use hitless_proto::msg::SetInfo;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Sets in a map; every store can be made to fail.
    #[derive(Default)]
    struct Sets {
        sets: HashMap<u32, Vec<u8>>,
        fail_stores: bool,
    }

    fn nope<T>() -> Result<T> {
        Err(Error::InvalidArgument("not in this test".into()))
    }

    impl Firmware for Sets {
        fn status(&mut self) -> Result<FwStatus> {
            nope()
        }
        fn open_app(
            &mut self,
            _: u32,
            _: OpenFlags,
            _: Option<&Secret>,
        ) -> Result<(Session, Option<Secret>)> {
            nope()
        }
        fn close(&mut self, _: &Session) -> Result<()> {
            Ok(())
        }
        fn store(&mut self, _: &Session, o: u32, _: u32, _: u32, _: bool, d: &[u8]) -> Result<()> {
            if self.fail_stores {
                return Err(Error::Firmware {
                    code: Code::Device,
                    detail: "the store was not acknowledged".into(),
                    needed: None,
                });
            }
            self.sets.insert(o, d.to_vec());
            Ok(())
        }
        fn delete(&mut self, _: &Session, o: u32) -> Result<()> {
            self.sets.remove(&o);
            Ok(())
        }
        fn restore(&mut self, _: &Session, o: u32) -> Result<(SetInfo, Vec<u8>)> {
            match self.sets.get(&o) {
                Some(d) => Ok((info(), d.clone())),
                None => Err(Error::Firmware {
                    code: Code::NotFound,
                    detail: format!("no set {o}"),
                    needed: None,
                }),
            }
        }
        fn list(&mut self, _: &Session) -> Result<Vec<SetInfo>> {
            nope()
        }
        fn announce(&mut self, _: u32) -> Result<Vec<SetInfo>> {
            nope()
        }
        fn fetch(&mut self, _: &Session, _: u32) -> Result<Vec<(SetInfo, Vec<u8>)>> {
            nope()
        }
        fn log_append(&mut self, _: &Session, _: u32, _: bool, _: bool, _: &[u8]) -> Result<u32> {
            nope()
        }
        fn log_read(&mut self, _: &Session, _: bool) -> Result<LogRead> {
            nope()
        }
        fn log_trim(&mut self, _: &Session, _: bool, _: u32) -> Result<()> {
            nope()
        }
        fn format(&mut self, _: &Session, _: bool) -> Result<()> {
            nope()
        }
        fn auth_failures(&mut self) -> Result<u32> {
            Ok(0)
        }
        fn switchover(&mut self, _: Option<u32>) -> Result<crate::firmware::Switched> {
            nope()
        }
        fn describe(&self) -> String {
            "a map".into()
        }
    }

    const AT: StateSet = StateSet {
        object: 7,
        cold: false,
    };

    fn session() -> Session {
        Session::through_daemon(1, 1, 1)
    }

    fn info() -> SetInfo {
        SetInfo {
            app: 1,
            object: AT.object,
            endpoint: 0,
            stage: 0,
            tier: hitless_proto::msg::TierSel::Warm,
            len: 0,
            crc: 0,
            data_offset: 0,
        }
    }

    #[test]
    fn brackets_replace_the_state_whole_or_not_at_all() {
        let mut fw = Sets::default();
        let s = session();
        assert_eq!(read(&mut fw, &s, AT).unwrap(), AppState::default());
        let mut b = begin(&mut fw, &s, AT).unwrap();
        b.put(1, b"routes v1").unwrap();
        b.put(2, b"peers").unwrap();
        assert!(b.put(0, b"x").is_err(), "tag 0 is the generation's");
        b.end().unwrap();
        // A bracket dropped before its end changes nothing.
        let mut b = begin(&mut fw, &s, AT).unwrap();
        b.put(1, b"routes v2").unwrap();
        drop(b);
        let st = read(&mut fw, &s, AT).unwrap();
        assert_eq!((st.generation, st.get(1)), (1, Some(&b"routes v1"[..])));
        // A bracket whose store fails leaves the old state.
        fw.fail_stores = true;
        let mut b = begin(&mut fw, &s, AT).unwrap();
        b.put(1, b"routes v3").unwrap();
        b.remove(2);
        assert!(b.end().is_err());
        fw.fail_stores = false;
        let st = read(&mut fw, &s, AT).unwrap();
        assert_eq!(st.get(1), Some(&b"routes v1"[..]));
        assert_eq!(st.get(2), Some(&b"peers"[..]));
        // Merged with what was there; an empty bracket stores nothing.
        let mut b = begin(&mut fw, &s, AT).unwrap();
        b.put(3, b"timers").unwrap();
        b.remove(2);
        let st = b.end().unwrap();
        assert_eq!(st.generation, 2);
        assert_eq!(st.records.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        let before = fw.sets.clone();
        begin(&mut fw, &s, AT).unwrap().end().unwrap();
        assert_eq!(fw.sets, before);
    }

    #[test]
    fn a_set_that_is_not_a_state_is_refused() {
        let mut fw = Sets::default();
        fw.sets.insert(AT.object, b"raw checkpoint bytes".to_vec());
        assert!(read(&mut fw, &session(), AT).is_err());
        let other_kind = Builder::new(STATE_KIND + 1).finish();
        assert!(AppState::decode(&other_kind).is_err());
    }

    proptest! {
        /// Any state survives its encoding; a newer writer's records an
        /// older reader does not know are records all the same.
        #[test]
        fn encoding_round_trips(
            generation: u64,
            records in proptest::collection::btree_map(1u16.., proptest::collection::vec(any::<u8>(), 0..64), 0..16),
        ) {
            let st = AppState { generation, records };
            prop_assert_eq!(AppState::decode(&st.encode()).unwrap(), st);
        }

        /// Garbage is an error, never a panic.
        #[test]
        fn garbage_is_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = AppState::decode(&bytes);
        }
    }
}
