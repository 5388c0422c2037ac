//! The domain model shared by the API boundary, the store and sync: a ticket as huoltosync
//! understands it, and its state in Tampuuri's workflow.
//!
//! Wire types (what Tampuuri's JSON looks like) stay in [`crate::tampuuri`]; this module is what
//! they are turned into, and what the store keeps.

use std::fmt;

/// A ticket's state in Tampuuri's contractor workflow (see `tampuuri-api.md`).
///
/// Tampuuri may report a state we do not know (the API evolves): it is kept as [`Other`] rather
/// than rejected, and is not treated as open.
///
/// [`Other`]: TicketState::Other
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TicketState {
    /// New, not yet accepted by the contractor.
    Avoin,
    /// Accepted: work has started.
    Vastaanotettu,
    /// On hold, waiting (the resident was told why).
    Odottaa,
    /// Done by the contractor.
    Tehty,
    /// Closed by the manager (invoiced).
    Valmis,
    /// A state name (or number) this version does not know.
    Other(String),
}

impl TicketState {
    /// The five known states in Tampuuri's order; integer states 1–5 map onto this list.
    pub const KNOWN: [TicketState; 5] = [
        TicketState::Avoin,
        TicketState::Vastaanotettu,
        TicketState::Odottaa,
        TicketState::Tehty,
        TicketState::Valmis,
    ];

    /// Parses a state name, case-insensitively; an unknown name is kept as [`TicketState::Other`].
    pub fn from_name(name: &str) -> TicketState {
        Self::KNOWN
            .iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
            .cloned()
            .unwrap_or_else(|| TicketState::Other(name.to_owned()))
    }

    /// Maps an integer state (1 = Avoin … 5 = Valmis) to its state.
    pub fn from_number(n: i64) -> TicketState {
        usize::try_from(n)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| Self::KNOWN.get(i))
            .cloned()
            .unwrap_or_else(|| TicketState::Other(n.to_string()))
    }

    /// The state's name as Tampuuri spells it.
    pub fn name(&self) -> &str {
        match self {
            TicketState::Avoin => "Avoin",
            TicketState::Vastaanotettu => "Vastaanotettu",
            TicketState::Odottaa => "Odottaa",
            TicketState::Tehty => "Tehty",
            TicketState::Valmis => "Valmis",
            TicketState::Other(s) => s,
        }
    }

    /// Whether the work is finished from the contractor's side (`Tehty` or `Valmis`).
    pub fn is_finished(&self) -> bool {
        matches!(self, TicketState::Tehty | TicketState::Valmis)
    }
}

impl fmt::Display for TicketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The resident who reported the ticket: personal data, kept only as long as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reporter {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// One ticket as received from Tampuuri: the main fields, plus the raw JSON exactly as sent
/// (fields this version does not know are kept there) and a hash of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: i64,
    pub state: TicketState,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The site's address ("As Oy …, street, city") as text.
    pub address: Option<String>,
    pub extra_info: Option<String>,
    pub assignee_id: Option<i64>,
    pub cost_centre_id: Option<i64>,
    pub space_id: Option<i64>,
    pub room_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub urgency: Option<String>,
    pub access: Option<String>,
    pub fault_class: Option<String>,
    pub earliest: Option<String>,
    pub latest: Option<String>,
    pub reporter: Reporter,
    pub remote_created: Option<String>,
    pub remote_modified: Option<String>,
    /// The ticket object exactly as Tampuuri sent it.
    pub raw_json: String,
    /// xxh3-64 of `raw_json`, stored as SQLite's signed integer.
    pub content_hash: i64,
}

impl Ticket {
    /// Whether this fetched ticket belongs in an account's open set, and if not, why: it must
    /// be assigned to `contractor_id` (else [`LeftReason::Reassigned`]) and be in one of
    /// `open_states`, compared by name in any case (else [`LeftReason::State`]). Sync, push and
    /// webhook processing all decide with this one rule.
    pub fn openness(&self, contractor_id: i64, open_states: &[String]) -> Result<(), LeftReason> {
        if self.assignee_id != Some(contractor_id) {
            Err(LeftReason::Reassigned)
        } else if !self.in_open_state(open_states) {
            Err(LeftReason::State)
        } else {
            Ok(())
        }
    }

    /// Whether the ticket's state is one of `open_states` (state names, any case). A state
    /// this version does not know is open only when the account names it.
    pub fn in_open_state(&self, open_states: &[String]) -> bool {
        open_states
            .iter()
            .any(|s| s.eq_ignore_ascii_case(self.state.name()))
    }
}

/// Why a ticket left our open set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    /// Its state is no longer one of the account's open states (done, closed, cancelled).
    State,
    /// It is now assigned to someone else.
    Reassigned,
}

impl LeftReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            LeftReason::State => "state",
            LeftReason::Reassigned => "reassigned",
        }
    }
}

