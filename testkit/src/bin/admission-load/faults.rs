//! The faults phase (issue 15): reviews at a fixed rate while the registry, through the
//! fault proxy, cycles through weathers (healthy, slow, stalled, 429 with `Retry-After`,
//! 5xx, lying), then a healthy recovery phase. Every answer is held against what it must be:
//!
//! - attested images named by tag (`good`, and `cold`: fresh digests, each reviewed ten
//!   times in one phase) may be refused while the registry fails, but when allowed they must
//!   be pinned to their own digest;
//! - the exempt image is always allowed, unpatched;
//! - unattested images, wrongly attested ones (another workflow; a bundle about another
//!   digest) and images whose registry answers always lie (a referrers list of another
//!   image, a truncated bundle, an oversized referrers list, a corrupted referrer manifest,
//!   another image's valid bundle in place of theirs) are always refused.
//!
//! It also asserts that the server lives through it, answers every review inside the review
//! budget, keeps its memory and open descriptors flat, and asks a failing registry about a
//! new digest at most what a healthy verification costs once per failure-cache period, however
//! often the digest is reviewed.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use provenance_gate_testkit::registry::{
    push_attested_image, push_unattested_image, Fault, PushedImage, RegistryClient,
};
use serde_json::Value;

use super::{review_body, Fixture, Gate, Options, EXEMPT_IMAGE};

/// The review budget of `serve` (src/defaults.rs, `REVIEW_BUDGET`); the harness cannot
/// link the webhook's crate, so it is written here too.
const REVIEW_BUDGET: Duration = Duration::from_secs(8);
/// What an answer may take beyond the budget: writing the answer and the loopback trip.
const ANSWER_SLACK: Duration = Duration::from_millis(500);
/// Registry requests a healthy verification of a new digest costs (tag HEAD, referrers,
/// referrer manifest, bundle blob).
const HEALTHY_REQUESTS_PER_DIGEST: f64 = 4.0;
/// How long the webhook answers a failure from its cache (`CheckSettings::failure_ttl`): a
/// failing registry may be asked again per digest this often, not once per review.
const FAILURE_TTL: f64 = 10.0;
/// Reviews of each new digest within its phase: enough that asking once per review would
/// show against asking once per failure-cache period.
const REVIEWS_PER_COLD_IMAGE: usize = 10;
/// A referrers list this large is refused unread (the webhook reads at most 4 MiB).
const OVERSIZED_BYTES: usize = 5 * 1024 * 1024;
const COLD_REPOSITORY: &str = "acme/cold";
const LYING_REPOSITORY: &str = "acme/lying";
/// Unattested and wrongly attested images (covered by the same rule).
const UNVERIFIED_REPOSITORY: &str = "acme/unverified";
/// Every repository the load names, for weathers that apply to all of them.
const REPOSITORIES: [&str; 4] = [
    super::REPOSITORY,
    COLD_REPOSITORY,
    LYING_REPOSITORY,
    UNVERIFIED_REPOSITORY,
];

/// How the registry behaves during one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Weather {
    Healthy,
    /// Every answer delayed by a second.
    Slow,
    /// Requests read and never answered.
    Stalled,
    /// 429 with `Retry-After` a quarter of the phase (at least 1 s).
    RateLimited,
    /// 500, 502 and 503.
    ServerErrors,
    /// Answers that are not what was asked for (the kind changes every cycle).
    Lying,
    /// The healthy phase at the end, in which every failure must heal.
    Recovery,
}

const CYCLE: [Weather; 6] = [
    Weather::Healthy,
    Weather::Slow,
    Weather::Stalled,
    Weather::RateLimited,
    Weather::ServerErrors,
    Weather::Lying,
];

