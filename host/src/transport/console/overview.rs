//! The overview page: the topology drawn as SVG (vendors, translators at their active
//! versions, entity types, sinks), each route's rates from the host's own counters, and each
//! sink's breaker and backlog. Pure rendering over an [`Overview`]; `console.rs` gathers it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::html::escape;
use crate::telemetry::{OutboxGauges, RouteCounts};
use crate::topology::Topology;

/// What the overview shows.
#[derive(Debug, Clone, Default)]
pub(super) struct Overview {
    pub(super) topology: Topology,
    /// Each route's counts and rates, by name.
    pub(super) routes: BTreeMap<String, RouteRow>,
    /// Each breaker's state by name (sinks and vendors).
    pub(super) breakers: BTreeMap<String, &'static str>,
    /// Each sink's deliveries waiting.
    pub(super) pending: BTreeMap<String, i64>,
    pub(super) outbox: OutboxGauges,
    /// The session's CSRF token, for the breakers' forms.
    pub(super) csrf: String,
}

/// A route's line of the overview.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct RouteRow {
    pub(super) counts: RouteCounts,
    /// Over the last interval, once there is one.
    pub(super) rates: Option<Rate>,
}

/// What a route did over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Rate {
    /// Messages a second.
    pub(super) messages: f64,
    /// Refusals a second.
    pub(super) refusals: f64,
    /// The 99th percentile of its ingests' latency (a bucket's upper bound), if any ran.
    pub(super) p99: Option<Duration>,
}

/// The routes' rates between two reads of their counters at least [`Rates::EVERY`] apart:
/// what any console page reads shares one sample, so a rate costs the hot path nothing.
#[derive(Debug, Default)]
pub(super) struct Rates {
    last: Mutex<RatesState>,
}

#[derive(Debug, Default)]
struct RatesState {
    sample: Option<(Instant, BTreeMap<String, RouteCounts>)>,
    rates: BTreeMap<String, Rate>,
}

impl Rates {
    /// The shortest interval a rate is measured over.
    pub(super) const EVERY: Duration = Duration::from_secs(1);

    /// The rows for `counts` read at `now`.
    pub(super) fn rows(
        &self,
        counts: BTreeMap<String, RouteCounts>,
        now: Instant,
    ) -> BTreeMap<String, RouteRow> {
        let mut state = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = state
            .sample
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at) >= Self::EVERY);
        if due {
            if let Some((at, before)) = &state.sample {
                let secs = now.duration_since(*at).as_secs_f64();
                let rates = counts
                    .iter()
                    .filter_map(|(route, now)| {
                        let before = before.get(route)?;
                        let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
                        Some((
                            route.clone(),
                            Rate {
                                messages: per_sec(now.received, before.received),
                                refusals: per_sec(now.refused, before.refused),
                                p99: crate::telemetry::quantile(
                                    &before.latency,
                                    &now.latency,
                                    0.99,
                                ),
                            },
                        ))
                    })
                    .collect();
                state.rates = rates;
            }
            state.sample = Some((now, counts.clone()));
        }
        counts
            .into_iter()
            .map(|(route, counts)| {
                let rates = state.rates.get(&route).copied();
                (route, RouteRow { counts, rates })
            })
            .collect()
    }
}

/// Whether a breaker state is a failing part.
fn failing(state: &str) -> bool {
    matches!(state, "open" | "forced_open" | "half_open")
}

