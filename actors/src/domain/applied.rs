//! `AppliedCommands`: the commands of a command stream the exchange has
//! applied, with their outcomes, kept until every message up to theirs is
//! fully handled (the stream cursor passed them). A command delivered again
//! — after a takeover re-reads the stream from its cursor — is answered with
//! the outcome it had the first time and changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::Outcome;

/// One command of a stream message: the message's stream sequence and the
/// command's place among the commands that message caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommandKey {
    pub message: u64,
    pub index: u32,
}

/// Outcomes of applied commands whose messages are not behind the cursor yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedCommands {
    outcomes: BTreeMap<CommandKey, Outcome>,
    /// Messages at or below this are fully handled (never delivered again).
    cursor: u64,
}

/// Most outcomes kept; past it the oldest go first (their messages have
/// been in flight for far longer than any handling takes).
pub const APPLIED_COMMANDS_MAX: usize = 1_000_000;

impl AppliedCommands {
    /// The outcome `key` had, if it was applied.
    #[must_use]
    pub fn get(&self, key: CommandKey) -> Option<&Outcome> {
        self.outcomes.get(&key)
    }

    /// Remembers that `key` was applied with `outcome` (unless its message
    /// is behind the cursor: it cannot come again).
    pub fn record(&mut self, key: CommandKey, outcome: Outcome) {
        if key.message <= self.cursor {
            return;
        }
        self.outcomes.insert(key, outcome);
        while self.outcomes.len() > APPLIED_COMMANDS_MAX {
            self.outcomes.pop_first();
        }
    }

    /// Every message at or below `cursor` is fully handled: forgets them.
    pub fn advance(&mut self, cursor: u64) {
        if cursor <= self.cursor {
            return;
        }
        self.cursor = cursor;
        self.outcomes = self.outcomes.split_off(&CommandKey { message: cursor.saturating_add(1), index: 0 });
    }

    /// The cursor the outcomes are kept above.
    #[must_use]
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The newest message with an applied command, if any.
    #[must_use]
    pub fn last_message(&self) -> Option<u64> {
        self.outcomes.last_key_value().map(|(key, _)| key.message)
    }

    /// How many outcomes are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether none are kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const fn key(message: u64, index: u32) -> CommandKey {
        CommandKey { message, index }
    }

    #[test]
    fn a_recorded_outcome_is_found_until_the_cursor_passes_its_message() {
        let mut applied = AppliedCommands::default();
        applied.record(key(5, 0), Outcome::Opened { new: true });
        applied.record(key(5, 1), Outcome::Halted);
        applied.record(key(7, 0), Outcome::Noted);
        assert_eq!(applied.get(key(5, 1)), Some(&Outcome::Halted));
        assert_eq!(applied.last_message(), Some(7));
        applied.advance(5);
        assert_eq!(applied.get(key(5, 0)), None);
        assert_eq!(applied.get(key(7, 0)), Some(&Outcome::Noted));
        assert_eq!(applied.len(), 1);
    }

    #[test]
    fn nothing_behind_the_cursor_is_kept_and_the_cursor_never_goes_back() {
        let mut applied = AppliedCommands::default();
        applied.advance(10);
        applied.advance(3);
        assert_eq!(applied.cursor(), 10);
        applied.record(key(9, 0), Outcome::Noted);
        assert!(applied.is_empty());
    }
}
