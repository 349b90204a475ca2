//! Whatever bytes arrive in the mailbox: the TLV decoder, the typed field
//! accessors, the typed requests and responses, the packed lists, the MAC
//! check and the record-table parser (an inline index, a paged root and
//! its leaves, also with their CRCs made right so the structural checks
//! are reached) must answer with a value or an error, never panic, and a decoded
//! message must re-encode to one that decodes to the same fields.
#![no_main]

use hitless_proto::msg::{self, tag, LogInfo, SetInfo};
use hitless_firmware::records::{Head, LeafRef, Table, HEADER, LEAF_MAGIC, ROOT_MAGIC, TABLE_MAGIC};
use hitless_hdl::contract::crc32c;
use hitless_proto::tlv::{Builder, Message};
use hitless_proto::auth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Table::decode_head(data, 1 << 21);
    index(data);
    let _ = auth::verify(data, &[7u8; auth::SECRET_BYTES], 1);
    let Ok(m) = Message::decode(data) else {
        return;
    };
    for t in 0..32u16 {
        let _ = m.u32_or(t, 0);
        let _ = m.u64_or(t, 0);
        let _ = m.bytes_or_empty(t);
    }
    let _ = msg::unpack(m.bytes_or_empty(tag::SETS), SetInfo::BYTES, SetInfo::from_bytes, tag::SETS);
    let _ = msg::unpack(m.bytes_or_empty(tag::RECORDS), LogInfo::BYTES, LogInfo::from_bytes, tag::RECORDS);
    let _ = msg::result_of(&m);
    // The typed messages over the same bytes: a value or an error.
    if let Ok(r) = hitless_proto::Request::decode(&m) {
        // A decoded request re-encodes to one that decodes to itself.
        let again = r.encode().finish();
        let m2 = Message::decode(&again).expect("a re-encoded request decodes");
        assert_eq!(hitless_proto::Request::decode(&m2).ok(), Some(r));
    }
    for k in 0..=16u8 {
        let _ = hitless_proto::Response::decode(k, &m);
    }
    // Re-encode: the same kind and fields, in order.
    let mut b = Builder::new(m.kind);
    let tags: Vec<u16> = m.tags().collect();
    for &t in &tags {
        b = b.bytes(t, m.bytes_or_empty(t));
    }
    let again = b.finish();
    let m2 = Message::decode(&again).expect("a re-encoded message decodes");
    assert_eq!(m2.kind, m.kind);
    assert_eq!(m2.tags().collect::<Vec<_>>(), tags);
    for &t in &tags {
        assert_eq!(m2.bytes_or_empty(t), m.bytes_or_empty(t));
    }
});

/// `body` after `magic`, its CRC field (16..20) made right over the bytes
/// its header announces.
fn sealed(magic: [u8; 8], body: &[u8]) -> Vec<u8> {
    // A leaf's header reads like an inline index's.
    let mut v = if magic == LEAF_MAGIC { TABLE_MAGIC } else { magic }.to_vec();
    v.extend_from_slice(body);
    let size = Table::head_size(&v);
    v[..8].copy_from_slice(&magic);
    if let Ok(n) = size {
        if v.len() >= n && n >= HEADER {
            v[16..20].fill(0);
            let crc = crc32c(&v[..n]);
            v[16..20].copy_from_slice(&crc.to_le_bytes());
        }
    }
    v
}

/// A paged root and a leaf carved from the input: decoded and assembled
/// without panicking.
fn index(data: &[u8]) {
    let split = (data.first().copied().unwrap_or(0) as usize * 8).min(data.len());
    let (root, leaf) = data.split_at(split);
    let root = sealed(ROOT_MAGIC, root);
    if let Ok(Head::Paged(refs)) = Table::decode_head(&root, 1 << 21) {
        let leaf = sealed(LEAF_MAGIC, leaf);
        let refs: Vec<LeafRef> = refs
            .into_iter()
            .map(|r| LeafRef { len: leaf.len() as u32, crc: crc32c(&leaf), ..r })
            .collect();
        let leaves = vec![leaf; refs.len()];
        let _ = Table::assemble(&refs, &leaves, 1 << 21);
    }
}
