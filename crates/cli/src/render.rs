//! Human-readable tables of a node's status, peers and routes (what `ctl` prints without
//! `--json`, and what the demo shows).

use comfy_table::{Table, presets};
use node::{PeerView, RouteView, StatusView};
use wire::NodeId;

/// How a table names nodes: `ctl` shows short ids, the demo its node numbers.
pub type Labeller<'a> = &'a dyn Fn(&NodeId) -> String;

/// Names a node by the first eight hex digits of its id.
pub fn short_id(id: &NodeId) -> String {
    id.short()
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}

/// The status as a two-column table, counters last.
pub fn status(view: &StatusView) -> String {
    let mut table = table(&["field", "value"]);
    let own_seq = view
        .own_seq
        .map_or_else(|| "-".to_string(), |seq| seq.to_string());
    let rows: Vec<(String, String)> = vec![
        ("node id".into(), view.node_id.to_string()),
        ("version".into(), view.version.clone()),
        ("uptime".into(), format_duration_ms(view.uptime_ms)),
        ("udp listen".into(), view.listen.to_string()),
        (
            "interfaces".into(),
            if view.interfaces.is_empty() {
                "-".into()
            } else {
                view.interfaces.join(", ")
            },
        ),
        ("static peers".into(), view.static_peers.to_string()),
        (
            "neighbours".into(),
            format!(
                "{} alive / {} known",
                view.neighbours_alive, view.neighbours_known
            ),
        ),
        ("routes".into(), view.routes.to_string()),
        (
            "own seq".into(),
            format!("{own_seq} (reserved to {})", view.seq_reserved_until),
        ),
    ];
    for (name, value) in rows {
        table.add_row(vec![name, value]);
    }
    for (name, value) in &view.router {
        table.add_row(vec![format!("router.{name}"), value.to_string()]);
    }
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&view.transport) {
        for (name, value) in fields {
            table.add_row(vec![format!("transport.{name}"), value.to_string()]);
        }
    }
    for (name, value) in &view.links {
        table.add_row(vec![format!("links.{name}"), value.to_string()]);
    }
    if let Some(healing) = &view.healing {
        table.add_row(vec![
            "healing.open_incidents".to_string(),
            healing.open_incidents.to_string(),
        ]);
        table.add_row(vec![
            "healing.incidents_total".to_string(),
            healing.incidents_total.to_string(),
        ]);
        for (kind, figures) in &healing.repair {
            let mttr = figures
                .mttr_ms_mean
                .map_or_else(|| "-".to_string(), |ms| format!("{ms:.0} ms"));
            table.add_row(vec![
                format!("healing.{kind}"),
                format!(
                    "{} incidents, MTTD {:.0} ms (max {:.0}), {} recovered, MTTR {mttr}",
                    figures.incidents, figures.mttd_ms_mean, figures.mttd_ms_max, figures.resolved
                ),
            ]);
        }
        for service in &healing.services {
            table.add_row(vec![
                format!("service.{}", service.name),
                format!(
                    "{:?}, pid {}, {} starts, {} restarts by the loop",
                    service.state,
                    service
                        .pid
                        .map_or_else(|| "-".to_string(), |p| p.to_string()),
                    service.starts,
                    service.requested_restarts
                )
                .to_lowercase(),
            ]);
        }
        if let Some(reason) = &healing.store_degraded {
            table.add_row(vec!["healing.store".to_string(), reason.clone()]);
        }
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&healing.counters) {
            for (name, value) in fields {
                table.add_row(vec![format!("healing.{name}"), value.to_string()]);
            }
        }
    }
    table.to_string()
}

/// Stored incidents (JSON records from `/api/v1/incidents`), one row each.
pub fn incidents(records: &[serde_json::Value]) -> String {
    let mut table = table(&[
        "id",
        "type",
        "severity",
        "state",
        "root cause",
        "conf",
        "plan",
        "ok",
        "MTTD",
        "MTTR",
    ]);
    for record in records {
        let text = |field: &str| record[field].as_str().unwrap_or("-").to_string();
        let ms = |field: &str| {
            record[field]
                .as_u64()
                .map_or_else(|| "-".to_string(), |us| format!("{} ms", us / 1000))
        };
        table.add_row(vec![
            record["record_id"].to_string(),
            text("kind"),
            text("severity"),
            text("state"),
            root_cause(&record["root_cause"]),
            record["confidence"]
                .as_f64()
                .map_or_else(|| "-".to_string(), |c| format!("{c:.2}")),
            text("plan"),
            match record["success"].as_bool() {
                Some(true) => "yes".to_string(),
                Some(false) => "no".to_string(),
                None => "-".to_string(),
            },
            ms("mttd_us"),
            ms("mttr_us"),
        ]);
    }
    table.to_string()
}

