//! What tests/programs/fill.c (`fill crash`) notes in its side file, and the states of the data
//! file that a crash may leave: what the last fsync covered, plus whole later calls in order.

/// What `fill crash` noted about one call.
#[derive(Clone, Copy, Debug)]
enum Call {
    Write { off: u64, len: u64 },
    Truncate { size: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Returned this count (0 for ftruncate).
    Done(u64),
    Failed,
    /// Started, no result noted: the kill came during the call (or just after it).
    InFlight,
}

/// A side file, read.
#[derive(Default, Debug)]
pub struct Side {
    calls: Vec<(u32, Call, Outcome)>,
    /// The last call the last successful fsync covered.
    synced: Option<u32>,
    pub write_enospc: usize,
    pub fsync_enospc: usize,
    /// Lines that tell of a bug: an error other than ENOSPC ("bad ERRNO", "e ID ERRNO"), a failed
    /// write that changed the file ("torn ID"); the program stops at the first.
    pub other_errors: Vec<String>,
}

/// Reads a side file. Each line was one write of a few bytes, but SIGKILL can still cut one that
/// straddles a page of the side file (the kernel checks for it between pages): a last line
/// without its newline is left out, its call then counts as still running.
pub fn parse_side(text: &str) -> Side {
    let mut side = Side::default();
    for line in text.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')) {
        let f: Vec<u64> = line.split(' ').skip(1).filter_map(|w| w.parse().ok()).collect();
        let id = f.first().map(|&i| i as u32);
        let last = side.calls.last_mut().filter(|c| Some(c.0) == id);
        match (line.split(' ').next(), f.len()) {
            (Some("w"), 3) => side.calls.push((f[0] as u32, Call::Write { off: f[1], len: f[2] }, Outcome::InFlight)),
            (Some("t"), 2) => side.calls.push((f[0] as u32, Call::Truncate { size: f[1] }, Outcome::InFlight)),
            (Some("ok"), 2) => last.expect("a result for the last call").2 = Outcome::Done(f[1]),
            (Some("e"), 2) | (Some("fe"), 2) if f[1] != libc::ENOSPC as u64 => side.other_errors.push(line.into()),
            (Some("e"), 2) => {
                last.expect("a result for the last call").2 = Outcome::Failed;
                side.write_enospc += 1;
            }
            (Some("fe"), 2) => side.fsync_enospc += 1,
            (Some("s"), 1) => side.synced = id,
            (Some("f"), 1) => {}
            _ => side.other_errors.push(line.into()),
        }
    }
    side
}

/// fill.c's `byte_of`: what call `id` writes at `pos` (a hash of both, so that any 8 bytes tell
/// which call wrote them).
fn byte_of(id: u32, pos: u64) -> u8 {
    let mut x = (id as u64).wrapping_mul(0x9e3779b97f4a7c15) ^ (pos >> 3).wrapping_mul(0xc2b2ae3d27d4eb4f);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58476d1ce4e5b9);
    x ^= x >> 32;
    (x >> (8 * (pos & 7))) as u8
}

fn apply(file: &mut Vec<u8>, id: u32, call: Call, count: Option<u64>) {
    match call {
        Call::Write { off, len } => {
            let n = count.unwrap_or(len);
            let end = (off + n) as usize;
            if file.len() < end {
                file.resize(end, 0);
            }
            for pos in off..off + n {
                file[pos as usize] = byte_of(id, pos);
            }
        }
        Call::Truncate { size } => file.resize(size as usize, 0),
    }
}

/// The file must be what every call up to the last fsync left, plus the calls after it up to
/// some point (whole ones: a failed call changes nothing, the one in flight is all there or
/// not at all). With `short_in_flight` (the kernel, whose writes on a full file system may be
/// short, and which SIGKILL stops between pages), the write in flight may also have left the
/// part of it that ends the file, or any part of it that ends at a page boundary.
pub fn check_crash_image(got: &[u8], side: &Side, short_in_flight: bool, what: &str) {
    let mut image = Vec::new();
    let mut later = Vec::new();
    for &(id, call, outcome) in &side.calls {
        let done = match outcome {
            Outcome::Done(n) => Some(Some(n)),
            Outcome::InFlight => Some(None),
            Outcome::Failed => None,
        };
        match done {
            Some(count) if side.synced.is_some_and(|s| id <= s) => apply(&mut image, id, call, count),
            Some(count) => later.push((id, call, count)),
            None => {}
        }
    }
    // The candidate closest to the file, for the message: (differing bytes, after which call).
    let mut best: Option<(usize, Option<u32>, Vec<u8>)> = None;
    let mut consider = |image: &Vec<u8>, after: Option<u32>| {
        let differ = got.iter().zip(image).filter(|(a, b)| a != b).count() + got.len().abs_diff(image.len());
        if best.as_ref().is_none_or(|b| differ < b.0) {
            best = Some((differ, after, image.clone()));
        }
        differ == 0
    };
    if consider(&image, side.synced) {
        return;
    }
    for &(id, call, count) in &later {
        if let (Call::Write { off, len }, None, true) = (call, count, short_in_flight) {
            // The part that ends the file, or a part cut at a page boundary (SIGKILL stops the
            // kernel's copy between pages).
            let ends_file = (got.len() as u64).saturating_sub(off).min(len);
            let at_pages = (off / 4096 + 1..).map(|page| page * 4096 - off).take_while(|&n| n < len);
            for n in std::iter::once(ends_file).chain(at_pages) {
                let mut short = image.clone();
                apply(&mut short, id, call, Some(n));
                if consider(&short, Some(id)) {
                    return;
                }
            }
        }
        apply(&mut image, id, call, count);
        if consider(&image, Some(id)) {
            return;
        }
    }
    let (differ, after, model) = best.expect("one candidate at least");
    let at = got.iter().zip(&model).position(|(a, b)| a != b).unwrap_or(got.len().min(model.len()));
    panic!(
        "{what}: the file ({} bytes) is no state the calls could leave (the last fsync covered call {:?}, {} calls \
         after it). Closest: the state after call {after:?} ({} bytes), {differ} bytes differ, the first at {at}: \
         the file holds {} where that state has {}",
        got.len(),
        side.synced,
        later.len(),
        model.len(),
        whose(got, at, side),
        whose(&model, at, side),
    );
}

/// Which call's bytes the file holds at `at` (for messages).
fn whose(got: &[u8], at: usize, side: &Side) -> String {
    let end = got.len().min(at + 16);
    if at >= end {
        return "nothing (the end)".into();
    }
    if got[at..end].iter().all(|&b| b == 0) {
        return "zeros".into();
    }
    // The last write that covers `at..end` and put exactly these bytes there.
    let wrote_these = |id: u32, off: u64, len: u64| {
        (at..end).all(|p| (off..off + len).contains(&(p as u64)) && got[p] == byte_of(id, p as u64))
    };
    let writer = side.calls.iter().rev().find(|&&(id, call, _)| match call {
        Call::Write { off, len } => wrote_these(id, off, len),
        Call::Truncate { .. } => false,
    });
    match writer {
        Some((id, call, outcome)) => format!("call {id}'s bytes ({call:?}, {outcome:?})"),
        None => format!("bytes of no call: {:?}", &got[at..end]),
    }
}
