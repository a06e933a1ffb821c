//! The commit log's recovery walk: validating records from a point, stepping over damage
//! to the next valid record, and checking at a clean start that the log ends where the
//! checkpoint says. Only for use at open, before the log is shared; it reads bytes past the
//! published end and never writes.

use std::sync::Arc;

use crate::storage::mapped_file::MappedFile;
use crate::storage::record::{self, Peek, RecordView, END_FILE_MIN_BLANK_LENGTH};

use super::CommitLog;

/// Outcome of walking the log during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Offset just past the last good record.
    pub end: u64,
    /// Records validated.
    pub records: u64,
    /// Segments touched.
    pub segments: u64,
    /// Damaged ranges stepped over (and a torn tail cut), in log order.
    pub damaged: Vec<Damage>,
    /// Start of the last good record walked.
    pub last_record: Option<u64>,
}

/// A range of the log that holds no valid record, found by [`CommitLog::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// First bad byte.
    pub from: u64,
    /// First byte after it: the next valid record, or the end of the torn tail.
    pub to: u64,
    /// Whether this is the end of the log (nothing valid after it) rather than damage
    /// with valid records after it.
    pub torn_tail: bool,
    /// What was wrong at `from`.
    pub reason: String,
}

impl CommitLog {
    /// Walks records from `start` (a record boundary), validating each one including its CRC,
    /// and calls `visit` for each good record, until `limit` or the end of the last segment.
    /// A record that fails validation does not end the walk: the walk searches forward for
    /// the next valid record (magic, size, both CRCs and its own offset consistent), in this
    /// segment or a later one, reports the bytes in between as damaged and goes on from
    /// there, so damage in the middle of the log costs only the records it hits. Only when
    /// nothing valid follows is the bad spot the end of the log (a torn tail). Only for use
    /// at open, before the log is shared.
    pub fn scan(
        &self,
        start: u64,
        limit: u64,
        mut visit: impl FnMut(&RecordView<'_>),
    ) -> ScanOutcome {
        let segs = self.segments();
        let mut out = ScanOutcome {
            end: start,
            records: 0,
            segments: 0,
            damaged: Vec::new(),
            last_record: None,
        };
        let Some(first) = segs.first() else {
            return out;
        };
        let mut offset = start.max(first.from_offset());
        out.end = offset;
        let mut idx = ((offset - first.from_offset()) / self.segment_size as u64) as usize;
        'segments: while let Some(seg) = segs.get(idx) {
            out.segments += 1;
            let mut pos = (offset - seg.from_offset()) as usize;
            let size = seg.size();
            loop {
                if seg.from_offset() + pos as u64 >= limit {
                    return out;
                }
                match valid_at(seg, pos) {
                    Some(Found::Record(view)) => {
                        visit(&view);
                        out.records += 1;
                        out.last_record = Some(seg.from_offset() + pos as u64);
                        pos += view.total_size;
                        out.end = seg.from_offset() + pos as u64;
                    }
                    // A blank marker: the log continues in the next segment, if there is one.
                    Some(Found::Blank) => break,
                    None => {
                        let bad = seg.from_offset() + pos as u64;
                        let reason = describe_invalid(seg, pos);
                        match next_valid(&segs[idx..], bad + 1) {
                            Some((at_idx, at)) => {
                                out.damaged.push(Damage {
                                    from: bad,
                                    to: at,
                                    torn_tail: false,
                                    reason,
                                });
                                idx += at_idx;
                                offset = at;
                                out.end = at;
                                continue 'segments;
                            }
                            None => {
                                // Nothing valid follows: this is where the log ends. Zeros
                                // are simply space never written; anything else was a
                                // record being written when the writer stopped.
                                if let Some(torn) = torn_length(seg, pos) {
                                    out.damaged.push(Damage {
                                        from: bad,
                                        to: bad + torn as u64,
                                        torn_tail: true,
                                        reason,
                                    });
                                }
                                return out;
                            }
                        }
                    }
                }
            }
            out.end = seg.from_offset() + size as u64;
            offset = out.end;
            idx += 1;
        }
        out
    }

    /// Checks, at open after a clean stop, that the log really ends at `end`: the record
    /// starting at `last_record` is valid and ends there (or its segment's blank marker
    /// does), and no bytes follow `end`. A torn or damaged last record, a checkpoint from
    /// an older version without `last_record`, or data past the end all mean the log must
    /// be scanned instead. Reads a few pages, whatever the log's size. Only at open.
    pub fn check_tail(
        &self,
        last_record: Option<u64>,
        end: u64,
    ) -> std::result::Result<(), String> {
        let segs = self.segments();
        let log_start = segs.first().map(|s| s.from_offset()).unwrap_or(0);
        let locate = |offset: u64| {
            segs.iter()
                .find(|s| (s.from_offset()..s.from_offset() + s.size() as u64).contains(&offset))
        };
        match last_record {
            Some(at) => {
                let seg =
                    locate(at).ok_or_else(|| format!("last record {at} is outside the log"))?;
                let pos = (at - seg.from_offset()) as usize;
                let Some(Found::Record(view)) = valid_at(seg, pos) else {
                    return Err(format!(
                        "last record at {at}: {}",
                        describe_invalid(seg, pos)
                    ));
                };
                let after = pos + view.total_size;
                let record_end = seg.from_offset() + after as u64;
                let seg_end = seg.from_offset() + seg.size() as u64;
                let closes_segment =
                    end == seg_end && matches!(valid_at(seg, after), Some(Found::Blank));
                if record_end != end && !closes_segment {
                    return Err(format!(
                        "last record at {at} ends at {record_end}, not at the checkpoint {end}"
                    ));
                }
            }
            None if end == log_start => {}
            None => return Err("the checkpoint does not say where the last record starts".into()),
        }
        if let Some(seg) = locate(end) {
            let pos = (end - seg.from_offset()) as usize;
            // SAFETY: only at open, before the log is shared.
            let next = unsafe { seg.slice_unpublished(pos, END_FILE_MIN_BLANK_LENGTH) };
            if next.is_some_and(|b| b.iter().any(|x| *x != 0)) {
                return Err(format!("bytes follow the checkpoint's end {end}"));
            }
        }
        Ok(())
    }
}