/// The overview's main section.
pub(super) fn render(view: &Overview) -> String {
    let mut out = String::from(
        "<div id=\"overview\" data-refresh=\"/console/overview?fragment=1\"><h1>Overview</h1>",
    );
    out.push_str(&svg(&view.topology, &view.breakers));
    out.push_str(
        "<h2>Routes</h2><table id=\"routes\"><thead><tr><th>Route</th><th>Translator</th>\
         <th>Received</th><th>Translated</th><th>Refused</th><th>Messages/s</th>\
         <th>Refusals/s</th><th>p99</th></tr></thead><tbody>",
    );
    for (name, route) in &view.topology.routes {
        let row = view.routes.get(name).copied().unwrap_or_default();
        let (rate, refusals, p99) = row.rates.map_or_else(
            || ("…".to_owned(), "…".to_owned(), "…".to_owned()),
            |r| {
                (
                    format!("{:.1}", r.messages),
                    format!("{:.1}", r.refusals),
                    r.p99.map_or_else(
                        || "–".to_owned(),
                        |p| format!("≤ {:.1} ms", p.as_secs_f64() * 1e3),
                    ),
                )
            },
        );
        let class = if row.rates.is_some_and(|r| r.refusals > 0.0) {
            " class=\"failing\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr id=\"route-{id}\"{class}><td>{name}</td><td>{plugin}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{rate}</td><td>{refusals}</td><td>{p99}</td></tr>",
            row.counts.received,
            row.counts.translated,
            row.counts.refused,
            id = escape(name),
            name = escape(name),
            plugin = escape(&route.plugin),
        );
    }
    out.push_str(
        "</tbody></table><h2>Sinks</h2><table id=\"sinks\"><thead><tr><th>Sink</th>\
         <th>Kind</th><th>Breaker</th><th>Waiting</th><th></th></tr></thead><tbody>",
    );
    for (name, kind) in &view.topology.sinks {
        let state = view.breakers.get(name).copied().unwrap_or("closed");
        let _ = write!(
            out,
            "<tr id=\"sink-{id}\"{class}><td>{id}</td><td>{kind}</td>\
             <td class=\"breaker state-{state}\" id=\"breaker-{id}\">{state}</td>\
             <td id=\"pending-{id}\">{pending}</td><td>{action}</td></tr>",
            id = escape(name),
            kind = escape(kind),
            class = if failing(state) {
                " class=\"failing\""
            } else {
                ""
            },
            pending = view.pending.get(name).copied().unwrap_or(0),
            action = breaker_form(name, state, &view.csrf),
        );
    }
    let _ = write!(
        out,
        "</tbody></table><p id=\"outbox\">Outbox: <b>{}</b> events waiting, the oldest \
         {} s old; <b>{}</b> dead letters.</p></div>",
        view.outbox.depth, view.outbox.oldest_age_secs, view.outbox.dead_letters
    );
    out
}

/// A breaker's action for the operator: reset a failing one, force a closed one open.
fn breaker_form(name: &str, state: &str, csrf: &str) -> String {
    let (action, label) = if failing(state) || state == "disabled" {
        ("reset", "Reset")
    } else {
        ("force-open", "Force open")
    };
    format!(
        "<form method=\"post\" action=\"/console/breakers/{path}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"action\" value=\"{action}\">\
         <button type=\"submit\">{label}</button></form>",
        path = escape(&crate::percent::encode(name)),
        csrf = escape(csrf),
    )
}

const COLUMN: f64 = 270.0;
const ROW: f64 = 56.0;
const BOX_W: f64 = 240.0;
const BOX_H: f64 = 38.0;