impl Weather {
    fn name(self) -> &'static str {
        match self {
            Weather::Healthy => "healthy",
            Weather::Slow => "slow",
            Weather::Stalled => "stalled",
            Weather::RateLimited => "rate_limited",
            Weather::ServerErrors => "server_errors",
            Weather::Lying => "lying",
            Weather::Recovery => "recovery",
        }
    }

    fn failing(self) -> bool {
        matches!(
            self,
            Weather::Stalled | Weather::RateLimited | Weather::ServerErrors | Weather::Lying
        )
    }

    /// The proxy rules of this weather in cycle `cycle` (the lie changes every cycle).
    fn faults(self, cycle: usize, phase_seconds: f64) -> Vec<(String, Fault)> {
        let everywhere = |fault: Fault| vec![("/".to_owned(), fault)];
        let per_repository = |kinds: &[(&str, Fault)]| {
            REPOSITORIES
                .iter()
                .flat_map(|repository| {
                    kinds.iter().map(move |(kind, fault)| {
                        (format!("/v2/{repository}/{kind}/"), fault.clone())
                    })
                })
                .collect()
        };
        match self {
            Weather::Healthy | Weather::Recovery => Vec::new(),
            Weather::Slow => everywhere(Fault::Delay(Duration::from_secs(1))),
            Weather::Stalled => everywhere(Fault::Stall),
            // Shorter than the phase, so that the next weather is not hidden by the pause.
            Weather::RateLimited => everywhere(Fault::TooManyRequests {
                retry_after_seconds: ((phase_seconds / 4.0) as u32).max(1),
            }),
            Weather::ServerErrors => per_repository(&[
                ("manifests", Fault::InternalServerError),
                ("referrers", Fault::Status(503)),
                ("blobs", Fault::Status(502)),
            ]),
            Weather::Lying => match cycle % 3 {
                0 => per_repository(&[(
                    "referrers",
                    Fault::ReplaceBody(vec![b' '; OVERSIZED_BYTES]),
                )]),
                1 => per_repository(&[
                    ("manifests", Fault::CorruptBody),
                    ("blobs", Fault::CorruptBody),
                ]),
                _ => per_repository(&[
                    ("referrers", Fault::Truncate),
                    ("manifests", Fault::Truncate),
                    ("blobs", Fault::Truncate),
                ]),
            },
        }
    }
}

/// What kind of image a review names, and so what its answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Good,
    Cold,
    Exempt,
    Unattested,
    WronglyAttested,
    Lying,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Good => "good",
            Class::Cold => "cold",
            Class::Exempt => "exempt",
            Class::Unattested => "unattested",
            Class::WronglyAttested => "wrongly_attested",
            Class::Lying => "lying",
        }
    }

    /// Which class slot `slot` (of every hundred) of a phase names: 2 % cold, 5 % exempt,
    /// 4 % unattested, 3 % wrongly attested, 5 % lying, the rest good.
    fn of_slot(slot: usize) -> Class {
        match slot % 100 {
            0..=1 => Class::Cold,
            2..=6 => Class::Exempt,
            7..=10 => Class::Unattested,
            11..=13 => Class::WronglyAttested,
            14..=18 => Class::Lying,
            _ => Class::Good,
        }
    }
}

/// One image the load names: the review body and the digest it must be pinned to.
struct Subject {
    body: Vec<u8>,
    digest: String,
}

/// Every image of the run, by class; `cold` holds `cold_per_phase` images per phase.
struct Cast {
    by_class: BTreeMap<Class, Vec<Subject>>,
    cold_per_phase: usize,
}

impl Cast {
    /// The subject of slot `slot` of phase `phase`.
    fn subject(&self, phase: usize, slot: usize) -> (Class, &Subject) {
        let class = Class::of_slot(slot);
        let subjects = &self.by_class[&class];
        let index = if class == Class::Cold {
            // The cold slots of a phase walk its images again and again, spread over the
            // phase: a new image is reviewed again after the first answer, as Pods of a new
            // Deployment (and the API server's retries) are.
            phase * self.cold_per_phase + (slot / 100 * 2 + slot % 100) % self.cold_per_phase
        } else {
            (slot / 100 + slot % 100) % subjects.len()
        };
        (class, &subjects[index])
    }
}

/// Tallies of one weather.
#[derive(Default)]
struct Tally {
    /// Latency from send to answer (ns): what the server took.
    served: Vec<u64>,
    /// Latency from the scheduled start (ns): what a caller waited, generator lag included.
    waited: Vec<u64>,
    allowed: BTreeMap<Class, usize>,
    refused: BTreeMap<Class, usize>,
    /// Answers that must never be: an unverified image admitted, a wrong pin, the exempt
    /// image refused.
    wrong: usize,
    /// No AdmissionReview answer (transport failure or a status other than 200).
    failed: usize,
    /// Good and cold images refused in the last quarter of the recovery phase.
    refused_after_recovery: usize,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.served.extend(other.served);
        self.waited.extend(other.waited);
        for (class, count) in other.allowed {
            *self.allowed.entry(class).or_default() += count;
        }
        for (class, count) in other.refused {
            *self.refused.entry(class).or_default() += count;
        }
        self.wrong += other.wrong;
        self.failed += other.failed;
        self.refused_after_recovery += other.refused_after_recovery;
    }
}