/// What [`valid_at`] found.
enum Found<'a> {
    Record(RecordView<'a>),
    Blank,
}

/// The valid record or blank marker at `pos` of `seg`, if there is one there: the size
/// field, magic, both CRCs and the stored physical offset must all agree, and a blank
/// marker must close exactly the rest of the segment. Only at open (reads unpublished bytes).
fn valid_at(seg: &MappedFile, pos: usize) -> Option<Found<'_>> {
    let size = seg.size();
    // SAFETY: recovery runs before the log is shared; nobody writes concurrently.
    let rest = unsafe { seg.slice_unpublished(pos, size.checked_sub(pos)?) }?;
    if rest.len() < END_FILE_MIN_BLANK_LENGTH {
        return None;
    }
    match record::peek(rest) {
        Ok(Peek::Blank) => {
            (record::peek_total_size(rest).ok()? == rest.len()).then_some(Found::Blank)
        }
        Ok(Peek::Message(len)) if len <= rest.len() => {
            let view = record::decode(&rest[..len], record::Verify::Strict).ok()?;
            (view.physical_offset == seg.from_offset() + pos as u64).then_some(Found::Record(view))
        }
        _ => None,
    }
}

/// Why the bytes at `pos` are not a valid record, for the damage report.
fn describe_invalid(seg: &MappedFile, pos: usize) -> String {
    // SAFETY: as in `valid_at`.
    let Some(rest) = (unsafe { seg.slice_unpublished(pos, seg.size().saturating_sub(pos)) }) else {
        return "past the end of the segment".into();
    };
    match record::peek(rest) {
        Ok(Peek::Message(len)) if len > rest.len() => {
            format!("record size {len} runs past the segment end")
        }
        Ok(Peek::Message(len)) => match record::decode(&rest[..len], record::Verify::Strict) {
            Ok(view) => format!(
                "record stored at {} claims physical offset {}",
                seg.from_offset() + pos as u64,
                view.physical_offset
            ),
            Err(e) => e.to_string(),
        },
        Ok(Peek::Blank) => "blank marker that does not close the segment".into(),
        Err(e) => e.to_string(),
    }
}

/// Bytes of a torn record at `pos`, or `None` when the spot is only never-written zeros.
fn torn_length(seg: &MappedFile, pos: usize) -> Option<usize> {
    // SAFETY: as in `valid_at`.
    let rest = unsafe { seg.slice_unpublished(pos, seg.size().saturating_sub(pos)) }?;
    let head = rest.get(..END_FILE_MIN_BLANK_LENGTH.min(rest.len()))?;
    if head.iter().all(|b| *b == 0) {
        return None;
    }
    let declared = record::peek_total_size(rest).unwrap_or(0);
    Some(
        if (END_FILE_MIN_BLANK_LENGTH..=rest.len()).contains(&declared) {
            declared
        } else {
            END_FILE_MIN_BLANK_LENGTH
        },
    )
}

/// The first valid record or blank marker at or after commit-log offset `from`, searching
/// `segs` (which starts with the segment holding `from`): returns its index in `segs` and
/// its offset. Only regions the file system says hold data are read, so the unwritten rest
/// of a large segment costs nothing; within them it looks for the magic codes and checks
/// each candidate fully.
fn next_valid(segs: &[Arc<MappedFile>], from: u64) -> Option<(usize, u64)> {
    let message = record::MESSAGE_MAGIC_CODE.to_be_bytes();
    let blank = record::BLANK_MAGIC_CODE.to_be_bytes();
    let finders = [
        memchr::memmem::Finder::new(&message),
        memchr::memmem::Finder::new(&blank),
    ];
    // The magic sits this many bytes into a record or marker.
    const MAGIC_AT: usize = 4;
    for (i, seg) in segs.iter().enumerate() {
        let seg_from = seg.from_offset();
        let mut pos = from.saturating_sub(seg_from) as usize;
        while pos < seg.size() {
            let Some((data_from, data_to)) = seg.next_data(pos) else {
                break;
            };
            let data_from = data_from.max(pos);
            let search_from = data_from + MAGIC_AT;
            // SAFETY: as in `valid_at`.
            let window = (search_from < data_to)
                .then(|| unsafe { seg.slice_unpublished(search_from, data_to - search_from) })
                .flatten()
                .unwrap_or(&[]);
            // The next hit of each magic, advanced lazily so each byte is searched once.
            let mut next = [None, None];
            let mut at = 0usize;
            loop {
                for (slot, finder) in next.iter_mut().zip(&finders) {
                    if slot.is_none_or(|h| h < at) {
                        *slot = window
                            .get(at..)
                            .and_then(|w| finder.find(w))
                            .map(|h| h + at);
                    }
                }
                let Some(hit) = next.iter().flatten().copied().min() else {
                    break;
                };
                if valid_at(seg, data_from + hit).is_some() {
                    return Some((i, seg_from + (data_from + hit) as u64));
                }
                at = hit + 1;
            }
            if data_to <= pos {
                break;
            }
            pos = data_to;
        }
    }
    None
}