/// A root cause as `heal` serialises it (`{"node": "<hex>"}`, `{"link": {...}}`, `"routes"`,
/// `{"service": {...}}`), in words.
pub fn root_cause(value: &serde_json::Value) -> String {
    let short = |v: &serde_json::Value| {
        v.as_str()
            .map_or("?".to_string(), |s| s.chars().take(8).collect())
    };
    if let Some(node) = value.get("node") {
        return format!("node {}", short(node));
    }
    if let Some(link) = value.get("link") {
        return format!("link {} -> {}", short(&link["from"]), short(&link["to"]));
    }
    if let Some(service) = value.get("service") {
        return format!("service {}", service["check"].as_str().unwrap_or("?"));
    }
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

/// One incident in full: the record's fields, then evidence, plans, steps and notes.
pub fn incident(record: &serde_json::Value) -> String {
    let mut out = incidents(std::slice::from_ref(record));
    let incident = &record["incident"];
    let list = |title: &str, items: &serde_json::Value, out: &mut String| {
        if let Some(items) = items.as_array().filter(|a| !a.is_empty()) {
            out.push_str(&format!("\n{title}:\n"));
            for item in items {
                out.push_str(&format!("  {}\n", compact(item)));
            }
        }
    };
    list("evidence", &incident["evidence"], &mut out);
    list("alternatives", &incident["alternatives"], &mut out);
    list("plans", &incident["plans"], &mut out);
    list("steps", &incident["steps"], &mut out);
    list("outcomes", &incident["outcomes"], &mut out);
    list("notes", &incident["notes"], &mut out);
    if let Some(metrics) = record.get("metrics").filter(|m| !m.is_null()) {
        out.push_str(&format!("\nmetrics at detection: {}\n", compact(metrics)));
    }
    out
}

fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The node's identity.
pub fn identity(view: &node::IdentityView) -> String {
    let mut table = table(&["field", "value"]);
    let expiry = if view.svid_expires_in_s >= 0 {
        format!(
            "in {}",
            format_duration_ms(view.svid_expires_in_s as u64 * 1000)
        )
    } else {
        "EXPIRED".to_string()
    };
    for (field, value) in [
        ("spiffe id", view.spiffe_id.clone()),
        ("node id", view.node_id.to_string()),
        ("overlay address", view.overlay_address.to_string()),
        ("trust domain", view.trust_domain.clone()),
        (
            "svid expires",
            format!("{expiry} (Unix {})", view.svid_not_after),
        ),
        ("svid renewals", view.svid_renewals.to_string()),
        ("keys", view.fingerprints.clone()),
        ("CA hash", view.bundle_hash.clone()),
        ("pq only", view.pq_only.to_string()),
        ("CA node", view.is_ca.to_string()),
        ("revoked nodes", view.revoked_nodes.to_string()),
        ("node records", view.node_records.to_string()),
    ] {
        table.add_row(vec![field.to_string(), value]);
    }
    table.to_string()
}

/// The replicated state: one row per collection, then one per neighbour.
pub fn crdt(view: &node::CrdtView, label: Labeller<'_>) -> String {
    let mut collections = table(&["collection", "digest", "entries", "writers", "events"]);
    for collection in &view.collections {
        collections.add_row(vec![
            collection.name.clone(),
            collection.digest.clone(),
            collection.entries.to_string(),
            collection.writers.to_string(),
            collection.events.to_string(),
        ]);
    }
    let in_sync = view.peers.iter().filter(|peer| peer.in_sync).count();
    let mut peers = table(&["peer", "in sync", "collections in sync"]);
    for peer in &view.peers {
        peers.add_row(vec![
            label(&peer.peer),
            peer.in_sync.to_string(),
            peer.collections_in_sync.join(", "),
        ]);
    }
    let refused = ["records", "revocations", "policies"]
        .iter()
        .map(|kind| {
            let count = view
                .counters
                .get(&format!("crdt_refused_{kind}"))
                .copied()
                .unwrap_or(0);
            format!("{kind} {count}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{collections}\npeers in sync: {in_sync} of {}\n{peers}\nrefused (bad signature or writer): {refused}",
        view.peers.len()
    )
}

/// The neighbour table.
pub fn peers(views: &[PeerView], label: Labeller<'_>) -> String {
    if views.is_empty() {
        return "no neighbours".to_string();
    }
    let mut table = table(&[
        "neighbour",
        "address",
        "alive",
        "tq",
        "rx",
        "tx",
        "loss %",
        "rtt ms",
        "last heard",
        "spiffe id",
        "key exchange",
    ]);
    for peer in views {
        table.add_row(vec![
            label(&peer.id),
            peer.address
                .map_or_else(|| "-".to_string(), |address| address.to_string()),
            if peer.alive { "yes" } else { "no" }.to_string(),
            peer.tq.to_string(),
            peer.rx_quality.to_string(),
            peer.tx_quality.to_string(),
            format!("{:.1}", peer.loss_pct),
            format!("{:.2}", f64::from(peer.rtt_us) / 1000.0),
            format!("{} ago", format_duration_ms(peer.last_heard_ms_ago)),
            peer.spiffe_id.clone().unwrap_or_else(|| "-".to_string()),
            peer.kx_group.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    table.to_string()
}

/// The routing table.
pub fn routes(views: &[RouteView], label: Labeller<'_>) -> String {
    if views.is_empty() {
        return "no routes".to_string();
    }
    let mut table = table(&[
        "destination",
        "next hop",
        "hops",
        "tq",
        "cost",
        "seq",
        "alternates",
        "changed",
    ]);
    for route in views {
        let alternates: Vec<String> = route.alternates.iter().map(label).collect();
        table.add_row(vec![
            label(&route.destination),
            label(&route.next_hop),
            route.hops.to_string(),
            route.tq.to_string(),
            route.cost.to_string(),
            route.seq.to_string(),
            if alternates.is_empty() {
                "-".to_string()
            } else {
                alternates.join(", ")
            },
            format!("{} ago", format_duration_ms(route.changed_ms_ago)),
        ]);
    }
    table.to_string()
}

/// `1234` -> `1.2 s`, `90_000` -> `1m30s`, small values in ms.
pub fn format_duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

fn bytes_text(base64_text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_text)
        .unwrap_or_default();
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => format!("0x{}", hex::encode(error.as_bytes())),
    }
}

/// A key listing: key, revision, value.
pub fn kv_list(view: &api::kv::ListView) -> String {
    let mut table = table(&["key", "revision", "lease", "value"]);
    for item in &view.items {
        table.add_row(vec![
            bytes_text(&item.key),
            item.revision.to_string(),
            item.lease.map_or(String::new(), |l| l.to_string()),
            bytes_text(&item.value),
        ]);
    }
    let mut text = table.to_string();
    if view.items.is_empty() {
        text = "no keys".to_string();
    }
    if let Some(next) = &view.next {
        text.push_str(&format!("\n(more keys after {:?})", bytes_text(next)));
    }
    text
}

/// One watched change.
pub fn watch_line(line: &api::kv::WatchLine) -> String {
    match line.kind.as_str() {
        "put" => format!(
            "put {} = {} (revision {})",
            bytes_text(line.key.as_deref().unwrap_or_default()),
            bytes_text(line.value.as_deref().unwrap_or_default()),
            line.revision
        ),
        "delete" => format!(
            "delete {} (revision {})",
            bytes_text(line.key.as_deref().unwrap_or_default()),
            line.revision
        ),
        "reset" => format!(
            "reset: state replaced by a snapshot at revision {}; re-list",
            line.revision
        ),
        _ => "lagged: changes were missed; re-list and watch again".to_string(),
    }
}

/// Raft status of a member.
pub fn raft(view: &node::kvhost::RaftView) -> String {
    let list = |ids: &[NodeId]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter()
                .map(NodeId::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let optional = |value: Option<u64>| value.map_or("none".to_string(), |v| v.to_string());
    format!(
        "node          {} (raft id {:016x})\nstate         {}\nleader        {}\nterm          {}\ncommit index  {}\nlast applied  {}\nvoters        {}\nlearners      {}\nrestarts      {}",
        view.node,
        view.raft_id,
        view.state,
        view.leader.map_or("none".to_string(), |l| l.to_string()),
        view.term,
        optional(view.commit_index),
        optional(view.last_applied),
        list(&view.voters),
        list(&view.learners),
        view.replica_restarts,
    )
}

/// One line for a healing event from `/api/v1/events`.
pub fn event_line(text: &str) -> String {
    let Ok(event) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    let at = event["at_unix_ms"].as_u64().unwrap_or(0);
    let kind = event["type"].as_str().unwrap_or("?");
    let body = match kind {
        "heal" => {
            let inner = &event["event"];
            let name = inner["event"].as_str().unwrap_or("?");
            match name {
                "incident_opened" | "incident_closed" => {
                    let incident = &inner["incident_opened"];
                    let incident = if incident.is_null() {
                        &inner["incident_closed"]
                    } else {
                        incident
                    };
                    let incident = if incident.is_null() { inner } else { incident };
                    format!(
                        "{name} #{} {} root cause {} confidence {:.2}",
                        incident["id"],
                        incident["kind"].as_str().unwrap_or("?"),
                        root_cause(&incident["root_cause"]),
                        incident["confidence"].as_f64().unwrap_or(0.0)
                    )
                }
                _ => format!("{name} {}", inner),
            }
        }
        "action_started" => format!(
            "action {} for incident #{}{}",
            event["request"]["action"]["action"].as_str().unwrap_or("?"),
            event["request"]["incident"],
            if event["request"]["rollback"].as_bool() == Some(true) {
                " (rollback)"
            } else {
                ""
            }
        ),
        "action_finished" => format!(
            "action #{} {}: {}",
            event["id"],
            if event["succeeded"].as_bool() == Some(true) {
                "succeeded"
            } else {
                "failed"
            },
            event["detail"].as_str().unwrap_or("")
        ),
        _ => event.to_string(),
    };
    format!("{at} {body}")
}

/// The answer of `ctl heal reload`.
pub fn reload(outcome: &serde_json::Value) -> String {
    let list = |field: &str| {
        let names: Vec<&str> = outcome[field]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let mut text = format!(
        "reloaded {}: {} checks (new or changed: {}; removed: {}), {} playbooks",
        outcome["file"].as_str().unwrap_or("node.yaml"),
        outcome["checks"],
        list("checks_changed"),
        list("checks_removed"),
        outcome["playbooks"],
    );
    if outcome["restart_needed"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        text.push_str(&format!(
            "\nchanged but applied only at restart: {}",
            list("restart_needed")
        ));
    }
    text
}

/// The mesh's incidents (`ctl incidents --mesh`): one row per incident of any node, with
/// how long ago it opened and closed.
pub fn mesh_incidents(records: &[serde_json::Value], label: &impl Fn(&NodeId) -> String) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let ago = |value: &serde_json::Value| {
        value.as_u64().map_or_else(
            || "-".to_string(),
            |ms| format!("{} s ago", now_ms.saturating_sub(ms) / 1000),
        )
    };
    let mut table = table(&[
        "node",
        "id",
        "type",
        "severity",
        "state",
        "root cause",
        "opened",
        "closed",
    ]);
    for record in records {
        let text = |field: &str| record[field].as_str().unwrap_or("-").to_string();
        let node = record["node"]
            .as_str()
            .and_then(|s| s.parse::<NodeId>().ok())
            .map_or_else(|| text("node"), |id| label(&id));
        let node = if record["node_reachable"].as_bool() == Some(false) {
            format!("{node} (unreachable)")
        } else {
            node
        };
        table.add_row(vec![
            node,
            record["id"].to_string(),
            text("kind"),
            text("severity"),
            text("state"),
            text("root_cause"),
            ago(&record["opened_unix_ms"]),
            ago(&record["closed_unix_ms"]),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(destination: u64, next_hop: u64, alternates: &[u64]) -> RouteView {
        RouteView {
            destination: NodeId::from_index(destination),
            next_hop: NodeId::from_index(next_hop),
            next_hop_address: None,
            cost: 10,
            tq: 200,
            hops: 2,
            seq: 7,
            alternates: alternates
                .iter()
                .map(|index| NodeId::from_index(*index))
                .collect(),
            changed_at_unix_ms: 0,
            changed_ms_ago: 1500,
        }
    }

    #[test]
    fn routes_table_uses_the_labeller_for_every_node() {
        let label = |id: &NodeId| format!("node-{}", id.0[15]);
        let text = routes(&[route(4, 3, &[5])], &label);
        for expected in ["node-4", "node-3", "node-5", "1.5 s ago", "200"] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        assert_eq!(routes(&[], &short_id), "no routes");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration_ms(250), "250 ms");
        assert_eq!(format_duration_ms(1_250), "1.2 s");
        assert_eq!(format_duration_ms(90_000), "1m30s");
    }
}