fn percentile_ms(values: &mut [u64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1] as f64 / 1e6
}

/// An answer as far as the check needs it.
enum Answer {
    Allowed { patch: String },
    Refused,
    Failed,
}

fn answer_of(response: &[u8]) -> Answer {
    let Ok(review) = serde_json::from_slice::<Value>(response) else {
        return Answer::Failed;
    };
    let response = &review["response"];
    match response["allowed"].as_bool() {
        Some(true) => {
            let patch = response["patch"]
                .as_str()
                .and_then(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()
                })
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            Answer::Allowed { patch }
        }
        Some(false) => Answer::Refused,
        None => Answer::Failed,
    }
}

/// Counts `answer` for `class` into `tally`; false when it is a wrong answer.
fn judge(tally: &mut Tally, class: Class, subject: &Subject, answer: &Answer) -> bool {
    let right = match (answer, class) {
        (Answer::Failed, _) => {
            tally.failed += 1;
            return true;
        }
        (Answer::Allowed { patch }, Class::Good | Class::Cold) => patch.contains(&subject.digest),
        (Answer::Allowed { patch }, Class::Exempt) => patch.is_empty(),
        (Answer::Allowed { .. }, _) => false,
        (Answer::Refused, Class::Exempt) => false,
        (Answer::Refused, _) => true,
    };
    let counts = match answer {
        Answer::Allowed { .. } => &mut tally.allowed,
        _ => &mut tally.refused,
    };
    *counts.entry(class).or_default() += 1;
    if !right {
        tally.wrong += 1;
    }
    right
}

/// Process samples of the gate over the run.
#[derive(Default, Clone, Copy)]
struct Sample {
    vmrss_kib: u64,
    descriptors: usize,
    sockets: usize,
}

fn sample(gate: &Gate) -> Sample {
    let (vmrss_kib, _) = gate.memory_kib();
    let mut sample = Sample {
        vmrss_kib,
        ..Sample::default()
    };
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{}/fd", gate.child.id())) {
        for entry in entries.flatten() {
            sample.descriptors += 1;
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            sample.sockets += usize::from(target.to_string_lossy().starts_with("socket:"));
        }
    }
    sample
}

/// Registry requests during one phase, counted at the proxy.
struct PhaseRequests {
    weather: Weather,
    all: usize,
    cold: usize,
    good: usize,
}

/// Pushes the images of every class and sets up the permanent lies of the lying ones.
fn cast(
    options: &Options,
    fixture: &mut Fixture,
    good: &[PushedImage],
    template: &Value,
    phases: usize,
) -> Cast {
    let lying = push_lying_images(fixture);
    let client = fixture.client.clone();
    let instance = &fixture.instance;
    let proxy_host = fixture.proxy.host();
    let subject_of = |image: &PushedImage| {
        let tag = image.tag.as_deref().unwrap_or_default();
        let reference = format!("{proxy_host}/{}:{tag}", image.repository);
        Subject {
            body: review_body(template, &reference, 0),
            digest: image.manifest_digest.clone(),
        }
    };
    let mut by_class: BTreeMap<Class, Vec<Subject>> = BTreeMap::new();
    by_class.insert(Class::Good, good.iter().map(subject_of).collect());
    by_class.insert(Class::Lying, lying.iter().map(subject_of).collect());
    by_class.insert(
        Class::Exempt,
        vec![Subject {
            body: review_body(template, EXEMPT_IMAGE, 0),
            digest: String::new(),
        }],
    );
    let unattested = (0..4)
        .map(|n| push_unattested_image(&client, UNVERIFIED_REPOSITORY, &format!("u{n}")))
        .collect::<Vec<_>>();
    by_class.insert(
        Class::Unattested,
        unattested.iter().map(subject_of).collect(),
    );
    let other_digest = unattested[0].manifest.hex().to_owned();
    let wrong = [
        push_attested_image(
            &client,
            UNVERIFIED_REPOSITORY,
            "evil-workflow",
            instance,
            |spec| spec.with_workflow(".github/workflows/evil.yml"),
        ),
        push_attested_image(
            &client,
            UNVERIFIED_REPOSITORY,
            "other-subject",
            instance,
            |spec| {
                let name = spec.subject_name.clone();
                spec.with_subject(&name, &other_digest)
            },
        ),
        push_attested_image(
            &client,
            UNVERIFIED_REPOSITORY,
            "other-repository",
            instance,
            |spec| spec.with_repository("evil/api"),
        ),
    ];
    by_class.insert(
        Class::WronglyAttested,
        wrong.iter().map(subject_of).collect(),
    );
    // The cold slots of a phase: 2 % of its reviews.
    let slots = (options.fault_rate * options.fault_phase_seconds).round() as usize;
    let cold_per_phase = (slots * 2 / 100 / REVIEWS_PER_COLD_IMAGE).max(1);
    let pushing = Instant::now();
    let cold = (0..cold_per_phase * phases)
        .map(|n| {
            push_attested_image(
                &client,
                COLD_REPOSITORY,
                &format!("c{n}"),
                instance,
                |spec| spec,
            )
        })
        .collect::<Vec<_>>();
    by_class.insert(Class::Cold, cold.iter().map(subject_of).collect());
    println!(
        "faults.cold_images {} ({cold_per_phase} per phase)\nfaults.cold_push_seconds {:.1}",
        cold.len(),
        pushing.elapsed().as_secs_f64()
    );
    Cast {
        by_class,
        cold_per_phase,
    }
}

