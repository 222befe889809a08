//! Ed25519 batch verification with one term per key.
//!
//! The equation is ed25519-dalek's `verify_batch`: with a random 128-bit `z_i` per signature,
//! `-(Σ z_i·s_i)·B + Σ z_i·R_i + Σ (z_i·k_i)·A_i` is the identity (cofactorless), where
//! `k_i = SHA-512(R_i ‖ A_i ‖ M_i) mod ℓ`. ed25519-dalek puts one `A` term per signature into the
//! multiscalar multiplication; the records of one MQTT message all carry the post's one key, so
//! here the `A` terms of one key are summed first (`Σ_i (z_i·k_i)·A = (Σ_i z_i·k_i)·A`, the same
//! point, the same equation): `n + 1 + keys` points instead of `2n + 1`. (ed25519-zebra's batch
//! verifier does the same.)
//!
//! The `z_i` are drawn as ed25519-dalek draws them, deterministically from everything verified:
//! SHA-512 over every signature's `k_i` input and `s_i` seeds them, so that whoever makes the
//! signatures cannot know them before making them all. Like `verify_batch`, this checks only
//! the equation; the strict pre-checks (weak keys, `R` of small order or not canonical) are
//! the caller's ([`super::open_many`]).

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha512};

/// Whether every `signatures[i]` is `verifying_keys[i]`'s over `messages[i]`, checked together
/// (false when the slices differ in length, or a signature's `s` is not canonical or its `R`
/// not a point).
pub(super) fn verify(
    messages: &[&[u8]],
    signatures: &[Signature],
    verifying_keys: &[VerifyingKey],
) -> bool {
    let n = signatures.len();
    if messages.len() != n || verifying_keys.len() != n {
        return false;
    }
    // k_i = H(R ‖ A ‖ M), and the seed of the z_i from all of them and every s.
    let mut seed = Sha512::new();
    seed.update(b"bcp-edge ed25519 batch verification, one term per key");
    let mut ks = Vec::with_capacity(n);
    for ((m, sig), vk) in messages.iter().zip(signatures).zip(verifying_keys) {
        let hram: [u8; 64] = Sha512::new()
            .chain_update(sig.r_bytes())
            .chain_update(vk.as_bytes())
            .chain_update(m)
            .finalize()
            .into();
        seed.update(hram);
        seed.update(sig.s_bytes());
        ks.push(Scalar::from_bytes_mod_order_wide(&hram));
    }
    let seed: [u8; 64] = seed.finalize().into();

    let mut b_coefficient = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(n + 2);
    let mut points = Vec::with_capacity(n + 2);
    // One (key, coefficient) per distinct key, in the order first seen.
    let mut keys: Vec<([u8; 32], EdwardsPoint, Scalar)> = Vec::new();
    scalars.push(Scalar::ZERO); // B's, set below
    points.push(ED25519_BASEPOINT_POINT);
    for (i, ((sig, vk), k)) in signatures.iter().zip(verifying_keys).zip(ks).enumerate() {
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes())) else {
            return false;
        };
        let Some(r) = CompressedEdwardsY(*sig.r_bytes()).decompress() else {
            return false;
        };
        let z = z_of(&seed, i);
        b_coefficient += z * s;
        scalars.push(z);
        points.push(r);
        let zk = z * k;
        match keys.iter_mut().find(|(bytes, _, _)| bytes == vk.as_bytes()) {
            Some((_, _, sum)) => *sum += zk,
            None => keys.push((vk.to_bytes(), vk.to_edwards(), zk)),
        }
    }
    scalars[0] = -b_coefficient;
    for (_, a, sum) in keys {
        scalars.push(sum);
        points.push(a);
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The `i`-th random coefficient: 128 bits of SHA-512(seed ‖ i).
fn z_of(seed: &[u8; 64], i: usize) -> Scalar {
    let h = Sha512::new()
        .chain_update(seed)
        .chain_update((i as u64).to_le_bytes())
        .finalize();
    let mut z = [0u8; 32];
    z[..16].copy_from_slice(&h[..16]);
    Scalar::from_bytes_mod_order(z)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use proptest::prelude::*;

    fn signed(keys: &[SigningKey], n: usize) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let key = &keys[i % keys.len()];
            let m = format!("record {i}").into_bytes();
            out.1.push(key.sign(&m));
            out.0.push(m);
            out.2.push(key.verifying_key());
        }
        out
    }

    fn both(m: &[Vec<u8>], s: &[Signature], k: &[VerifyingKey]) -> (bool, bool) {
        let m: Vec<&[u8]> = m.iter().map(Vec::as_slice).collect();
        (
            verify(&m, s, k),
            ed25519_dalek::verify_batch(&m, s, k).is_ok(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Good batches of one to three keys pass; any one record altered (its message, its
        /// signature's `s` or `R`, or signed by another key) fails, as ed25519-dalek's
        /// `verify_batch` says.
        #[test]
        fn agrees_with_ed25519_dalek(
            seeds in proptest::collection::vec(any::<[u8; 32]>(), 1..=3),
            n in 1usize..40,
            which in any::<prop::sample::Index>(),
            how in 0u8..4,
        ) {
            let keys: Vec<SigningKey> = seeds.iter().map(SigningKey::from_bytes).collect();
            let (mut m, mut s, mut k) = signed(&keys, n);
            prop_assert_eq!(both(&m, &s, &k), (true, true));
            let i = which.index(n);
            match how {
                0 => m[i].push(b'!'),
                1 => {
                    let mut b = s[i].to_bytes();
                    b[40] ^= 1; // in s, still canonical (its top bits are clear)
                    s[i] = Signature::from_bytes(&b);
                }
                2 => {
                    let mut b = s[i].to_bytes();
                    b[3] ^= 1; // in R
                    s[i] = Signature::from_bytes(&b);
                }
                _ => {
                    let other = SigningKey::from_bytes(&[7; 32]);
                    s[i] = other.sign(&m[i]);
                    k[i] = keys[i % keys.len()].verifying_key();
                }
            }
            prop_assert_eq!(both(&m, &s, &k), (false, false));
        }
    }

    #[test]
    fn slices_of_different_lengths_are_refused() {
        let keys = [SigningKey::from_bytes(&[1; 32])];
        let (m, s, k) = signed(&keys, 3);
        let m: Vec<&[u8]> = m.iter().map(Vec::as_slice).collect();
        assert!(verify(&m, &s, &k));
        assert!(!verify(&m[..2], &s, &k));
        assert!(!verify(&m, &s, &k[..2]));
    }
}
