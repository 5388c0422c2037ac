//! Queueing an action through the library (`huoltosync::engine::queue::queue`), as the CLI, the demo and
//! the HTTP API do: the queued row comes back, a refusal says which kind it is and names the
//! ticket, attachments are bounded whether they are files or bytes, and nothing is queued when
//! a check fails.

use huoltosync::domain::action::{Action, CreateRequest};
use huoltosync::engine::queue::{AttachmentSource, QueueError, QueueRequest, Task, queue};
use huoltosync::store::{Handle, OutboxRow};

use crate::helpers::{Setup, TestEnv};

async fn queue_in(
    env: &TestEnv,
    account: Option<&str>,
    task: Task,
) -> Result<OutboxRow, QueueError> {
    let store = Handle::open(env.config.store.path.clone()).await.unwrap();
    let request = QueueRequest {
        account: account.map(String::from),
        task,
        requested_by: Some("test".into()),
    };
    queue(&env.config, &store, request).await
}

fn accept(ticket: i64) -> Task {
    Task::Transition {
        ticket,
        action: Action::Accept { comment: None },
    }
}

fn hold(ticket: i64, reason: &str) -> Task {
    Task::Transition {
        ticket,
        action: Action::Hold {
            reason: reason.into(),
            notify: true,
        },
    }
}

fn new_ticket(attachments: Vec<AttachmentSource>) -> Task {
    Task::Create {
        ticket: CreateRequest {
            cost_centre_id: Some(1),
            title: "Ilmanvaihto".into(),
            description: "Ei toimi".into(),
            ..Default::default()
        },
        attachments,
    }
}

fn bytes(name: &str, n: usize) -> AttachmentSource {
    AttachmentSource::Bytes {
        file_name: name.into(),
        content_type: None,
        bytes: vec![7; n],
    }
}

#[tokio::test]
async fn a_queued_action_comes_back_as_its_pending_row_and_the_relay_delivers_it() {
    let env = Setup::tickets(3).start().await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    // One account configured: it need not be named.
    let row = queue_in(&env, None, accept(id)).await.unwrap();
    assert_eq!(
        (
            row.id,
            row.account.as_str(),
            row.ticket_id,
            row.kind.as_str(),
            row.status.as_str()
        ),
        (1, "sim-1", Some(id), "accept", "pending")
    );
    assert_eq!(
        (row.from_state.as_deref(), row.expected_state.as_deref()),
        (Some("Avoin"), Some("Vastaanotettu"))
    );
    // The next transition is checked against the state the queued one leads to.
    let held = queue_in(&env, Some("sim-1"), hold(id, "Odotetaan varaosia"))
        .await
        .unwrap();
    assert_eq!(
        (held.id, held.from_state.as_deref()),
        (2, Some("Vastaanotettu"))
    );
    assert_eq!(
        env.outbox(),
        [
            (1, "pending".into(), "accept".into(), Some(id)),
            (2, "pending".into(), "hold".into(), Some(id)),
        ]
    );
    let report = env.push().await;
    assert_eq!(report.delivered.len(), 2, "{:?}", report.dead);
    assert_eq!(
        env.applied(),
        [(id, "vastaanota".to_owned()), (id, "odotukseen".to_owned())]
    );
}

