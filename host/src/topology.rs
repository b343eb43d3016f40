//! The integration layer drawn as a whole: vendors and sources, the translators that read
//! them with their active versions, the domain's entity types their events are about, and the
//! sinks the events go to. `GET /v1/topology?format=mermaid|dot` and `dragoman topology
//! --format` answer with it, so a web of point-to-point integrations shows as one picture.
//!
//! Pure functions over a [`Topology`]; the pipeline fills it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What the picture shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// The routes, by name.
    pub routes: BTreeMap<String, RouteNode>,
    /// The sinks, by name, with their kind (`http`, `nats`).
    pub sinks: BTreeMap<String, String>,
}

/// One route: where its messages come from, what translates them, what they become.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteNode {
    /// The vendor API its plugin speaks (`acme-erp/v1`).
    pub vendor_api: String,
    /// The vendor its commands go to, if it takes commands.
    pub command_vendor: Option<String>,
    /// The active plugin version, `name@version`.
    pub plugin: String,
    /// The entity types its committed events were about.
    pub entity_types: BTreeSet<String>,
    /// Its sinks.
    pub sinks: Vec<String>,
    /// The broker it also takes messages from, if any (`JetStream ORDERS (erp.orders.>)`).
    pub source: Option<String>,
}

/// The picture's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Mermaid flowchart (renders in Markdown on most forges).
    Mermaid,
    /// Graphviz dot.
    Dot,
}

impl Format {
    /// `mermaid` or `dot`; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mermaid" => Some(Self::Mermaid),
            "dot" => Some(Self::Dot),
            _ => None,
        }
    }
}

/// A node of the picture: its id (letters, digits and `_` only) and its label.
struct Node {
    id: String,
    label: String,
    shape: Shape,
}

#[derive(Clone, Copy)]
enum Shape {
    Vendor,
    Route,
    Entity,
    Sink,
    Source,
}

/// An id both formats accept, unique per kind and name.
fn node_id(kind: &str, name: &str) -> String {
    let mut id = format!("{kind}_");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else {
            // Distinct names stay distinct: every other character by its code.
            let _ = write!(id, "_{:x}_", u32::from(c));
        }
    }
    id
}

/// The nodes and edges, once for both formats.
fn graph(topology: &Topology) -> (Vec<Node>, BTreeSet<(String, String, String)>) {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut edges = BTreeSet::new();
    let mut add = |id: String, label: String, shape: Shape| {
        nodes.entry(id.clone()).or_insert(Node { id, label, shape });
    };
    for (name, route) in &topology.routes {
        let vendor = node_id("vendor", &route.vendor_api);
        let translator = node_id("route", name);
        add(vendor.clone(), route.vendor_api.clone(), Shape::Vendor);
        add(
            translator.clone(),
            format!("{name}: {}", route.plugin),
            Shape::Route,
        );
        edges.insert((
            vendor.clone(),
            translator.clone(),
            format!("POST /v1/routes/{name}/messages"),
        ));
        if let Some(source) = &route.source {
            let id = node_id("source", source);
            add(id.clone(), source.clone(), Shape::Source);
            edges.insert((vendor, id.clone(), "publishes".into()));
            edges.insert((id, translator.clone(), "pull".into()));
        }
        if let Some(target) = &route.command_vendor {
            let id = node_id("vendor", target);
            add(id.clone(), target.clone(), Shape::Vendor);
            edges.insert((translator.clone(), id, "commands".into()));
        }
        let sinks = || route.sinks.iter().map(|sink| node_id("sink", sink));
        if route.entity_types.is_empty() {
            for sink in sinks() {
                edges.insert((translator.clone(), sink, String::new()));
            }
        }
        for entity in &route.entity_types {
            let id = node_id("entity", entity);
            add(id.clone(), entity.clone(), Shape::Entity);
            edges.insert((translator.clone(), id.clone(), String::new()));
            for sink in sinks() {
                edges.insert((id.clone(), sink, String::new()));
            }
        }
    }
    for (name, kind) in &topology.sinks {
        add(
            node_id("sink", name),
            format!("{name} ({kind})"),
            Shape::Sink,
        );
    }
    (nodes.into_values().collect(), edges)
}

