//! The contractor's actions on tickets, as huoltosync queues them: accept, put on hold, mark
//! done, create a (follow-up) ticket, book a technician's visit; and the workflow rules that
//! decide whether an action is allowed from a ticket's state.
//!
//! Actions are stored in the outbox in this crate's own JSON form (serde of [`Action`]), and
//! turned into request bodies only at send time: Tampuuri's inside [`crate::tampuuri`] (accept,
//! hold, done, create), Slotti's inside [`crate::slotti`] (book, delivered by
//! `push::slotti`). Every kind waits in its ticket's queue, so a booking is ordered with the
//! ticket's other actions and has their durability.

use serde::{Deserialize, Serialize};

use crate::domain::model::TicketState;

/// Tampuuri's field limits for a new ticket.
pub const MAX_TITLE: usize = 255;
pub const MAX_DESCRIPTION: usize = 8000;
pub const MAX_DETAILS: usize = 20000;

/// One action to deliver: to Tampuuri (accept, hold, done, create) or to Slotti (book).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// `vastaanota`: take the job.
    Accept { comment: Option<String> },
    /// `odotukseen`: the job waits; the resident is told why.
    Hold { reason: String, notify: bool },
    /// `kuittaatehdyksi`: the job is done.
    Done {
        comment: Option<String>,
        notify: bool,
    },
    /// `ilmoitukset/base64`: a new ticket, a follow-up when it has a parent.
    Create(NewTicket),
    /// A visit to book in Slotti (`POST bookings/`); the ticket's state does not change.
    Book(Box<VisitBooking>),
}

/// A visit to book in Slotti for a ticket: what to book, within which limits, for whom. The
/// relay (`push::slotti`) books `slot`, or when that is taken (or there is none) the first
/// free slot that meets the same constraints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitBooking {
    pub service: BookedService,
    /// The technicians allowed; empty: any.
    pub technicians: Vec<Technician>,
    /// Every technician Slotti listed when it was queued, to name the one a slot is of.
    pub resources: Vec<Technician>,
    /// Start at or after this (`--after`).
    pub after: Option<chrono::DateTime<chrono::Utc>>,
    /// End at or before this (`--before`).
    pub before: Option<chrono::DateTime<chrono::Utc>>,
    /// Start exactly at this (`--at`).
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// The slot to book; `None`: the relay asks for the first free one.
    pub slot: Option<BookedSlot>,
    /// The span of every slot a booking was sent for (the earliest start, the latest end): an
    /// in-doubt booking is looked for there by its marker before anything is sent again.
    pub tried: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    /// The resident (personal data: `None` once the purge erased it).
    pub customer: Option<BookingCustomer>,
    /// What whoever reads the calendar sees: account, ticket id, title, address, then the
    /// marker (`[erased]` once the purge erased it).
    pub info: String,
    /// `[huoltosync:…]`, the end of `info`: how a booking whose answer was lost is found.
    pub marker: String,
}

/// The Slotti service booked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookedService {
    pub guid: String,
    pub name: String,
    pub duration_minutes: u32,
}

/// A technician (a Slotti resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Technician {
    pub guid: String,
    pub id: i64,
    pub name: String,
}

/// A free time of one technician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookedSlot {
    pub resource_guid: String,
    pub resource_id: i64,
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
}

/// The resident a visit is booked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingCustomer {
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

impl VisitBooking {
    /// The name of the technician with this resource guid, when known.
    pub fn technician_name(&self, guid: &str) -> Option<&str> {
        self.resources
            .iter()
            .chain(&self.technicians)
            .find(|t| t.guid == guid)
            .map(|t| t.name.as_str())
    }
}

/// A ticket to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTicket {
    pub parent_id: Option<i64>,
    pub cost_centre_id: i64,
    pub space_id: Option<i64>,
    pub room_id: Option<i64>,
    pub title: String,
    pub description: String,
    /// Extra details from the user, without the marker.
    pub details: Option<String>,
    pub urgency: Option<String>,
    pub assignee_id: Option<i64>,
    /// `[huoltosync:…]`, appended to `TyotehtavanLisatiedot` so that a create whose outcome is
    /// unknown can be found instead of created twice.
    pub marker: String,
}

