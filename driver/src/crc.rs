//! CRC-32C arithmetic the controller does not do: combining the CRCs of
//! consecutive pieces into the CRC of the whole (zlib's `crc32_combine`,
//! for the Castagnoli polynomial), so an image longer than one transfer
//! is checked against its one committed CRC.

/// The one implementation lives beside `crc32c` in the hardware contract
/// (the firmware combines transfer CRCs too); re-exported for the driver.
pub use hitless_hdl::contract::crc32c_combine;

#[cfg(test)]
mod tests {
    use super::*;
    use hitless_hdl::contract::crc32c;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn combined_crcs_are_the_crc_of_the_whole(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cut in any::<proptest::sample::Index>(),
        ) {
            let at = cut.index(data.len() + 1);
            let (a, b) = data.split_at(at);
            prop_assert_eq!(
                crc32c_combine(crc32c(a), crc32c(b), b.len() as u64),
                crc32c(&data)
            );
        }
    }

    #[test]
    fn an_empty_prefix_or_suffix_changes_nothing() {
        let x = crc32c(b"hitless");
        assert_eq!(crc32c_combine(crc32c(&[]), x, 7), x);
        assert_eq!(crc32c_combine(x, crc32c(&[]), 0), x);
    }
}