/// Images in `acme/lying`, each with a proxy rule that makes its registry lie for good.
fn push_lying_images(fixture: &mut Fixture) -> Vec<PushedImage> {
    let client: &RegistryClient = &fixture.client;
    let instance = &fixture.instance;
    let repository = LYING_REPOSITORY;
    let attested = |tag: &str| push_attested_image(client, repository, tag, instance, |spec| spec);
    // An honest, attested image whose answers the lies borrow (it is not reviewed).
    let donor = attested("donor");
    let donor_referrers = client
        .request_without_auth(
            "GET",
            &format!("/v2/{repository}/referrers/{}", donor.manifest_digest),
            &[],
            &[],
        )
        .body;
    let donor_bundle = donor.attestation().bundle_json.clone().into_bytes();
    let borrowed_list = push_unattested_image(client, repository, "borrowed-list");
    let truncated = attested("truncated-bundle");
    let oversized = attested("oversized-referrers");
    let corrupt = attested("corrupt-referrer");
    let swapped = attested("swapped-bundle");
    let proxy = &fixture.proxy;
    let path = |kind: &str, digest: &str| format!("/v2/{repository}/{kind}/{digest}");
    fixture.permanent_faults = vec![
        (
            path("referrers", &borrowed_list.manifest_digest),
            Fault::ReplaceBody(donor_referrers),
        ),
        (path("blobs", truncated.bundle_digest()), Fault::Truncate),
        (
            path("referrers", &oversized.manifest_digest),
            Fault::ReplaceBody(vec![b' '; OVERSIZED_BYTES]),
        ),
        (
            path("manifests", corrupt.referrer_digest()),
            Fault::CorruptBody,
        ),
        (
            path("blobs", swapped.bundle_digest()),
            Fault::ReplaceBody(donor_bundle),
        ),
    ];
    for (prefix, fault) in &fixture.permanent_faults {
        proxy.inject(prefix, fault.clone());
    }
    vec![borrowed_list, truncated, oversized, corrupt, swapped]
}

