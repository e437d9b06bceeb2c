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
use time::OffsetDateTime;

/// One unlocked vault and when it was opened.
#[derive(Clone)]
pub(crate) struct Unlocked {
    /// Held so the vault stays open; nothing reads the keys until the vault stores items.
    #[allow(dead_code)]
    pub vault: Arc<UnlockedVault>,
    pub since: OffsetDateTime,
}

/// The unlocked vaults, by account.
#[derive(Default)]
pub(crate) struct Keyring {
    vaults: Mutex<HashMap<UserId, Unlocked>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which accounts are unlocked is not secret to the process, but keys are.
        write!(f, "Keyring({} unlocked)", self.map().len())
    }
}

impl Keyring {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Unlocked>> {
        self.vaults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn unlock(&self, user: UserId, vault: UnlockedVault, now: OffsetDateTime) {
        self.map().insert(
            user,
            Unlocked {
                vault: Arc::new(vault),
                since: now,
            },
        );
    }

    /// Locks the account's vault; returns whether it was unlocked.
    pub fn lock(&self, user: UserId) -> bool {
        self.map().remove(&user).is_some()
    }

    pub fn get(&self, user: UserId) -> Option<Unlocked> {
        self.map().get(&user).cloned()
    }
}
