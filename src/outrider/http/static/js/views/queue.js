// One queue: its mode and why, shaping state, recent replies, disabled source addresses,
// and the recipients waiting in it.

import { ApiError, get, path } from "../api.js";
import { h, fill } from "../dom.js";
import { bytes, clock, dateTime, duration, num, humanTimes, relative } from "../format.js";
import { card, messageLink, modeBadge, note, queueActions, stateBadge, Table } from "../ui.js";

// Shaping facts shown elsewhere on the page, or not worth a line.
const SKIP = new Set(["name", "destination", "vmta", "domain", "disabled_sources", "connections", "mode"]);
const LABELS = {
  paused: "Paused", ready: "Ready to send", window: "Connection window", dead: "Not responding",
  delivered: "Delivered (since start)", failed: "Failed (since start)", deferred: "Deferred (since start)",
};

/** A value of unknown shape as text: scalars as is, lists joined, objects as key=value. */
export function plain(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (Array.isArray(value)) return value.map(plain).join(", ");
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}=${plain(v)}`).join(" ");
  return String(value);
}

function facts(pairs) {
  return h("dl.facts", null, pairs.filter(Boolean).map(([label, value]) => h("div", null,
    h("dt", { text: label }), h("dd", null, value === null || value === undefined || value === "" ? "–" : value))));
}

function replyItem(r) {
  if (typeof r !== "object" || r === null) return h("li", null, h("span.reply", { text: String(r) }));
  const at = r.at ?? r.time;
  return h("li", null,
    at !== undefined ? h("span.ev-time", { text: clock(at) }) : null,
    h("span.reply", { text: String(r.reply ?? r.text ?? r.diagnostic ?? plain(r)) }),
    typeof r.recipients === "number" ? h("span.muted.small", { text: ` × ${num(r.recipients)} recipient(s)` }) : null,
    r.rcpt ? h("span.muted", { text: ` ${r.rcpt}` }) : null,
    r.host ? h("span.muted", { text: ` from ${r.host}` }) : null);
}

export default function queue(app, route) {
  const name = route.arg;
  const head = h("div.page-head", null,
    h("div", null, h("a.back", { href: "#/queues", text: "← Queues" }), h("h1.mono.wrap", { text: name })),
    h("div.head-side"));
  const summary = h("div");
  const shaping = h("div");
  const replies = h("div");
  const sources = h("div");
  const recipients = new Table({
    key: (r) => `${r.id}|${r.rcpt}`,
    label: "Recipients in this queue",
    sort: "attempts",
    empty: "No recipient is waiting in this queue.",
    columns: [
      { key: "id", label: "Message", sort: (r) => r.id, render: (r) => messageLink(r.id) },
      { key: "rcpt", label: "Recipient", sort: (r) => r.rcpt, render: (r) => h("span.mono", { text: r.rcpt }) },
      { key: "state", label: "State", sort: (r) => r.state, render: (r) => stateBadge(r.state) },
      { key: "attempts", label: "Attempts", num: true, sort: (r) => r.attempts, render: (r) => num(r.attempts) },
      { key: "next_attempt", label: "Next attempt", render: (r) => (r.next_attempt ? relative(r.next_attempt) : "–") },
      { key: "last_error", label: "Last error", className: "col-error",
        render: (r) => (r.last_error ? h("span.reply", { text: r.last_error }) : "–") },
    ],
  });
  const total = h("span.muted.small");
  const node = h("div.queue-detail", null, head, summary,
    h("div.grid-2", null,
      card("Recent replies", replies),
      h("div.stack", null, card("Shaping", shaping), card("Disabled source addresses", sources))),
    card("Recipients", h("p.muted.small.count", null, total), recipients.node));

  return {
    node,
    async refresh() {
      const [detailReply, listReply] = await Promise.all([
        get(path("queues", name)).catch((err) => {
          if (err instanceof ApiError && err.status === 404) return null;
          throw err;
        }),
        get(`${path("messages")}?${new URLSearchParams({ queue: name, limit: "500" })}`),
      ]);
      const detail = detailReply || {};
      // the queue's row keys at the top level, its shaping state under "shaping"
      const row = detailReply && typeof detail.queue === "string" ? detail : null;
      const shape = detail.shaping && typeof detail.shaping === "object" ? detail.shaping : null;
      const list = Array.isArray(listReply) ? listReply : (listReply && listReply.recipients) || [];
      const side = head.querySelector(".head-side");
      if (!row && !shape) {
        fill(side);
        fill(summary, note("This queue has no mail, no connection and is not paused now."));
        fill(shaping, note("–"));
        fill(replies, note("No reply recorded yet."));
        fill(sources, note("–"));
      } else {
        const q = {
          queue: name,
          domain: shape ? shape.domain : "",
          vmta: shape ? shape.vmta : "",
          mode: shape && shape.paused ? "paused" : shape ? shape.mode : "normal",
          connections: shape ? shape.connections : 0,
          recipients: 0,
          messages: 0,
          ...(row || {}),
          queue: name,
        };
        const since = detail.backoff_since;
        fill(side, modeBadge(q.mode, humanTimes(q.reason)), queueActions(app, q));
        fill(summary, card(null, facts([
          ["Domain", q.domain], ["Virtual MTA", q.vmta],
          ["Recipients", num(q.recipients)], ["Messages", num(q.messages)], ["Size", bytes(q.bytes)],
          ["Oldest", duration(q.oldest_age)], ["Connections", num(q.connections)],
          ["Mode", h("span", null, modeBadge(q.mode, humanTimes(q.reason)), q.reason ? ` ${humanTimes(q.reason)}` : "")],
          since ? ["In backoff since", dateTime(since)] : null,
          ["Next attempt", q.next_attempt ? h("span", { title: q.next_attempt, text: relative(q.next_attempt) }) : "–"],
          ["Last error", q.last_error ? h("span.reply", { text: q.last_error }) : "–"],
        ])));
        const rest = shape ? Object.entries(shape).filter(([k]) => !SKIP.has(k)) : [];
        fill(shaping, rest.length
          ? facts(rest.map(([k, v]) => [LABELS[k] || k, typeof v === "boolean" ? (v ? "yes" : "no") : plain(v)]))
          : note("No delivery has been attempted since the daemon started."));
        const recent = detail.recent_replies || [];
        fill(replies, recent.length ? h("ol.replies", null, recent.map(replyItem)) : note("No reply recorded yet."));
        const disabled = detail.disabled_sources || (shape && shape.disabled_sources) || [];
        fill(sources, disabled.length
          ? h("ul.chips", null, disabled.map((ip) => h("li.mono", { text: plain(ip) })))
          : note("None: every source address may send to this destination."));
      }
      recipients.set(list, `|${Math.floor(Date.now() / 5000)}`);
      const more = listReply && typeof listReply.total === "number" ? listReply.total : list.length;
      total.textContent = more > list.length ? `${num(list.length)} shown of ${num(more)}` : `${num(list.length)} waiting`;
    },
  };
}