/// Runs the faults phase with `good` (attested, already verified once) among the images;
/// false when any assertion failed.
pub(super) fn run(
    options: &Options,
    gate: &Gate,
    fixture: &mut Fixture,
    good: &[PushedImage],
    template: &Value,
) -> bool {
    let phase_seconds = options.fault_phase_seconds;
    let cycle_phases = (options.fault_seconds / phase_seconds).round().max(1.0) as usize;
    let mut weathers: Vec<Weather> = (0..cycle_phases).map(|n| CYCLE[n % CYCLE.len()]).collect();
    weathers.push(Weather::Recovery);
    // The recovery phase outlasts the failure cache (10 s) and a stalled request (5 s).
    let recovery_seconds = phase_seconds.max(20.0);
    // Phase n starts at starts[n]; the last entry is the end of the run.
    let mut starts: Vec<f64> = (0..=cycle_phases)
        .map(|n| n as f64 * phase_seconds)
        .collect();
    starts.push(cycle_phases as f64 * phase_seconds + recovery_seconds);
    println!(
        "== faults ({} phases of {phase_seconds} s: {}; then {recovery_seconds} s recovery; {} reviews/s on {} connections)",
        cycle_phases,
        CYCLE.map(Weather::name).join(" → "),
        options.fault_rate,
        options.fault_connections
    );
    let cast = cast(options, fixture, good, template, weathers.len());
    let rate = options.fault_rate;
    let total_seconds = starts[weathers.len()];
    let total = (rate * total_seconds).round() as usize;
    let phase_of_index = |index: usize| {
        let due = index as f64 / rate;
        let phase = starts.iter().rposition(|start| *start <= due).unwrap_or(0);
        let phase = phase.min(weathers.len() - 1);
        let slot = ((due - starts[phase]) * rate) as usize;
        (phase, slot)
    };
    let recovery_quiet_from = starts[weathers.len() - 1] + recovery_seconds * 0.75;

    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(200);
    let mut samples: Vec<(Weather, usize, Sample)> = Vec::new();
    let mut requests: Vec<PhaseRequests> = Vec::new();
    let mut tallies: BTreeMap<Weather, Tally> = BTreeMap::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..options.fault_connections)
            .map(|_| {
                let next = Arc::clone(&next);
                let client = gate.client();
                let (cast, weathers, phase_of_index) = (&cast, &weathers, &phase_of_index);
                scope.spawn(move || {
                    let mut tallies: BTreeMap<Weather, Tally> = BTreeMap::new();
                    while let Some((index, due)) = super::next_due(&next, total, start, rate) {
                        let (phase, slot) = phase_of_index(index);
                        let (class, subject) = cast.subject(phase.min(weathers.len() - 1), slot);
                        let sent = Instant::now();
                        let response = super::send_review(&client, &subject.body);
                        let tally = tallies.entry(weathers[phase]).or_default();
                        tally.served.push(sent.elapsed().as_nanos() as u64);
                        tally.waited.push(due.elapsed().as_nanos() as u64);
                        let answer = answer_of(&response);
                        if !judge(tally, class, subject, &answer) && tally.wrong <= 3 {
                            println!(
                                "faults.wrong_answer class={} weather={} answer={}",
                                class.name(),
                                weathers[phase].name(),
                                String::from_utf8_lossy(&response)
                            );
                        }
                        let recovered = index as f64 / rate >= recovery_quiet_from;
                        if recovered
                            && matches!(class, Class::Good | Class::Cold)
                            && matches!(answer, Answer::Refused)
                        {
                            tally.refused_after_recovery += 1;
                        }
                    }
                    tallies
                })
            })
            .collect();

        // The weather controller: sets each phase's faults at its start, samples the gate
        // every second, and counts the registry requests of each phase.
        let mut counted = fixture.proxy.request_count();
        for (phase, weather) in weathers.iter().enumerate() {
            let phase_start = start + Duration::from_secs_f64(starts[phase]);
            if let Some(wait) = phase_start.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            fixture.proxy.clear_faults();
            for (prefix, fault) in &fixture.permanent_faults {
                fixture.proxy.inject(prefix, fault.clone());
            }
            for (prefix, fault) in weather.faults(phase / CYCLE.len(), phase_seconds) {
                fixture.proxy.inject(&prefix, fault);
            }
            let phase_end = start + Duration::from_secs_f64(starts[phase + 1]);
            while Instant::now() < phase_end {
                std::thread::sleep(
                    phase_end
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_secs(1)),
                );
                samples.push((*weather, phase, sample(gate)));
            }
            let recorded = fixture.proxy.recorded_requests();
            let this_phase = &recorded[counted..];
            counted = recorded.len();
            let under = |repository: &str| {
                let prefix = format!("/v2/{repository}/");
                this_phase
                    .iter()
                    .filter(|request| request.path.starts_with(&prefix))
                    .count()
            };
            requests.push(PhaseRequests {
                weather: *weather,
                all: this_phase.len(),
                cold: under(COLD_REPOSITORY),
                good: under(super::REPOSITORY),
            });
        }
        fixture.proxy.clear_faults();
        for worker in workers {
            for (weather, tally) in worker.join().expect("a load worker does not panic") {
                tallies.entry(weather).or_default().merge(tally);
            }
        }
    });
    report(
        options, gate, &cast, &weathers, tallies, &requests, &samples,
    )
}