impl NewTicket {
    /// `TyotehtavanLisatiedot` as sent: the user's details, then the marker.
    pub fn details_with_marker(&self) -> String {
        match self
            .details
            .as_deref()
            .map(str::trim_end)
            .filter(|d| !d.is_empty())
        {
            Some(d) => format!("{d}\n\n{}", self.marker),
            None => self.marker.clone(),
        }
    }
}

/// A file to send with a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub file_name: String,
    pub content_type: String,
    pub description: Option<String>,
    pub bytes: Vec<u8>,
}

impl Action {
    /// The outbox `kind`: `accept`, `hold`, `done`, `create`, `book`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Accept { .. } => "accept",
            Action::Hold { .. } => "hold",
            Action::Done { .. } => "done",
            Action::Create(_) => "create",
            Action::Book(_) => "book",
        }
    }

    /// The ticket's state once this transition took effect (`None` for a create, and for a
    /// booking, which leaves the state as it is).
    pub fn target_state(&self) -> Option<TicketState> {
        match self {
            Action::Accept { .. } => Some(TicketState::Vastaanotettu),
            Action::Hold { .. } => Some(TicketState::Odottaa),
            Action::Done { .. } => Some(TicketState::Tehty),
            Action::Create(_) | Action::Book(_) => None,
        }
    }

    /// Whether Slotti, not Tampuuri, is the one this action is delivered to.
    pub fn is_for_slotti(&self) -> bool {
        matches!(self, Action::Book(_))
    }

    /// Whether the workflow allows this transition from `from`:
    /// `Avoin | Odottaa → vastaanota`, `Vastaanotettu → odotukseen`,
    /// `Avoin | Vastaanotettu | Odottaa → kuittaatehdyksi`; a visit is booked for a ticket in
    /// any of those.
    pub fn allowed_from(&self, from: &TicketState) -> bool {
        use TicketState::*;
        match self {
            Action::Accept { .. } => matches!(from, Avoin | Odottaa),
            Action::Hold { .. } => matches!(from, Vastaanotettu),
            Action::Done { .. } | Action::Book(_) => {
                matches!(from, Avoin | Vastaanotettu | Odottaa)
            }
            Action::Create(_) => true,
        }
    }

    /// What this action is, in a few words: `accept`, `hold ("Odotetaan varaosia")`.
    pub fn describe(&self) -> String {
        match self {
            Action::Accept { .. } => "accept".into(),
            Action::Hold { reason, .. } => format!("hold ({reason:?})"),
            Action::Done { .. } => "done".into(),
            Action::Create(t) => match t.parent_id {
                Some(p) => format!("create follow-up of {p} ({:?})", t.title),
                None => format!("create ({:?})", t.title),
            },
            Action::Book(b) => match &b.slot {
                Some(s) => format!(
                    "book a visit ({:?}, {} UTC, {})",
                    b.service.name,
                    s.start.format("%Y-%m-%d %H:%M"),
                    b.technician_name(&s.resource_guid)
                        .unwrap_or("a technician")
                ),
                None => format!("book a visit ({:?}, the first free time)", b.service.name),
            },
        }
    }
}

/// What the mirror and the outbox know about a ticket, read inside the enqueue transaction.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The ticket in the mirror, if it is there.
    pub ticket: Option<MirroredTicket>,
    /// Its state counting our queued and recently delivered actions.
    pub effective_state: Option<TicketState>,
    /// Its follow-up tickets (by `ParentId`) and their effective states.
    pub followups: Vec<(i64, TicketState)>,
    /// Follow-up creates of it still in the outbox (pending or dead), by outbox id.
    pub queued_followups: Vec<i64>,
    /// Its live visit (booked or moved) in Slotti, if any.
    pub active_visit: Option<ActiveVisit>,
    /// A booking of it still in the outbox (pending or dead), by outbox id.
    pub queued_booking: Option<i64>,
}

/// A ticket's live visit, as the enqueue checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveVisit {
    pub booking_guid: String,
    /// UTC, as stored.
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
}

/// A ticket as the mirror holds it.
#[derive(Debug, Clone)]
pub struct MirroredTicket {
    pub state: TicketState,
    pub open: bool,
    pub left_reason: Option<String>,
    pub cost_centre_id: Option<i64>,
    pub space_id: Option<i64>,
    pub room_id: Option<i64>,
}

