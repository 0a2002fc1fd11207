//! `Verifier::verify` against an independent reference: strip an optional
//! `sha256=` prefix (any case), require exactly 64 hex digits, and compare
//! with an HMAC-SHA256 computed here with `hmac` + `sha2` directly.
//!
//! Half of the inputs derive the header from the real signature (case,
//! prefix, one edited character) so the fuzzer reaches the accepting path.
#![no_main]

use arbitrary::Arbitrary;
use hmac::{Hmac, Mac};
use kendo_webhooks::{sign, Rejection, Secret, Verifier};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

#[derive(Debug, Arbitrary)]
enum Header {
    /// Arbitrary bytes as the header value.
    Raw(Vec<u8>),
    /// The real signature of the body under one of the secrets, reshaped.
    Derived {
        /// Which secret signs: 0 the first, 1 the second, 2+ a third one
        /// the verifier does not know.
        signer: u8,
        /// Uppercase some hex digits (bit i of the mask for digit i % 64).
        upper_mask: u64,
        /// 0: no prefix, 1: `sha256=`, 2: `SHA256=`, 3: `Sha256=`, 4+: raw bytes.
        prefix: u8,
        raw_prefix: Vec<u8>,
        /// Replace the character at this position (mod length) by this byte.
        edit: Option<(u16, u8)>,
        /// Append these bytes.
        suffix: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    second_secret: Vec<u8>,
    body: Vec<u8>,
    header: Header,
}

const FIRST: &[u8] = b"whsec_fuzz_first";
const THIRD: &[u8] = b"whsec_not_configured";

fn hmac(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// What the contract says `verify` answers.
fn reference<'a>(
    secrets: &[(&'a str, &[u8])],
    header: &[u8],
    body: &[u8],
) -> Result<&'a str, Rejection> {
    let digits = match header.get(..7) {
        Some(head) if head.eq_ignore_ascii_case(b"sha256=") => &header[7..],
        _ => header,
    };
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(Rejection::MalformedSignature);
    }
    let tag = hex::decode(digits).expect("64 hex digits decode");
    secrets
        .iter()
        .find(|(_, key)| hmac(key, body)[..] == tag[..])
        .map(|(label, _)| *label)
        .ok_or(Rejection::InvalidSignature)
}

fuzz_target!(|input: Input| {
    let Input {
        second_secret,
        body,
        header,
    } = input;

    // An empty secret must be refused at build time, never silently accepted.
    if second_secret.is_empty() {
        let built = Verifier::new([Secret::new(FIRST), Secret::new(&second_secret)]);
        assert!(built.is_err(), "an empty secret was accepted");
        return;
    }
    let verifier = Verifier::new([
        Secret::new(FIRST).with_label("first"),
        Secret::new(&second_secret).with_label("second"),
    ])
    .expect("two non-empty secrets");
    assert_eq!(verifier.secret_count(), 2);

    let header = match header {
        Header::Raw(bytes) => bytes,
        Header::Derived {
            signer,
            upper_mask,
            prefix,
            raw_prefix,
            edit,
            suffix,
        } => {
            let key = match signer {
                0 => FIRST,
                1 => &second_secret[..],
                _ => THIRD,
            };
            let hex_sig = sign(key, &body);
            assert_eq!(
                hex_sig,
                hex::encode(hmac(key, &body)),
                "sign() is not HMAC-SHA256 hex"
            );
            let mut value: Vec<u8> = match prefix {
                0 => Vec::new(),
                1 => b"sha256=".to_vec(),
                2 => b"SHA256=".to_vec(),
                3 => b"Sha256=".to_vec(),
                _ => raw_prefix,
            };
            value.extend(hex_sig.bytes().enumerate().map(|(i, b)| {
                if upper_mask >> (i % 64) & 1 == 1 {
                    b.to_ascii_uppercase()
                } else {
                    b
                }
            }));
            if let Some((at, byte)) = edit {
                let at = usize::from(at) % value.len();
                value[at] = byte;
            }
            value.extend(suffix);
            value
        }
    };

    let secrets = [("first", FIRST), ("second", &second_secret[..])];
    let expected = reference(&secrets, &header, &body);
    let actual = verifier.verify(&header, &body);
    assert_eq!(
        actual,
        expected,
        "header {:?}",
        String::from_utf8_lossy(&header)
    );
});