#[tokio::test]
async fn a_refusal_says_its_kind_names_the_ticket_and_queues_nothing() {
    let env = Setup::tickets(3).start().await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    let refused = |e: QueueError| match e {
        QueueError::Refused(m) => m,
        other => panic!("not a refusal: {other:?}"),
    };
    let invalid = |e: QueueError| match e {
        QueueError::Invalid(m) => m,
        other => panic!("not an invalid request: {other:?}"),
    };
    let m = refused(queue_in(&env, None, accept(999_999)).await.unwrap_err());
    assert!(
        m.contains("ticket 999999") && m.contains("not in the mirror"),
        "{m}"
    );
    let m = refused(queue_in(&env, None, hold(id, "x")).await.unwrap_err());
    assert!(
        m.contains(&format!("ticket {id}")) && m.contains("Avoin") && m.contains("Vastaanotettu"),
        "{m}"
    );
    let m = invalid(queue_in(&env, None, hold(id, "  ")).await.unwrap_err());
    assert!(
        m.contains(&format!("ticket {id}")) && m.contains("needs a reason"),
        "{m}"
    );
    let m = invalid(queue_in(&env, Some("sim-9"), accept(id)).await.unwrap_err());
    assert!(m.contains("sim-9") && m.contains("sim-1"), "{m}");
    let create = Task::Transition {
        ticket: id,
        action: Action::Create(huoltosync::domain::action::NewTicket {
            parent_id: None,
            cost_centre_id: 1,
            space_id: None,
            room_id: None,
            title: "T".into(),
            description: "D".into(),
            details: None,
            urgency: None,
            assignee_id: None,
            marker: huoltosync::domain::action::new_marker(),
        }),
    };
    let m = invalid(queue_in(&env, None, create).await.unwrap_err());
    assert!(m.contains(&format!("ticket {id}")), "{m}");
    let no_title = Task::Create {
        ticket: CreateRequest {
            parent_id: Some(id),
            description: "D".into(),
            ..Default::default()
        },
        attachments: vec![],
    };
    let m = refused(queue_in(&env, None, no_title).await.unwrap_err());
    assert!(m.contains("Otsikko") && m.contains("empty"), "{m}");
    assert!(env.outbox().is_empty(), "nothing queued");
}

#[tokio::test]
async fn an_id_in_several_mirrors_needs_its_account() {
    let env = Setup::tickets(3).accounts(2).start().await;
    env.sync_ok().await;
    let id = env.open_ids("sim-1")[0];
    match queue_in(&env, None, accept(id)).await.unwrap_err() {
        QueueError::Invalid(m) => assert!(m.contains("sim-1, sim-2"), "{m}"),
        other => panic!("{other:?}"),
    }
    let row = queue_in(&env, Some("sim-2"), accept(id)).await.unwrap();
    assert_eq!((row.account.as_str(), row.ticket_id), ("sim-2", Some(id)));
}

#[tokio::test]
async fn attachments_are_bounded_whether_files_or_bytes() {
    let env = Setup::tickets(1)
        .push_toml("max_attachment_bytes = 100")
        .start()
        .await;
    env.sync_ok().await;
    let big = env.dir.path().join("iso.jpg");
    std::fs::write(&big, vec![0u8; 101]).unwrap();
    let over = ["over the limit of 100", "max_attachment_bytes"];
    let cases: [(Vec<AttachmentSource>, Vec<&str>); 3] = [
        (
            vec![bytes("kuva.png", 101)],
            [&["kuva.png", "101 bytes"][..], &over].concat(),
        ),
        (
            vec![bytes("kuva.png", 1), AttachmentSource::Path(big.clone())],
            [&["iso.jpg", "101 bytes"][..], &over].concat(),
        ),
        (
            vec![AttachmentSource::Path("/nonexistent/kuva.jpg".into())],
            vec!["attachment /nonexistent/kuva.jpg"],
        ),
    ];
    for (attachments, expected) in cases {
        match queue_in(&env, Some("sim-1"), new_ticket(attachments))
            .await
            .unwrap_err()
        {
            QueueError::Attachment(m) => {
                for e in expected {
                    assert!(m.contains(e), "{e:?} not in {m}");
                }
            }
            other => panic!("not an attachment error: {other:?}"),
        }
    }
    assert!(env.outbox().is_empty(), "nothing queued");
    let at_limit = env.dir.path().join("pohjapiirros.pdf");
    std::fs::write(&at_limit, vec![1u8; 100]).unwrap();
    let row = queue_in(
        &env,
        Some("sim-1"),
        new_ticket(vec![
            bytes("kuva.png", 100),
            AttachmentSource::Path(at_limit),
        ]),
    )
    .await
    .unwrap();
    assert_eq!((row.kind.as_str(), row.attachments), ("create", 2));
    let stored: Vec<(String, String, i64)> = env
        .db()
        .prepare(
            "SELECT file_name, content_type, length(content) FROM outbox_attachments ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        stored,
        [
            ("kuva.png".into(), "image/png".into(), 100),
            ("pohjapiirros.pdf".into(), "application/pdf".into(), 100)
        ]
    );
}
