//! Deterministic, realistic Finnish tickets for the simulator: the same seed gives the same
//! tickets, titles, addresses and (made-up) resident contact data.

use chrono::{Duration, TimeZone, Utc};
use chrono_tz::Europe::Helsinki;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::{Party, SimTicket};

/// Our contractor id in every simulated account.
pub const CONTRACTOR_ID: i64 = 4711;
/// Other contractors' ids, for noise tickets.
const OTHER_CONTRACTORS: [i64; 4] = [4712, 5020, 6123, 7781];

const FAULTS: &[(&str, &str, &str)] = &[
    (
        "Vesivuoto kylpyhuoneessa",
        "Lattiakaivon ympäriltä tihkuu vettä, laatoissa kosteutta.",
        "LVI",
    ),
    (
        "Patteri ei lämpene",
        "Olohuoneen patteri on kylmä, termostaatti ei reagoi.",
        "LVI",
    ),
    (
        "Ulko-oven lukko jumittaa",
        "Porraskäytävän ulko-oven lukko ei aukea avaimella.",
        "Lukot",
    ),
    (
        "Porrasvalo rikki",
        "Porraskäytävän 3. kerroksen valaisin ei syty.",
        "Sähkö",
    ),
    (
        "Keittiön hana vuotaa",
        "Hanasta tippuu vettä jatkuvasti, tiiviste lienee kulunut.",
        "LVI",
    ),
    (
        "Ilmanvaihto ei toimi",
        "Liesituulettimen ja kylpyhuoneen poistot eivät vedä.",
        "IV",
    ),
    (
        "Saunan kiuas ei lämpene",
        "Taloyhtiön saunan kiuas ei lämpene, sulake palaa.",
        "Sähkö",
    ),
    (
        "Parvekkeen ovi ei sulkeudu",
        "Parvekeoven saranat ovat painuneet, ovi ei mene kiinni.",
        "Rakenne",
    ),
    (
        "WC-istuin vuotaa",
        "WC-istuimen säiliö täyttyy jatkuvasti ja vesi valuu.",
        "LVI",
    ),
    (
        "Hissi pysähtyy kerrosten väliin",
        "Hissi on pysähtynyt kahdesti kerrosten väliin tällä viikolla.",
        "Hissi",
    ),
    (
        "Pihavalaistus pois päältä",
        "Pihan valot eivät syty illalla, ajastin lienee rikki.",
        "Sähkö",
    ),
    (
        "Tukkeutunut viemäri",
        "Kylpyhuoneen lavuaari ei vedä, vesi seisoo altaassa.",
        "LVI",
    ),
    (
        "Ikkunan tiiviste irti",
        "Makuuhuoneen ikkunan tiiviste on irronnut, vetää kylmää.",
        "Rakenne",
    ),
    (
        "Palovaroitin piippaa",
        "Palovaroitin piippaa lyhyesti minuutin välein.",
        "Sähkö",
    ),
    (
        "Pyykkitupa: kone ei käynnisty",
        "Pyykkituvan pesukone nro 2 ei käynnisty.",
        "Laitteet",
    ),
    (
        "Roska-aitauksen portti rikki",
        "Jäteaitauksen portin salpa on irronnut.",
        "Piha",
    ),
];
const STREETS: &[&str] = &[
    "Koivutie",
    "Mäntykuja",
    "Rantakatu",
    "Kalevankatu",
    "Pihlajatie",
    "Myllypurontie",
    "Tammelan puistokatu",
    "Hämeenkatu",
    "Satamakatu",
    "Kirkkokatu",
    "Vaahteramäki",
    "Kuusitie",
];
const CITIES: &[(&str, &str)] = &[
    ("00100", "Helsinki"),
    ("02100", "Espoo"),
    ("01300", "Vantaa"),
    ("33100", "Tampere"),
    ("20100", "Turku"),
    ("90100", "Oulu"),
    ("40100", "Jyväskylä"),
    ("15100", "Lahti"),
];
const COMPANIES: &[&str] = &[
    "Koivurinne",
    "Merikallio",
    "Tammela",
    "Pihlajisto",
    "Rantapuisto",
    "Kuusikko",
    "Aurinkorinne",
];
const FIRST: &[&str] = &[
    "Aino", "Eero", "Helmi", "Juhani", "Kaisa", "Lauri", "Maija", "Olli", "Sanna", "Tuomas",
    "Venla", "Ville",
];
const LAST: &[&str] = &[
    "Virtanen",
    "Korhonen",
    "Mäkinen",
    "Nieminen",
    "Mäkelä",
    "Hämäläinen",
    "Laine",
    "Heikkinen",
    "Koskinen",
    "Järvinen",
];
const URGENCY: &[&str] = &["Normaali", "Kiireellinen", "Ei kiireellinen"];
const ACCESS: &[&str] = &[
    "Yleisavaimella saa mennä",
    "Asukas paikalla",
    "Sovitaan puhelimitse",
];