/// Checks a transition against the ticket's facts: it must be in the mirror and in our open
/// set, the workflow must allow it from the ticket's current (mirrored or pending) state, a
/// hold needs a reason, and (when `require_followups_done`) a done needs every follow-up
/// carried out. Errors name the ticket and both states.
pub fn check_transition(
    action: Action,
    account: &str,
    id: i64,
    facts: &Facts,
    require_followups_done: bool,
) -> anyhow::Result<Action> {
    let Some(ticket) = &facts.ticket else {
        anyhow::bail!(
            "ticket {id} is not in the mirror of account {account}: check the id, or run `huoltosync run --once` to refresh the mirror"
        );
    };
    if !ticket.open {
        anyhow::bail!(
            "ticket {id} in account {account} has left our open set ({}, state {}): it cannot be acted on",
            ticket.left_reason.as_deref().unwrap_or("left"),
            ticket.state
        );
    }
    let current = facts
        .effective_state
        .clone()
        .unwrap_or_else(|| ticket.state.clone());
    let how = if current == ticket.state {
        "mirrored".to_owned()
    } else {
        format!("after queued actions; Tampuuri last said {}", ticket.state)
    };
    if !action.allowed_from(&current) {
        let allowed = match action {
            Action::Accept { .. } => "Avoin or Odottaa",
            Action::Hold { .. } => "Vastaanotettu (accept it first)",
            _ => "Avoin, Vastaanotettu or Odottaa",
        };
        let ticket = format!("ticket {id} in account {account}");
        let what = match action {
            Action::Accept { .. } => format!("accept {ticket}"),
            Action::Hold { .. } => format!("put {ticket} on hold"),
            Action::Done { .. } => format!("mark {ticket} done"),
            Action::Book(_) => format!("book a visit for {ticket}"),
            Action::Create(_) => format!("{} {ticket}", action.kind()),
        };
        anyhow::bail!(
            "cannot {what}: its state is {current} ({how}); {} → {} is allowed only from {allowed}",
            action.kind(),
            action
                .target_state()
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
    }
    if let Action::Hold { reason, .. } = &action
        && reason.trim().is_empty()
    {
        anyhow::bail!(
            "hold of ticket {id} needs a reason (--reason): the resident is told why the job waits"
        );
    }
    if matches!(action, Action::Done { .. }) && require_followups_done {
        let mut open: Vec<String> = facts
            .followups
            .iter()
            .filter(|(_, s)| !s.is_finished())
            .map(|(c, s)| format!("{c} ({s})"))
            .collect();
        open.extend(
            facts
                .queued_followups
                .iter()
                .map(|o| format!("a follow-up still queued as outbox action #{o}")),
        );
        if !open.is_empty() {
            anyhow::bail!(
                "cannot mark ticket {id} in account {account} done: its follow-up tickets are not carried out yet (Tehty or Valmis): {}; finish them first, or set [push] require_followups_done = false",
                open.join(", ")
            );
        }
    }
    Ok(action)
}

/// What the user gives for a new ticket; checked and completed by [`check_create`].
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub parent_id: Option<i64>,
    pub cost_centre_id: Option<i64>,
    pub space_id: Option<i64>,
    pub room_id: Option<i64>,
    pub title: String,
    pub description: String,
    pub details: Option<String>,
    pub urgency: Option<String>,
    pub assignee_id: Option<i64>,
}

