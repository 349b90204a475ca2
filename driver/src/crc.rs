//! CRC-32C arithmetic the controller does not do: combining the CRCs of
//! consecutive pieces into the CRC of the whole (zlib's `crc32_combine`,
//! for the Castagnoli polynomial), so an image longer than one transfer
//! is checked against its one committed CRC.

/// The reflected CRC-32C polynomial.
const POLY: u32 = 0x82F6_3B78;

fn times(mat: &[u32; 32], mut vec: u32) -> u32 {
    let mut sum = 0;
    let mut i = 0;
    while vec != 0 {
        if vec & 1 != 0 {
            sum ^= mat[i];
        }
        vec >>= 1;
        i += 1;
    }
    sum
}

fn square(mat: &[u32; 32]) -> [u32; 32] {
    let mut sq = [0u32; 32];
    for (n, s) in sq.iter_mut().enumerate() {
        *s = times(mat, mat[n]);
    }
    sq
}

/// The CRC-32C of `A || B` from `crc1 = crc32c(A)`, `crc2 = crc32c(B)`
/// and `len2 = |B|` in bytes.
pub fn crc32c_combine(crc1: u32, crc2: u32, len2: u64) -> u32 {
    if len2 == 0 {
        return crc1;
    }
    // The operator for one zero bit, then squared to two and four bits.
    let mut odd = [0u32; 32];
    odd[0] = POLY;
    for (n, o) in odd.iter_mut().enumerate().skip(1) {
        *o = 1 << (n - 1);
    }
    let mut even = square(&odd);
    odd = square(&even);
    let (mut crc1, mut len2) = (crc1, len2);
    // Apply len2 zero bytes to crc1 (the first square makes one byte).
    loop {
        even = square(&odd);
        if len2 & 1 != 0 {
            crc1 = times(&even, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
        odd = square(&even);
        if len2 & 1 != 0 {
            crc1 = times(&odd, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
    }
    crc1 ^ crc2
}

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
