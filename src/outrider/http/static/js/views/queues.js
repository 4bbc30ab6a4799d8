// The queue table: every queue with mail, connections, or not in normal mode; sortable
// by any column, filtered by text, virtual MTA and mode; action buttons for admins.

import { h, fill } from "../dom.js";
import { duration, humanTimes, num, relative, toMillis } from "../format.js";
import { modeBadge, queueActions, queueLink, Table } from "../ui.js";

/** Queues matching the filter: ``text`` anywhere in the name, domain or last error. */
export function filterQueues(list, { text = "", vmta = "", mode = "" }) {
  const needle = text.trim().toLowerCase();
  return list.filter((q) => (!vmta || q.vmta === vmta) && (!mode || q.mode === mode)
    && (!needle || [q.queue, q.domain, q.last_error, q.reason].some(
      (v) => String(v || "").toLowerCase().includes(needle))));
}

export default function queues(app, route) {
  const filters = {
    text: route.params.q || "",
    vmta: route.params.vmta || "",
    mode: route.params.mode || "",
  };
  const search = h("input", {
    type: "search", value: filters.text, placeholder: "Filter by queue, domain or error",
    "aria-label": "Filter queues",
  });
  const vmtaSelect = h("select", { "aria-label": "Virtual MTA" }, h("option", { value: "", text: "All virtual MTAs" }));
  const modeSelect = h("select", { "aria-label": "Mode" },
    ["", "normal", "backoff", "paused"].map((m) => h("option", { value: m, text: m || "All modes" })));
  modeSelect.value = filters.mode;
  const count = h("span.muted");

  const table = new Table({
    key: (q) => q.queue,
    label: "Queues",
    sort: route.params.sort || "recipients",
    dir: route.params.dir || "desc",
    empty: "No queue matches: nothing is queued, connected or paused.",
    onSort: () => remember(),
    columns: [
      { key: "queue", label: "Queue", sort: (q) => q.queue, className: "col-queue",
        render: (q) => h("div", null, queueLink(q.queue),
          q.domain && !q.queue.startsWith(`${q.domain}/`) ? h("div.muted.small", { text: q.domain }) : null) },
      { key: "recipients", label: "Recipients", num: true, sort: (q) => q.recipients, render: (q) => num(q.recipients) },
      { key: "messages", label: "Messages", num: true, sort: (q) => q.messages, render: (q) => num(q.messages) },
      { key: "oldest_age", label: "Oldest", num: true, sort: (q) => q.oldest_age, render: (q) => duration(q.oldest_age) },
      { key: "connections", label: "Conns", num: true, sort: (q) => q.connections, render: (q) => num(q.connections) },
      { key: "mode", label: "Mode", sort: (q) => q.mode, className: "col-mode",
        render: (q) => h("div", null, modeBadge(q.mode, humanTimes(q.reason)), q.reason ? h("div.muted.small", { text: humanTimes(q.reason) }) : null) },
      { key: "next_attempt", label: "Next attempt", sort: (q) => toMillis(q.next_attempt),
        render: (q) => (q.next_attempt ? h("span", { title: q.next_attempt, text: relative(q.next_attempt) }) : "–") },
      { key: "last_error", label: "Last error", sort: (q) => q.last_error || "", className: "col-error",
        render: (q) => (q.last_error ? h("span.reply", { text: q.last_error, title: q.last_error }) : "–") },
      ...(app.isAdmin ? [{ key: "actions", label: "Actions", className: "col-actions",
        render: (q) => queueActions(app, q, { compact: true }) }] : []),
    ],
  });

  let all = [];
  function show() {
    const shown = filterQueues(all, filters);
    // next attempt is relative: the minute goes into the signature so the text moves on
    table.set(shown, `|${Math.floor(Date.now() / 5000)}`);
    count.textContent = shown.length === all.length ? `${all.length} queue(s)` : `${shown.length} of ${all.length} queue(s)`;
  }

  function remember() {
    const params = new URLSearchParams();
    if (filters.text) params.set("q", filters.text);
    if (filters.vmta) params.set("vmta", filters.vmta);
    if (filters.mode) params.set("mode", filters.mode);
    if (table.sortKey && table.sortKey !== "recipients") params.set("sort", table.sortKey);
    if (table.dir !== "desc") params.set("dir", table.dir);
    const query = params.toString();
    history.replaceState(null, "", `#/queues${query ? "?" + query : ""}`);
  }

  search.addEventListener("input", () => { filters.text = search.value; remember(); show(); });
  vmtaSelect.addEventListener("change", () => { filters.vmta = vmtaSelect.value; remember(); show(); });
  modeSelect.addEventListener("change", () => { filters.mode = modeSelect.value; remember(); show(); });

  const node = h("div.queues", null,
    h("div.page-head", null, h("h1", { text: "Queues" }), count),
    h("div.toolbar", null, search, vmtaSelect, modeSelect),
    h("div.card.flush", null, table.node));

  return {
    node,
    async refresh() {
      all = await app.list("queues", {});
      const vmtas = [...new Set(all.map((q) => q.vmta).concat(filters.vmta ? [filters.vmta] : []))].sort();
      const current = [...vmtaSelect.options].slice(1).map((o) => o.value).join("\n");
      if (current !== vmtas.join("\n")) {
        fill(vmtaSelect, h("option", { value: "", text: "All virtual MTAs" }),
          vmtas.map((v) => h("option", { value: v, text: v })));
        vmtaSelect.value = filters.vmta;
      }
      show();
    },
  };
}
