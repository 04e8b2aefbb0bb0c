//! Deterministic, realistic-looking events for the benchmark, tests and demos: receipts
//! of 3–15 lines, most of them carded over a fixed pool of loyalty cards.

use till360_shared::card::with_check_digit;
use till360_shared::{
    AgentId, CardNumber, Currency, Event, EventKind, Receipt, ReceiptLine, Timestamp,
};

/// The products the receipts name (description, unit price in cents); a line's sku is
/// `400` and `unit * 7 + qty` in ten digits.
pub const PRODUCTS: &[(&str, i64)] = &[
    ("Milk 1l", 119),
    ("Bread", 249),
    ("Butter 250g", 229),
    ("Coffee 500g", 699),
    ("Apples 1kg", 299),
    ("Cheese", 389),
    ("Pasta 500g", 129),
    ("Tomatoes", 199),
    ("Yoghurt", 59),
    ("Orange juice", 189),
    ("Chocolate", 149),
    ("Detergent", 549),
];

/// 2026-01-05T08:00:00Z: a Monday morning.
const START_MS: i64 = 1_767_600_000_000;

pub struct Generator {
    state: u64,
    cards: Vec<CardNumber>,
    carded_percent: u64,
}

impl Generator {
    /// `card_count` loyalty cards (prefix 2401), `carded_percent` of receipts carded.
    pub fn new(seed: u64, card_count: usize, carded_percent: u64) -> Self {
        let cards = (0..card_count)
            .filter_map(|i| with_check_digit(&format!("2401{i:08}")).ok())
            .filter_map(|code| CardNumber::parse(&code).ok())
            .collect();
        Self {
            state: seed | 1,
            cards,
            carded_percent,
        }
    }

    pub fn cards(&self) -> &[CardNumber] {
        &self.cards
    }

    /// xorshift64*: stable across platforms and releases, unlike a library RNG.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A receipt event with `seq` from `agent`; times advance with `seq`.
    pub fn receipt(&mut self, agent: &AgentId, seq: u64) -> Event {
        let line_count = 3 + self.below(13) as usize;
        let lines = self.lines(line_count);
        let card = if !self.cards.is_empty() && self.below(100) < self.carded_percent {
            let i = self.below(self.cards.len() as u64) as usize;
            Some(self.cards[i].clone())
        } else {
            None
        };
        let at = Timestamp::from_unix_ms(
            START_MS + seq as i64 * 90_000 + self.below(60_000) as i64,
            60,
        );
        let total_cents = lines.iter().map(|l| l.amount_cents).sum();
        Event {
            agent: agent.clone(),
            seq,
            recorded_at: at,
            kind: EventKind::Receipt(Receipt {
                receipt_no: Some(format!("{}-{seq:06}", agent.till)),
                printed_at: Some(at),
                completed_at: at,
                card_last4: card.as_ref().map(|c| c.last4().to_string()),
                card,
                lines,
                total_cents,
                currency: Currency::EUR,
                unbalanced: false,
                unmatched_lines: 0,
            }),
        }
    }

    /// A card scan event with `seq` from `agent` (the card pool is not empty).
    fn card_scan(&mut self, agent: &AgentId, seq: u64) -> Event {
        let i = self.below(self.cards.len() as u64) as usize;
        let card = self.cards[i].clone();
        Event {
            agent: agent.clone(),
            seq,
            recorded_at: Timestamp::from_unix_ms(START_MS + seq as i64 * 90_000, 60),
            kind: EventKind::CardScanned { card },
        }
    }

    /// `count` events with seqs `first_seq..`: mostly receipts, some bare card scans.
    pub fn events(&mut self, agent: &AgentId, first_seq: u64, count: usize) -> Vec<Event> {
        (first_seq..first_seq + count as u64)
            .map(|seq| {
                if !self.cards.is_empty() && self.below(10) == 0 {
                    self.card_scan(agent, seq)
                } else {
                    self.receipt(agent, seq)
                }
            })
            .collect()
    }
}

