//! Whatever bytes a remote backup reader sends the card (or a card sends
//! a reader): the frame header is checked against its limits before
//! anything is allocated, a frame decodes to a value or an error, never a
//! panic, however the bytes are cut, and a decoded frame re-encodes to
//! itself.
#![no_main]

use hitless_proto::backup::{Frame, Header, HEADER_BYTES, MAX_DATA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = data.get(..HEADER_BYTES) {
        let h: &[u8; HEADER_BYTES] = h.try_into().expect("header bytes");
        // The card takes no data; a reader takes up to MAX_DATA.
        for max in [0, MAX_DATA] {
            if let Ok(x) = Header::decode(h, max) {
                assert!(x.data_len <= max);
                assert_eq!(Header::decode(&x.encode(), max), Ok(x));
            }
        }
    }
    // The stream as the card reads it: frame after frame until one fails.
    let mut rest = data;
    while let Ok((f, after)) = Frame::decode(rest, 0) {
        assert!(after.len() < rest.len());
        let again = f.encode();
        assert_eq!(Frame::decode(&again, 0).ok().map(|(g, _)| g), Some(f.clone()));
        let _ = f.window();
        rest = after;
    }
    let _ = Frame::decode(data, 1 << 16);
});