/// The picture in `format`.
pub fn render(topology: &Topology, format: Format) -> String {
    let (nodes, edges) = graph(topology);
    let quoted = |label: &str| label.replace('"', "'");
    let mut out = String::new();
    match format {
        Format::Mermaid => {
            out.push_str("flowchart LR\n");
            for node in &nodes {
                let label = quoted(&node.label);
                let (open, close) = match node.shape {
                    Shape::Vendor => ("([\"", "\"])"),
                    Shape::Route => ("[\"", "\"]"),
                    Shape::Entity => ("((\"", "\"))"),
                    Shape::Sink => ("[[\"", "\"]]"),
                    Shape::Source => ("[(\"", "\")]"),
                };
                let _ = writeln!(out, "  {}{open}{label}{close}", node.id);
            }
            for (from, to, label) in &edges {
                if label.is_empty() {
                    let _ = writeln!(out, "  {from} --> {to}");
                } else {
                    let _ = writeln!(out, "  {from} -->|\"{}\"| {to}", quoted(label));
                }
            }
        }
        Format::Dot => {
            out.push_str("digraph dragoman {\n  rankdir=LR;\n");
            for node in &nodes {
                let shape = match node.shape {
                    Shape::Vendor => "cds",
                    Shape::Route => "box",
                    Shape::Entity => "ellipse",
                    Shape::Sink => "cylinder",
                    Shape::Source => "folder",
                };
                let _ = writeln!(
                    out,
                    "  {} [label=\"{}\", shape={shape}];",
                    node.id,
                    quoted(&node.label)
                );
            }
            for (from, to, label) in &edges {
                if label.is_empty() {
                    let _ = writeln!(out, "  {from} -> {to};");
                } else {
                    let _ = writeln!(out, "  {from} -> {to} [label=\"{}\"];", quoted(label));
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Format, RouteNode, Topology, node_id, render};

    fn two_vendors_one_domain() -> Topology {
        let mut topology = Topology::default();
        topology.routes.insert(
            "erp-orders".into(),
            RouteNode {
                vendor_api: "acme-erp/v1".into(),
                command_vendor: Some("acme".into()),
                plugin: "acme-erp-orders@1.0.0".into(),
                entity_types: ["order".to_owned()].into(),
                sinks: vec!["hook".into(), "bus".into()],
                source: None,
            },
        );
        topology.routes.insert(
            "payments".into(),
            RouteNode {
                vendor_api: "paygate/2024-06".into(),
                command_vendor: None,
                plugin: "paygate@0.3.0".into(),
                entity_types: ["order".to_owned(), "refund".to_owned()].into(),
                sinks: vec!["hook".into()],
                source: Some("JetStream PAYGATE (paygate.>)".into()),
            },
        );
        topology.sinks.insert("hook".into(), "http".into());
        topology.sinks.insert("bus".into(), "nats".into());
        topology
    }

    #[test]
    fn mermaid_draws_vendors_translators_entity_types_and_sinks() {
        let text = render(&two_vendors_one_domain(), Format::Mermaid);
        assert!(text.starts_with("flowchart LR\n"), "{text}");
        for line in [
            "  vendor_acme_2d_erp_2f_v1([\"acme-erp/v1\"])",
            "  route_erp_2d_orders[\"erp-orders: acme-erp-orders@1.0.0\"]",
            "  entity_order((\"order\"))",
            "  sink_hook[[\"hook (http)\"]]",
            "  vendor_acme_2d_erp_2f_v1 -->|\"POST /v1/routes/erp-orders/messages\"| route_erp_2d_orders",
            "  route_erp_2d_orders -->|\"commands\"| vendor_acme",
            "  route_payments --> entity_order",
            "  route_payments --> entity_refund",
            "  entity_order --> sink_bus",
            "  entity_refund --> sink_hook",
            // A route that also pulls from a broker: the vendor publishes, the route pulls.
            "  source_JetStream_20_PAYGATE_20__28_paygate_2e__3e__29_[(\"JetStream PAYGATE (paygate.>)\")]",
            "  vendor_paygate_2f_2024_2d_06 -->|\"publishes\"| source_JetStream_20_PAYGATE_20__28_paygate_2e__3e__29_",
            "  source_JetStream_20_PAYGATE_20__28_paygate_2e__3e__29_ -->|\"pull\"| route_payments",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        // One domain: both translators feed the one `order` node.
        assert_eq!(text.matches("entity_order((").count(), 1);
    }

    #[test]
    fn dot_draws_the_same_graph() {
        let text = render(&two_vendors_one_domain(), Format::Dot);
        assert!(
            text.starts_with("digraph dragoman {") && text.ends_with("}\n"),
            "{text}"
        );
        assert!(
            text.contains("  entity_order [label=\"order\", shape=ellipse];"),
            "{text}"
        );
        assert!(
            text.contains("  route_payments -> entity_refund;"),
            "{text}"
        );
        assert!(
            text.contains("  sink_bus [label=\"bus (nats)\", shape=cylinder];"),
            "{text}"
        );
    }

    #[test]
    fn a_route_with_no_entity_type_seen_yet_goes_straight_to_its_sinks() {
        let mut topology = two_vendors_one_domain();
        topology
            .routes
            .get_mut("payments")
            .unwrap()
            .entity_types
            .clear();
        let text = render(&topology, Format::Mermaid);
        assert!(
            text.lines().any(|l| l == "  route_payments --> sink_hook"),
            "{text}"
        );
    }

    /// The picture the README shows is what this module draws for the quickstart.
    #[test]
    fn the_readme_shows_the_quickstart_as_drawn() {
        let mut quickstart = Topology::default();
        for (route, vendor_api, plugin) in [
            ("erp-orders", "acme-erp/v1", "acme-erp-orders@1.0.0"),
            (
                "erp-cancellations",
                "acme-erp/v1",
                "acme-erp-cancellations@1.0.0",
            ),
            ("payments", "paylane/2025-06", "paylane-payments@1.0.0"),
        ] {
            quickstart.routes.insert(
                route.into(),
                RouteNode {
                    vendor_api: vendor_api.into(),
                    command_vendor: None,
                    plugin: plugin.into(),
                    entity_types: ["order".to_owned()].into(),
                    sinks: vec!["watch".into()],
                    source: None,
                },
            );
        }
        quickstart.sinks.insert("watch".into(), "http".into());
        let drawn = render(&quickstart, Format::Mermaid);
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&format!("```mermaid\n{drawn}```")),
            "README.md should show:\n{drawn}"
        );
    }

    #[test]
    fn ids_keep_distinct_names_distinct() {
        assert_ne!(node_id("sink", "a-b"), node_id("sink", "a_b"));
        assert_ne!(node_id("sink", "a.b"), node_id("sink", "a-b"));
    }
}
