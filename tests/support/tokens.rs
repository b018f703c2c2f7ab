//! Keys and tokens for the tests: key pairs made with the `openssl` CLI in a temp dir, tokens
//! signed by the crate, and the existing shell client's tokens made exactly as it makes them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Runs `openssl args` in `dir` and asserts it succeeded.
pub fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl CLI runs")
        .success();
    assert!(ok, "openssl {args:?} failed");
}

/// An RSA key pair in `dir`: (`<name>.key`, PKCS#8 private PEM; `<name>.pem`, public PEM).
pub fn rsa_key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let algorithm = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
    key_pair(dir, name, &algorithm)
}

/// An EC P-256 key pair in `dir`: (`<name>.key`, PKCS#8 private PEM; `<name>.pem`, public PEM).
pub fn ec_key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let algorithm = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    key_pair(dir, name, &algorithm)
}

fn key_pair(dir: &Path, name: &str, algorithm: &[&str]) -> (PathBuf, PathBuf) {
    let (key, public) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(dir, &[&["genpkey"], algorithm, &["-out", &key]].concat());
    openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
    (dir.join(key), dir.join(public))
}

/// A token signed with `key` for subject `sub`, valid for a minute.
pub fn token(key: &Path, sub: &str) -> String {
    let pem = std::fs::read(key).expect("read key");
    let opts = jitsi_scaler::auth::TokenOptions {
        sub: sub.to_string(),
        ..Default::default()
    };
    jitsi_scaler::auth::sign_token(&pem, &opts).expect("sign")
}

/// A token made exactly as the existing shell client makes it: fixed JSON texts (`sub`
/// scaler, 60 s from `iat`), `openssl dgst -sha256 -sign`, base64url without padding.
pub fn shell_client_token(key: &Path, iat: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"scaler","iat":{iat},"exp":{}}}"#,
        iat + 60
    ));
    let input = format!("{header}.{payload}");
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl dgst");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("openssl output");
    assert!(out.status.success());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(out.stdout))
}

/// Part `i` of a JWT (0: header, 1: claims), decoded.
pub fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// An RSA key pair in its own temp dir, and the `[auth]` table of `serve` that trusts it.
pub struct AuthKeys {
    pub key: PathBuf,
    pub public: PathBuf,
    _dir: tempfile::TempDir,
}

impl AuthKeys {
    /// A fresh RSA pair (`asap.key`, `asap.pem`).
    pub fn rsa() -> AuthKeys {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, public) = rsa_key_pair(dir.path(), "asap");
        AuthKeys {
            key,
            public,
            _dir: dir,
        }
    }

    /// `[auth]` with `public_key_file` = this public key, then `extra` lines.
    pub fn auth_table(&self, extra: &str) -> String {
        format!(
            "[auth]\npublic_key_file = \"{}\"\n{extra}\n",
            self.public.display()
        )
    }

    /// A token signed with this key for subject `sub`.
    pub fn token(&self, sub: &str) -> String {
        token(&self.key, sub)
    }
}
