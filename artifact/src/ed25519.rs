//! Ed25519 verification, the one acceptance rule, and its two implementations.
//!
//! The rule (RFC 8032, section 5.1.7, strict):
//!
//! - a public key `A` is the canonical encoding of a curve point not of small order;
//! - a signature `R || S` has `S < L`, `R` the canonical encoding of a point not of small order,
//!   and `encode([S]B - [k]A) == R` byte for byte, `k = SHA-512(R || A || M) mod L`
//!   (cofactorless, as ed25519-dalek's `verify_strict`).
//!
//! Host tools use ed25519-dalek. Devices build with the `salty` feature: salty's field
//! arithmetic is Cortex-M4 assembly (UMAAL) and its scalar multiplication a plain ladder, about
//! 6 KiB less code than ed25519-dalek on thumbv7em, for a slower verify. salty
//! checks neither canonical encodings nor small orders, so those checks are here, and the tests
//! hold both implementations to the same answers on the edge cases.

/// The group order L, little-endian.
#[cfg(any(feature = "salty", test))]
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `h mod L` for a 512-bit little-endian `h`, bit by bit from the top (`r = 2r + bit`, less `L`
/// when it reaches it): the canonical representative, as salty's `Scalar::from_u512_le` gives,
/// in a tenth of its code (its Montgomery multiplication is 2 KB on thumbv7em); 512 rounds of
/// 32-byte shifts and subtractions are nothing next to a verify's scalar multiplications.
#[cfg(any(feature = "salty", test))]
fn reduce_wide(h: &[u8; 64]) -> [u8; 32] {
    let mut r = [0u8; 32];
    for byte in h.iter().rev() {
        for bit in (0..8).rev() {
            // r < L < 2^253, so 2r + 1 < 2^254 fits and no bit is shifted out.
            let mut carry = (byte >> bit) & 1;
            for b in r.iter_mut() {
                let top = *b >> 7;
                *b = *b << 1 | carry;
                carry = top;
            }
            // 2r + 1 < 2L: one subtraction at most keeps r below L.
            let mut less = r;
            let mut borrow = false;
            for (d, l) in less.iter_mut().zip(L) {
                let (v, b1) = d.overflowing_sub(l);
                let (v, b2) = v.overflowing_sub(u8::from(borrow));
                *d = v;
                borrow = b1 | b2;
            }
            if !borrow {
                r = less;
            }
        }
    }
    r
}

/// `s < L`, as little-endian integers: the only encoding of a scalar a signature may carry.
#[cfg(any(feature = "salty", test))]
fn canonical_scalar(s: &[u8; 32]) -> bool {
    for (a, l) in s.iter().rev().zip(L.iter().rev()) {
        if a != l {
            return a < l;
        }
    }
    false
}

#[cfg(not(feature = "salty"))]
pub(crate) use dalek::{valid_key, verify};
#[cfg(feature = "salty")]
pub(crate) use small::{valid_key, verify};

/// ed25519-dalek: `verify_strict` is the rule but for the key's canonical encoding, which it
/// does not check (it hashes the key bytes as given), so that is checked here.
#[cfg(any(not(feature = "salty"), test))]
mod dalek {
    use ed25519_dalek::{Signature, VerifyingKey};

    fn key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
        let vk = VerifyingKey::from_bytes(bytes).ok()?;
        let canonical = vk.to_edwards().compress().to_bytes() == *bytes;
        (canonical && !vk.is_weak()).then_some(vk)
    }

    pub(crate) fn valid_key(bytes: &[u8; 32]) -> bool {
        key(bytes).is_some()
    }

    pub(crate) fn verify(key_bytes: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        key(key_bytes).is_some_and(|vk| {
            vk.verify_strict(message, &Signature::from_bytes(signature))
                .is_ok()
        })
    }
}

/// salty, with the rule's checks it leaves out.
#[cfg(feature = "salty")]
mod small {
    use super::{canonical_scalar, reduce_wide};
    use salty::{CompressedY, EdwardsPoint, Scalar, Sha512};