/// Checks a new ticket and fills in what a follow-up inherits from its parent (cost centre,
/// space, room); assigns it to `contractor_id` unless another assignee is given.
pub fn check_create(
    req: CreateRequest,
    account: &str,
    contractor_id: i64,
    parent: &Facts,
) -> anyhow::Result<Action> {
    let p = match req.parent_id {
        Some(pid) => Some(parent.ticket.as_ref().ok_or_else(|| {
            anyhow::anyhow!("parent ticket {pid} is not in the mirror of account {account}: check --parent, or run `huoltosync run --once` first")
        })?),
        None => None,
    };
    let cost_centre_id = req.cost_centre_id.or(p.and_then(|p| p.cost_centre_id)).ok_or_else(|| {
        anyhow::anyhow!("a new ticket needs a cost centre (KustannuspaikkaId): give --cost-centre ID, or --parent to inherit the parent's")
    })?;
    let marker = new_marker();
    let t = NewTicket {
        parent_id: req.parent_id,
        cost_centre_id,
        space_id: req.space_id.or(p.and_then(|p| p.space_id)),
        room_id: req.room_id.or(p.and_then(|p| p.room_id)),
        title: req.title,
        description: req.description,
        details: req.details,
        urgency: req.urgency,
        assignee_id: Some(req.assignee_id.unwrap_or(contractor_id)),
        marker,
    };
    let mut problems = Vec::new();
    let len = |s: &str| s.chars().count();
    if t.title.trim().is_empty() {
        problems.push("--title (Otsikko) is empty".to_owned());
    }
    if len(&t.title) > MAX_TITLE {
        problems.push(format!(
            "--title (Otsikko) is {} characters, at most {MAX_TITLE} allowed",
            len(&t.title)
        ));
    }
    if t.description.trim().is_empty() {
        problems.push("--description (TyotehtavanKuvaus) is empty".to_owned());
    }
    if len(&t.description) > MAX_DESCRIPTION {
        problems.push(format!(
            "--description (TyotehtavanKuvaus) is {} characters, at most {MAX_DESCRIPTION} allowed",
            len(&t.description)
        ));
    }
    let details = len(&t.details_with_marker());
    if details > MAX_DETAILS {
        problems.push(format!(
            "--details (TyotehtavanLisatiedot) is {details} characters with huoltosync's {}-character marker, at most {MAX_DETAILS} allowed",
            t.marker.len() + 2
        ));
    }
    if !problems.is_empty() {
        anyhow::bail!("the new ticket cannot be queued: {}", problems.join("; "));
    }
    Ok(Action::Create(t))
}

/// The longest attachment file name sent to Tampuuri, in bytes of UTF-8 (what file systems
/// allow, and what the receiving end can store).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Why an attachment's file name (as sent: its last path component) cannot be sent, when it is
/// over [`MAX_FILE_NAME_BYTES`]. The message shows only the name's start.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.len() <= MAX_FILE_NAME_BYTES {
        return Ok(());
    }
    let start: String = name.chars().take(40).collect();
    Err(format!(
        "attachment file name {start:?}… is {} bytes, over the limit of {MAX_FILE_NAME_BYTES} bytes: shorten it",
        name.len()
    ))
}

/// The file name an attachment named `file_name` is sent with: its last path component (a
/// name, not a path), or `None` when there is none.
pub fn sent_file_name(file_name: &str) -> Option<String> {
    std::path::Path::new(file_name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.trim().is_empty())
}

/// Reads a file to attach: it must exist, be readable and be at most `max_bytes`. The
/// content type is guessed from the file name.
pub fn read_attachment(path: &std::path::Path, max_bytes: u64) -> anyhow::Result<Attachment> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("attachment {}: {e}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("attachment {}: not a file", path.display());
    }
    if meta.len() > max_bytes {
        anyhow::bail!(
            "attachment {} is {} bytes, over the limit of {max_bytes} ([push] max_attachment_bytes)",
            path.display(),
            meta.len()
        );
    }
    // The size `stat` reports is not the size read: /proc files say 0, a file may grow. Read
    // at most one byte past the limit and refuse when it is there.
    let bytes = read_bounded(path, max_bytes)
        .map_err(|e| anyhow::anyhow!("attachment {}: {e}", path.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "attachment {} is over the limit of {max_bytes} bytes ([push] max_attachment_bytes)",
                path.display()
            )
        })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "liite".into());
    check_file_name(&file_name).map_err(anyhow::Error::msg)?;
    let content_type = mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_owned();
    Ok(Attachment {
        file_name,
        content_type,
        description: None,
        bytes,
    })
}

