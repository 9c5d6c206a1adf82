//! The decrypt path with the official test key: arbitrary ciphertext (and any
//! text as the Encrypt field) never panics, and whatever decrypts re-encrypts to
//! the same message and receiveid.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use wecom_provider::crypto::CallbackKeys;

fuzz_target!(|data: &[u8]| {
    let keys = CallbackKeys::new("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").expect("official key");
    // As text: most inputs stop at base64 or the block length.
    let _ = keys.decrypt(&String::from_utf8_lossy(data));
    // As ciphertext bytes, whole AES blocks, so the padding and length parsing are reached.
    let whole_blocks = &data[..data.len() - data.len() % 32];
    if let Ok(opened) = keys.decrypt(&STANDARD.encode(whole_blocks)) {
        let sealed = keys.encrypt(&opened.message, &opened.receive_id);
        let again = keys.decrypt(&sealed).expect("what we seal opens");
        assert_eq!(again.message, opened.message);
        assert_eq!(again.receive_id, opened.receive_id);
    }
});
