//! Pairing the shadow's copy of a request with production's. By the
//! caller's `inferenceId`, which SageMaker copies into both records (the
//! only link AWS's own sample relies on); by `eventId` only once at least
//! [`EVENT_ID_PROOF`] pairs matched by inferenceId all carry equal eventIds
//! (whether SageMaker gives both copies one eventId is unconfirmed, so it
//! is checked on every read); by identical input within a time tolerance
//! only when the policy opts in. A key seen twice on a side, or a payload
//! match that is not one-to-one, pairs nothing.

use std::collections::HashMap;

use chrono::Duration;

use super::record::CaptureRecord;

/// Pairs matched by inferenceId that must all agree on eventId before
/// eventId may pair the records without an inferenceId.
pub const EVENT_ID_PROOF: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairedBy {
    InferenceId,
    EventId,
    Payload,
}

/// Indexes into the two record lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub shadow: usize,
    pub production: usize,
    pub by: PairedBy,
}

/// Why records of one side stayed unpaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpaired {
    /// No inferenceId (and no other way to pair it).
    pub without_inference_id: usize,
    /// Its key appears more than once on its side.
    pub duplicate_key: usize,
    /// A key no record of the other side has.
    pub no_match: usize,
    /// Payload pairing found more than one candidate.
    pub ambiguous: usize,
}

impl Unpaired {
    pub fn total(&self) -> usize {
        self.without_inference_id + self.duplicate_key + self.no_match + self.ambiguous
    }
}

/// Whether eventId can stand in for inferenceId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventIdCheck {
    /// Fewer than [`EVENT_ID_PROOF`] pairs by inferenceId carry eventIds.
    TooFewPairs { compared: usize },
    /// Every pair by inferenceId has equal eventIds: eventId pairs too.
    AllEqual { compared: usize },
    /// Some pairs by inferenceId differ: eventId is not the same request.
    Differ { compared: usize, differing: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingOptions {
    /// Pair records without keys by identical input payload, within this
    /// many whole seconds of inferenceTime; `None`: off.
    pub by_input_within: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    pub pairs: Vec<Pair>,
    pub shadow_records: usize,
    pub production_records: usize,
    pub unpaired_shadow: Unpaired,
    pub unpaired_production: Unpaired,
    pub event_id_check: EventIdCheck,
}

impl Pairing {
    /// paired ÷ shadow records, the share the agreement checks rest on.
    pub fn rate(&self) -> Option<f64> {
        (self.shadow_records > 0).then(|| self.pairs.len() as f64 / self.shadow_records as f64)
    }

    /// production ÷ shadow records: far above 1 ÷ sampling when the shadow
    /// is captured less than production, near it when inferenceIds are
    /// simply missing.
    pub fn production_per_shadow_record(&self) -> Option<f64> {
        (self.shadow_records > 0)
            .then(|| self.production_records as f64 / self.shadow_records as f64)
    }
}

/// Keys seen once, and how many records carried a key seen more than once.
fn unique_index<'a>(
    records: &'a [CaptureRecord],
    key: fn(&CaptureRecord) -> Option<&str>,
    free: &[bool],
) -> (HashMap<&'a str, usize>, HashMap<&'a str, usize>) {
    let mut seen: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        if !free[index] {
            continue;
        }
        if let Some(k) = key(record) {
            seen.entry(k).or_default().push(index);
        }
    }
    let mut unique = HashMap::new();
    let mut duplicated = HashMap::new();
    for (k, indexes) in seen {
        if let [only] = indexes[..] {
            unique.insert(k, only);
        } else {
            duplicated.insert(k, indexes.len());
        }
    }
    (unique, duplicated)
}

