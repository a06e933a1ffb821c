//! Handing a store over to a fresh handle: what a broker needs to replace a poisoned
//! [`MessageStore`] without restarting its process.
//!
//! A poisoned store refuses writes for good (see [`Error::Poisoned`]): the cure is to close
//! it and open the same folder again, which runs recovery from the commit log, the truth.
//! This file owns the two questions that takes: is this handle poisoned, and closing it so
//! that a new handle can take the folder's lock even when the last flush of the old one
//! fails (as it may, on the disk that poisoned it). Nothing here opens a store.

use super::*;

impl MessageStore {
    /// Why the store refuses writes for good (a flush or dispatch failed), or `None` while it
    /// is not poisoned. Unlike [`MessageStore::write_refusal`] this ignores states that pass
    /// by themselves (a full disk): only a poisoned store needs reopening.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poisoned.lock().clone()
    }

    /// [`MessageStore::shutdown`] for a handle about to be replaced: the same clean close,
    /// but the folder's lock is released even when the close fails part-way (a poisoned
    /// store's last flush may fail again), so that a new handle can open the folder and let
    /// recovery repair what this one could not. The handle stays usable for reads; writes
    /// are refused as after any shutdown.
    pub fn close_for_reopen(&self) -> Result<()> {
        let closed = self.shutdown();
        if closed.is_err() {
            // `shutdown` stopped before its unlock. It has set `closed` and stopped the
            // background threads before anything that can fail, so no write can come
            // from this handle any more.
            if let Err(e) = self.shared.lock_file.unlock() {
                tracing::warn!(error = %e, "could not release the store lock");
            }
        }
        closed
    }
}
