//! `huoltosync demo`: the main job on the built-in default. Starts the simulator in-process on
//! a free loopback port (with its Slotti), writes a config and a fresh store in a demo folder,
//! runs a full sync and an unchanged re-sync, queues and pushes the contractor's work, books a
//! technician's visit in Slotti, and prints what happened. Needs nothing configured.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::cli::report::describe;
use crate::config::Config;
use crate::domain::action::{Action, CreateRequest};
use crate::domain::escape::esc;
use crate::engine::queue::{AttachmentSource, QueueRequest, Task};
use crate::sim::{Sim, SimOptions};
use crate::store::{Store, TicketFilter};
use crate::tampuuri::Api;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's config and store (its store is replaced on every run).
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Open tickets per simulated account.
    #[arg(long, default_value_t = 120)]
    pub tickets: u64,
    /// Simulated Tampuuri accounts.
    #[arg(long, default_value_t = 3)]
    pub accounts: u32,
    /// After the demo, keep the simulator and the daemon running with the HTTP API and the
    /// board on loopback; prints a one-time sign-in link and an API token. Ctrl-C stops both.
    #[arg(long)]
    pub serve: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let running = Sim::new(&SimOptions {
        webhook: None,
        tickets: args.tickets,
        accounts: args.accounts,
        seed: 2026,
        latency_ms: 0,
    })
    .with_slotti()
    .start("127.0.0.1:0")
    .await?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let store = dir.join("huoltosync-demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", store.display()));
        if f.exists() {
            std::fs::remove_file(&f)
                .with_context(|| format!("cannot replace the old demo store {}", f.display()))?;
        }
    }
    let config_path = dir.join("config.toml");
    std::fs::write(
        &config_path,
        demo_config(
            &running.base_url(),
            &running.slotti_url(),
            &store,
            args.accounts,
        ),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let config = Config::load(&config_path)?.config;
    let api = Api::new(&config)?;

    outln!(
        "huoltosync demo: a Tampuuri simulator at {} with {} account(s),",
        running.base_url(),
        args.accounts
    )?;
    outln!(
        "each holding {} open tickets for contractor 4711 and about {} others that must not be mirrored.\n",
        args.tickets,
        args.tickets / 4
    )?;
    let started = Instant::now();
    let first = crate::engine::sync::sync_all(&config, &api).await;
    outln!(
        "First sync ({:.1} s, page size {}, throttle {} calls/s):",
        started.elapsed().as_secs_f64(),
        config.tampuuri.page_size,
        config.tampuuri.max_requests_per_second
    )?;
    for r in &first {
        outln!("  {r}")?;
    }
    let calls_before = running.sim.total_calls();
    let started = Instant::now();
    let second = crate::engine::sync::sync_all(&config, &api).await;
    outln!(
        "\nSecond sync, nothing changed in Tampuuri ({:.1} s):",
        started.elapsed().as_secs_f64()
    )?;
    for r in &second {
        outln!("  {r}")?;
    }
    outln!(
        "  {} API calls in all (one per page); ticket rows rewritten: {}",
        running.sim.total_calls() - calls_before,
        second.iter().map(|r| r.counts.rows_written).sum::<u64>()
    )?;

    // One exchange for the demo's process: every remote calls through `api`'s.
    workflow(&config, &api, &running).await?;
    visit(&config, &api, &running).await?;

    let mut db = Store::open(&store)?;
    let rows = db.mirror().tickets(&TicketFilter::default())?;
    outln!("\nA few mirrored tickets (of {}):", rows.len())?;
    for r in rows.iter().step_by((rows.len() / 5).max(1)).take(5) {
        outln!(
            "  {:<6} #{:<5} {:<13} {}",
            esc(&r.account),
            r.id,
            esc(&r.state),
            esc(r.title.as_deref().unwrap_or("-"))
        )?;
    }
    outln!("\nThe store is {}; look around with:", store.display())?;
    let bin = bin();
    outln!("  {bin} --config {} tasks", config_path.display())?;
    outln!("  {bin} --config {} status", config_path.display())?;
    outln!("  {bin} --config {} outbox", config_path.display())?;
    outln!(
        "  sqlite3 {} 'select account, id, state, title from open_tickets limit 5'",
        store.display()
    )?;
    let ok = first
        .iter()
        .chain(&second)
        .all(crate::engine::sync::SyncReport::ok);
    if args.serve && ok {
        let served = serve(&config_path, &store).await;
        running.stop().await;
        return served;
    }
    running.stop().await;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The push path: accept two tickets, hold one, finish one, create a follow-up with a photo,
/// each queued as the CLI and the HTTP API queue them; push, and show what the simulator now
/// says.
async fn workflow(config: &Config, api: &Api, running: &crate::sim::Running) -> anyhow::Result<()> {
    let account = config.accounts[0].name.clone();
    let mut db = Store::open(&config.store.path)?;
    let ids: Vec<i64> = db
        .mirror()
        .tickets(&TicketFilter {
            account: Some(account.clone()),
            ..Default::default()
        })?
        .iter()
        .take(3)
        .map(|t| t.id)
        .collect();
    drop(db);
    let [a, b, c] = ids[..] else {
        anyhow::bail!("the demo needs at least 3 tickets in {account}")
    };
    let transition = |ticket: i64, action: Action| Task::Transition { ticket, action };
    let steps = vec![
        transition(
            a,
            Action::Accept {
                comment: Some("Asentaja tulee huomenna klo 9".into()),
            },
        ),
        transition(b, Action::Accept { comment: None }),
        transition(
            b,
            Action::Hold {
                reason: "Odotetaan varaosia toimittajalta".into(),
                notify: true,
            },
        ),
        transition(
            c,
            Action::Done {
                comment: Some("Vaihdettu tiiviste, toimii".into()),
                notify: true,
            },
        ),
        Task::Create {
            ticket: CreateRequest {
                parent_id: Some(a),
                title: "Jatkotyö: putken vaihto".into(),
                description: "Vuotava putkiosuus kylpyhuoneessa vaihdettava, kuva liitteenä."
                    .into(),
                urgency: Some("Kiireellinen".into()),
                ..Default::default()
            },
            // A tiny generated photo: a 1×1 PNG.
            attachments: vec![AttachmentSource::Bytes {
                file_name: "kuva-vuoto.png".into(),
                content_type: None,
                bytes: PNG_1X1.to_vec(),
            }],
        },
    ];
    let store = crate::store::Handle::open(config.store.path.clone()).await?;
    outln!("\nThe contractor's work on {account}, queued in the outbox:")?;
    for task in steps {
        let request = QueueRequest {
            account: Some(account.clone()),
            task,
            requested_by: Some("demo".into()),
        };
        let row = crate::engine::queue::queue(config, &store, request).await?;
        outln!("  queued #{}: {}", row.id, describe(&row))?;
    }
    let before = running.sim.total_calls();
    let report = crate::engine::push::push_pending(config, api, &store).await?;
    outln!(
        "Pushed: {} delivered, {} dead-lettered, {} API calls (the follow-up is fetched once so it shows at once).",
        report.delivered.len(),
        report.dead.len(),
        running.sim.total_calls() - before
    )?;
    outln!("What the simulated Tampuuri now says:")?;
    for id in [a, b, c] {
        if let Some(t) = running.sim.ticket(&account, id) {
            outln!("  #{id:<5} {:<13} {}", esc(&t.tila), esc(&t.otsikko))?;
        }
    }
    for row in report.delivered.iter().filter(|r| r.kind == "create") {
        let id = crate::store::Store::open(&config.store.path)?
            .outbox()
            .outbox_row(row.id)?
            .and_then(|r| r.created_ticket_id);
        if let Some(t) = id.and_then(|id| running.sim.ticket(&account, id)) {
            outln!(
                "  #{:<5} {:<13} {} (follow-up of #{a}, {} attachment: {})",
                t.id,
                esc(&t.tila),
                esc(&t.otsikko),
                t.liitteet.len(),
                esc(&t
                    .liitteet
                    .iter()
                    .filter_map(|l| l.get("FileName").and_then(|f| f.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "))
            )?;
        }
    }
    let polled = crate::engine::sync::sync_all(config, api).await;
    outln!("The next poll brings the mirror up to date:")?;
    outln!("  {}", polled[0])?;
    Ok(())
}

/// A visit booked in Slotti for an Avoin ticket whose resident has a contact, as `task book`
/// queues it; one push books it and tells Tampuuri (accept, then the hold the resident reads).
async fn visit(config: &Config, api: &Api, running: &crate::sim::Running) -> anyhow::Result<()> {
    use crate::engine::visits::book;
    let Some(slotti) = &config.slotti else {
        return Ok(());
    };
    let account = config.accounts[0].name.clone();
    let store = crate::store::Handle::open(config.store.path.clone()).await?;
    let client = crate::slotti::Client::new(config, slotti, api.exchange())?;
    let catalogue = book::Catalogue::fetch(&client).await?;
    let acc = account.clone();
    let avoin: Vec<i64> = store
        .call(move |s| {
            s.mirror().tickets(&TicketFilter {
                account: Some(acc),
                state: Some("Avoin".into()),
                all: false,
            })
        })
        .await?
        .iter()
        .map(|t| t.id)
        .collect();
    let opts = book::BookOptions::default();
    let mut chosen = None;
    for id in avoin {
        if let Ok(b) = book::prepare(slotti, &catalogue, &store, &account, id, &opts).await {
            chosen = Some((id, b));
            break;
        }
    }
    let Some((id, mut booking)) = chosen else {
        outln!("\nNo Avoin ticket with the resident's phone or e-mail: no visit booked.")?;
        return Ok(());
    };
    let c = book::constraints(slotti, &booking);
    booking.slot = book::free_slots(&client, &booking, &c, crate::domain::time::now(), 1, &[])
        .await?
        .into_iter()
        .next();
    client.meter().record(&store).await?;
    outln!("\nA technician's visit for #{id}, booked in Slotti:")?;
    if let Some(s) = &booking.slot {
        outln!(
            "  first free time: {}",
            esc(&book::describe_slot(&booking, s, slotti.timezone))
        )?;
    }
    let row = crate::engine::queue::queue(
        config,
        &store,
        QueueRequest {
            account: Some(account.clone()),
            task: Task::Book {
                ticket: id,
                booking: Box::new(booking),
            },
            requested_by: Some("demo".into()),
        },
    )
    .await?;
    outln!("  queued #{}: {}", row.id, describe(&row))?;
    let report = crate::engine::push::push_pending(config, api, &store).await?;
    outln!(
        "  pushed: {} delivered (the booking, then the accept and the hold that tell Tampuuri)",
        report.delivered.len()
    )?;
    for e in running.sim.log().iter().filter(|e| e.ticket_id == id) {
        match e.body.get("Kommentti").and_then(|k| k.as_str()) {
            Some(said) => outln!("  Tampuuri got {}: {}", esc(&e.action), esc(said))?,
            None => outln!("  Tampuuri got {}", esc(&e.action))?,
        }
    }
    Ok(())
}

/// `demo --serve`: the demo's config gets an `[api]` listener on a free loopback port, a
/// write token and a board user, both made up now; then the daemon runs on it, as `huoltosync
/// run` would, until Ctrl-C (or SIGTERM). Prints a one-time sign-in link and the token.
/// Removes nothing: the demo folder stays, as the plain demo leaves it.
async fn serve(config_path: &std::path::Path, store: &std::path::Path) -> anyhow::Result<ExitCode> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let token = crate::faces::board::new_token();
    let password = crate::faces::board::new_token();
    let hash = crate::faces::board::hash_password(&password)?;
    let mut text = std::fs::read_to_string(config_path)?;
    text.push_str(&serve_config(port, &token, &hash));
    std::fs::write(config_path, text)?;
    let config = Config::load(config_path)?.config;
    let listen = config
        .api
        .as_ref()
        .and_then(|a| a.listen)
        .context("the demo's [api] section did not load")?;
    let mut db = Store::open(store)?;
    let link = crate::faces::board::create_login_link(&mut db, "demo", crate::domain::time::now())?;
    drop(db);
    let url = crate::faces::board::login_url(&config.board, listen, &link);
    outln!("\nThe daemon now runs on this store, with the HTTP API and the board on {listen}.")?;
    outln!("  Board: open {url} (a one-time sign-in link, valid 5 minutes; user demo).")?;
    outln!(
        "  API:   curl -H 'Authorization: Bearer {token}' http://{listen}/api/v1/tickets?limit=5"
    )?;
    outln!(
        "  A new sign-in link: {} --config {} board login-link --user demo",
        bin(),
        config_path.display()
    )?;
    outln!("Ctrl-C stops the daemon and the simulator; the demo folder stays.")?;
    crate::service::run(config_path.to_path_buf(), config).await
}

fn serve_config(port: u16, token: &str, hash: &str) -> String {
    format!(
        "\n# Added by `huoltosync demo --serve`.\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[api.tokens]]\nname = \"demo\"\ntoken = \"{token}\"\nscope = \"write\"\n\n\
         [board]\nenabled = true\ninsecure_cookies = true\n\n\
         [[board.users]]\nname = \"demo\"\npassword_hash = \"{hash}\"\nrole = \"dispatcher\"\n"
    )
}

/// The binary that is running: after a fresh clone nothing is installed on the PATH yet.
fn bin() -> String {
    std::env::current_exe().map_or_else(|_| "huoltosync".to_owned(), |p| p.display().to_string())
}

const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn demo_config(base_url: &str, slotti_url: &str, store: &std::path::Path, accounts: u32) -> String {
    let mut c = format!(
        "# Written by `huoltosync demo`: the embedded simulator's defaults.\n\
         [store]\npath = {store:?}\n\n\
         [tampuuri]\nbase_url = {base_url:?}\napi_key = \"sim-key\"\ncustomer_name = \"Simulaattori Oy\"\npage_size = 50\n\n\
         [slotti]\nbase_url = {slotti_url:?}\nbooking_account = \"huoltosim\"\napi_key = \"slotti-key\"\n\
         default_service = \"Huoltokäynti 30 min\"\n"
    );
    for k in 1..=accounts {
        c.push_str(&format!(
            "\n[[accounts]]\nname = \"sim-{k}\"\nusername = \"huolto\"\npassword = \"sim-password\"\ncontractor_id = 4711\n"
        ));
    }
    c
}
