//! # Who signs a record: [`SealingKey`], and the post's fast signer [`PostSigner`]
//!
//! [`seal`](super::seal) and [`sign`](super::sign) take any [`SealingKey`]: an
//! `ed25519_dalek::SigningKey` (central's list key, tests) or a [`PostSigner`], what the post's
//! outbox signs its records with. Ed25519 signatures are deterministic (RFC 8032: the nonce is
//! a hash of the key and the message), so every implementation makes the same 64 bytes for one
//! key and one hash; the tests hold [`PostSigner`] to ed25519-dalek byte for byte.
//!
//! [`PostSigner`] signs with AWS-LC (through `aws-lc-rs`, already in the tree as rustls's
//! crypto provider), whose fixed-base scalar multiplication is s2n-bignum's x86-64 and AArch64
//! assembly: about 6 µs a signature on this project's machine against 14-18 µs for
//! ed25519-dalek 2, whose `mul_base` is most of its signing time (BENCHMARKS.md). Signing is
//! most of the CPU of a durable outbox insert. Should AWS-LC ever refuse a key (it takes any
//! 32-byte seed today), the signer falls back to ed25519-dalek: slower, same signatures.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use ed25519_dalek::{Signer as _, SigningKey};
use zeroize::Zeroize as _;

/// A post's Ed25519 key as [`seal`](super::seal) uses it: the public key it names in each seal,
/// and a signature over a record's hash.
pub trait SealingKey: Sync {
    /// The 32-byte Ed25519 public key.
    fn public(&self) -> [u8; 32];
    /// The 64-byte Ed25519 signature over `hash`.
    fn sign_hash(&self, hash: &[u8; 32]) -> [u8; 64];
}

impl SealingKey for SigningKey {
    fn public(&self) -> [u8; 32] {
        self.verifying_key().to_bytes()
    }

    fn sign_hash(&self, hash: &[u8; 32]) -> [u8; 64] {
        self.sign(hash).to_bytes()
    }
}

/// The post's signing key for its records: AWS-LC's Ed25519, or ed25519-dalek where AWS-LC
/// refused the key (see the module documentation).
pub struct PostSigner {
    dalek: SigningKey,
    aws_lc: Option<Ed25519KeyPair>,
}

impl PostSigner {
    /// The signer for `key`: same public key, same signatures.
    pub fn new(key: &SigningKey) -> Self {
        let public = key.verifying_key().to_bytes();
        let mut seed = key.to_bytes();
        // AWS-LC derives the public key from the seed again and checks it against dalek's.
        let pair = Ed25519KeyPair::from_seed_and_public_key(&seed, &public);
        seed.zeroize();
        let aws_lc = pair
            .ok()
            .filter(|pair| pair.public_key().as_ref() == public.as_slice());
        Self {
            dalek: key.clone(),
            aws_lc,
        }
    }

    /// The same key as ed25519-dalek holds it (for what is not a record: signed lists).
    pub fn signing_key(&self) -> &SigningKey {
        &self.dalek
    }

    /// Whether AWS-LC signs (false: the ed25519-dalek fallback).
    pub fn is_aws_lc(&self) -> bool {
        self.aws_lc.is_some()
    }
}

impl SealingKey for PostSigner {
    fn public(&self) -> [u8; 32] {
        self.dalek.public()
    }

    fn sign_hash(&self, hash: &[u8; 32]) -> [u8; 64] {
        if let Some(pair) = &self.aws_lc {
            // Always 64 bytes for Ed25519; anything else falls through to dalek.
            if let Ok(sig) = <[u8; 64]>::try_from(pair.sign(hash).as_ref()) {
                return sig;
            }
        }
        self.dalek.sign_hash(hash)
    }
}

impl std::fmt::Debug for PostSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("PostSigner")
            .field("public", &super::to_hex(&self.public()))
            .field("aws_lc", &self.is_aws_lc())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signature;
    use proptest::prelude::*;

    proptest! {
        /// Deterministic Ed25519: AWS-LC makes ed25519-dalek's signature, byte for byte, and it
        /// verifies strictly.
        #[test]
        fn post_signer_signs_as_dalek_does(seed in any::<[u8; 32]>(), hash in any::<[u8; 32]>()) {
            let dalek = SigningKey::from_bytes(&seed);
            let signer = PostSigner::new(&dalek);
            prop_assert!(signer.is_aws_lc());
            prop_assert_eq!(signer.public(), dalek.public());
            let sig = signer.sign_hash(&hash);
            prop_assert_eq!(sig, dalek.sign_hash(&hash));
            prop_assert!(dalek
                .verifying_key()
                .verify_strict(&hash, &Signature::from_bytes(&sig))
                .is_ok());
        }
    }

    #[test]
    fn debug_shows_the_public_key_only() {
        let dalek = SigningKey::from_bytes(&[7; 32]);
        let text = format!("{:?}", PostSigner::new(&dalek));
        assert!(
            text.contains(&super::super::to_hex(&dalek.public())),
            "{text}"
        );
        assert!(!text.contains(&super::super::to_hex(&[7; 32])), "{text}");
    }
}
