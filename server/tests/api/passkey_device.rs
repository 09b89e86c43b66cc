//! A software passkey for the tests: an ES256 key pair and a discoverable credential for one
//! relying party, answering the server's options as a browser with a platform authenticator
//! does (user present and verified, `none` attestation), in the JSON `PublicKeyCredential`'s
//! `toJSON()` gives. Its counter moves forward at each use, as a hardware key's does.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use p256::ecdsa::{signature::Signer, DerSignature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub struct SoftPasskey {
    key: SigningKey,
    pub cred_id: Vec<u8>,
    origin: String,
    rp_id: String,
    /// The user handle the server gave at registration.
    user_handle: Vec<u8>,
    pub counter: u32,
}

/// A minimal CBOR writer: what an attestation object and a COSE key need.
fn head(major: u8, n: usize, out: &mut Vec<u8>) {
    let major = major << 5;
    match n {
        0..=23 => out.push(major | n as u8),
        24..=255 => out.extend([major | 24, n as u8]),
        _ => {
            out.push(major | 25);
            out.extend((n as u16).to_be_bytes());
        }
    }
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    head(2, b.len(), out);
    out.extend_from_slice(b);
}

fn text(t: &str, out: &mut Vec<u8>) {
    head(3, t.len(), out);
    out.extend_from_slice(t.as_bytes());
}

/// A small integer, positive or negative.
fn int(i: i64, out: &mut Vec<u8>) {
    if i >= 0 {
        head(0, i as usize, out);
    } else {
        head(1, (-1 - i) as usize, out);
    }
}

impl SoftPasskey {
    /// A new key for the site at `origin` (`http://localhost:PORT`).
    pub fn new(origin: &str) -> Self {
        let rp_id = origin
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_default()
            .to_owned();
        Self {
            key: SigningKey::random(&mut rand::thread_rng()),
            cred_id: (0..32).map(|_| rand::random::<u8>()).collect(),
            origin: origin.to_owned(),
            rp_id,
            user_handle: Vec::new(),
            counter: 0,
        }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    fn auth_data(&mut self, attested: bool) -> Vec<u8> {
        let mut data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        // User present, user verified, and (at registration) attested credential data.
        data.push(if attested { 0x45 } else { 0x05 });
        self.counter += 1;
        data.extend(self.counter.to_be_bytes());
        if attested {
            data.extend([0u8; 16]); // AAGUID
            data.extend((self.cred_id.len() as u16).to_be_bytes());
            data.extend_from_slice(&self.cred_id);
            let point = self.key.verifying_key().to_encoded_point(false);
            // COSE_Key: kty EC2, alg ES256, crv P-256, x, y.
            head(5, 5, &mut data);
            int(1, &mut data);
            int(2, &mut data);
            int(3, &mut data);
            int(-7, &mut data);
            int(-1, &mut data);
            int(1, &mut data);
            int(-2, &mut data);
            bytes(point.x().unwrap(), &mut data);
            int(-3, &mut data);
            bytes(point.y().unwrap(), &mut data);
        }
        data
    }

    /// The answer to `navigator.credentials.create` with the server's options (JSON text).
    pub fn register(&mut self, options: &str) -> String {
        let options: Value = serde_json::from_str(options).unwrap();
        let pk = &options["publicKey"];
        assert_eq!(pk["rp"]["id"], self.rp_id.as_str());
        assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
        self.user_handle = B64.decode(pk["user"]["id"].as_str().unwrap()).unwrap();
        let client = self.client_data("webauthn.create", pk["challenge"].as_str().unwrap());
        let auth_data = self.auth_data(true);
        let mut attestation = Vec::new();
        head(5, 3, &mut attestation);
        text("fmt", &mut attestation);
        text("none", &mut attestation);
        text("attStmt", &mut attestation);
        head(5, 0, &mut attestation);
        text("authData", &mut attestation);
        bytes(&auth_data, &mut attestation);
        let id = B64.encode(&self.cred_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "attestationObject": B64.encode(&attestation),
                "clientDataJSON": B64.encode(&client),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        })
        .to_string()
    }

    /// The answer to `navigator.credentials.get` with the server's options (JSON text): an
    /// assertion with this key, naming its user.
    pub fn sign_in(&mut self, options: &str) -> String {
        let options: Value = serde_json::from_str(options).unwrap();
        let pk = &options["publicKey"];
        let client = self.client_data("webauthn.get", pk["challenge"].as_str().unwrap());
        let auth_data = self.auth_data(false);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client));
        let signature: DerSignature = self.key.sign(&signed);
        let id = B64.encode(&self.cred_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "authenticatorData": B64.encode(&auth_data),
                "clientDataJSON": B64.encode(&client),
                "signature": B64.encode(signature.as_bytes()),
                "userHandle": B64.encode(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
        .to_string()
    }
}
