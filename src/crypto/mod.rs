//! WeCom callback crypto (WXBizMsgCrypt, 企业微信 flavour).
//!
//! Signature: lowercase hex SHA-1 of the byte-sorted concatenation of token,
//! timestamp, nonce and ciphertext. Cipher: AES-256-CBC, IV = first 16 key bytes,
//! PKCS#7 over a 32-byte block (not AES's 16). Plaintext layout: 16 random bytes,
//! u32 big-endian message length, message, receiveid.

use std::fmt;

use aes::Aes256;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use rand::RngCore;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// WeCom pads to 32-byte blocks although AES blocks are 16 bytes.
const PAD_BLOCK: usize = 32;
const RANDOM_PREFIX: usize = 16;
const LENGTH_FIELD: usize = 4;

/// EncodingAESKeys carry non-zero trailing bits in their 43rd character (both
/// official sample keys do), which a strict decoder rejects.
const LENIENT_BASE64: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("callback token must be 1 to 32 letters or digits")]
    TokenInvalid,
    #[error("EncodingAESKey must be exactly 43 characters")]
    EncodingAesKeyLength,
    #[error("EncodingAESKey must be letters and digits only")]
    EncodingAesKeyAlphabet,
}

/// Why a callback could not be opened; each maps to WXBizMsgCrypt's return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("signature mismatch (-40001)")]
    SignatureMismatch,
    #[error("ciphertext is not valid base64 (-40010)")]
    Base64,
    #[error("ciphertext is not a whole number of 32-byte blocks (-40007)")]
    BlockLength,
    #[error("PKCS#7 padding is invalid (-40008)")]
    Padding,
    #[error("decrypted message length is inconsistent (-40008)")]
    MalformedBuffer,
}

/// A decrypted callback: the message bytes and the receiveid that followed them,
/// which the caller checks against the ids legal for the URL called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    pub message: Vec<u8>,
    pub receive_id: String,
}

/// The token and expanded AES key of one callback URL, derived once and reused.
#[derive(Clone)]
pub struct CallbackKeys {
    token: String,
    cipher: Aes256,
    iv: [u8; 16],
    /// Tells two key sets apart without keeping the key itself a second time.
    key_digest: [u8; 32],
}

impl fmt::Debug for CallbackKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackKeys([redacted])")
    }
}

