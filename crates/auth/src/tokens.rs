//! Token files (hashes, names, scopes), loading them, and making new tokens.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::scope::{Scope, ScopeSet};
use crate::server::Principal;

/// The prefix of every token (so a leaked one is recognisable by secret scanners).
const TOKEN_PREFIX: &str = "cvt_";
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// A service's token file (JSON): who may call, by hash.
///
/// ```json
/// {"tokens": [{"name": "admin", "blake3": "<64 hex digits>", "scopes": ["admin"]}]}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub tokens: Vec<TokenRecord>,
}

/// One token: its name (shown in logs and errors, never the token), the blake3 hash of the
/// token in hex, and its scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub name: String,
    pub blake3: String,
    pub scopes: Vec<Scope>,
}

impl TokenFile {
    /// Reads and checks a token file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let refuse = |reason: String| AuthError::TokenFile { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|error| refuse(error.to_string()))?;
        serde_json::from_str(&text).map_err(|error| refuse(error.to_string()))
    }

    /// Writes the file (JSON, owner read/write only), replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let refuse = |reason: String| AuthError::TokenFile { path: path.display().to_string(), reason };
        let text = serde_json::to_string_pretty(self).map_err(|error| refuse(error.to_string()))?;
        write_private(path, text.as_bytes()).map_err(|error| refuse(error.to_string()))
    }
}

/// Writes `bytes` to `path` readable by its owner only, through a temporary file and a rename.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// The tokens a service accepts.
#[derive(Clone)]
pub struct Authenticator {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: hashes are not secrets, but there is no reason to print them.
        let mut names: Vec<&str> = self.by_hash.values().map(Principal::name).collect();
        names.sort_unstable();
        f.debug_struct("Authenticator").field("tokens", &names).finish()
    }
}

impl Authenticator {
    /// The tokens of a token file on disk.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let file = TokenFile::load(path)?;
        Self::new(&file).map_err(|error| match error {
            AuthError::TokenFile { reason, .. } => {
                AuthError::TokenFile { path: path.display().to_string(), reason }
            }
            other => other,
        })
    }

    /// The tokens of `file`; a bad hash, an empty name or scope list, or a name or hash used
    /// twice is refused.
    pub fn new(file: &TokenFile) -> Result<Self, AuthError> {
        let refuse = |reason: String| AuthError::TokenFile { path: "(in memory)".into(), reason };
        let mut by_hash = HashMap::with_capacity(file.tokens.len());
        let mut names = std::collections::HashSet::new();
        for record in &file.tokens {
            if record.name.is_empty() || record.name.len() > 64 {
                return Err(refuse("a token name must be 1 to 64 bytes".into()));
            }
            if !names.insert(record.name.as_str()) {
                return Err(refuse(format!("token name `{}` is used twice", record.name)));
            }
            if record.scopes.is_empty() {
                return Err(refuse(format!("token `{}` has no scopes", record.name)));
            }
            let hash = blake3::Hash::from_hex(record.blake3.as_bytes()).map_err(|_| {
                refuse(format!(
                    "token `{}`: `blake3` must be 64 hex digits (the token's blake3 hash)",
                    record.name
                ))
            })?;
            let principal = Principal::new(&record.name, record.scopes.iter().copied().collect());
            if by_hash.insert(*hash.as_bytes(), principal).is_some() {
                return Err(refuse(format!("token `{}` has the same hash as another token", record.name)));
            }
        }
        Ok(Self { by_hash })
    }

    /// Who holds `token`, if anyone.
    pub fn identify(&self, token: &str) -> Result<Principal, AuthError> {
        self.by_hash.get(blake3::hash(token.as_bytes()).as_bytes()).cloned().ok_or(AuthError::Unknown)
    }

    /// Who sent `header` (the value of `authorization`).
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        self.identify(token)
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when no token is accepted (every call is refused).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// A new token: the secret (give it to the caller once) and the record a token file keeps.
pub struct GeneratedToken {
    pub secret: String,
    pub record: TokenRecord,
}

impl fmt::Debug for GeneratedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedToken").field("secret", &"<redacted>").field("record", &self.record).finish()
    }
}