/// The topology as SVG: four columns, a box per vendor (route), translator, entity type and
/// sink, a line per flow; a sink's box is coloured by its breaker.
pub(super) fn svg(topology: &Topology, breakers: &BTreeMap<String, &'static str>) -> String {
    let mut columns: [Vec<(String, String, String)>; 4] = Default::default();
    let mut edges = Vec::new();
    let push = |column: &mut Vec<(String, String, String)>, key: String, label: String, class| {
        if !column.iter().any(|(k, _, _)| *k == key) {
            column.push((key, label, class));
        }
    };
    for (name, route) in &topology.routes {
        let vendor = format!("v:{name}");
        let label = if route.vendor_api.is_empty() {
            name.clone()
        } else {
            format!("{name} ({})", route.vendor_api)
        };
        push(&mut columns[0], vendor.clone(), label, "vendor".to_owned());
        let plugin = format!("p:{}", route.plugin);
        push(
            &mut columns[1],
            plugin.clone(),
            route.plugin.clone(),
            "plugin".to_owned(),
        );
        edges.push((vendor, plugin.clone()));
        for entity in &route.entity_types {
            let key = format!("e:{entity}");
            push(
                &mut columns[2],
                key.clone(),
                entity.clone(),
                "entity".to_owned(),
            );
            edges.push((plugin.clone(), key.clone()));
            for sink in &route.sinks {
                edges.push((key.clone(), format!("s:{sink}")));
            }
        }
        if route.entity_types.is_empty() {
            for sink in &route.sinks {
                edges.push((plugin.clone(), format!("s:{sink}")));
            }
        }
    }
    for name in topology.sinks.keys() {
        let state = breakers.get(name).copied().unwrap_or("closed");
        push(
            &mut columns[3],
            format!("s:{name}"),
            format!("{name} · {state}"),
            format!("sink state-{state}"),
        );
    }
    let place: BTreeMap<&str, (f64, f64)> = columns
        .iter()
        .enumerate()
        .flat_map(|(c, column)| {
            column.iter().enumerate().map(move |(r, (key, _, _))| {
                (
                    key.as_str(),
                    (c as f64 * COLUMN + 10.0, r as f64 * ROW + 40.0),
                )
            })
        })
        .collect();
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let (width, height) = (4.0 * COLUMN, rows as f64 * ROW + 50.0);
    let mut out = format!(
        "<svg id=\"topology\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         role=\"img\" aria-label=\"Topology\">"
    );
    for (c, title) in ["Vendors", "Translators", "Entity types", "Sinks"]
        .iter()
        .enumerate()
    {
        let _ = write!(
            out,
            "<text class=\"column\" x=\"{}\" y=\"22\">{title}</text>",
            c as f64 * COLUMN + 10.0
        );
    }
    for (from, to) in &edges {
        if let (Some((x1, y1)), Some((x2, y2))) = (place.get(from.as_str()), place.get(to.as_str()))
        {
            let _ = write!(
                out,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{x2}\" y2=\"{}\"/>",
                x1 + BOX_W,
                y1 + BOX_H / 2.0,
                y2 + BOX_H / 2.0
            );
        }
    }
    for column in &columns {
        for (key, label, class) in column {
            let (x, y) = place[key.as_str()];
            let _ = write!(
                out,
                "<g class=\"{class}\"><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text></g>",
                x + 10.0,
                y + 24.0,
                escape(label),
                class = escape(class),
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::RouteNode;

    fn topology() -> Topology {
        let mut topology = Topology::default();
        topology.routes.insert(
            "orders".into(),
            RouteNode {
                vendor_api: "acme-erp/v1".into(),
                plugin: "acme-erp-orders@1.0.0".into(),
                entity_types: ["order".to_owned()].into(),
                sinks: vec!["hook".into()],
                ..RouteNode::default()
            },
        );
        topology.sinks.insert("hook".into(), "http".into());
        topology.sinks.insert("<i>x</i>".into(), "http".into());
        topology
    }

    #[test]
    fn the_picture_has_a_box_per_part_and_an_open_breaker_stands_out() {
        let breakers = BTreeMap::from([("hook".to_owned(), "open")]);
        let svg = svg(&topology(), &breakers);
        for part in [
            "orders (acme-erp/v1)",
            "acme-erp-orders@1.0.0",
            "order",
            "hook · open",
        ] {
            assert!(svg.contains(&format!(">{part}</text>")), "{part}: {svg}");
        }
        assert!(svg.contains("class=\"sink state-open\""), "{svg}");
        assert!(
            svg.contains("&lt;i&gt;x&lt;/i&gt;") && !svg.contains("<i>"),
            "{svg}"
        );
        assert_eq!(svg.matches("<line").count(), 3, "{svg}");
    }

    #[test]
    fn rates_are_measured_between_samples_a_second_apart() {
        let rates = Rates::default();
        let t = Instant::now();
        let counts = |received, refused| {
            BTreeMap::from([(
                "orders".to_owned(),
                RouteCounts {
                    received,
                    refused,
                    ..RouteCounts::default()
                },
            )])
        };
        assert_eq!(rates.rows(counts(10, 0), t)["orders"].rates, None);
        // Too soon: the same sample stands.
        assert_eq!(
            rates.rows(counts(15, 0), t + Duration::from_millis(300))["orders"].rates,
            None
        );
        let row = rates.rows(counts(30, 4), t + Duration::from_secs(2))["orders"];
        let rate = row.rates.unwrap();
        assert_eq!((rate.messages, rate.refusals, rate.p99), (10.0, 2.0, None));
        assert_eq!(row.counts.received, 30);
    }

    #[test]
    fn a_failing_sink_has_a_reset_form_with_the_session_s_token() {
        let view = Overview {
            topology: topology(),
            breakers: BTreeMap::from([("hook".to_owned(), "open")]),
            csrf: "t0k".into(),
            routes: BTreeMap::from([(
                "orders".to_owned(),
                RouteRow {
                    rates: Some(Rate {
                        messages: 3.0,
                        refusals: 0.0,
                        p99: Some(Duration::from_micros(200)),
                    }),
                    ..RouteRow::default()
                },
            )]),
            ..Overview::default()
        };
        let html = render(&view);
        assert!(
            html.contains("<td>3.0</td><td>0.0</td><td>≤ 0.2 ms</td>"),
            "{html}"
        );
        assert!(html.contains("id=\"breaker-hook\">open<"), "{html}");
        assert!(html.contains("name=\"csrf\" value=\"t0k\""), "{html}");
        assert!(html.contains("value=\"reset\""), "{html}");
        assert!(!html.contains("<i>x</i>"), "{html}");
    }
}