/// `count` open tickets for us plus about a quarter as many noise tickets (other
/// contractors' in any state, or ours but finished), ids from `first_id` in mixed order.
pub fn generate(rng: &mut StdRng, count: u64, first_id: i64) -> Vec<SimTicket> {
    let noise = count / 4;
    let mut kinds: Vec<bool> = (0..count + noise).map(|i| i < count).collect();
    kinds.shuffle(rng);
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, ours)| {
            let id = first_id + i as i64;
            let mut t = ticket(rng, id);
            if !ours {
                if rng.random_bool(0.5) {
                    t.tyonsuorittaja_id = Some(*OTHER_CONTRACTORS.choose(rng).expect("non-empty"));
                    t.tila = ["Avoin", "Vastaanotettu", "Odottaa", "Tehty", "Valmis"]
                        .choose(rng)
                        .expect("non-empty")
                        .to_string();
                } else {
                    t.tila = if rng.random_bool(0.5) {
                        "Tehty"
                    } else {
                        "Valmis"
                    }
                    .to_string();
                }
            }
            t
        })
        .collect()
}

/// One realistic open ticket assigned to us.
pub fn ticket(rng: &mut StdRng, id: i64) -> SimTicket {
    let (title, desc, class) = *FAULTS.choose(rng).expect("non-empty");
    let company = *COMPANIES.choose(rng).expect("non-empty");
    let street = *STREETS.choose(rng).expect("non-empty");
    let (zip, city) = *CITIES.choose(rng).expect("non-empty");
    let house = rng.random_range(1..60);
    let stair = ["A", "B", "C"].choose(rng).expect("non-empty");
    let flat = rng.random_range(1..40);
    let first = *FIRST.choose(rng).expect("non-empty");
    let last = *LAST.choose(rng).expect("non-empty");
    let created = Utc
        .with_ymd_and_hms(2026, 1, 1, 8, 0, 0)
        .single()
        .expect("valid date")
        + Duration::minutes(rng.random_range(0..60 * 24 * 300));
    let stamp = created
        .with_timezone(&Helsinki)
        .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
        .to_string();
    SimTicket {
        id,
        tila: "Avoin".into(),
        otsikko: title.into(),
        tyotehtavan_kuvaus: format!("{desc} Asunto {stair} {flat}."),
        tyotehtavan_lisatiedot: None,
        tyonsuorittaja_id: Some(CONTRACTOR_ID),
        kustannuspaikka_id: Some(rng.random_range(100..140)),
        tila_id: Some(rng.random_range(1000..9000)),
        huone_id: None,
        parent_id: None,
        kiireellisyys: Some((*URGENCY.choose(rng).expect("non-empty")).into()),
        sisaanpaasy: Some((*ACCESS.choose(rng).expect("non-empty")).into()),
        vikaluokka: Some(class.into()),
        suoritusaika_aikaisintaan: None,
        suoritusaika_viimeistaan: None,
        kohde: Some(format!(
            "As Oy {company}, {street} {house} {stair} {flat}, {zip} {city}"
        )),
        ilmoittaja: Some(Party {
            nimi: Some(format!("{first} {last}")),
            puhelin: Some(format!(
                "040 {:03} {:04}",
                rng.random_range(100..1000),
                rng.random_range(0..10000)
            )),
            sahkoposti: Some(format!("{}.{}@example.fi", ascii(first), ascii(last))),
        }),
        luotu: stamp.clone(),
        muokattu: stamp,
        liitteet: Vec::new(),
        extra: Default::default(),
    }
}

fn ascii(s: &str) -> String {
    s.to_lowercase()
        .replace('ä', "a")
        .replace('ö', "o")
        .replace('å', "a")
}