/// What became of a ticket that a sweep no longer listed, confirmed by fetching it.
#[derive(Debug, Clone)]
pub enum Departure {
    /// It still exists, but is no longer ours and unfinished.
    Left {
        ticket: Box<Ticket>,
        reason: LeftReason,
    },
    /// Tampuuri no longer has it.
    Deleted { id: i64 },
}

/// Hash of a ticket's raw JSON, as stored in `tickets.content_hash`.
pub fn content_hash(raw_json: &str) -> i64 {
    // The cast keeps all 64 bits; SQLite integers are signed.
    xxhash_rust::xxh3::xxh3_64(raw_json.as_bytes()) as i64
}

/// A ticket's fields in the model's terms: what `ticket_changes.fields` (the history's changed
/// fields, and the feed's) names. Each is the name of the [`Ticket`] field it fills (`created`
/// and `modified` are `remote_created` and `remote_modified`). The remote's module maps its own
/// field names to these; a field the model does not read keeps the name the remote gave it.
pub mod field {
    pub const ID: &str = "id";
    pub const STATE: &str = "state";
    pub const TITLE: &str = "title";
    pub const DESCRIPTION: &str = "description";
    pub const ADDRESS: &str = "address";
    pub const EXTRA_INFO: &str = "extra_info";
    pub const ASSIGNEE_ID: &str = "assignee_id";
    pub const COST_CENTRE_ID: &str = "cost_centre_id";
    pub const SPACE_ID: &str = "space_id";
    pub const ROOM_ID: &str = "room_id";
    pub const PARENT_ID: &str = "parent_id";
    pub const URGENCY: &str = "urgency";
    pub const ACCESS: &str = "access";
    pub const FAULT_CLASS: &str = "fault_class";
    pub const EARLIEST: &str = "earliest";
    pub const LATEST: &str = "latest";
    pub const REPORTER: &str = "reporter";
    pub const CREATED: &str = "created";
    pub const MODIFIED: &str = "modified";
}

/// The fields (in the model's terms, [`field`]) whose values differ between two stored copies
/// of a ticket's raw JSON, sorted. Only the remote's module knows its format: it supplies this
/// function, and the store, which keeps the raw JSON, is handed it.
pub type ChangedFields = fn(old_raw: &str, new_raw: &str) -> Vec<String>;

/// Whether a changed field changes with every state transition (the state and the
/// modification time): what a delivered action of ours has already told the mirror.
pub fn moves_with_state(name: &str) -> bool {
    name == field::STATE || name == field::MODIFIED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_names_and_numbers() {
        assert_eq!(
            TicketState::from_name("vastaanotettu"),
            TicketState::Vastaanotettu
        );
        assert_eq!(TicketState::from_number(3), TicketState::Odottaa);
        assert_eq!(TicketState::from_number(9), TicketState::Other("9".into()));
        assert_eq!(
            TicketState::from_name("Peruttu"),
            TicketState::Other("Peruttu".into())
        );
        assert!(TicketState::Valmis.is_finished() && !TicketState::Odottaa.is_finished());
    }

    #[test]
    fn openness_asks_for_our_assignee_first_then_an_open_state() {
        let open: Vec<String> = ["Avoin", "Vastaanotettu", "odottaa"]
            .map(String::from)
            .into();
        let ticket = |assignee: Option<i64>, state: TicketState| Ticket {
            id: 1,
            state,
            title: None,
            description: None,
            address: None,
            extra_info: None,
            assignee_id: assignee,
            cost_centre_id: None,
            space_id: None,
            room_id: None,
            parent_id: None,
            urgency: None,
            access: None,
            fault_class: None,
            earliest: None,
            latest: None,
            reporter: Reporter::default(),
            remote_created: None,
            remote_modified: None,
            raw_json: "{}".into(),
            content_hash: 0,
        };
        use LeftReason::*;
        use TicketState::*;
        let table: [(Option<i64>, TicketState, Result<(), LeftReason>); 9] = [
            (Some(4711), Avoin, Ok(())),
            (Some(4711), Vastaanotettu, Ok(())),
            // The account's state names match in any case.
            (Some(4711), Odottaa, Ok(())),
            (Some(4711), Tehty, Err(State)),
            (Some(4711), Valmis, Err(State)),
            (Some(4711), Other("Peruttu".into()), Err(State)),
            // Another contractor's ticket has left, whatever its state.
            (Some(12), Avoin, Err(Reassigned)),
            (Some(12), Tehty, Err(Reassigned)),
            (None, Avoin, Err(Reassigned)),
        ];
        for (assignee, state, expected) in table {
            let t = ticket(assignee, state.clone());
            assert_eq!(t.openness(4711, &open), expected, "{assignee:?} {state}");
        }
        // A state this version does not know is open when the account lists it.
        let t = ticket(Some(4711), Other("Työn alla".into()));
        assert_eq!(t.openness(4711, &["työn alla".to_owned()]), Ok(()));
        assert!(!ticket(Some(4711), Avoin).in_open_state(&[]));
    }
}
