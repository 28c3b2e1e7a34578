//! The load benchmark's command line: scenarios, backends, seed sizes, step length, rates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::{receiver, stub};

#[derive(Clone)]
pub struct Options {
    pub scenarios: Vec<String>,
    pub backends: Vec<String>,
    pub step: Duration,
    pub tenants: usize,
    pub invoices: usize,
    pub payments: usize,
    pub actors: usize,
    pub in_flight: usize,
    pub baselines: bool,
    /// Fixed target rates (requests/s) instead of the doubling ramp.
    pub rates: Vec<f64>,
    /// Only redraw the plot from a saved stdout (JSON lines) of an earlier run.
    pub plot_from: Option<PathBuf>,
    /// PostgreSQL settings (`name=value`) for the benchmark databases, e.g. to try
    /// `plan_cache_mode=force_custom_plan` without rebuilding the engine.
    pub pg_settings: Vec<String>,
    /// PostgreSQL server settings (`name=value`) the throwaway cluster starts with, for those
    /// a database cannot set (e.g. `max_wal_size`, `checkpoint_timeout`).
    pub pg_server: Vec<String>,
    /// `--gateway simulator`: the engine runs its built-in gateway simulator (charges answered
    /// by real signed webhooks) instead of the silent stub.
    pub simulator: bool,
    /// Vacuum and analyze a PostgreSQL database after seeding it (`--no-vacuum`: don't).
    pub vacuum: bool,
    /// After each PostgreSQL step, break its WAL down by relation with `pg_waldump`.
    pub wal_detail: bool,
    /// `delivery`: endpoints per tenant of each delivery ramp, and its first (fixed) rate.
    pub endpoints: Vec<usize>,
    pub delivery_rate: f64,
    /// Webhook events that re-send a recent one of their tenant, in percent, in every scenario
    /// that sends webhooks: 0, or a divisor of 100 up to 50.
    pub duplicates: u64,
    /// `--outcomes-first`: each payment's first event is its outcome, so that every first visit
    /// applies and the stale `payment.processing` comes on the second.
    pub outcomes_first: bool,
}

/// Which gateway events the webhook scenarios send.
#[derive(Clone, Copy)]
pub struct Mix {
    /// One webhook event in this many re-sends a recent one of its tenant; 0: none does.
    pub resend_every: u64,
    /// Every payment's first event is `payment.succeeded` (else half the payments get
    /// `payment.processing` first, which applies to none: they are already processing).
    pub outcomes_first: bool,
}

impl Options {
    pub fn mix(&self) -> Mix {
        Mix {
            resend_every: 100u64.checked_div(self.duplicates).unwrap_or(0),
            outcomes_first: self.outcomes_first,
        }
    }
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return Ok(Duration::from_millis(ms.parse()?));
    }
    Ok(Duration::from_secs_f64(s.trim_end_matches('s').parse()?))
}

fn list(s: &str, all: &[&str]) -> Vec<String> {
    if s == "all" {
        all.iter().map(|s| (*s).to_owned()).collect()
    } else {
        s.split(',').map(str::to_owned).collect()
    }
}

const ALL_SCENARIOS: &[&str] = &[
    "webhooks",
    "webhooks-batch",
    "payments",
    "invoices",
    "mixed",
    "many-actors",
    "delivery",
];

impl Default for Options {
    fn default() -> Self {
        Self {
            scenarios: list("all", ALL_SCENARIOS),
            backends: vec!["sqlite".into(), "postgres".into()],
            step: Duration::from_secs(4),
            tenants: 8,
            invoices: 250,
            payments: 12_000,
            actors: 100_000,
            in_flight: 1_024,
            baselines: true,
            rates: Vec::new(),
            plot_from: None,
            pg_settings: Vec::new(),
            pg_server: Vec::new(),
            simulator: false,
            vacuum: true,
            wal_detail: false,
            endpoints: vec![1, 10],
            delivery_rate: 250.0,
            duplicates: 20,
            outcomes_first: false,
        }
    }
}

