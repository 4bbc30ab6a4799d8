// The dashboard: traffic counters, per-minute traffic over the last hour, connections
// and spool size, the busiest queues, and the live event feed.

import { get, path } from "../api.js";
import { LineChart } from "../chart.js";
import { h, fill, syncList } from "../dom.js";
import { bytes, clock, duration, num, toMillis } from "../format.js";
import { card, modeBadge, note, queueLink, stat, Table } from "../ui.js";

export const COLORS = {
  received: "#2563eb",
  delivered: "#16a34a",
  bounced: "#dc2626",
  deferred: "#d97706",
};
const KINDS = ["received", "delivered", "bounced", "deferred"];

/**
 * Per-minute points, oldest first, missing minutes as zeros: the last hour, or since
 * ``since`` (the daemon's start, epoch ms) when that is later, though at least ten
 * minutes, so a young daemon's chart is not one spike at the right edge.
 */
export function minuteSeries(data, now = Date.now(), since = null) {
  const step = ((data && data.bucket_seconds) || 60) * 1000;
  const byTime = new Map();
  for (const point of (data && data.series) || []) {
    const ms = toMillis(point.t);
    if (ms !== null) byTime.set(Math.floor(ms / step) * step, point);
  }
  const last = Math.floor(now / step) * step;
  let first = last - (Math.round(3600000 / step) - 1) * step;
  if (since !== null && since > first) first = Math.min(Math.floor(since / step) * step, last - 9 * step);
  const times = [];
  const values = Object.fromEntries(KINDS.map((k) => [k, []]));
  for (let t = first; t <= last; t += step) {
    times.push(t);
    const point = byTime.get(t) || {};
    for (const k of KINDS) values[k].push(Number(point[k] || 0));
  }
  return { times, values };
}

