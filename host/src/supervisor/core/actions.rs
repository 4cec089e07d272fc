//! The buffer the core appends its actions to: one turn's actions, kept where `fork` does not
//! copy them.
//!
//! Runs in: the supervisor only (the core fills it, the event loop carries it out).

use super::{Action, LAUNCH_BATCH};
use crate::supervisor::private::PrivateVec;

/// The actions of one event and of what follows from it (one turn), in memory `fork` does not
/// copy: the loop carries them out between the forks of a launch batch, and a page of them
/// written after each fork would cost a copy-on-write fault per launch. Reused from turn to turn.
///
/// The private room is mapped and filled once, at start, for the largest turn that forks more
/// than once, so pushing never maps memory in the middle of a turn and cannot fail there. A
/// turn that needs more (a shutdown or reset over hundreds of workers) forks at most once, and
/// carries on in an ordinary `Vec` on the heap, like every log line the core formats.
pub struct Actions {
    /// [`Actions::ROOM`] slots; the first `len` hold this turn's actions while `heap` is empty.
    private: PrivateVec<Action>,
    len: usize,
    /// Every action of a turn that outgrew `private`, moved here in order.
    heap: Vec<Action>,
}

impl Actions {
    /// The largest turn that forks more than once: a batch of launches, each answered with a
    /// publish, or with a log line and a publish when it failed (a test holds the core to it).
    pub const ROOM: usize = 3 * LAUNCH_BATCH;

    pub fn new() -> std::io::Result<Actions> {
        let mut private = PrivateVec::with_capacity(Self::ROOM)?;
        for _ in 0..Self::ROOM {
            private.push(Action::Done)?;
        }
        Ok(Actions {
            private,
            len: 0,
            heap: Vec::new(),
        })
    }

    pub fn push(&mut self, a: Action) {
        if self.heap.is_empty() {
            if let Some(slot) = self.private.get_mut(self.len) {
                *slot = a;
                self.len += 1;
                return;
            }
            // This turn outgrew the room: all of it moves to the heap, so it stays in order.
            self.heap.reserve(2 * self.len);
            self.heap
                .extend(self.private[..self.len].iter_mut().map(std::mem::take));
            self.len = 0;
        }
        self.heap.push(a);
    }

    /// Whether this turn outgrew the private room.
    pub fn spilled(&self) -> bool {
        !self.heap.is_empty()
    }

    /// Drops every action, keeping the room.
    pub fn clear(&mut self) {
        self.private[..self.len].fill_with(Action::default);
        self.len = 0;
        self.heap.clear();
    }
}

impl std::ops::Deref for Actions {
    type Target = [Action];
    fn deref(&self) -> &[Action] {
        match self.heap.is_empty() {
            true => &self.private[..self.len],
            false => &self.heap,
        }
    }
}

impl std::ops::DerefMut for Actions {
    fn deref_mut(&mut self) -> &mut [Action] {
        match self.heap.is_empty() {
            true => &mut self.private[..self.len],
            false => &mut self.heap,
        }
    }
}