/// What `--help` prints: every option, with the defaults `Options::default` holds.
fn usage() -> String {
    let d = Options::default();
    let join = |items: &[String]| items.join(",");
    let endpoints: Vec<String> = d.endpoints.iter().map(usize::to_string).collect();
    format!(
        "\
cargo bench --bench load -- [options]

  --scenario LIST      comma-separated, or all (default: all), of
                       {scenarios}
  --backend LIST       sqlite, postgres, both comma-separated, or none for only the
                       generator's ceiling against the no-op handler (default: {backends})
  --duration T         length of each step, e.g. 3s or 500ms (default: {step:?})
  --rates LIST         fixed target rates in requests/s instead of the doubling ramp
  --tenants N          tenants seeded (default: {tenants})
  --invoices N         invoices per tenant; 1 puts every payment on one hot invoice (default: {invoices})
  --payments N         payments per tenant, each with its gateway events (default: {payments})
  --actors N           many-actors: payments held live at once (default: {actors})
  --in-flight N        requests the generator keeps in flight at most (default: {in_flight})
  --duplicates PCT     webhook events that re-send a recent one of their tenant: 0, or a
                       divisor of 100 up to 50 (default: {duplicates})
  --outcomes-first     every payment's first event is its outcome, so that first visits all
                       apply (default: half are a stale `payment.processing`)
  --gateway G          stub (a silent gateway, the default) or simulator (the engine's
                       built-in one, answering charges with signed webhooks)
  --no-baselines       skip the no-op handler and one-transaction-per-event baselines
  --no-vacuum          skip VACUUM (ANALYZE) and CHECKPOINT after seeding PostgreSQL
  --wal-detail         break each PostgreSQL step's WAL down by relation (pg_waldump)
  --pg-set NAME=VALUE  a setting on the benchmark databases (repeatable)
  --pg-server NAME=VALUE  a setting the throwaway cluster starts with (repeatable)
  --endpoints LIST     delivery: endpoints per tenant of each ramp (default: {endpoints})
  --delivery-rate R    delivery: the first (fixed) rate (default: {delivery_rate})
  --plot-from FILE     only redraw the plot from an earlier run's stdout
  -h, --help           this text
",
        scenarios = ALL_SCENARIOS.join(", "),
        backends = join(&d.backends),
        step = d.step,
        tenants = d.tenants,
        invoices = d.invoices,
        payments = d.payments,
        actors = d.actors,
        in_flight = d.in_flight,
        duplicates = d.duplicates,
        endpoints = join(&endpoints),
        delivery_rate = d.delivery_rate,
    )
}

/// Options, or `None` when this process is the stub server or the receiver (already run),
/// or when it only printed `--help`.
pub fn options() -> anyhow::Result<Option<Options>> {
    let mut o = Options::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut role = None;
    let mut port = 0u16;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().context(format!("{arg} needs a value"));
        match arg.as_str() {
            "--scenario" => o.scenarios = list(&value()?, ALL_SCENARIOS),
            // `none`: only the no-op handler (the generator's ceiling).
            "--backend" => {
                let v = value()?;
                o.backends = match v.as_str() {
                    "none" => Vec::new(),
                    _ => list(&v, &["sqlite", "postgres"]),
                };
            }
            "--duration" => o.step = parse_duration(&value()?)?,
            "--tenants" => o.tenants = value()?.parse()?,
            "--invoices" => o.invoices = value()?.parse()?,
            "--payments" => o.payments = value()?.parse()?,
            "--actors" => o.actors = value()?.parse()?,
            "--in-flight" => o.in_flight = value()?.parse()?,
            "--no-baselines" => o.baselines = false,
            "--wal-detail" => o.wal_detail = true,
            "--no-vacuum" => o.vacuum = false,
            "--gateway" => {
                o.simulator = match value()?.as_str() {
                    "simulator" => true,
                    "stub" => false,
                    other => bail!("unknown gateway {other}; known: simulator, stub"),
                }
            }
            "--rates" => {
                o.rates = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--endpoints" => {
                o.endpoints = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--delivery-rate" => o.delivery_rate = value()?.parse()?,
            "--duplicates" => {
                o.duplicates = value()?.parse()?;
                if o.duplicates > 50 || (o.duplicates > 0 && 100 % o.duplicates != 0) {
                    bail!("--duplicates takes 0 or a divisor of 100 up to 50");
                }
            }
            "--outcomes-first" => o.outcomes_first = true,
            "--pg-set" => o.pg_settings.push(value()?),
            "--pg-server" => o.pg_server.push(value()?),
            "--plot-from" => o.plot_from = Some(PathBuf::from(value()?)),
            "--role" => role = Some(value()?),
            "--port" => port = value()?.parse()?,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            "-h" | "--help" => {
                print!("{}", usage());
                return Ok(None);
            }
            other => bail!("unknown argument {other} (--help lists the options)"),
        }
    }
    for s in &o.scenarios {
        if !ALL_SCENARIOS.contains(&s.as_str()) {
            bail!("unknown scenario {s}; known: {ALL_SCENARIOS:?}");
        }
    }
    match role.as_deref() {
        Some("stub") => stub::serve(port)?,
        Some("receiver") => receiver::serve(port)?,
        _ => return Ok(Some(o)),
    }
    Ok(None)
}
