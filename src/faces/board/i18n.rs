//! The board's words: one catalogue per language (Finnish first, English when the browser asks
//! for it in `Accept-Language`), every label of every page through it, and times in
//! Europe/Helsinki in the language's format (`ti 7.4. klo 9.00`, `Tue 7 Apr 09:00`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Europe::Helsinki;

/// A page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fi,
    En,
}

impl Lang {
    /// The language an `Accept-Language` header prefers among Finnish and English (Finnish
    /// when it prefers neither, or says nothing).
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(h) = header else { return Lang::Fi };
        let mut best: Option<(f32, Lang)> = None;
        for part in h.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let lang = match primary {
                "fi" => Lang::Fi,
                "en" => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::Fi, |(_, l)| l)
    }

    /// The `lang` attribute of the page.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fi => "fi",
            Lang::En => "en",
        }
    }

    /// Every label, by key.
    pub fn words(self) -> &'static BTreeMap<&'static str, &'static str> {
        static FI_MAP: LazyLock<BTreeMap<&str, &str>> =
            LazyLock::new(|| FI.iter().copied().collect());
        static EN_MAP: LazyLock<BTreeMap<&str, &str>> =
            LazyLock::new(|| EN.iter().copied().collect());
        match self {
            Lang::Fi => &FI_MAP,
            Lang::En => &EN_MAP,
        }
    }

    /// One label.
    pub fn t(self, key: &str) -> &'static str {
        self.words().get(key).copied().unwrap_or("?")
    }

    /// An instant in Helsinki time: `ti 7.4. klo 9.00` / `Tue 7 Apr 09:00`.
    pub fn time(self, t: DateTime<Utc>) -> String {
        let l = t.with_timezone(&Helsinki);
        let wd = l.weekday().num_days_from_monday() as usize;
        match self {
            Lang::Fi => format!(
                "{} {}.{}. klo {}.{:02}",
                ["ma", "ti", "ke", "to", "pe", "la", "su"][wd],
                l.day(),
                l.month(),
                l.hour(),
                l.minute()
            ),
            Lang::En => format!(
                "{} {} {} {:02}:{:02}",
                ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][wd],
                l.day(),
                [
                    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                    "Dec"
                ][l.month0() as usize],
                l.hour(),
                l.minute()
            ),
        }
    }

    /// A visit's span in Helsinki time: `ti 7.4. klo 9.00–9.30` / `Tue 7 Apr 09:00–09:30`
    /// (both ends in full when they fall on different days).
    pub fn span(self, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
        let (s, e) = (start.with_timezone(&Helsinki), end.with_timezone(&Helsinki));
        if s.date_naive() != e.date_naive() {
            return format!("{} – {}", self.time(start), self.time(end));
        }
        match self {
            Lang::Fi => format!("{}–{}.{:02}", self.time(start), e.hour(), e.minute()),
            Lang::En => format!("{}–{:02}:{:02}", self.time(start), e.hour(), e.minute()),
        }
    }

    /// A stored instant (or text that is not one, as given) in Helsinki time.
    pub fn stored_time(self, s: &str) -> String {
        crate::domain::time::parse(s).map_or_else(|| s.to_owned(), |t| self.time(t))
    }

    /// An age in a word or two: `45 min`, `5 h`, `3 pv` / `3 d`.
    pub fn age(self, d: chrono::Duration) -> String {
        let m = d.num_minutes().max(0);
        match m {
            0..=59 => format!("{m} min"),
            60..=2879 => format!("{} h", m / 60),
            _ => format!(
                "{} {}",
                m / 1440,
                match self {
                    Lang::Fi => "pv",
                    Lang::En => "d",
                }
            ),
        }
    }

    /// One label with its `{name}` placeholders filled in.
    pub fn fill(self, key: &str, values: &[(&str, &str)]) -> String {
        values
            .iter()
            .fold(self.t(key).to_owned(), |text, (name, value)| {
                text.replace(&format!("{{{name}}}"), value)
            })
    }

    /// An outbox action's kind (`accept`, `hold`, `done`, `book`, `create`) as a label.
    pub fn action_kind(self, kind: &str) -> &'static str {
        self.t(match kind {
            "accept" => "k_accept",
            "hold" => "k_hold",
            "done" => "k_done",
            "book" => "k_book",
            _ => "k_create",
        })
    }

    /// Who asked for an action (`requested_by`: `cli`, `board:<user>`, an API token's name):
    /// "komentorivi", "taulu: kaisa", "API: erp".
    pub fn requested_by(self, by: &str) -> String {
        match by {
            "cli" => self.t("by_cli").to_owned(),
            "auto_book" => self.t("by_auto_book").to_owned(),
            "demo" => "demo".to_owned(),
            _ => match by.strip_prefix("board:") {
                Some(user) => format!("{}: {user}", self.t("by_board")),
                None => format!("{}: {by}", self.t("by_api")),
            },
        }
    }

    /// Why an action failed, in this language: the relay's reasons that are known are
    /// translated (Tampuuri's own message is kept as it was sent); any other is shown as the
    /// service's message.
    pub fn reason(self, why: &str) -> String {
        if let Some(rest) = why.strip_prefix("Tampuuri rejected it (HTTP ")
            && let Some((status, message)) = rest.split_once("): ")
        {
            return self.fill("why_rejected", &[("status", status), ("message", message)]);
        }
        let ticket = |prefix: &str, suffix: &str| {
            why.strip_prefix(prefix)
                .and_then(|r| r.split_once(suffix))
                .filter(|(id, _)| id.parse::<i64>().is_ok())
                .map(|(id, _)| id.to_owned())
        };
        if let Some(id) = ticket("ticket ", " does not exist in Tampuuri") {
            return self.fill("why_missing", &[("id", &id)]);
        }
        if let Some(id) = ticket("ticket ", " was deleted in Tampuuri") {
            return self.fill("why_deleted", &[("id", &id)]);
        }
        if let Some(id) = ticket("ticket ", " was re-assigned away from us") {
            return self.fill("why_reassigned", &[("id", &id)]);
        }
        self.fill("why_other", &[("message", why)])
    }

    /// A ticket state's name: Tampuuri's own in Finnish, translated in English.
    pub fn state(self, name: &str) -> String {
        if self == Lang::Fi {
            return name.to_owned();
        }
        match name.to_ascii_lowercase().as_str() {
            "avoin" => "Open".into(),
            "vastaanotettu" => "Accepted".into(),
            "odottaa" => "On hold".into(),
            "tehty" => "Done".into(),
            "valmis" => "Closed".into(),
            _ => name.to_owned(),
        }
    }
}

