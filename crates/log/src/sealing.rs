//! Personal data at rest (DESIGN §7): sealed per customer, erasable by deleting one key.
//!
//! - Each customer gets a random 256-bit **data key** the first time one of their events holds
//!   personal data. It is stored in the `keys` column family **wrapped** (XChaCha20-Poly1305)
//!   under the log's **master key**, with the customer id as associated data (a wrapped key
//!   moved to another customer does not open).
//! - An event's personal fields ([`covenant_domain::personal`]) are taken out before the record
//!   is encoded, and stored after it sealed with the data key (XChaCha20-Poly1305, a
//!   192-bit nonce: a random per-process prefix and a counter; the customer and event ids as
//!   associated data). What the record holds in
//!   clear is exactly the public event.
//! - Erasing a customer deletes their data key in the same atomic batch as the `CustomerErased`
//!   event, then flushes and compacts so that no live file holds the wrapped key any more: the
//!   sealed personal data can never be opened again, while the events, counts and standing stay.
//! - The master key is a 32-byte file (owner-only) outside the database directory, so a backup
//!   (a checkpoint of the database) never carries it. It is created with a new log; a log that
//!   holds data keys refuses to open without it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use chacha20::cipher::consts::U10;
use chacha20::cipher::generic_array::GenericArray;
use covenant_domain::EventId;
use covenant_domain::personal::PersonalData;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{LogError, Result};

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;
/// Bytes of a Poly1305 tag.
const TAG_LEN: usize = 16;
/// Associated-data prefix of wrapped data keys.
const WRAP_CONTEXT: &[u8] = b"covenant/data-key/v1/";
/// Associated-data prefix of sealed personal data.
const SEAL_CONTEXT: &[u8] = b"covenant/personal-data/v1/";

fn sealing_error(reason: impl Into<String>) -> LogError {
    LogError::Sealing(reason.into())
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|error| sealing_error(format!("the system's random source failed: {error}")))?;
    Ok(bytes)
}

/// A nonce never used before in this process: 16 random bytes drawn once per process, then a
/// 64-bit counter. (Random 192-bit nonces would do as well; this saves a system call per sealed
/// event. A (key, nonce) pair cannot repeat: the prefix is new in every process and the counter
/// never wraps in practice.)
fn next_nonce() -> Result<[u8; NONCE_LEN]> {
    static PREFIX: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = match PREFIX.get() {
        Some(prefix) => *prefix,
        None => {
            let drawn: [u8; 16] = random()?;
            *PREFIX.get_or_init(|| drawn)
        }
    };
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..16].copy_from_slice(&prefix);
    nonce[16..].copy_from_slice(&count.to_be_bytes());
    Ok(nonce)
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03): HChaCha20 of the key and the nonce's first
/// 16 bytes gives a subkey, with which ChaCha20-Poly1305 (RFC 8439, ring's implementation) seals
/// under the nonce `[0; 4] ‖ nonce[16..24]`.
///
/// The bytes are exactly those of the `chacha20poly1305` crate's `XChaCha20Poly1305`, which
/// sealed the first records (a test checks both ways). ring is used because that crate's AVX2
/// Poly1305 pays a set-up of ~1.3 µs per message: on the short personal fields of one event,
/// sealing took ~1.8 µs there and ~0.4 µs here, on the log writer's thread (PERFORMANCE.md).
#[derive(Clone)]
struct XChaCha20Poly1305 {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// The subkey of the nonce prefix this process seals with, derived on the first seal and
    /// shared by the clones: every nonce [`next_nonce`] draws has that prefix, so HChaCha20 runs
    /// once per key, not once per sealed event (it was ~20% of sealing an event's personal
    /// fields on the writer's thread).
    sealing: Arc<OnceLock<([u8; 16], LessSafeKey)>>,
}