/// An attachment given as bytes (the HTTP API's upload): at most `max_bytes`, like a file.
/// Without a content type, it is guessed from the file name.
pub fn attachment_from_bytes(
    file_name: &str,
    content_type: Option<&str>,
    bytes: Vec<u8>,
    max_bytes: u64,
) -> anyhow::Result<Attachment> {
    // A name, not a path: only its last component is kept.
    let Some(name) = sent_file_name(file_name) else {
        anyhow::bail!("attachment {file_name:?}: a file name is needed");
    };
    check_file_name(&name).map_err(anyhow::Error::msg)?;
    if bytes.len() as u64 > max_bytes {
        anyhow::bail!(
            "attachment {name} is {} bytes, over the limit of {max_bytes} ([push] max_attachment_bytes)",
            bytes.len()
        );
    }
    let content_type = match content_type.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t.to_owned(),
        None => mime_guess::from_path(&name)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
    };
    Ok(Attachment {
        file_name: name,
        content_type,
        description: None,
        bytes,
    })
}

/// The file's bytes, or `None` when it holds more than `max_bytes`.
fn read_bounded(path: &std::path::Path, max_bytes: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max_bytes).then_some(bytes))
}

/// A new correlation marker: `[huoltosync:` and 12 random hex digits `]`.
pub fn new_marker() -> String {
    format!(
        "[huoltosync:{:012x}]",
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use TicketState::*;

    #[test]
    fn an_attachment_is_read_with_a_bound_whatever_stat_says() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("kuva.png");
        std::fs::write(&photo, [7u8; 100]).unwrap();
        let a = read_attachment(&photo, 100).unwrap();
        assert_eq!((a.bytes.len(), a.content_type.as_str()), (100, "image/png"));
        let err = read_attachment(&photo, 99).unwrap_err().to_string();
        assert!(err.contains("kuva.png") && err.contains("99"), "{err}");
        // A /proc file: stat says 0 bytes, reading gives more.
        let proc = std::path::Path::new("/proc/self/maps");
        if proc.exists() {
            assert_eq!(std::fs::metadata(proc).unwrap().len(), 0);
            let err = read_attachment(proc, 16).unwrap_err().to_string();
            assert!(
                err.contains("/proc/self/maps") && err.contains("limit of 16 bytes"),
                "{err}"
            );
        }
    }

    #[test]
    fn an_attachment_given_as_bytes_is_bounded_and_named_like_a_file() {
        let a = attachment_from_bytes("kuva.png", None, vec![7u8; 100], 100).unwrap();
        assert_eq!(
            (a.file_name.as_str(), a.content_type.as_str(), a.bytes.len()),
            ("kuva.png", "image/png", 100)
        );
        let a = attachment_from_bytes("../../etc/raportti", Some("application/pdf"), vec![], 1)
            .unwrap();
        assert_eq!(
            (a.file_name.as_str(), a.content_type.as_str()),
            ("raportti", "application/pdf"),
            "a path is not a file name"
        );
        let err = attachment_from_bytes("kuva.png", None, vec![0; 101], 100)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kuva.png") && err.contains("101 bytes") && err.contains("100"),
            "{err}"
        );
        for bad in ["", " ", "/", "..", "kuvat/ "] {
            let err = attachment_from_bytes(bad, None, vec![], 100).unwrap_err();
            assert!(err.to_string().contains("file name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_workflow_allows_exactly_the_documented_transitions() {
        let accept = Action::Accept { comment: None };
        let hold = Action::Hold {
            reason: "x".into(),
            notify: true,
        };
        let done = Action::Done {
            comment: None,
            notify: true,
        };
        let table = [
            (&accept, [true, false, true, false, false]),
            (&hold, [false, true, false, false, false]),
            (&done, [true, true, true, false, false]),
        ];
        for (action, allowed) in table {
            for (state, ok) in TicketState::KNOWN.iter().zip(allowed) {
                assert_eq!(
                    action.allowed_from(state),
                    ok,
                    "{} from {state}",
                    action.kind()
                );
            }
        }
        assert_eq!(hold.target_state(), Some(Odottaa));
    }

    #[test]
    fn actions_round_trip_through_json_and_markers_are_short_and_distinct() {
        let a = Action::Hold {
            reason: "Odotetaan varaosia".into(),
            notify: false,
        };
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Action>(&s).unwrap(), a);
        let (m1, m2) = (new_marker(), new_marker());
        assert!(
            m1.starts_with("[huoltosync:") && m1.len() == 25 && m1 != m2,
            "{m1}"
        );
    }
}
