//! Unlocked vaults, in this process's memory only.
//!
//! After a restart every vault is locked: nothing on disk can open one. Logging in
//! unlocks the person's vault (their passphrase unwraps the vault key); logging out or
//! "Lock now" drops it, and the keys are zeroized as the last reference goes
//! (`cv_crypto::vault` types wipe themselves on drop). The process is not dumpable
//! (`PR_SET_DUMPABLE`), so the keys cannot be read through a core file or ptrace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cv_crypto::vault::UnlockedVault;
use cv_db::UserId;

use crate::index::VaultIndex;
use time::{Duration, OffsetDateTime};

/// One unlocked vault, when it was opened, and its search index.
#[derive(Clone)]
pub(crate) struct Unlocked {
    pub vault: Arc<UnlockedVault>,
    pub since: OffsetDateTime,
    pub index: Arc<VaultIndex>,
}

struct Entry {
    unlocked: Unlocked,
    last_used: OffsetDateTime,
}

/// The unlocked vaults, by account.
pub(crate) struct Keyring {
    vaults: Mutex<HashMap<UserId, Entry>>,
    /// Idle time after which a vault locks by itself.
    idle_lock: Duration,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which accounts are unlocked is not secret to the process, but keys are.
        write!(f, "Keyring({} unlocked)", self.map().len())
    }
}

impl Keyring {
    pub fn new(idle_lock: Duration) -> Keyring {
        Keyring {
            vaults: Mutex::new(HashMap::new()),
            idle_lock,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Entry>> {
        self.vaults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Unlocks the account's vault with a new, empty index; returns it and `true`. If
    /// it is already unlocked (another device), keeps that vault and its index, counts
    /// this as use, and returns them with `false`.
    pub fn unlock(
        &self,
        user: UserId,
        vault: UnlockedVault,
        index: VaultIndex,
        now: OffsetDateTime,
    ) -> (Unlocked, bool) {
        let mut map = self.map();
        if let Some(entry) = map.get_mut(&user)
            && now - entry.last_used < self.idle_lock
        {
            entry.last_used = now.max(entry.last_used);
            return (entry.unlocked.clone(), false);
        }
        let unlocked = Unlocked {
            vault: Arc::new(vault),
            since: now,
            index: Arc::new(index),
        };
        map.insert(
            user,
            Entry {
                unlocked: unlocked.clone(),
                last_used: now,
            },
        );
        (unlocked, true)
    }

    /// The account's unlocked vault, without counting this as use (background work).
    /// The index of every unlocked vault (for background work; counts as no use).
    pub fn indexes(&self) -> Vec<Arc<VaultIndex>> {
        self.map()
            .values()
            .map(|e| Arc::clone(&e.unlocked.index))
            .collect()
    }

    pub fn peek(&self, user: UserId) -> Option<Unlocked> {
        self.map().get(&user).map(|e| e.unlocked.clone())
    }

    /// Gives the account's unlocked vault a new index (the old one is dropped when its
    /// last user lets go); `None` when the vault is locked.
    pub fn replace_index(&self, user: UserId, index: VaultIndex) -> Option<Unlocked> {
        let mut map = self.map();
        let entry = map.get_mut(&user)?;
        entry.unlocked.index = Arc::new(index);
        Some(entry.unlocked.clone())
    }

    /// Whether `index` is still the account's open index (not locked, not replaced).
    pub fn holds(&self, user: UserId, index: &Arc<VaultIndex>) -> bool {
        self.map()
            .get(&user)
            .is_some_and(|e| Arc::ptr_eq(&e.unlocked.index, index))
    }

    /// Locks the account's vault; returns whether it was unlocked.
    pub fn lock(&self, user: UserId) -> bool {
        self.map().remove(&user).is_some()
    }

    /// The account's unlocked vault, counting this as use; `None` when locked, or when
    /// it sat idle too long (it is locked now).
    pub fn get(&self, user: UserId, now: OffsetDateTime) -> Option<Unlocked> {
        let mut map = self.map();
        let idle_lock = self.idle_lock;
        let entry = map.get_mut(&user)?;
        if now - entry.last_used >= idle_lock {
            map.remove(&user);
            tracing::info!(%user, "vault locked after being idle");
            return None;
        }
        entry.last_used = now.max(entry.last_used);
        Some(entry.unlocked.clone())
    }

    /// Locks every vault idle for too long; returns how many.
    pub fn lock_idle(&self, now: OffsetDateTime) -> usize {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, e| now - e.last_used < self.idle_lock);
        before - map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> UnlockedVault {
        static BUNDLE: std::sync::OnceLock<(cv_crypto::vault::KeyBundle, cv_crypto::Passphrase)> =
            std::sync::OnceLock::new();
        let (bundle, pass) = BUNDLE.get_or_init(|| {
            let pass = cv_crypto::Passphrase::new("keyring test passphrase".into()).unwrap();
            let (bundle, _, _) = cv_crypto::vault::create_vault(&pass).unwrap();
            (bundle, pass)
        });
        bundle.unlock(pass).unwrap()
    }

    fn index() -> VaultIndex {
        VaultIndex::new().unwrap()
    }

    #[test]
    fn unlocking_an_open_vault_keeps_its_index() {
        let ring = Keyring::new(Duration::minutes(30));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let (first, fresh) = ring.unlock(user(1), vault(), index(), t0);
        assert!(fresh);
        let (second, fresh) = ring.unlock(user(1), vault(), index(), t0 + Duration::minutes(1));
        assert!(!fresh);
        assert!(Arc::ptr_eq(&first.index, &second.index));
        assert!(ring.holds(user(1), &first.index));
        ring.lock(user(1));
        assert!(!ring.holds(user(1), &first.index));
        assert!(ring.peek(user(1)).is_none());
    }

    fn user(n: u128) -> UserId {
        UserId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn use_keeps_a_vault_open_and_idleness_locks_it() {
        let ring = Keyring::new(Duration::minutes(30));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        ring.unlock(user(1), vault(), index(), t0);
        assert!(ring.get(user(1), t0 + Duration::minutes(29)).is_some());
        // Used at 29 min: still open at 58.
        assert!(ring.get(user(1), t0 + Duration::minutes(58)).is_some());
        assert!(ring.get(user(1), t0 + Duration::minutes(88)).is_none());
        // Locked for good: no later access revives it.
        assert!(ring.get(user(1), t0 + Duration::minutes(89)).is_none());
    }

    #[test]
    fn the_sweep_locks_only_idle_vaults() {
        let ring = Keyring::new(Duration::minutes(30));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        ring.unlock(user(1), vault(), index(), t0);
        ring.unlock(user(2), vault(), index(), t0 + Duration::minutes(20));
        assert_eq!(ring.lock_idle(t0 + Duration::minutes(31)), 1);
        assert!(ring.get(user(1), t0 + Duration::minutes(31)).is_none());
        assert!(ring.get(user(2), t0 + Duration::minutes(31)).is_some());
        assert!(ring.lock(user(2)));
        assert!(!ring.lock(user(2)));
    }

    #[test]
    fn debug_shows_no_keys() {
        let ring = Keyring::new(Duration::minutes(1));
        ring.unlock(user(1), vault(), index(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(format!("{ring:?}"), "Keyring(1 unlocked)");
    }
}