impl CallbackKeys {
    pub fn new(token: &str, encoding_aes_key: &str) -> Result<Self, KeyError> {
        if token.is_empty() || token.len() > 32 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyError::TokenInvalid);
        }
        if encoding_aes_key.len() != 43 {
            return Err(KeyError::EncodingAesKeyLength);
        }
        if !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyError::EncodingAesKeyAlphabet);
        }
        // 43 alphanumeric characters always decode to 32 bytes once padded.
        let key =
            LENIENT_BASE64.decode(format!("{encoding_aes_key}=")).map_err(|_| KeyError::EncodingAesKeyAlphabet)?;
        let cipher = Aes256::new_from_slice(&key).map_err(|_| KeyError::EncodingAesKeyLength)?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key[..16]);
        let key_digest = sha2::Sha256::digest(&key).into();
        Ok(CallbackKeys { token: token.to_owned(), cipher, iv, key_digest })
    }

    /// Whether `token` and `encoding_aes_key` are these keys.
    pub fn matches(&self, token: &secrecy::SecretString, encoding_aes_key: &secrecy::SecretString) -> bool {
        use secrecy::ExposeSecret;
        CallbackKeys::new(token.expose_secret(), encoding_aes_key.expose_secret())
            .is_ok_and(|other| other.token == self.token && other.key_digest == self.key_digest)
    }

    /// `msg_signature` over the strings exactly as sent.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypted];
        parts.sort_unstable();
        let mut sha1 = Sha1::new();
        for part in parts {
            sha1.update(part.as_bytes());
        }
        hex::encode(sha1.finalize())
    }

    pub fn verify_signature(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypted);
        if bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            Ok(())
        } else {
            Err(CryptoError::SignatureMismatch)
        }
    }

    /// Verifies the signature, then decrypts: nothing is decrypted for a forger.
    pub fn open(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<Decrypted, CryptoError> {
        self.verify_signature(signature, timestamp, nonce, encrypted)?;
        self.decrypt(encrypted)
    }

    pub fn decrypt(&self, encrypted: &str) -> Result<Decrypted, CryptoError> {
        let mut buffer = STANDARD.decode(encrypted).map_err(|_| CryptoError::Base64)?;
        if buffer.is_empty() || buffer.len() % PAD_BLOCK != 0 {
            return Err(CryptoError::BlockLength);
        }
        let decryptor = cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv.into());
        let plain = decryptor.decrypt_padded_mut::<NoPadding>(&mut buffer).map_err(|_| CryptoError::BlockLength)?;
        let unpadded = strip_padding(plain)?.len();

        let body = buffer.get(RANDOM_PREFIX..unpadded).ok_or(CryptoError::MalformedBuffer)?;
        let (length, rest) = body.split_at_checked(LENGTH_FIELD).ok_or(CryptoError::MalformedBuffer)?;
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        let (_, receive_id) = rest.split_at_checked(length).ok_or(CryptoError::MalformedBuffer)?;
        let receive_id = std::str::from_utf8(receive_id).map_err(|_| CryptoError::MalformedBuffer)?.to_owned();
        // The message moves to the front of the decrypted buffer rather than into a copy.
        let start = RANDOM_PREFIX + LENGTH_FIELD;
        buffer.copy_within(start..start + length, 0);
        buffer.truncate(length);
        Ok(Decrypted { message: buffer, receive_id })
    }

    /// Encrypts with a fresh random prefix.
    pub fn encrypt(&self, message: &[u8], receive_id: &str) -> String {
        let mut prefix = [0u8; RANDOM_PREFIX];
        rand::rng().fill_bytes(&mut prefix);
        self.encrypt_with_prefix(&prefix, message, receive_id)
    }

    /// Encrypts with a given prefix; CBC with a fixed IV is then deterministic,
    /// which lets tests reproduce WeCom's published ciphertexts byte for byte.
    pub fn encrypt_with_prefix(&self, prefix: &[u8; RANDOM_PREFIX], message: &[u8], receive_id: &str) -> String {
        let length = u32::try_from(message.len()).expect("callback messages are far below 4 GiB");
        let unpadded = RANDOM_PREFIX + LENGTH_FIELD + message.len() + receive_id.len();
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut buffer = Vec::with_capacity(unpadded + pad);
        buffer.extend_from_slice(prefix);
        buffer.extend_from_slice(&length.to_be_bytes());
        buffer.extend_from_slice(message);
        buffer.extend_from_slice(receive_id.as_bytes());
        buffer.resize(unpadded + pad, pad as u8);

        let encryptor = cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv.into());
        let total = buffer.len();
        let encrypted = encryptor
            .encrypt_padded_mut::<NoPadding>(&mut buffer, total)
            .expect("the buffer is padded to whole blocks");
        STANDARD.encode(encrypted)
    }

    /// Encrypts and signs a message: `(msg_signature, ciphertext)`.
    pub fn seal(&self, timestamp: &str, nonce: &str, message: &[u8], receive_id: &str) -> (String, String) {
        let encrypted = self.encrypt(message, receive_id);
        (self.signature(timestamp, nonce, &encrypted), encrypted)
    }
}