/// Stores of the honest month: a chain across the Netherlands (id, lat, lon, tills).
pub const CHAIN: &[(&str, f64, f64, u32)] = &[
    ("S001", 52.370, 4.895, 6), // Amsterdam
    ("S002", 52.303, 4.862, 3), // Amstelveen
    ("S003", 52.381, 4.637, 4), // Haarlem
    ("S004", 52.091, 5.122, 5), // Utrecht
    ("S005", 52.156, 5.387, 3), // Amersfoort
    ("S006", 51.924, 4.478, 6), // Rotterdam
    ("S007", 52.070, 4.300, 5), // Den Haag
    ("S008", 52.160, 4.497, 3), // Leiden
    ("S009", 51.441, 5.478, 4), // Eindhoven
    ("S010", 53.219, 6.567, 4), // Groningen
    ("S011", 52.516, 6.083, 3), // Zwolle
    ("S012", 50.851, 5.691, 3), // Maastricht
];

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// The [`CHAIN`]'s locations, as `[[store]]` tables would give them.
pub fn chain_locations() -> std::collections::BTreeMap<String, crate::config::StoreLocation> {
    CHAIN
        .iter()
        .map(|(id, lat, lon, _)| {
            let at = crate::config::StoreLocation {
                lat: *lat,
                lon: *lon,
            };
            (id.to_string(), at)
        })
        .collect()
}

/// One household of the honest month: one card, shared by everyone in it.
struct Household {
    card: CardNumber,
    home: usize,
    /// The store next nearest to home (some trips go there).
    second: usize,
    members: Vec<Member>,
}

struct Member {
    /// Trips a week.
    trips_per_week: u64,
    /// Weekday trips at this store after work (a commuter), if any.
    work: Option<usize>,
    /// Shops twice on many days (a pensioner next to the store).
    daily: bool,
}

impl Generator {
    fn store_near(&mut self, home: usize, within_km: f64) -> usize {
        let (_, lat, lon, _) = CHAIN[home];
        let near: Vec<usize> = (0..CHAIN.len())
            .filter(|&i| i != home)
            .filter(|&i| {
                let (_, la, lo, _) = CHAIN[i];
                // Equirectangular is plenty for "roughly within".
                let x = (lo - lon).to_radians() * ((la + lat) / 2.0).to_radians().cos();
                let y = (la - lat).to_radians();
                6371.0 * (x * x + y * y).sqrt() <= within_km
            })
            .collect();
        if near.is_empty() {
            home
        } else {
            near[self.below(near.len() as u64) as usize]
        }
    }

    fn household(&mut self, index: usize) -> Option<Household> {
        let card = with_check_digit(&format!("2409{index:08}"))
            .ok()
            .and_then(|c| CardNumber::parse(&c).ok())?;
        let home = self.below(CHAIN.len() as u64) as usize;
        let second = self.store_near(home, 25.0);
        // 30 % live alone, 35 % in twos, the rest are families of 3-5; all share one card.
        let size = match self.below(100) {
            0..=29 => 1,
            30..=64 => 2,
            65..=79 => 3,
            80..=94 => 4,
            _ => 5,
        };
        let mut members = Vec::with_capacity(size);
        for m in 0..size {
            let adult = m < 2;
            let work = (adult && self.below(100) < 25).then(|| self.store_near(home, 60.0));
            members.push(Member {
                trips_per_week: if adult {
                    1 + self.below(4)
                } else {
                    self.below(2)
                },
                work,
                daily: adult && size <= 2 && self.below(100) < 5,
            });
        }
        Some(Household {
            card,
            home,
            second,
            members,
        })
    }

    /// A trip's local time of day in ms: opening hours 8:00-21:00, busier late afternoon.
    fn time_of_day(&mut self) -> i64 {
        let hour = match self.below(10) {
            0..=1 => 8 + self.below(3),  // morning
            2..=4 => 11 + self.below(4), // midday
            5..=8 => 15 + self.below(4), // after school / work
            _ => 19 + self.below(2),     // evening
        } as i64;
        hour * 3_600_000 + self.below(60) as i64 * MINUTE_MS + self.below(60_000) as i64
    }