impl XChaCha20Poly1305 {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        Self { key: Zeroizing::new(*key), sealing: Arc::default() }
    }

    /// [`Self::subkey`] of `nonce`, from the cache when its prefix is the cached one.
    fn sealing_subkey(&self, nonce: &[u8; NONCE_LEN]) -> Result<(LessSafeKey, Nonce)> {
        let prefix = &nonce[..16];
        if let Some((cached_prefix, key)) = self.sealing.get()
            && cached_prefix.as_slice() == prefix
        {
            return Ok((key.clone(), Self::inner_nonce(nonce)));
        }
        let (key, inner) = self.subkey(nonce)?;
        let mut cached_prefix = [0u8; 16];
        cached_prefix.copy_from_slice(prefix);
        // Another thread may have set it meanwhile: to the same prefix's key.
        let _ = self.sealing.set((cached_prefix, key.clone()));
        Ok((key, inner))
    }

    /// The ChaCha20-Poly1305 nonce of an XChaCha20 nonce: `[0; 4] ‖ nonce[16..24]`.
    fn inner_nonce(nonce: &[u8; NONCE_LEN]) -> Nonce {
        let mut inner = [0u8; 12];
        inner[4..].copy_from_slice(&nonce[16..]);
        Nonce::assume_unique_for_key(inner)
    }

    /// The ChaCha20-Poly1305 key and nonce that `nonce` selects.
    fn subkey(&self, nonce: &[u8; NONCE_LEN]) -> Result<(LessSafeKey, Nonce)> {
        let mut subkey = chacha20::hchacha::<U10>(
            GenericArray::from_slice(self.key.as_slice()),
            GenericArray::from_slice(&nonce[..16]),
        );
        let key = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice());
        subkey.as_mut_slice().zeroize();
        let key = key.map_err(|_| sealing_error("the ChaCha20-Poly1305 subkey was refused"))?;
        Ok((LessSafeKey::new(key), Self::inner_nonce(nonce)))
    }

    /// Encrypts `in_out` in place; returns the tag.
    fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<Tag> {
        let (key, inner) = self.sealing_subkey(nonce)?;
        key.seal_in_place_separate_tag(inner, Aad::from(aad), in_out)
            .map_err(|_| sealing_error("encryption failed"))
    }

    /// Opens `nonce ‖ ciphertext ‖ tag`; `None` when it does not authenticate.
    fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).ok()?;
        let (key, inner) = self.subkey(&nonce).ok()?;
        let mut plain = body.to_vec();
        let plain_len = key.open_in_place(inner, Aad::from(aad), &mut plain).ok()?.len();
        plain.truncate(plain_len);
        Some(plain)
    }
}

/// `nonce ‖ ciphertext ‖ tag` of `message`.
fn seal_with(cipher: &XChaCha20Poly1305, message: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let nonce = next_nonce()?;
    let mut out = Vec::with_capacity(NONCE_LEN + message.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(message);
    let tag = cipher.seal_in_place(&nonce, aad, &mut out[NONCE_LEN..])?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open_with(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    cipher.open(sealed, aad)
}

fn aad(context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(context.len() + parts.iter().map(|part| 4 + part.len()).sum::<usize>());
    aad.extend_from_slice(context);
    for part in parts {
        // Length-prefixed, so the parts cannot be shifted into one another.
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

/// Where the master key of the log at `log_path` lives by default: `master.key` beside the
/// database directory (not inside it, so checkpoints and `covenant restore` leave it alone).
pub fn default_master_key_path(log_path: &Path) -> PathBuf {
    match log_path.parent() {
        Some(parent) => parent.join("master.key"),
        None => PathBuf::from("master.key"),
    }
}

/// The key that wraps every customer's data key.
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    /// Reads the key at `path`; `None` when there is no file.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LogError::Io {
                    action: "read the master key",
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
            LogError::Config(format!(
                "the master key {} must be exactly {KEY_LEN} bytes, not {}",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(Some(Self::from_bytes(&key)))
    }

    /// Makes a new random key and writes it to `path` (owner read/write only). The key is written
    /// and fsynced under a temporary name, then moved to `path` only if no file is there, so the
    /// file is never seen half-written; when another process created `path` meanwhile (two logs
    /// beside each other opened at once), its key is loaded and returned instead.
    pub fn create(path: &Path) -> Result<Self> {
        use std::io::Write;
        let key: [u8; KEY_LEN] = random()?;
        let io = |source| LogError::Io {
            action: "create the master key",
            path: path.display().to_string(),
            source,
        };
        let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io)?;
        // tempfile's draft is owner-only (0600) and is removed if anything below fails.
        let mut draft = tempfile::NamedTempFile::new_in(parent).map_err(io)?;
        draft.write_all(&key).map_err(io)?;
        draft.as_file().sync_all().map_err(io)?;
        match draft.persist_noclobber(path) {
            Ok(_) => {
                std::fs::File::open(parent).and_then(|dir| dir.sync_all()).map_err(io)?;
                Ok(Self::from_bytes(&key))
            }
            Err(refused) if refused.error.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path)?
                .ok_or_else(|| io(std::io::Error::other("the master key vanished while it was created"))),
            Err(refused) => Err(io(refused.error)),
        }
    }

    fn from_bytes(key: &[u8; KEY_LEN]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(key) }
    }

    /// A new data key for `customer_id`, and its wrapped form to store.
    pub(crate) fn new_data_key(&self, customer_id: &str) -> Result<(DataKey, Vec<u8>)> {
        let key: [u8; KEY_LEN] = random()?;
        let wrapped = seal_with(&self.cipher, &key, &aad(WRAP_CONTEXT, &[customer_id.as_bytes()]))?;
        Ok((DataKey::from_bytes(&key), wrapped))
    }

    /// Opens a stored (wrapped) data key of `customer_id`.
    pub(crate) fn unwrap(&self, customer_id: &str, wrapped: &[u8]) -> Result<DataKey> {
        let key = open_with(&self.cipher, wrapped, &aad(WRAP_CONTEXT, &[customer_id.as_bytes()])).ok_or_else(|| {
            sealing_error(format!(
                "the data key of customer {customer_id} does not open with this master key (a wrong master key, or a tampered key)"
            ))
        })?;
        let key = <[u8; KEY_LEN]>::try_from(key.as_slice()).map_err(|_| {
            sealing_error(format!("the data key of customer {customer_id} has the wrong length"))
        })?;
        Ok(DataKey::from_bytes(&key))
    }
}

/// At least the postcard length of `data` (each varint counted at its most bytes), so sealing
/// never grows its buffer.
fn encoded_len_bound(data: &PersonalData) -> usize {
    const VARINT: usize = 10;
    let texts: usize = data.texts.iter().map(|text| VARINT + text.as_str().len()).sum();
    let contacts: usize = data
        .contact_points
        .iter()
        .map(|list| VARINT + list.iter().map(|point| VARINT + 1 + point.value.as_str().len()).sum::<usize>())
        .sum();
    2 * VARINT + texts + contacts
}

/// One customer's data key.
#[derive(Clone)]
pub(crate) struct DataKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<secret>)")
    }
}

