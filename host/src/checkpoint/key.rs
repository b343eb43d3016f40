//! Checkpoint keys in the C2SP signed-note encodings: a verifier key
//! `NAME+KEYID+BASE64(0x01 ‖ public key)` and a signer key
//! `PRIVATE+KEY+NAME+KEYID+BASE64(0x01 ‖ seed)`, where KEYID is eight hex digits, the first
//! four bytes of sha256(NAME ‖ "\n" ‖ 0x01 ‖ public key), and 0x01 names Ed25519.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// The signature algorithm byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// A key name: not empty, no whitespace and no `+` (the encodings' separator).
fn check_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(KeyError(format!(
            "the key name {name:?} must be non-empty, without spaces or `+`"
        )));
    }
    Ok(())
}

/// The key id of `name` and `public`: names and keys a signature line points to.
fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut digest = Sha256::new();
    digest.update(name.as_bytes());
    digest.update(b"\n");
    digest.update([ED25519]);
    digest.update(public.as_bytes());
    let digest = digest.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The 32 bytes after the algorithm byte of an encoded key.
fn key_bytes(encoded: &str, what: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| KeyError(format!("the {what} is not base64")))?;
    match bytes.split_first() {
        Some((&ED25519, rest)) => rest
            .try_into()
            .map_err(|_| KeyError(format!("the {what} is not 32 bytes after its algorithm"))),
        _ => Err(KeyError(format!("the {what} is not an Ed25519 key (0x01)"))),
    }
}

/// Eight hex digits.
fn parse_id(text: &str) -> Result<u32, KeyError> {
    if text.len() != 8 {
        return Err(KeyError("the key id is not eight hex digits".into()));
    }
    u32::from_str_radix(text, 16).map_err(|_| KeyError("the key id is not hex".into()))
}

/// A key that signs checkpoints. Its `Debug` shows the name and id only.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerKey({} {:08x})", self.name, self.id())
    }
}

impl SignerKey {
    /// A new random key named `name`.
    ///
    /// # Errors
    ///
    /// When the name has spaces or `+`.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&rand::random()),
        })
    }

    /// Reads `PRIVATE+KEY+NAME+KEYID+BASE64`.
    ///
    /// # Errors
    ///
    /// A sentence saying which part is wrong; the key itself is never in it.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(|| {
            KeyError(
                "a signer key starts with PRIVATE+KEY+ (see `dragoman checkpoint keygen`)".into(),
            )
        })?;
        let [name, id, key] = parts(rest)?;
        check_name(name)?;
        let key = SigningKey::from_bytes(&key_bytes(key, "signer key")?);
        let signer = Self {
            name: name.to_owned(),
            key,
        };
        if parse_id(id)? != signer.id() {
            return Err(KeyError(
                "the signer key's id does not match its name and key".into(),
            ));
        }
        Ok(signer)
    }

    /// The key's name: the checkpoints' origin.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn id(&self) -> u32 {
        key_id(&self.name, &self.key.verifying_key())
    }

    /// The key that checks its signatures.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id(),
            key: self.key.verifying_key(),
        }
    }

    /// The private encoding, for the one place that stores it.
    pub fn expose(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id(),
            STANDARD.encode(bytes)
        )
    }

    /// The signature line of `text`: `— NAME BASE64(KEYID ‖ SIGNATURE)`.
    pub(crate) fn sign_line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut bytes = self.id().to_be_bytes().to_vec();
        bytes.extend_from_slice(&signature.to_bytes());
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(bytes))
    }
}

/// A key that checks checkpoint signatures, as `NAME+KEYID+BASE64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.id,
            STANDARD.encode(bytes)
        )
    }
}

impl VerifierKey {
    /// Reads `NAME+KEYID+BASE64`.
    ///
    /// # Errors
    ///
    /// A sentence saying which part is wrong.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let [name, id, key] = parts(text.trim())?;
        check_name(name)?;
        let key = VerifyingKey::from_bytes(&key_bytes(key, "verifier key")?)
            .map_err(|_| KeyError("the verifier key is not a valid Ed25519 point".into()))?;
        let id = parse_id(id)?;
        if id != key_id(name, &key) {
            return Err(KeyError(
                "the verifier key's id does not match its name and key".into(),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `line`'s part after the name (`BASE64(KEYID ‖ SIGNATURE)`) is this key's
    /// valid signature of `text`: `None` when the signature is another key's.
    pub(crate) fn verify(&self, signature: &str, text: &str) -> Option<bool> {
        let bytes = STANDARD.decode(signature).ok()?;
        let (id, signature) = bytes.split_at_checked(4)?;
        if u32::from_be_bytes(id.try_into().ok()?) != self.id {
            return None;
        }
        let Ok(signature) = Signature::from_slice(signature) else {
            return Some(false);
        };
        Some(self.key.verify_strict(text.as_bytes(), &signature).is_ok())
    }
}

/// The three parts of a key after its prefix: the name and id end at a `+`; the base64 key
/// may hold `+` itself.
fn parts(text: &str) -> Result<[&str; 3], KeyError> {
    let parts: Vec<&str> = text.splitn(3, '+').collect();
    parts
        .try_into()
        .map_err(|_| KeyError("a key is NAME+KEYID+BASE64".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_encodings() {
        // Enough keys that some hold `+` in their base64.
        for _ in 0..64 {
            let signer = SignerKey::generate("n").unwrap();
            let verifier = VerifierKey::parse(&signer.verifier().to_string()).unwrap();
            assert_eq!(
                verifier,
                SignerKey::parse(&signer.expose()).unwrap().verifier()
            );
        }
        let signer = SignerKey::generate("dragoman.example/audit").unwrap();
        let again = SignerKey::parse(&signer.expose()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        let verifier = VerifierKey::parse(&signer.verifier().to_string()).unwrap();
        assert_eq!(verifier, signer.verifier());
        assert!(!format!("{signer:?}").contains(&signer.expose()[20..]));
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_and_text() {
        let signer = SignerKey::generate("a").unwrap();
        let line = signer.sign_line("text\n");
        let signature = line.trim_end().rsplit(' ').next().unwrap();
        let verifier = signer.verifier();
        assert_eq!(verifier.verify(signature, "text\n"), Some(true));
        assert_eq!(verifier.verify(signature, "texT\n"), Some(false));
        let other = SignerKey::generate("a").unwrap().verifier();
        assert_eq!(other.verify(signature, "text\n"), None, "another key's id");
    }

    #[test]
    fn malformed_keys_say_what_is_wrong() {
        let signer = SignerKey::generate("n").unwrap();
        let text = signer.verifier().to_string();
        let wrong_id = format!("n+00000000+{}", text.splitn(3, '+').nth(2).unwrap());
        assert!(VerifierKey::parse(&wrong_id).unwrap_err().0.contains("id"));
        assert!(
            VerifierKey::parse("n+1")
                .unwrap_err()
                .0
                .contains("NAME+KEYID")
        );
        assert!(
            SignerKey::parse(&text)
                .unwrap_err()
                .0
                .contains("PRIVATE+KEY+")
        );
        assert!(SignerKey::generate("a b").is_err());
    }
}