/// Removes 32-byte-block PKCS#7 padding, rejecting a pad outside 1..=32 or pad
/// bytes that disagree (the official samples strip blindly).
fn strip_padding(plain: &[u8]) -> Result<&[u8], CryptoError> {
    let pad = usize::from(*plain.last().ok_or(CryptoError::Padding)?);
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(CryptoError::Padding);
    }
    let (data, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|&b| usize::from(b) != pad) {
        return Err(CryptoError::Padding);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../tests/data/wecom_vectors.json")).expect("vectors are JSON")
    }

    fn keys_of(vectors: &Value, set: &str) -> CallbackKeys {
        let set = &vectors["sets"][set];
        CallbackKeys::new(set["token"].as_str().expect("token"), set["encoding_aes_key"].as_str().expect("key"))
            .expect("official keys are accepted")
    }

    fn str_of<'a>(case: &'a Value, field: &str) -> &'a str {
        case[field].as_str().unwrap_or_else(|| panic!("{field} in {}", case["name"]))
    }

    /// The ciphertext a case signed: echostr on GET, `<Encrypt>` on POST.
    fn ciphertext(case: &Value) -> &str {
        case["echostr"].as_str().or(case["encrypt"].as_str()).expect("ciphertext")
    }

    #[test]
    fn every_official_vector_verifies_and_decrypts_to_its_plaintext() {
        let vectors = vectors();
        let cases = vectors["cases"].as_array().expect("cases");
        assert_eq!(cases.len(), 4);
        for case in cases {
            let keys = keys_of(&vectors, str_of(case, "set"));
            let opened = keys
                .open(str_of(case, "msg_signature"), str_of(case, "timestamp"), str_of(case, "nonce"), ciphertext(case))
                .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
            assert_eq!(opened.message, str_of(case, "plaintext").as_bytes(), "{}", case["name"]);
            assert_eq!(opened.receive_id, str_of(case, "receive_id"), "{}", case["name"]);
        }
    }

    #[test]
    fn official_vectors_are_reproduced_byte_for_byte_from_their_random_prefix() {
        let vectors = vectors();
        for case in vectors["cases"].as_array().expect("cases") {
            let Some(prefix) = case["random_prefix"].as_str() else {
                continue;
            };
            let keys = keys_of(&vectors, str_of(case, "set"));
            let prefix: [u8; 16] = prefix.as_bytes().try_into().expect("16-byte prefix");
            let encrypted =
                keys.encrypt_with_prefix(&prefix, str_of(case, "plaintext").as_bytes(), str_of(case, "receive_id"));
            assert_eq!(encrypted, ciphertext(case), "{}", case["name"]);
        }
    }

    #[test]
    fn the_pad_lengths_prove_the_32_byte_block() {
        let vectors = vectors();
        for case in vectors["cases"].as_array().expect("cases") {
            let keys = keys_of(&vectors, str_of(case, "set"));
            let mut buffer = STANDARD.decode(ciphertext(case)).expect("base64");
            let decryptor = cbc::Decryptor::<Aes256>::inner_iv_init(keys.cipher.clone(), &keys.iv.into());
            let plain = decryptor.decrypt_padded_mut::<NoPadding>(&mut buffer).expect("whole blocks");
            assert_eq!(Some(&plain[plain.len() - 1]), case["pad"].as_u64().map(|p| p as u8).as_ref());
        }
    }

    #[test]
    fn the_documented_sorted_concatenation_hashes_to_the_a2_signature() {
        let vectors = vectors();
        let a2 = &vectors["cases"][1];
        let concatenation = format!("{}{}{}{}", "1372623149", "1409659813", "QDG6eK", str_of(a2, "encrypt"));
        assert_eq!(hex::encode(Sha1::digest(concatenation.as_bytes())), str_of(a2, "msg_signature"));
        let keys = keys_of(&vectors, "A");
        assert_eq!(keys.signature("1409659813", "1372623149", str_of(a2, "encrypt")), str_of(a2, "msg_signature"));
    }

    #[test]
    fn the_sort_is_by_bytes_not_by_number() {
        // "9" sorts after "10" as a string; a numeric sort would swap them.
        let keys = CallbackKeys::new("t", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").expect("keys");
        let expected = hex::encode(Sha1::digest(b"109tx"));
        assert_eq!(keys.signature("9", "10", "x"), expected);
    }

    #[test]
    fn strict_base64_rejects_the_official_keys_that_the_lenient_decoder_accepts() {
        let key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C=";
        assert!(STANDARD.decode(key).is_err(), "the official key has non-zero trailing bits");
        assert_eq!(LENIENT_BASE64.decode(key).expect("lenient").len(), 32);
    }

    #[test]
    fn bad_keys_and_tokens_are_refused_with_the_reason() {
        let good = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
        assert_eq!(CallbackKeys::new("", good).err(), Some(KeyError::TokenInvalid));
        assert_eq!(CallbackKeys::new(&"a".repeat(33), good).err(), Some(KeyError::TokenInvalid));
        assert_eq!(CallbackKeys::new("to-ken", good).err(), Some(KeyError::TokenInvalid));
        assert_eq!(CallbackKeys::new("token", &good[..42]).err(), Some(KeyError::EncodingAesKeyLength));
        assert_eq!(CallbackKeys::new("token", &format!("{good}=")).err(), Some(KeyError::EncodingAesKeyLength));
        let slash = format!("{}/", &good[..42]);
        assert_eq!(CallbackKeys::new("token", &slash).err(), Some(KeyError::EncodingAesKeyAlphabet));
        assert!(CallbackKeys::new(&"a".repeat(32), good).is_ok());
    }

    #[test]
    fn a_wrong_signature_is_refused_before_decrypting() {
        let vectors = vectors();
        let keys = keys_of(&vectors, "A");
        let a1 = &vectors["cases"][0];
        let mut signature = str_of(a1, "msg_signature").to_owned();
        signature.replace_range(0..1, "6");
        let opened = keys.open(&signature, str_of(a1, "timestamp"), str_of(a1, "nonce"), "not even base64");
        assert_eq!(opened.err(), Some(CryptoError::SignatureMismatch));
        let uppercase = str_of(a1, "msg_signature").to_uppercase();
        let opened = keys.open(&uppercase, str_of(a1, "timestamp"), str_of(a1, "nonce"), ciphertext(a1));
        assert_eq!(opened.err(), Some(CryptoError::SignatureMismatch));
    }

    #[test]
    fn every_single_flipped_byte_of_the_official_ciphertexts_is_rejected() {
        let vectors = vectors();
        for case in vectors["cases"].as_array().expect("cases") {
            let keys = keys_of(&vectors, str_of(case, "set"));
            let original = STANDARD.decode(ciphertext(case)).expect("base64");
            for at in 0..original.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut raw = original.clone();
                    raw[at] ^= flip;
                    let opened = keys.open(
                        str_of(case, "msg_signature"),
                        str_of(case, "timestamp"),
                        str_of(case, "nonce"),
                        &STANDARD.encode(&raw),
                    );
                    assert_eq!(opened.err(), Some(CryptoError::SignatureMismatch), "{} byte {at}", case["name"]);
                }
            }
        }
    }

    #[test]
    fn malformed_ciphertexts_get_their_own_errors() {
        let keys = CallbackKeys::new("token", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").expect("keys");
        assert_eq!(keys.decrypt("%%%").err(), Some(CryptoError::Base64));
        assert_eq!(keys.decrypt("").err(), Some(CryptoError::BlockLength));
        // 16 bytes: a whole AES block but not a whole WeCom block.
        assert_eq!(keys.decrypt(&STANDARD.encode([0u8; 16])).err(), Some(CryptoError::BlockLength));
    }

    /// Encrypts raw bytes (whole 32-byte blocks) without adding padding.
    fn encrypt_raw(keys: &CallbackKeys, data: &[u8]) -> String {
        let mut buffer = data.to_vec();
        let encryptor = cbc::Encryptor::<Aes256>::inner_iv_init(keys.cipher.clone(), &keys.iv.into());
        let total = buffer.len();
        STANDARD.encode(encryptor.encrypt_padded_mut::<NoPadding>(&mut buffer, total).expect("whole blocks"))
    }

    #[test]
    fn inconsistent_padding_and_lengths_are_rejected() {
        let keys = CallbackKeys::new("token", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").expect("keys");
        let mut zero_pad = [7u8; 64];
        zero_pad[63] = 0;
        assert_eq!(keys.decrypt(&encrypt_raw(&keys, &zero_pad)).err(), Some(CryptoError::Padding));
        let mut huge_pad = [7u8; 64];
        huge_pad[63] = 33;
        assert_eq!(keys.decrypt(&encrypt_raw(&keys, &huge_pad)).err(), Some(CryptoError::Padding));
        let mut mixed_pad = [3u8; 64];
        mixed_pad[62] = 4;
        assert_eq!(keys.decrypt(&encrypt_raw(&keys, &mixed_pad)).err(), Some(CryptoError::Padding));

        // A length field claiming more bytes than were sent.
        let mut too_long = [32u8; 64];
        too_long[16..20].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(keys.decrypt(&encrypt_raw(&keys, &too_long)).err(), Some(CryptoError::MalformedBuffer));
        // Too short to hold the random prefix and the length field.
        let short = [16u8; 32];
        assert_eq!(keys.decrypt(&encrypt_raw(&keys, &short)).err(), Some(CryptoError::MalformedBuffer));
    }

    #[test]
    fn a_message_of_whole_blocks_gets_a_full_block_of_padding() {
        let keys = CallbackKeys::new("token", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").expect("keys");
        // 16 + 4 + 8 + 4 = 32 bytes before padding.
        let encrypted = keys.encrypt_with_prefix(&[b'0'; 16], b"12345678", "abcd");
        assert_eq!(STANDARD.decode(&encrypted).expect("base64").len(), 64);
        assert_eq!(keys.decrypt(&encrypted).expect("round trip").message, b"12345678");
    }

    proptest! {
        #[test]
        fn sealed_messages_open_to_what_was_sealed(
            message in proptest::collection::vec(any::<u8>(), 0..600),
            receive_id in "[A-Za-z0-9_]{0,40}",
            timestamp in "[0-9]{1,12}",
            nonce in "[0-9a-zA-Z]{1,16}",
        ) {
            let keys = CallbackKeys::new("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").expect("keys");
            let (signature, encrypted) = keys.seal(&timestamp, &nonce, &message, &receive_id);
            let opened = keys.open(&signature, &timestamp, &nonce, &encrypted).expect("opens");
            prop_assert_eq!(opened.message, message);
            prop_assert_eq!(opened.receive_id, receive_id);
        }

        #[test]
        fn a_flipped_ciphertext_byte_never_yields_the_original(
            message in proptest::collection::vec(any::<u8>(), 1..200),
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let keys = CallbackKeys::new("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").expect("keys");
            let encrypted = keys.encrypt(&message, "ww1436e0e65a779aee");
            let mut raw = STANDARD.decode(&encrypted).expect("base64");
            let at = position.index(raw.len());
            raw[at] ^= flip;
            let tampered = STANDARD.encode(&raw);
            // The signature covers the ciphertext, so a tampered callback is refused outright.
            let signature = keys.signature("1", "2", &encrypted);
            prop_assert_eq!(keys.open(&signature, "1", "2", &tampered).err(), Some(CryptoError::SignatureMismatch));
            // Decrypting without the signature check never returns the original pair.
            if let Ok(opened) = keys.decrypt(&tampered) {
                prop_assert!(opened.message != message || opened.receive_id != "ww1436e0e65a779aee");
            }
        }
    }
}