    /// The point a canonical encoding stands for (re-encoding it gives the same bytes: no
    /// `y >= p`, no "negative zero" x).
    fn point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
        let p = CompressedY(*bytes).decompressed().ok()?;
        (p.compressed().0 == *bytes).then_some(p)
    }

    /// `[8]P` is the identity: P lies in the torsion subgroup.
    fn small_order(p: &EdwardsPoint) -> bool {
        let p2 = p + p;
        let p4 = &p2 + &p2;
        let p8 = &p4 + &p4;
        p8 == EdwardsPoint::neutral_element()
    }

    fn key(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
        point(bytes).filter(|p| !small_order(p))
    }

    pub(crate) fn valid_key(bytes: &[u8; 32]) -> bool {
        key(bytes).is_some()
    }

    pub(crate) fn verify(key_bytes: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        let (r, s) = signature.split_at(32);
        let (Ok(r), Ok(s)) = (<[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
            return false;
        };
        if !canonical_scalar(&s) {
            return false;
        }
        let (Some(a), Some(_)) = (key(key_bytes), key(&r)) else {
            return false;
        };
        let h = Sha512::new()
            .updated(&r)
            .updated(key_bytes)
            .updated(message)
            .finalize();
        let k = Scalar::from_bytes(&reduce_wide(&h));
        let sb = &Scalar::from_bytes(&s) * &EdwardsPoint::basepoint();
        let ka = &k * &a;
        (&sb + &(-&ka)).compressed().0 == r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signer as _, SigningKey};
    use sha2::{Digest as _, Sha512};

    /// Canonical encodings of the eight points of small order.
    fn small_order_encodings() -> [[u8; 32]; 8] {
        EIGHT_TORSION.map(|p| p.compress().to_bytes())
    }

    fn challenge(r: &[u8; 32], key: &[u8; 32], m: &[u8]) -> Scalar {
        Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r)
                .chain_update(key)
                .chain_update(m)
                .finalize()
                .into(),
        )
    }

    /// A signature made by hand: `R = [r]B` (or `r_point` as given), `S = r + k·a` for the key
    /// bytes `key` (which need not be `[a]B`).
    fn sign_raw(a: Scalar, key: &[u8; 32], r: Scalar, m: &[u8]) -> [u8; 64] {
        let big_r = curve25519_dalek::EdwardsPoint::mul_base(&r)
            .compress()
            .to_bytes();
        let s = r + challenge(&big_r, key, m) * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&big_r);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    #[test]
    fn scalar_bound_is_exact() {
        assert!(!canonical_scalar(&L));
        let mut below = L;
        below[0] -= 1;
        assert!(canonical_scalar(&below));
        let mut above = L;
        above[0] += 1;
        assert!(!canonical_scalar(&above));
        assert!(canonical_scalar(&[0; 32]));
        assert!(!canonical_scalar(&[0xff; 32]));
    }

    /// The tests' one seeded generator (xorshift64).
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// The bit-serial reduction against curve25519-dalek's, at the edges and at random.
    #[test]
    fn wide_reduction_is_dalek_s() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut cases = std::vec![[0u8; 64], [0xff; 64]];
        let mut l = [0u8; 64];
        l[..32].copy_from_slice(&L);
        cases.push(l);
        l[0] -= 1;
        cases.push(l);
        for _ in 0..2000 {
            let mut h = [0u8; 64];
            h.iter_mut().for_each(|b| *b = next() as u8);
            cases.push(h);
        }
        for h in &cases {
            assert_eq!(
                reduce_wide(h),
                Scalar::from_bytes_mod_order_wide(h).to_bytes(),
                "{h:02x?}"
            );
        }
    }

    #[test]
    fn small_order_keys_are_refused() {
        for e in small_order_encodings() {
            assert!(!valid_key(&e), "{e:02x?}");
        }
    }

    #[test]
    fn non_canonical_keys_are_refused() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        assert!(valid_key(&key));
        // Every y in 0..19 has a second encoding y + p < 2^255: each one is refused (the canonical
        // ones of points of large order among them are accepted).
        let mut accepted = 0;
        for y in 0u8..19 {
            let mut canonical = [0u8; 32];
            canonical[0] = y;
            let mut plus_p = [0xffu8; 32];
            plus_p[0] = 0xed + y;
            plus_p[31] = 0x7f;
            assert!(!valid_key(&plus_p), "y {y} + p");
            accepted += usize::from(valid_key(&canonical));
        }
        assert!(accepted > 0);
    }

    #[test]
    fn signatures_verify_and_mutations_do_not() {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let key = sk.verifying_key().to_bytes();
        let sig = sk.sign(b"message").to_bytes();
        assert!(verify(&key, b"message", &sig));
        assert!(!verify(&key, b"messagf", &sig));
        for bit in [0, 7, 255, 256, 300, 511] {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!verify(&key, b"message", &bad), "bit {bit}");
        }
    }

    /// S + L: the same signature with a non-canonical scalar (the malleability strictness
    /// forbids).
    #[test]
    fn scalar_plus_l_is_refused() {
        let sk = SigningKey::from_bytes(&[3; 32]);
        let key = sk.verifying_key().to_bytes();
        let sig = sk.sign(b"m").to_bytes();
        let mut carry = 0u16;
        let mut mutated = sig;
        for (b, l) in mutated[32..].iter_mut().zip(L) {
            let v = u16::from(*b) + u16::from(l) + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        assert!(verify(&key, b"m", &sig));
        assert!(!verify(&key, b"m", &mutated));
    }

    /// R of small order with `S = k·a`: for the identity the cofactorless equation holds, so
    /// only the small-order check refuses it.
    #[test]
    fn small_order_r_is_refused() {
        let sk = SigningKey::from_bytes(&[5; 32]);
        let key = sk.verifying_key().to_bytes();
        let a = sk.to_scalar();
        for r in small_order_encodings() {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r);
            sig[32..].copy_from_slice((challenge(&r, &key, b"m") * a).as_bytes());
            assert!(!verify(&key, b"m", &sig), "R {r:02x?}");
        }
    }

    /// A key with a torsion component (`[a]B + T8`) is valid (not of small order); a
    /// cofactorless check accepts its holder's signatures exactly when `[k]T8` vanishes,
    /// i.e. `k` is a multiple of 8.
    #[test]
    fn mixed_order_key_is_cofactorless() {
        let sk = SigningKey::from_bytes(&[11; 32]);
        let a = sk.to_scalar();
        let point = CompressedEdwardsY(sk.verifying_key().to_bytes())
            .decompress()
            .unwrap();
        let mixed = (point + EIGHT_TORSION[1]).compress().to_bytes();
        assert!(valid_key(&mixed));
        let (mut accepted, mut refused) = (0, 0);
        for m in 0u8..64 {
            let sig = sign_raw(a, &mixed, Scalar::from(u64::from(m) + 1000), &[m]);
            let mut r = [0u8; 32];
            r.copy_from_slice(&sig[..32]);
            let expected = challenge(&r, &mixed, &[m]).as_bytes()[0] % 8 == 0;
            assert_eq!(verify(&mixed, &[m], &sig), expected, "m {m}");
            if expected {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(accepted > 0 && refused > 0, "{accepted} {refused}");
    }

    /// Both implementations give the same answer on every case above and on random
    /// mutations of signatures, keys and messages.
    #[cfg(feature = "salty")]
    #[test]
    fn both_implementations_agree() {
        let sk = SigningKey::from_bytes(&[13; 32]);
        let good = sk.verifying_key().to_bytes();
        let point = CompressedEdwardsY(good).decompress().unwrap();
        let mut keys = std::vec![good, (point + EIGHT_TORSION[1]).compress().to_bytes()];
        keys.extend(small_order_encodings());
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..8 {
            let mut k = good;
            k[(next() % 32) as usize] ^= 1 << (next() % 8);
            keys.push(k);
        }
        for key in &keys {
            assert_eq!(small::valid_key(key), dalek::valid_key(key), "{key:02x?}");
            for m in 0u8..8 {
                let mut sig = sign_raw(sk.to_scalar(), key, Scalar::from(u64::from(m) + 7), &[m]);
                if m % 2 == 1 {
                    sig[(next() % 64) as usize] ^= 1 << (next() % 8);
                }
                assert_eq!(
                    small::verify(key, &[m], &sig),
                    dalek::verify(key, &[m], &sig),
                    "key {key:02x?} m {m}"
                );
            }
        }
    }
}
