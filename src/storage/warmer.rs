//! The segment warmer: keeps the pages of the segment being appended to in the page cache
//! a window ahead of the writer, on its own thread, so that appends find their pages
//! allocated. It only reads the segment's positions and asks the kernel to read pages
//! ahead (`readahead(2)`: nothing is mapped or dirtied); it never writes data and never
//! keeps a segment alive.

use crate::storage::mapped_file::MappedFile;

/// How far ahead of the writer a segment's pages are kept in the page cache. Faulting a whole
/// 1 GiB segment in up front zeroes pages a short burst never uses, and on a small machine
/// that work competes with the appender for the same cores; a window sized for about half a
/// second of full-speed appends keeps the writer on warm pages at a cost proportional to
/// what is written.
pub const WARM_AHEAD: usize = 64 << 20;
/// Pages brought in per step: small enough that the warmer follows the writer closely,
/// large enough to keep ahead of a writer appending at full speed. Measured on this
/// project's machine: 256 KiB steps in the idle scheduling class made sustained 1 KiB
/// appends 5–8 µs instead of 3–3.5 µs, with no gain in tail latency.
const WARM_STEP: usize = 2 << 20;
/// How long a warmer with nothing to do sleeps at most. The writer wakes it as soon as there
/// is work (see [`MappedFile::set_wrote`]); the timeout only bounds how long the thread of a
/// segment dropped before it filled lingers.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);
/// How often a warmer the writer cannot wake (the file already had one) polls instead.
const UNADOPTED_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Keeps `seg` in the page cache up to [`WARM_AHEAD`] past its write position until it is full or
/// dropped (closed, deleted or discarded). Once the window is warm it sleeps until the writer
/// has used a [`WARM_STEP`] of it, so an idle broker's warmer does not wake at all (it
/// polled every 10 ms before: 100 wake-ups a second). It holds only a weak reference between
/// steps, so it never keeps a segment's mapping alive.
pub(crate) fn keep_warm(seg: std::sync::Weak<MappedFile>) {
    // A second warmer of the same file (none is started today) would only wake on its
    // timeout; the first keeps the window.
    let mut adopted = false;
    if let Some(s) = seg.upgrade() {
        s.set_appending(true);
        adopted = s.adopt_warmer();
    }
    let mut warmed = 0usize;
    loop {
        let Some(s) = seg.upgrade() else { return };
        if s.is_full() {
            s.set_appending(false);
            return;
        }
        let target = (s.wrote() + WARM_AHEAD).min(s.size());
        warmed = warmed.max(s.wrote() & !4095);
        if warmed < target {
            let len = WARM_STEP.min(target - warmed);
            if !s.prefetch(warmed, len) {
                return;
            }
            warmed += len;
        } else if adopted {
            // Work again once the writer has used a step of the window. Once the window
            // reaches the end of the file there is nothing left to warm, and the writer may
            // already be past that step: the only event left is the file filling up.
            let wake_at = if warmed >= s.size() {
                s.size()
            } else {
                warmed.saturating_sub(WARM_AHEAD).saturating_add(WARM_STEP)
            };
            let idle = s.wake_warmer_at(wake_at);
            // Only the weak reference is held while parked: a dropped file ends the thread
            // at its next wake-up, within IDLE_CHECK.
            drop(s);
            if idle {
                std::thread::park_timeout(IDLE_CHECK);
            }
        } else {
            drop(s);
            std::thread::sleep(UNADOPTED_POLL);
        }
    }
}
