// Message search: by queue id (straight to the message) or by recipient, sender, job or
// queue; lists the matching queued recipients, oldest message first.

import { h } from "../dom.js";
import { num, relative } from "../format.js";
import { messageLink, queueLink, stateBadge, Table } from "../ui.js";

const FIELDS = ["rcpt", "sender", "job", "queue"];

/** What a search box holds: an address (recipient), or a queue id. */
export function classify(text) {
  const value = text.trim();
  if (!value) return {};
  if (value.includes("@")) return { rcpt: value };
  return { id: value };
}

export default function messages(app, route) {
  const params = Object.fromEntries(FIELDS.filter((f) => route.params[f]).map((f) => [f, route.params[f]]));
  const box = h("input", {
    type: "search", name: "find", value: params.rcpt || "",
    placeholder: "Queue id or recipient address", "aria-label": "Queue id or recipient address",
  });
  const more = FIELDS.slice(1).map((f) => h("input", {
    type: "search", name: f, value: params[f] || "", placeholder: f, "aria-label": f,
  }));
  const form = h("form.toolbar.search", { role: "search" },
    box, ...more, h("button.btn.primary", { type: "submit", text: "Search" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const found = classify(box.value);
    if (found.id) {
      location.hash = `#/messages/${encodeURIComponent(found.id)}`;
      return;
    }
    const query = new URLSearchParams();
    if (found.rcpt) query.set("rcpt", found.rcpt);
    for (const input of more) if (input.value.trim()) query.set(input.name, input.value.trim());
    const text = query.toString();
    location.hash = `#/messages${text ? "?" + text : ""}`;
  });

  const searching = Object.keys(params).length > 0;
  const summary = h("span.muted");
  const table = new Table({
    key: (r) => `${r.id}|${r.rcpt}`,
    label: "Queued recipients",
    empty: searching ? "No queued recipient matches." : "Nothing is queued.",
    columns: [
      { key: "id", label: "Message", sort: (r) => r.id, render: (r) => messageLink(r.id) },
      { key: "rcpt", label: "Recipient", sort: (r) => r.rcpt, render: (r) => h("span.mono", { text: r.rcpt }) },
      { key: "sender", label: "Sender", sort: (r) => r.sender, render: (r) => h("span.mono", { text: r.sender || "<>" }) },
      { key: "queue", label: "Queue", sort: (r) => r.queue, render: (r) => queueLink(r.queue) },
      { key: "job", label: "Job", sort: (r) => r.job || "", className: "nowrap", render: (r) => r.job || "–" },
      { key: "state", label: "State", sort: (r) => r.state, render: (r) => stateBadge(r.state) },
      { key: "attempts", label: "Attempts", num: true, sort: (r) => r.attempts, render: (r) => num(r.attempts) },
      { key: "next_attempt", label: "Next attempt", render: (r) => (r.next_attempt ? relative(r.next_attempt) : "–") },
      { key: "last_error", label: "Last error", className: "col-error",
        render: (r) => (r.last_error ? h("span.reply", { text: r.last_error }) : "–") },
    ],
  });
  const node = h("div.messages", null,
    h("div.page-head", null, h("h1", { text: "Messages" }), summary),
    form,
    h("div.card.flush", null, table.node));

  return {
    node,
    async refresh() {
      const reply = await app.list("messages", { ...params, limit: 200 }, "recipients");
      table.set(reply, `|${Math.floor(Date.now() / 5000)}`);
      summary.textContent = searching
        ? `${reply.length} matching recipient(s)`
        : `the oldest ${reply.length} queued recipient(s)`;
    },
  };
}