export default function dashboard(app) {
  const stats = h("div.stats");
  const trafficHolder = h("div");
  const connHolder = h("div");
  const spoolHolder = h("div");
  const trafficNote = h("p.muted.small");
  const trafficTitle = h("h2", { text: "Traffic per minute, last hour" });
  const feedList = h("ol.feed", { "aria-label": "Live events" });
  const feedState = h("span.muted.small");
  const top = new Table({
    key: (q) => q.queue,
    label: "Busiest queues",
    empty: "No mail queued.",
    columns: [
      { key: "queue", label: "Queue", render: (q) => queueLink(q.queue) },
      { key: "recipients", label: "Recipients", num: true, render: (q) => num(q.recipients) },
      { key: "oldest_age", label: "Oldest", num: true, render: (q) => duration(q.oldest_age) },
      { key: "mode", label: "Mode", render: (q) => modeBadge(q.mode, q.reason) },
    ],
  });

  // [cluster] only: the live nodes and the shared limits in use (GET /api/v1/cluster).
  const clusterNodes = h("p.small");
  const clusterQueues = new Table({
    key: (q) => q.queue,
    label: "Shared limits per queue",
    empty: "No shared limits in use.",
    columns: [
      { key: "queue", label: "Queue", render: (q) => queueLink(q.queue) },
      { key: "leases_total", label: "Leases", num: true, render: (q) => num(q.leases_total ?? 0) },
      { key: "leases", label: "By node", render: (q) => Object.entries(q.leases || {}).map(([n, k]) => `${n}=${k}`).join(" ") || "–" },
      { key: "rate", label: "Rate", num: true, render: (q) => `${(q.rate ?? 0).toFixed(1)}/s` },
      { key: "mode", label: "Mode", render: (q) => modeBadge(q.paused ? "paused" : q.mode, "") },
    ],
  });
  const clusterCard = card("Cluster", clusterNodes, clusterQueues.node);
  clusterCard.hidden = true;

  const node = h("div.dashboard", null,
    h("div.page-head", null, h("h1", { text: "Dashboard" }), h("span#uptime.muted")),
    stats,
    h("div.grid-2", null,
      h("section.card", null, trafficTitle, trafficHolder, trafficNote),
      card("Live events", h("div.feed-head", null, feedState), feedList)),
    h("div.grid-3", null,
      card("Connections", connHolder, h("p.muted.small", { text: "Sampled every 2 s while this page is open." })),
      card("Spool", spoolHolder, h("p.muted.small", { text: "Queued messages, sampled while this page is open." })),
      card("Busiest queues", top.node, h("p.more", null, h("a", { href: "#/queues", text: "All queues →" })))),
    clusterCard);

  const traffic = new LineChart(trafficHolder, { height: 220, label: "traffic per minute", area: false });
  const conns = new LineChart(connHolder, { height: 160, label: "connections", area: true });
  const spool = new LineChart(spoolHolder, { height: 160, label: "spool messages", area: true });

  function renderFeed(feed) {
    feedState.textContent = feed.state === "live" ? "streaming" : feed.state;
    syncList(feedList, feed.events.slice(0, 50), (e) => `${e.at}|${e.type}|${e.id}|${e.rcpt}|${e.text}`,
      () => "", (e) => h(`li.ev.ev-${e.type.replace(/[^a-z]/g, "")}`, null,
        h("span.ev-time", { text: clock(e.at) }),
        h("span.ev-type", { text: e.type }),
        h("span.ev-body", null,
          e.id ? h("a.mono", { href: `#/messages/${encodeURIComponent(e.id)}`, text: e.id }) : null,
          e.rcpt ? h("span", { text: ` → ${e.rcpt}` }) : null,
          e.sender ? h("span", { text: ` from ${e.sender}` }) : null,
          e.recipients ? h("span.muted", { text: ` (${e.recipients} rcpt)` }) : null,
          e.queue ? h("span.muted", { text: ` (${e.queue})` }) : null,
          e.text ? h("span.ev-text", { text: e.text }) : null)));
    if (!feed.events.length && !feedList.nextElementSibling) {
      feedList.after(note("Waiting for events: mail received, delivered, deferred or bounced shows here."));
    } else if (feed.events.length && feedList.nextElementSibling) {
      feedList.nextElementSibling.remove();
    }
  }
  const unsubscribe = app.feed.subscribe(renderFeed);
  renderFeed(app.feed);

  function renderStats(st) {
    const t = (st.traffic || {});
    const minute = t.last_minute || {};
    const hour = t.last_hour || {};
    const c = st.connections || {};
    const sp = st.spool || {};
    fill(stats,
      KINDS.map((k) => stat(`${k[0].toUpperCase()}${k.slice(1)}`, num(minute[k] ?? 0),
        `last minute · ${num(hour[k] ?? 0)} last hour · ${num((t.total || {})[k] ?? 0)} total`, k)),
      stat("Connections", `${c.in === null || c.in === undefined ? "–" : num(c.in)} in · ${num(c.out ?? 0)} out`,
        "SMTP sessions in, delivery connections out"),
      stat("Spool", `${num(sp.messages ?? 0)} msgs`, `${bytes(sp.bytes)} · ${bytes(sp.free_bytes)} free`));
    node.querySelector("#uptime").textContent = st.uptime !== undefined ? `up ${duration(st.uptime)}` : "";
  }

  return {
    node,
    async refresh() {
      if (app.status) renderStats(app.status);
      const [trafficData, queueList] = await Promise.all([
        get(path("traffic")).catch((err) => ({ error: err.message })),
        app.list("queues", { sort: "recipients", max: 8 }),
      ]);
      if (trafficData.error) {
        trafficNote.textContent = `Traffic history unavailable: ${trafficData.error}`;
      } else {
        const started = app.status ? toMillis(app.status.started) : null;
        const { times, values } = minuteSeries(trafficData, Date.now(), started);
        const young = started !== null && started > Date.now() - 3600000;
        trafficTitle.textContent = young
          ? `Traffic per minute, since the start ${duration((Date.now() - started) / 1000)} ago`
          : "Traffic per minute, last hour";
        traffic.update({
          times,
          series: KINDS.map((k) => ({
            name: k, color: COLORS[k], values: values[k], total: values[k].reduce((a, b) => a + b, 0),
          })),
        });
        trafficNote.textContent = "";
      }
      const times = app.history.times();
      conns.update({
        times,
        series: [
          { name: "out", color: "#7c3aed", values: app.history.series("out") },
          { name: "in", color: "#0891b2", values: app.history.series("in") },
        ],
      });
      spool.update({
        times,
        series: [{ name: "messages", color: "#475569", values: app.history.series("messages") }],
      });
      top.set(queueList);
      if (app.status && app.status.cluster) {
        const reply = await get(path("cluster")).catch(() => null);
        const view = reply && reply.cluster;
        clusterCard.hidden = !view;
        if (view) {
          const state = view.redis_up ? "shared limits" : "FALLBACK: Redis unreachable, local limits";
          const nodes = (view.nodes || []).map((n) => `${n.node}${n.self ? " (this node)" : ""}`).join(", ");
          clusterNodes.textContent = `Node ${view.node}: ${state}. Live nodes: ${nodes || "–"}.`;
          clusterQueues.set(view.queues || []);
        }
      }
    },
    destroy() {
      unsubscribe();
      traffic.destroy();
      conns.destroy();
      spool.destroy();
    },
  };
}