/// Makes a random token named `name` with `scopes`.
pub fn generate_token(name: &str, scopes: &[Scope]) -> Result<GeneratedToken, AuthError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| AuthError::Random(error.to_string()))?;
    let mut secret = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
    secret.push_str(TOKEN_PREFIX);
    for byte in bytes {
        secret.push(char::from(HEX[usize::from(byte >> 4)]));
        secret.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    let record = TokenRecord {
        name: name.to_owned(),
        blake3: blake3::hash(secret.as_bytes()).to_hex().to_string(),
        scopes: ScopeSet::from_iter(scopes.iter().copied()).iter().collect(),
    };
    Ok(GeneratedToken { secret, record })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(tokens: &[&GeneratedToken]) -> TokenFile {
        TokenFile { tokens: tokens.iter().map(|token| token.record.clone()).collect() }
    }

    #[test]
    fn a_generated_token_is_found_by_its_hash_and_nothing_else_is() {
        let writer = generate_token("writer", &[Scope::EventsWrite]).unwrap();
        let admin = generate_token("admin", &[Scope::Admin]).unwrap();
        assert!(writer.secret.starts_with("cvt_") && writer.secret.len() == 68);
        assert_ne!(writer.secret, admin.secret);
        let auth = Authenticator::new(&file_with(&[&writer, &admin])).unwrap();
        let principal = auth.authenticate(Some(format!("Bearer {}", writer.secret).as_bytes())).unwrap();
        assert_eq!(principal.name(), "writer");
        assert!(principal.scopes().allows(Scope::EventsWrite) && !principal.scopes().allows(Scope::LogRead));
        assert_eq!(
            auth.authenticate(Some(format!("bearer {}", admin.secret).as_bytes())).unwrap().name(),
            "admin"
        );

        assert_eq!(auth.authenticate(None).unwrap_err(), AuthError::Missing);
        assert_eq!(auth.authenticate(Some(writer.secret.as_bytes())).unwrap_err(), AuthError::Malformed);
        assert_eq!(auth.authenticate(Some(b"Basic abc")).unwrap_err(), AuthError::Malformed);
        assert_eq!(auth.authenticate(Some(b"Bearer ")).unwrap_err(), AuthError::Malformed);
        assert_eq!(auth.authenticate(Some(&[0xff, 0xfe])).unwrap_err(), AuthError::Malformed);
        // The hash itself is not a token.
        let hash = writer.record.blake3.clone();
        assert_eq!(
            auth.authenticate(Some(format!("Bearer {hash}").as_bytes())).unwrap_err(),
            AuthError::Unknown
        );
        let mut tampered = writer.secret.clone();
        tampered.pop();
        tampered.push('x');
        assert_eq!(
            auth.authenticate(Some(format!("Bearer {tampered}").as_bytes())).unwrap_err(),
            AuthError::Unknown
        );
    }

    #[test]
    fn bad_token_files_are_refused_with_the_reason() {
        let token = generate_token("a", &[Scope::LogRead]).unwrap();
        let mut twice = file_with(&[&token, &token]);
        let reason = |file: &TokenFile| match Authenticator::new(file).unwrap_err() {
            AuthError::TokenFile { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(&twice).contains("used twice"), "{}", reason(&twice));
        twice.tokens[1].name = "b".into();
        assert!(reason(&twice).contains("same hash"));
        let mut bad = file_with(&[&token]);
        bad.tokens[0].blake3 = "xyz".into();
        assert!(reason(&bad).contains("64 hex digits"));
        bad.tokens[0] = token.record.clone();
        bad.tokens[0].scopes.clear();
        assert!(reason(&bad).contains("no scopes"));
        assert!(
            serde_json::from_str::<TokenFile>(r#"{"tokens":[{"name":"a","blake3":"00","scopes":["root"]}]}"#)
                .unwrap_err()
                .to_string()
                .contains("unknown scope `root`")
        );
    }

    #[test]
    fn token_files_round_trip_on_disk_owner_only_and_never_hold_the_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let token = generate_token("ops", &[Scope::LogRead, Scope::PiiRead]).unwrap();
        file_with(&[&token]).save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token.secret), "the file holds hashes only");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let auth = Authenticator::load(&path).unwrap();
        assert_eq!(auth.identify(&token.secret).unwrap().name(), "ops");
        assert!(!format!("{auth:?}").contains(&token.record.blake3));
        assert!(!format!("{token:?}").contains(&token.secret));
        let missing = Authenticator::load(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(missing, AuthError::TokenFile { ref path, .. } if path.ends_with("nope.json")));
    }
}