/// Prints the figures and checks them; false when an assertion failed.
fn report(
    options: &Options,
    gate: &Gate,
    cast: &Cast,
    weathers: &[Weather],
    mut tallies: BTreeMap<Weather, Tally>,
    requests: &[PhaseRequests],
    samples: &[(Weather, usize, Sample)],
) -> bool {
    let mut ok = true;
    let mut fail = |what: String| {
        println!("faults.FAILED {what}");
        ok = false;
    };
    let cold_reviews: BTreeMap<Weather, usize> = tallies
        .iter()
        .map(|(weather, tally)| {
            let answered = |counts: &BTreeMap<Class, usize>| counts.get(&Class::Cold).copied();
            let reviews =
                answered(&tally.allowed).unwrap_or(0) + answered(&tally.refused).unwrap_or(0);
            (*weather, reviews)
        })
        .collect();
    let mut all = Tally::default();
    for (weather, tally) in &mut tallies {
        let label = format!("faults.{}", weather.name());
        println!(
            "{label}.reviews {}\n{label}.served_p50_ms {:.2}\n{label}.served_p99_ms {:.2}\n{label}.served_max_ms {:.1}\n{label}.waited_p99_ms {:.2}\n{label}.waited_max_ms {:.1}\n{label}.wrong_answers {}\n{label}.failed_requests {}",
            tally.served.len(),
            percentile_ms(&mut tally.served, 0.5),
            percentile_ms(&mut tally.served, 0.99),
            percentile_ms(&mut tally.served, 1.0),
            percentile_ms(&mut tally.waited, 0.99),
            percentile_ms(&mut tally.waited, 1.0),
            tally.wrong,
            tally.failed,
        );
        let classes: Vec<String> = [
            Class::Good,
            Class::Cold,
            Class::Exempt,
            Class::Unattested,
            Class::WronglyAttested,
            Class::Lying,
        ]
        .iter()
        .map(|class| {
            format!(
                "{}={}/{}",
                class.name(),
                tally.allowed.get(class).copied().unwrap_or(0),
                tally.refused.get(class).copied().unwrap_or(0)
            )
        })
        .collect();
        println!("{label}.allowed_refused {}", classes.join(" "));
        all.merge(std::mem::take(tally));
    }
    let served_max = percentile_ms(&mut all.served, 1.0);
    println!(
        "faults.reviews {}\nfaults.wrong_answers {}\nfaults.failed_requests {}\nfaults.served_max_ms {served_max:.1}\nfaults.refused_after_recovery {}",
        all.served.len(),
        all.wrong,
        all.failed,
        all.refused_after_recovery
    );
    if all.wrong > 0 {
        fail(format!("{} wrong answers", all.wrong));
    }
    if all.failed > 0 {
        fail(format!(
            "{} reviews got no AdmissionReview answer",
            all.failed
        ));
    }
    let budget_ms = (REVIEW_BUDGET + ANSWER_SLACK).as_secs_f64() * 1e3;
    if served_max > budget_ms {
        let problem =
            format!("a review took {served_max:.0} ms, past the {budget_ms:.0} ms budget");
        if options.judge_budget {
            fail(problem);
        } else {
            println!("faults.past_budget {problem} (not judged in --smoke)");
        }
    }
    if all.refused_after_recovery > 0 {
        fail(format!(
            "{} attested images refused at the end of the recovery phase",
            all.refused_after_recovery
        ));
    }

    // Registry requests per new digest, by weather (each phase's cold images are new).
    let mut per_weather: BTreeMap<Weather, (usize, usize, usize, usize)> = BTreeMap::new();
    for phase in requests {
        let entry = per_weather.entry(phase.weather).or_default();
        entry.0 += phase.all;
        entry.1 += phase.cold;
        entry.2 += phase.good;
        entry.3 += 1;
    }
    let good_images = cast.by_class[&Class::Good].len();
    for (weather, (all_requests, cold, good, phases)) in &per_weather {
        let new_digests = cast.cold_per_phase * phases;
        let per_digest = *cold as f64 / new_digests as f64;
        let per_tag_minute = *good as f64
            / good_images as f64
            / (*phases as f64 * options.fault_phase_seconds / 60.0);
        let label = format!("faults.{}", weather.name());
        let reviews_per_digest =
            cold_reviews.get(weather).copied().unwrap_or(0) as f64 / new_digests as f64;
        println!(
            "{label}.registry_requests {all_requests}\n{label}.registry_requests_per_new_digest {per_digest:.2} ({reviews_per_digest:.1} reviews each)\n{label}.registry_requests_per_cached_tag_per_minute {per_tag_minute:.2}"
        );
        let bound = HEALTHY_REQUESTS_PER_DIGEST
            * (options.fault_phase_seconds / FAILURE_TTL).ceil().max(1.0);
        if weather.failing() && per_digest > bound {
            fail(format!(
                "{per_digest:.2} registry requests per new digest while {}: more than {bound} (a healthy verification's {HEALTHY_REQUESTS_PER_DIGEST} once per {FAILURE_TTL} s)",
                weather.name()
            ));
        }
    }

    // Memory and descriptors: the last cycle against the first.
    let cycle_of = |phase: usize| phase / CYCLE.len();
    let last_cycle = cycle_of(weathers.len().saturating_sub(2));
    let peak = |cycle: usize, field: &dyn Fn(&Sample) -> u64| {
        samples
            .iter()
            .filter(|(weather, phase, _)| {
                *weather != Weather::Recovery && cycle_of(*phase) == cycle
            })
            .map(|(_, _, sample)| field(sample))
            .max()
            .unwrap_or(0)
    };
    let rss = |sample: &Sample| sample.vmrss_kib;
    let sockets = |sample: &Sample| sample.sockets as u64;
    let descriptors = |sample: &Sample| sample.descriptors as u64;
    let (rss_first, rss_last) = (peak(0, &rss), peak(last_cycle, &rss));
    let (fd_first, fd_last) = (peak(0, &descriptors), peak(last_cycle, &descriptors));
    let (socket_first, socket_last) = (peak(0, &sockets), peak(last_cycle, &sockets));
    let end = samples
        .last()
        .map(|(_, _, sample)| *sample)
        .unwrap_or_default();
    println!(
        "faults.vmrss_kib_peak_first_cycle {rss_first}\nfaults.vmrss_kib_peak_last_cycle {rss_last}\nfaults.vmrss_kib_end {}\nfaults.descriptors_peak_first_cycle {fd_first}\nfaults.descriptors_peak_last_cycle {fd_last}\nfaults.descriptors_end {}\nfaults.sockets_peak_first_cycle {socket_first}\nfaults.sockets_peak_last_cycle {socket_last}\nfaults.sockets_end {}\nfaults.cycles {}",
        end.vmrss_kib,
        end.descriptors,
        end.sockets,
        last_cycle + 1
    );
    let phase_ends: Vec<String> = samples
        .windows(2)
        .filter(|pair| pair[0].1 != pair[1].1)
        .map(|pair| pair[0].2)
        .chain(samples.last().map(|(_, _, sample)| *sample))
        .map(|sample| format!("{}/{}", sample.vmrss_kib / 1024, sample.sockets))
        .collect();
    println!(
        "faults.vmrss_mib_sockets_at_phase_ends {}",
        phase_ends.join(" ")
    );
    if last_cycle > 0 {
        // Caches fill over the run (each phase brings new digests), so some growth is
        // expected; a leak per review (hundreds of thousands here) is not.
        if rss_last > rss_first + rss_first / 2 {
            fail(format!("VmRSS grew from {rss_first} KiB to {rss_last} KiB"));
        }
        if fd_last > fd_first + 32 {
            fail(format!(
                "open descriptors grew from {fd_first} to {fd_last}"
            ));
        }
    }
    // Still alive and answering.
    let alive = std::path::Path::new(&format!("/proc/{}/status", gate.child.id())).exists()
        && matches!(
            answer_of(&super::send_review(
                &gate.client(),
                &cast.by_class[&Class::Exempt][0].body
            )),
            Answer::Allowed { .. }
        );
    println!("faults.serve_alive_at_end {alive}");
    if !alive {
        fail("the server is gone or does not answer".to_owned());
    }
    ok
}