impl DataKey {
    fn from_bytes(key: &[u8; KEY_LEN]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(key) }
    }

    /// Seals the personal data of event `event_id` of `customer_id`.
    pub(crate) fn seal(&self, customer_id: &str, event_id: &EventId, data: &PersonalData) -> Result<Vec<u8>> {
        // One buffer: nonce ‖ plaintext, encrypted in place, then the tag.
        let nonce = next_nonce()?;
        let mut out = Vec::with_capacity(NONCE_LEN + encoded_len_bound(data) + TAG_LEN);
        out.extend_from_slice(&nonce);
        let mut out = postcard::to_extend(data, out)
            .map_err(|error| sealing_error(format!("encode personal data: {error}")))?;
        let aad = aad(SEAL_CONTEXT, &[customer_id.as_bytes(), event_id.0.as_bytes()]);
        let tag = self.cipher.seal_in_place(&nonce, &aad, &mut out[NONCE_LEN..])?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`Self::seal`] sealed for the same customer and event.
    pub(crate) fn open(&self, customer_id: &str, event_id: &EventId, sealed: &[u8]) -> Result<PersonalData> {
        let plain = open_with(
            &self.cipher,
            sealed,
            &aad(SEAL_CONTEXT, &[customer_id.as_bytes(), event_id.0.as_bytes()]),
        )
        .ok_or_else(|| {
            sealing_error(format!(
                "the personal data of event {event_id} does not open with its customer's key"
            ))
        })?;
        postcard::from_bytes(&plain)
            .map_err(|error| sealing_error(format!("decode personal data of event {event_id}: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use covenant_domain::Text;
    use covenant_domain::events::{ContactKind, ContactPoint};

    use super::*;

    fn data() -> PersonalData {
        PersonalData {
            texts: vec![Text::new("name", "Grace Hopper", 256).unwrap()],
            contact_points: vec![vec![]],
        }
    }

    #[test]
    fn master_keys_created_at_once_at_one_path_are_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let keys: Vec<MasterKey> = std::thread::scope(|scope| {
            let creators: Vec<_> =
                (0..8).map(|_| scope.spawn(|| MasterKey::create(&path).unwrap())).collect();
            creators.into_iter().map(|creator| creator.join().unwrap()).collect()
        });
        // Every creator holds the key in the file: what one wraps, any other unwraps.
        let stored = MasterKey::load(&path).unwrap().unwrap();
        let (data_key, wrapped) = stored.new_data_key("ann").unwrap();
        let event = EventId::new_v7();
        let sealed = data_key.seal("ann", &event, &data()).unwrap();
        for key in &keys {
            // A data key wrapped under another master key does not unwrap (the AEAD's tag).
            let unwrapped = key.unwrap("ann", &wrapped).unwrap();
            assert!(unwrapped.open("ann", &event, &sealed).is_ok());
        }
        let only_the_key: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(only_the_key, ["master.key"], "no draft left behind");
    }

    #[test]
    fn sealed_data_opens_only_with_its_key_customer_and_event() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
        let (key, wrapped) = master.new_data_key("c-1").unwrap();
        let event = EventId::new_v7();
        let sealed = key.seal("c-1", &event, &data()).unwrap();
        assert!(!sealed.windows(12).any(|window| window == b"Grace Hopper"), "sealed, not in clear");
        assert_eq!(key.open("c-1", &event, &sealed).unwrap(), data());
        assert!(key.open("c-2", &event, &sealed).is_err(), "another customer's event");
        assert!(key.open("c-1", &EventId::new_v7(), &sealed).is_err(), "another event");
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(key.open("c-1", &event, &flipped).is_err(), "tampered");
        assert!(key.open("c-1", &event, &sealed[..10]).is_err(), "truncated");
        // The wrapped key opens for its customer under this master key only.
        let unwrapped = master.unwrap("c-1", &wrapped).unwrap();
        assert_eq!(unwrapped.open("c-1", &event, &sealed).unwrap(), data());
        assert!(master.unwrap("c-2", &wrapped).is_err());
        let other = MasterKey::create(&dir.path().join("other.key")).unwrap();
        assert!(other.unwrap("c-1", &wrapped).is_err());
        let (another, _) = master.new_data_key("c-1").unwrap();
        assert!(another.open("c-1", &event, &sealed).is_err(), "a new key for the same customer");
    }

    #[test]
    fn sealing_is_byte_for_byte_the_xchacha20poly1305_of_the_rustcrypto_crate() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        // Records sealed before the switch to ring open, and new ones open with the crate.
        let reference = chacha20poly1305::XChaCha20Poly1305::new(&[7u8; KEY_LEN].into());
        let ours = XChaCha20Poly1305::new(&[7u8; KEY_LEN]);
        for length in [0, 1, 15, 16, 17, 63, 64, 65, 200, 1000] {
            let message: Vec<u8> = (0..length).map(|byte| (byte * 31 % 251) as u8).collect();
            let aad = format!("aad of {length}");
            let sealed = seal_with(&ours, &message, aad.as_bytes()).unwrap();
            let (nonce, body) = sealed.split_at(NONCE_LEN);
            let expected =
                reference.encrypt(nonce.into(), Payload { msg: &message, aad: aad.as_bytes() }).unwrap();
            assert_eq!(body, expected.as_slice(), "length {length}");
            assert_eq!(
                reference.decrypt(nonce.into(), Payload { msg: body, aad: aad.as_bytes() }).unwrap(),
                message
            );
            let mut from_reference = nonce.to_vec();
            from_reference.extend_from_slice(&expected);
            assert_eq!(open_with(&ours, &from_reference, aad.as_bytes()).unwrap(), message);
            assert!(open_with(&ours, &from_reference, b"other aad").is_none());
            assert!(open_with(&ours, &from_reference[..from_reference.len() - 1], aad.as_bytes()).is_none());
        }
        assert!(open_with(&ours, &[0u8; NONCE_LEN + TAG_LEN - 1], b"").is_none(), "too short");
    }

    #[test]
    fn the_buffer_bound_holds_the_encoded_personal_data() {
        let long = "é".repeat(2000);
        let samples = [
            PersonalData::default(),
            data(),
            PersonalData {
                texts: vec![
                    Text::new("summary", long.as_str(), 4096).unwrap(),
                    Text::new("name", "", 256).unwrap(),
                ],
                contact_points: vec![
                    vec![],
                    (0..40)
                        .map(|index| ContactPoint {
                            kind: ContactKind::Email,
                            value: Text::new("email", format!("person-{index}@example.com"), 256).unwrap(),
                        })
                        .collect(),
                ],
            },
        ];
        for sample in samples {
            let encoded = postcard::to_allocvec(&sample).unwrap().len();
            assert!(encoded <= encoded_len_bound(&sample), "{encoded} > {}", encoded_len_bound(&sample));
        }
    }

    #[test]
    fn nonces_never_repeat() {
        let nonces: std::collections::HashSet<[u8; NONCE_LEN]> =
            (0..10_000).map(|_| next_nonce().unwrap()).collect();
        assert_eq!(nonces.len(), 10_000);
    }

    #[test]
    fn the_master_key_file_is_owner_only_exact_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        assert!(MasterKey::load(&path).unwrap().is_none());
        let master = MasterKey::create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (key, wrapped) = master.new_data_key("c").unwrap();
        // Creating it again loads the existing key: it is never replaced.
        let again = MasterKey::create(&path).unwrap();
        assert!(again.unwrap("c", &wrapped).is_ok(), "an existing key is never replaced");
        let event = EventId::new_v7();
        let sealed = key.seal("c", &event, &data()).unwrap();
        let loaded = MasterKey::load(&path).unwrap().unwrap();
        assert_eq!(loaded.unwrap("c", &wrapped).unwrap().open("c", &event, &sealed).unwrap(), data());
        assert!(!format!("{loaded:?} {key:?}").contains(|c: char| c.is_ascii_digit()));
        std::fs::write(dir.path().join("short.key"), [1u8; 16]).unwrap();
        let short = MasterKey::load(&dir.path().join("short.key")).unwrap_err();
        assert!(short.to_string().contains("exactly 32 bytes"), "{short}");
        assert_eq!(default_master_key_path(Path::new("data/log")), Path::new("data/master.key"));
    }
}