macro_rules! catalogue {
    ($($key:literal => $fi:literal, $en:literal;)*) => {
        const FI: &[(&str, &str)] = &[$(($key, $fi),)*];
        const EN: &[(&str, &str)] = &[$(($key, $en),)*];
    };
}

catalogue! {
    "app" => "Huoltotaulu", "Service board";
    "nav_board" => "Taulu", "Board";
    "nav_outbox" => "Lähtevät", "Outbox";
    "nav_status" => "Tila", "Status";
    "nav_label" => "Päävalikko", "Main menu";
    "signed_in_as" => "Kirjautunut", "Signed in as";
    "role_dispatcher" => "työnjohtaja", "dispatcher";
    "role_viewer" => "katselija", "viewer";
    "sign_out" => "Kirjaudu ulos", "Sign out";
    "login_title" => "Kirjaudu sisään", "Sign in";
    "username" => "Käyttäjätunnus", "User name";
    "password" => "Salasana", "Password";
    "sign_in" => "Kirjaudu", "Sign in";
    "login_failed" => "Käyttäjätunnus tai salasana on väärä.", "The user name or password is wrong.";
    "login_throttled" => "Liian monta epäonnistunutta yritystä. Yritä myöhemmin uudelleen.", "Too many failed attempts. Try again later.";
    "login_busy" => "Kirjautumisia on juuri nyt liian monta. Yritä hetken päästä uudelleen.", "Too many sign-ins at this moment. Try again in a moment.";
    "login_foreign" => "Kirjautuminen toiselta sivustolta ei käy. Avaa kirjautumissivu itse ja kirjaudu siellä.", "A sign-in from another site is refused. Open the sign-in page yourself and sign in there.";
    "link_used" => "Kirjautumislinkki on jo käytetty. Pyydä uusi linkki tai kirjaudu salasanalla.", "This sign-in link was used already. Ask for a new link or sign in with your password.";
    "link_expired" => "Kirjautumislinkki on vanhentunut (voimassa 5 minuuttia). Pyydä uusi linkki.", "This sign-in link has expired (it is valid for 5 minutes). Ask for a new link.";
    "link_unknown" => "Kirjautumislinkki ei kelpaa.", "This sign-in link is not valid.";
    "signed_out" => "Olet kirjautunut ulos.", "You are signed out.";
    "board_title" => "Avoimet tehtävät", "Open tickets";
    "filters" => "Rajaus", "Filters";
    "f_account" => "Tili", "Account";
    "f_state" => "Tila", "State";
    "f_urgency" => "Kiireellisyys", "Urgency";
    "f_age" => "Ikä", "Age";
    "f_q" => "Haku", "Search";
    "all" => "Kaikki", "All";
    "age_1" => "yli 1 pv", "over 1 day";
    "age_7" => "yli 7 pv", "over 7 days";
    "age_30" => "yli 30 pv", "over 30 days";
    "apply" => "Näytä", "Show";
    "clear" => "Tyhjennä", "Clear";
    "col_title" => "Otsikko", "Title";
    "col_address" => "Osoite", "Address";
    "col_state" => "Tila", "State";
    "col_age" => "Ikä", "Age";
    "col_urgency" => "Kiireellisyys", "Urgency";
    "col_next_visit" => "Seuraava käynti", "Next visit";
    "col_account" => "Tili", "Account";
    "pending" => "jonossa", "queued";
    "failed" => "epäonnistui", "failed";
    "failed_note" => "Tampuuri ei tehnyt tätä; tehtävä on yhä siinä tilassa, joka Tampuurissa on. Yritä uudelleen tai peru.", "Tampuuri did not apply it; the ticket is still in the state Tampuuri has. Retry it or cancel it.";
    "overdue" => "myöhässä", "overdue";
    "col_latest" => "Viimeistään", "Due";
    "prev" => "Edellinen", "Previous";
    "next" => "Seuraava", "Next";
    "page" => "Sivu", "Page";
    "paging" => "Sivut", "Pages";
    "n_tickets" => "tehtävää", "tickets";
    "no_tickets" => "Ei avoimia tehtäviä näillä rajauksilla.", "No open tickets match these filters.";
        "ticket" => "Tehtävä", "Ticket";
    "details" => "Tiedot", "Details";
    "d_state" => "Tila", "State";
    "d_description" => "Kuvaus", "Description";
    "d_extra" => "Lisätiedot", "Details";
    "d_urgency" => "Kiireellisyys", "Urgency";
    "d_access" => "Sisäänpääsy", "Access";
    "d_fault_class" => "Vikaluokka", "Fault class";
    "d_earliest" => "Aikaisintaan", "Earliest";
    "d_latest" => "Viimeistään", "Latest";
    "d_created" => "Luotu", "Created";
    "d_modified" => "Muokattu", "Modified";
    "d_cost_centre" => "Kustannuspaikka", "Cost centre";
    "d_space" => "Tilan tunnus", "Space id";
    "d_room" => "Huoneen tunnus", "Room id";
    "d_parent" => "Päätehtävä", "Parent ticket";
    "d_assignee" => "Työn suorittaja", "Assignee";
    "d_first_seen" => "Haettu ensimmäisen kerran", "First fetched";
    "d_last_changed" => "Muuttui viimeksi", "Last changed";
    "d_address" => "Osoite", "Address";
    "all_fields" => "Kaikki kentät", "All fields";
    "reporter" => "Ilmoituksen tekijä", "Reporter";
    "contact" => "Yhteystiedot", "Contact";
    "now_title" => "Nyt", "Now";
    "why_rejected" => "Tampuuri hylkäsi toimenpiteen (HTTP {status}): {message}", "Tampuuri refused it (HTTP {status}): {message}";
    "why_missing" => "tehtävää {id} ei ole Tampuurissa (poistettu?)", "ticket {id} does not exist in Tampuuri (deleted?)";
    "why_deleted" => "tehtävä {id} on poistettu Tampuurista", "ticket {id} was deleted in Tampuuri";
    "why_reassigned" => "tehtävä {id} on siirretty toiselle suorittajalle", "ticket {id} was re-assigned away from us";
    "why_other" => "Palvelun viesti: {message}", "{message}";
    "r_name" => "Nimi", "Name";
    "r_phone" => "Puhelin", "Phone";
    "r_email" => "Sähköposti", "Email";
    "history" => "Historia", "History";
    "h_appeared" => "Tuli avoimeksi", "Appeared";
    "h_changed" => "Muuttui", "Changed";
    "h_left" => "Poistui", "Left";
    "h_returned" => "Palasi", "Returned";
    "no_history" => "Ei historiaa.", "No history.";
    "actions" => "Lähtevät toimenpiteet", "Outgoing actions";
    "no_actions" => "Ei lähteviä toimenpiteitä.", "No outgoing actions.";
    "a_kind" => "Toimenpide", "Action";
    "a_status" => "Tila", "Status";
    "a_attempts" => "Yrityksiä", "Attempts";
    "a_last_error" => "Viimeisin virhe", "Last error";
    "a_by" => "Jonoon", "Requested by";
    "by_cli" => "komentorivi", "command line";
    "by_board" => "taulu", "board";
    "by_api" => "API", "API";
    "by_auto_book" => "automaattinen varaus", "automatic booking";
    "a_created" => "Lisätty", "Queued";
    "st_pending" => "odottaa lähetystä", "pending";
    "st_dead" => "epäonnistui", "failed";
    "st_delivered" => "toimitettu", "delivered";
    "st_cancelled" => "peruttu", "cancelled";
    "k_accept" => "Vastaanotto", "Accept";
    "k_hold" => "Odotukseen", "Hold";
    "k_done" => "Kuittaus tehdyksi", "Done";
    "k_create" => "Uusi tehtävä", "New ticket";
    "do" => "Toimenpiteet", "Actions";
    "act_accept" => "Vastaanota", "Accept";
    "act_hold" => "Siirrä odotukseen", "Put on hold";
    "act_done" => "Kuittaa tehdyksi", "Mark done";
    "act_followup" => "Jatkotehtävä", "Follow-up ticket";
    "comment" => "Kommentti", "Comment";
    "reason" => "Syy (asukas näkee tämän)", "Reason (the resident reads this)";
    "notify" => "Ilmoita asukkaalle", "Tell the resident";
    "preview" => "Asukas lukee:", "The resident reads:";
    "fu_title" => "Otsikko", "Title";
    "fu_description" => "Kuvaus", "Description";
    "fu_urgency" => "Kiireellisyys", "Urgency";
    "photos" => "Valokuvat", "Photos";
    "queued" => "Toimenpide lisättiin lähtevien jonoon:", "The action was queued:";
    "refused" => "Toimenpidettä ei lisätty:", "The action was not queued:";
    "no_forms" => "Tehtävän tila ei salli toimenpiteitä nyt.", "The ticket's state allows no action now.";
    "viewer_note" => "Katselijana et voi tehdä muutoksia.", "As a viewer you cannot make changes.";
    "outbox_title" => "Lähtevät toimenpiteet", "Queued and failed actions";
    "o_id" => "Nro", "No.";
    "o_ticket" => "Tehtävä", "Ticket";
    "retry" => "Yritä uudelleen", "Retry";
    "cancel" => "Peru", "Cancel";
    "outbox_empty" => "Ei jonossa olevia tai epäonnistuneita toimenpiteitä.", "No queued or failed actions.";
    "retried" => "Toimenpide palautettiin jonoon:", "The action is queued again:";
    "cancelled" => "Toimenpide peruttiin:", "The action was cancelled:";
    "status_title" => "Palvelun tila", "Service status";
    "verdict_ok" => "Kunnossa", "Healthy";
    "verdict_bad" => "Vaatii huomiota", "Needs attention";
    "s_account" => "Tili", "Account";
    "s_last_sync" => "Viimeisin onnistunut synkronointi", "Last successful sync";
    "s_age" => "Ikä", "Age";
    "s_last_run" => "Viimeisin ajo", "Last run";
    "s_open" => "Avoimia", "Open";
    "s_calls_today" => "Kutsuja tänään", "Calls today";
    "s_calls_month" => "Kutsuja tässä kuussa", "Calls this month";
    "s_pending" => "Jonossa", "Queued";
    "s_dead" => "Epäonnistuneita", "Failed";
    "s_never_synced" => "ei ole koskaan synkronoitu onnistuneesti", "never synced successfully";
    "s_stale" => "viimeisin onnistunut synkronointi {age} sitten, yli rajan {limit}", "last successful sync {age} ago, over the {limit} threshold";
    "s_dead_n" => "epäonnistuneita toimenpiteitä: {n}", "failed actions: {n}";
    "run_ok" => "onnistui", "ok";
    "run_failed" => "epäonnistui", "failed";
    "run_interrupted" => "keskeytyi", "interrupted";
    "run_running" => "käynnissä", "running";
    "s_problems" => "Ongelmat", "Problems";
    "never" => "ei koskaan", "never";
    "cost_title" => "Kustannukset tässä kuussa", "Cost this month";
    "c_customer" => "Asiakas", "Customer";
    "c_calls" => "Kutsuja", "Calls";
    "c_projected" => "Ennuste kuukaudelle", "Projected for the month";
    "c_price" => "Edullisin paketti", "Cheapest package";
    "webhooks_title" => "Webhookit", "Webhooks";
    "w_received" => "Vastaanotettuja", "Deliveries received";
    "w_pending" => "Käsittelemättä", "Events pending";
    "w_parked" => "Sivuun siirrettyjä", "Events parked";
    "w_fetches" => "Hakuja", "Fetches";
    "k_book" => "Käynnin varaus", "Visit booking";
    "visits" => "Käynnit", "Visits";
    "no_visits" => "Ei varattuja käyntejä.", "No visits booked.";
    "v_booked" => "Varattu", "Booked";
    "v_moved" => "Siirretty", "Moved";
    "v_cancelled" => "Peruttu", "Cancelled";
    "v_technician" => "Asentaja", "Technician";
    "v_service" => "Palvelu", "Service";
    "v_was" => "aiemmin", "was";
    "v_src_booking" => "huoltosync varasi", "booked by huoltosync";
    "v_src_webhook" => "Slotin ilmoitus", "Slotti webhook";
    "v_src_reconcile" => "Slotin tarkistus", "Slotti check";
    "act_book" => "Varaa käynti", "Book a visit";
    "book_note" => "Ensimmäinen vapaa aika varataan Slotista; Slotti vahvistaa sen asukkaalle.", "The first free time is booked in Slotti, which confirms it to the resident.";
    "book_technician" => "Asentaja (valinnainen)", "Technician (optional)";
    "book_after" => "Aikaisintaan (valinnainen)", "Earliest (optional)";
    "book_slots" => "Näytä vapaat ajat", "Show free times";
    "free_slots" => "Ensimmäiset vapaat ajat", "The first free times";
    "booking_queued" => "Käynnin varaus lisättiin jonoon:", "The visit booking was queued:";
    "book_no_key" => "Käyntiä ei voi varata täältä: palvelu luki asetukset ilman Slotin avainta (huoltosync serve). Varaa komennolla huoltosync task book.", "A visit cannot be booked here: the service read its config without the Slotti key (huoltosync serve). Book with huoltosync task book.";
    "err_slotti" => "Slotilta ei saatu vastausta:", "Slotti did not answer:";
    "err_title" => "Virhe", "Error";
    "err_csrf" => "Lomakkeen tarkiste puuttuu tai on väärä. Lataa sivu uudelleen ja yritä uudestaan.", "The form's check token is missing or wrong. Reload the page and try again.";
    "err_viewer" => "Katselijan tunnuksella ei voi tehdä muutoksia.", "A viewer cannot make changes.";
    "err_not_found" => "Sivua tai tehtävää ei löydy.", "No such page or ticket.";
    "err_internal" => "Palvelussa tapahtui virhe; katso palvelun loki.", "The service failed; see its log.";
    "err_busy" => "Liian monta avointa taulua; yritä myöhemmin.", "Too many open boards; try later.";
    "err_bad_form" => "Lomake on virheellinen.", "The form is not valid.";
    "back" => "Takaisin tauluun", "Back to the board";
    "live" => "Päivittyy automaattisesti", "Updates live";
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn both_catalogues_have_the_same_keys_once_each() {
        let fi: Vec<_> = FI.iter().map(|(k, _)| *k).collect();
        let en: Vec<_> = EN.iter().map(|(k, _)| *k).collect();
        assert_eq!(fi, en);
        assert_eq!(Lang::Fi.words().len(), fi.len(), "a key is given twice");
    }

    /// Every key a template (`t.key`, `t["key"]`) or the board's code (`lang.t("key")`,
    /// `lang.fill("key", …)`, `"key" =>` in a label match) names is in both catalogues.
    #[test]
    fn every_key_the_pages_use_is_in_both_catalogues() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/faces/board");
        let mut texts = Vec::new();
        for dir in [root.join("templates"), root.join("pages"), root.clone()] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() && p.file_name().is_some_and(|n| n != "i18n.rs") {
                    texts.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        let mut used = std::collections::BTreeSet::new();
        for (path, text) in &texts {
            let html = path.extension().is_some_and(|e| e == "html");
            for (i, _) in text.match_indices("t.") {
                let before = text[..i].chars().last();
                if !html || before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                let key: String = text[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !key.is_empty() {
                    used.insert(key);
                }
            }
            for pat in [".t(\"", " t[\"", ".fill(\""] {
                for (i, _) in text.match_indices(pat) {
                    let key: String = text[i + pat.len()..]
                        .chars()
                        .take_while(|c| *c != '"')
                        .collect();
                    used.insert(key);
                }
            }
        }
        // Keys built from a prefix in a template.
        used.retain(|k| !k.ends_with('_') && !k.contains(' '));
        assert!(used.len() > 100, "the scan found the keys: {used:?}");
        for key in &used {
            for lang in [Lang::Fi, Lang::En] {
                assert!(
                    lang.words().contains_key(key.as_str()),
                    "{key} is not in {lang:?}"
                );
            }
        }
    }

    #[test]
    fn reasons_and_requesters_read_in_the_pages_language() {
        let why = "Tampuuri rejected it (HTTP 400): Tila ei salli";
        assert_eq!(
            Lang::Fi.reason(why),
            "Tampuuri hylkäsi toimenpiteen (HTTP 400): Tila ei salli"
        );
        assert_eq!(
            Lang::En.reason(why),
            "Tampuuri refused it (HTTP 400): Tila ei salli"
        );
        assert_eq!(
            Lang::Fi.reason("ticket 7 was re-assigned away from us (to 12)"),
            "tehtävä 7 on siirretty toiselle suorittajalle"
        );
        assert_eq!(
            Lang::Fi.reason("ticket 7 was deleted in Tampuuri"),
            "tehtävä 7 on poistettu Tampuurista"
        );
        assert_eq!(Lang::Fi.reason("outo"), "Palvelun viesti: outo");
        assert_eq!(Lang::Fi.requested_by("cli"), "komentorivi");
        assert_eq!(Lang::Fi.requested_by("erp"), "API: erp");
        assert_eq!(Lang::Fi.requested_by("board:kaisa"), "taulu: kaisa");
    }

    #[test]
    fn the_browser_chooses_english_only_when_it_prefers_it() {
        for (h, want) in [
            (None, Lang::Fi),
            (Some("en"), Lang::En),
            (Some("en-GB,en;q=0.9"), Lang::En),
            (Some("fi-FI,fi;q=0.9,en;q=0.8"), Lang::Fi),
            (Some("sv-FI,en;q=0.5,fi;q=0.4"), Lang::En),
            (Some("de"), Lang::Fi),
            (Some("en;q=0"), Lang::Fi),
        ] {
            assert_eq!(Lang::from_accept_language(h), want, "{h:?}");
        }
    }

    #[test]
    fn times_are_helsinki_in_the_languages_format() {
        // 7 April 2026 06:00 UTC is a Tuesday, 9.00 in Helsinki (summer time).
        let t = Utc.with_ymd_and_hms(2026, 4, 7, 6, 0, 0).unwrap();
        assert_eq!(Lang::Fi.time(t), "ti 7.4. klo 9.00");
        assert_eq!(Lang::En.time(t), "Tue 7 Apr 09:00");
        // Winter: UTC+2.
        let t = Utc.with_ymd_and_hms(2026, 12, 31, 22, 5, 0).unwrap();
        assert_eq!(Lang::Fi.time(t), "pe 1.1. klo 0.05");
        assert_eq!(Lang::Fi.age(chrono::Duration::hours(50)), "2 pv");
        let (s, e) = (
            Utc.with_ymd_and_hms(2026, 4, 7, 6, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 4, 7, 6, 30, 0).unwrap(),
        );
        assert_eq!(Lang::Fi.span(s, e), "ti 7.4. klo 9.00–9.30");
        assert_eq!(Lang::En.span(s, e), "Tue 7 Apr 09:00–09:30");
        let next_day = e + chrono::Duration::days(1);
        assert_eq!(
            Lang::Fi.span(s, next_day),
            "ti 7.4. klo 9.00 – ke 8.4. klo 9.30"
        );
        assert_eq!(Lang::En.age(chrono::Duration::minutes(90)), "1 h");
    }
}