    /// Every trip of a honest month: (store index, local ms since the month's start).
    fn trips(&mut self, h: &Household, days: i64) -> Vec<(usize, i64)> {
        let mut trips = Vec::new();
        for m in &h.members {
            for day in 0..days {
                let weekday = day % 7 < 5;
                // A trip on this day with probability trips_per_week / 7.
                if self.below(700) < m.trips_per_week * 100 {
                    let store = if self.below(100) < 80 {
                        h.home
                    } else {
                        h.second
                    };
                    let at = day * DAY_MS + self.time_of_day();
                    trips.push((store, at));
                    // Forgot something: back to the same store within the hour.
                    if self.below(100) < 8 {
                        let back = 10 + self.below(50) as i64;
                        trips.push((store, at + back * MINUTE_MS));
                    }
                }
                if let (Some(work), true) = (m.work, weekday) {
                    if self.below(100) < 30 {
                        let after_work = (17 * 60 + 15 + self.below(90) as i64) * MINUTE_MS;
                        trips.push((work, day * DAY_MS + after_work));
                    }
                }
                if m.daily && self.below(100) < 60 {
                    trips.push((
                        h.home,
                        day * DAY_MS + (9 * 60 + self.below(90) as i64) * MINUTE_MS,
                    ));
                    trips.push((
                        h.home,
                        day * DAY_MS + (16 * 60 + self.below(90) as i64) * MINUTE_MS,
                    ));
                }
            }
            // A day out now and then: anywhere in the chain, on a weekend afternoon.
            if self.below(100) < 10 {
                let store = self.below(CHAIN.len() as u64) as usize;
                let day = 5 + 7 * self.below((days / 7).max(1) as u64) as i64;
                trips.push((
                    store,
                    day * DAY_MS + (13 * 60 + self.below(180) as i64) * MINUTE_MS,
                ));
            }
        }
        trips
    }

    /// `count` lines of [`PRODUCTS`], 1 to 3 of each.
    fn lines(&mut self, count: usize) -> Vec<ReceiptLine> {
        (0..count)
            .map(|_| {
                let (name, unit) = PRODUCTS[self.below(PRODUCTS.len() as u64) as usize];
                let qty = 1 + self.below(3) as i64;
                ReceiptLine {
                    description: name.to_string(),
                    sku: Some(format!("400{:010}", unit * 7 + qty)),
                    quantity_milli: qty * 1000,
                    unit_cents: Some(unit),
                    amount_cents: unit * qty,
                    discount: false,
                }
            })
            .collect()
    }

    fn basket(&mut self) -> Vec<ReceiptLine> {
        let count = 1 + self.below(15) as usize;
        self.lines(count)
    }

    /// `days` of honest shoppers: `households` households (alone, couples, families of up
    /// to five sharing one card; some commute and shop near work, some shop twice a day,
    /// some forget something and come back, now and then a day out elsewhere) at the
    /// [`CHAIN`]'s stores, from [`START_MS`] at +01:00. Every event is a carded receipt,
    /// numbered per till from 1 in time order.
    pub fn honest_month(&mut self, households: usize, days: i64) -> Vec<Event> {
        let mut visits = Vec::new();
        for i in 0..households {
            let Some(h) = self.household(i) else { continue };
            for (store, local_ms) in self.trips(&h, days) {
                visits.push((local_ms, store, h.card.clone()));
            }
        }
        visits.sort_by_key(|v| v.0);
        let mut seqs: std::collections::BTreeMap<(usize, u64), u64> = Default::default();
        let mut events = Vec::with_capacity(visits.len());
        // START_MS is 08:00Z; the month's local midnight at +01:00 is 23:00Z the day before.
        let midnight = START_MS - 9 * 3_600_000;
        for (local_ms, store, card) in visits {
            let (id, _, _, tills) = CHAIN[store];
            let till = 1 + self.below(u64::from(tills));
            let seq = seqs.entry((store, till)).or_insert(0);
            *seq += 1;
            let agent = AgentId::new(id, format!("T{till:02}"));
            let at = Timestamp::from_unix_ms(midnight + local_ms, 60);
            let lines = self.basket();
            let total_cents = lines.iter().map(|l| l.amount_cents).sum();
            events.push(Event {
                agent,
                seq: *seq,
                recorded_at: at,
                kind: EventKind::Receipt(Receipt {
                    receipt_no: Some(format!("{id}-{seq:06}")),
                    printed_at: Some(at),
                    completed_at: at,
                    card_last4: Some(card.last4().to_string()),
                    card: Some(card),
                    lines,
                    total_cents,
                    currency: Currency::EUR,
                    unbalanced: false,
                    unmatched_lines: 0,
                }),
            });
        }
        events
    }
}
