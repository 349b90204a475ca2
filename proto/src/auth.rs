//! Credentials (seed 001, claims 9, 17-20): an application's first OPEN
//! makes the card generate a 32-byte secret, kept in the cold tier and
//! handed to the application once. Every later request of that application
//! (its own or a backup's, which got the secret from it) is signed:
//! `MAC = HMAC-SHA256(secret, challenge || message without the MAC field)`,
//! the MAC field last. The challenge is a random 64-bit value the card
//! publishes in `MB_NONCE` and replaces after every request, so a recorded
//! request cannot be replayed and the secret never crosses the bus again.

use crate::msg::tag;
use crate::tlv::{HEADER, MAGIC};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of an application secret.
pub const SECRET_BYTES: usize = 32;
/// Bytes of a MAC.
pub const MAC_BYTES: usize = 32;
/// Bytes the MAC field adds to a message (tag, length, value).
pub const MAC_FIELD: usize = 6 + MAC_BYTES;

type HmacSha256 = Hmac<Sha256>;

fn mac_over(secret: &[u8], challenge: u64, unsigned: &[u8]) -> [u8; MAC_BYTES] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0; MAC_BYTES],
    };
    m.update(&challenge.to_le_bytes());
    m.update(unsigned);
    m.finalize().into_bytes().into()
}

/// Append the MAC field to a finished message.
pub fn sign(mut message: Vec<u8>, secret: &[u8], challenge: u64) -> Vec<u8> {
    let mac = mac_over(secret, challenge, &message);
    message.extend_from_slice(&tag::MAC.to_le_bytes());
    message.extend_from_slice(&(MAC_BYTES as u32).to_le_bytes());
    message.extend_from_slice(&mac);
    let body = (message.len() - HEADER) as u32;
    message[4..8].copy_from_slice(&body.to_le_bytes());
    message
}

/// Check a signed message (already decoded as a valid TLV message): the
/// MAC field must be the last field, and match. Constant time in the MAC.
pub fn verify(message: &[u8], secret: &[u8], challenge: u64) -> bool {
    if message.len() < HEADER + MAC_FIELD || message[..2] != MAGIC {
        return false;
    }
    let split = message.len() - MAC_FIELD;
    let field = &message[split..];
    if field[..2] != tag::MAC.to_le_bytes() || field[2..6] != (MAC_BYTES as u32).to_le_bytes() {
        return false;
    }
    let mut unsigned = message[..split].to_vec();
    let body = (split - HEADER) as u32;
    unsigned[4..8].copy_from_slice(&body.to_le_bytes());
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return false,
    };
    m.update(&challenge.to_le_bytes());
    m.update(&unsigned);
    m.verify_slice(&field[6..]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlv::{Builder, Message};

    #[test]
    fn signed_messages_verify_and_tampering_fails() {
        let secret = [7u8; SECRET_BYTES];
        let m = Builder::new(4).u32(1, 42).bytes(3, b"x").finish();
        let signed = sign(m.clone(), &secret, 99);
        let decoded = Message::decode(&signed).unwrap();
        assert_eq!(decoded.u32_or(1, 0), Ok(42));
        assert!(verify(&signed, &secret, 99));
        assert!(!verify(&signed, &secret, 100), "another challenge");
        assert!(!verify(&signed, &[8u8; SECRET_BYTES], 99), "another secret");
        let mut t = signed.clone();
        t[HEADER + 6] ^= 1;
        assert!(!verify(&t, &secret, 99), "a changed field");
        assert!(!verify(&m, &secret, 99), "no MAC at all");
        assert!(!verify(&signed[..10], &secret, 99));
    }
}