pub fn pair(
    shadow: &[CaptureRecord],
    production: &[CaptureRecord],
    options: PairingOptions,
) -> Pairing {
    let mut shadow_free = vec![true; shadow.len()];
    let mut production_free = vec![true; production.len()];
    let mut pairs = Vec::new();
    let mut unpaired_shadow = Unpaired::default();
    let mut unpaired_production = Unpaired::default();

    let by_inference: fn(&CaptureRecord) -> Option<&str> = |r| r.inference_id.as_deref();
    let (shadow_ids, shadow_dups) = unique_index(shadow, by_inference, &shadow_free);
    let (production_ids, production_dups) =
        unique_index(production, by_inference, &production_free);
    unpaired_shadow.duplicate_key += shadow_dups.values().sum::<usize>();
    unpaired_production.duplicate_key += production_dups.values().sum::<usize>();
    for (id, &s) in &shadow_ids {
        if let Some(&p) = production_ids.get(id) {
            pairs.push(Pair {
                shadow: s,
                production: p,
                by: PairedBy::InferenceId,
            });
        }
    }
    // Duplicated keys pair nothing, on either side.
    for (index, record) in shadow.iter().enumerate() {
        if record.inference_id.is_some() {
            shadow_free[index] = false;
        }
    }
    for (index, record) in production.iter().enumerate() {
        if record.inference_id.is_some() {
            production_free[index] = false;
        }
    }
    let paired_production: std::collections::HashSet<usize> =
        pairs.iter().map(|p| p.production).collect();
    let paired_shadow: std::collections::HashSet<usize> = pairs.iter().map(|p| p.shadow).collect();
    unpaired_shadow.no_match += shadow_ids
        .values()
        .filter(|s| !paired_shadow.contains(s))
        .count();
    unpaired_production.no_match += production_ids
        .values()
        .filter(|p| !paired_production.contains(p))
        .count();

    let compared: Vec<bool> = pairs
        .iter()
        .filter_map(|p| {
            let (a, b) = (
                &shadow[p.shadow].event_id,
                &production[p.production].event_id,
            );
            Some(a.as_ref()? == b.as_ref()?)
        })
        .collect();
    let differing = compared.iter().filter(|equal| !**equal).count();
    let event_id_check = if differing > 0 {
        EventIdCheck::Differ {
            compared: compared.len(),
            differing,
        }
    } else if compared.len() >= EVENT_ID_PROOF {
        EventIdCheck::AllEqual {
            compared: compared.len(),
        }
    } else {
        EventIdCheck::TooFewPairs {
            compared: compared.len(),
        }
    };
    if let EventIdCheck::AllEqual { .. } = event_id_check {
        let by_event: fn(&CaptureRecord) -> Option<&str> = |r| r.event_id.as_deref();
        let (shadow_events, shadow_dups) = unique_index(shadow, by_event, &shadow_free);
        let (production_events, production_dups) =
            unique_index(production, by_event, &production_free);
        unpaired_shadow.duplicate_key += shadow_dups.values().sum::<usize>();
        unpaired_production.duplicate_key += production_dups.values().sum::<usize>();
        for (id, &s) in &shadow_events {
            if let Some(&p) = production_events.get(id) {
                pairs.push(Pair {
                    shadow: s,
                    production: p,
                    by: PairedBy::EventId,
                });
                shadow_free[s] = false;
                production_free[p] = false;
            }
        }
        for (index, record) in shadow.iter().enumerate() {
            if shadow_free[index] && record.event_id.is_some() {
                shadow_free[index] = false;
                if !shadow_dups.contains_key(record.event_id.as_deref().unwrap_or_default()) {
                    unpaired_shadow.no_match += 1;
                }
            }
        }
        for (index, record) in production.iter().enumerate() {
            if production_free[index] && record.event_id.is_some() {
                production_free[index] = false;
                if !production_dups.contains_key(record.event_id.as_deref().unwrap_or_default()) {
                    unpaired_production.no_match += 1;
                }
            }
        }
    }

    if let Some(tolerance) = options.by_input_within {
        pair_by_input(
            shadow,
            production,
            tolerance,
            &mut shadow_free,
            &mut production_free,
            &mut pairs,
            &mut unpaired_shadow,
            &mut unpaired_production,
        );
    }
    unpaired_shadow.without_inference_id += shadow_free.iter().filter(|f| **f).count();
    unpaired_production.without_inference_id += production_free.iter().filter(|f| **f).count();
    pairs.sort_by_key(|p| p.shadow);
    Pairing {
        pairs,
        shadow_records: shadow.len(),
        production_records: production.len(),
        unpaired_shadow,
        unpaired_production,
        event_id_check,
    }
}

/// Identical input within the tolerance, one-to-one only.
#[allow(clippy::too_many_arguments)]
fn pair_by_input(
    shadow: &[CaptureRecord],
    production: &[CaptureRecord],
    tolerance: Duration,
    shadow_free: &mut [bool],
    production_free: &mut [bool],
    pairs: &mut Vec<Pair>,
    unpaired_shadow: &mut Unpaired,
    unpaired_production: &mut Unpaired,
) {
    let input = |r: &CaptureRecord| r.input.as_ref().map(|p| p.body.clone());
    let candidates = |s: usize, free: &[bool]| -> Vec<usize> {
        production
            .iter()
            .enumerate()
            .filter(|(p, record)| {
                free[*p]
                    && input(record).is_some()
                    && input(record) == input(&shadow[s])
                    && (record.inference_time - shadow[s].inference_time).abs() <= tolerance
            })
            .map(|(p, _)| p)
            .collect()
    };
    let mut matched = Vec::new();
    let mut ambiguous_production = std::collections::HashSet::new();
    let waiting: Vec<usize> = (0..shadow.len())
        .filter(|s| shadow_free[*s] && shadow[*s].input.is_some())
        .collect();
    for s in waiting {
        match candidates(s, production_free)[..] {
            [p] => matched.push((s, p)),
            [] => {}
            ref many => {
                unpaired_shadow.ambiguous += 1;
                shadow_free[s] = false;
                ambiguous_production.extend(many.iter().copied());
            }
        }
    }
    // One-to-one: a production record two shadows chose pairs neither.
    let mut chosen: HashMap<usize, usize> = HashMap::new();
    for (_, p) in &matched {
        *chosen.entry(*p).or_default() += 1;
    }
    for (s, p) in matched {
        if chosen[&p] == 1 && !ambiguous_production.contains(&p) {
            pairs.push(Pair {
                shadow: s,
                production: p,
                by: PairedBy::Payload,
            });
            production_free[p] = false;
        } else {
            unpaired_shadow.ambiguous += 1;
            ambiguous_production.insert(p);
        }
        shadow_free[s] = false;
    }
    for p in ambiguous_production {
        if production_free[p] {
            production_free[p] = false;
            unpaired_production.ambiguous += 1;
        }
    }
}
