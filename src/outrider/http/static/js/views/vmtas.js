// Virtual MTAs: each with its source address (and whether it is disabled), its queues,
// what they hold, and how many are in backoff.

import { h } from "../dom.js";
import { num } from "../format.js";
import { badge, Table } from "../ui.js";

export default function vmtas(app) {
  const table = new Table({
    key: (v) => v.vmta,
    label: "Virtual MTAs",
    sort: "recipients",
    empty: "No virtual MTA is configured or in use.",
    columns: [
      { key: "vmta", label: "Virtual MTA", sort: (v) => v.vmta,
        render: (v) => h("a", { href: `#/queues?vmta=${encodeURIComponent(v.vmta)}`, text: v.vmta }) },
      { key: "source_ip", label: "Source address", sort: (v) => v.source_ip || "",
        render: (v) => h("span", null, h("span.mono", { text: v.source_ip || "any" }),
          v.disabled ? [" ", badge("disabled", "mode-paused")] : null) },
      { key: "queues", label: "Queues", num: true, sort: (v) => v.queues, render: (v) => num(v.queues) },
      { key: "recipients", label: "Recipients", num: true, sort: (v) => v.recipients, render: (v) => num(v.recipients) },
      { key: "messages", label: "Messages", num: true, sort: (v) => v.messages, render: (v) => num(v.messages) },
      { key: "connections", label: "Conns", num: true, sort: (v) => v.connections, render: (v) => num(v.connections) },
      { key: "backoff_queues", label: "In backoff", num: true, sort: (v) => v.backoff_queues,
        render: (v) => (v.backoff_queues ? badge(String(v.backoff_queues), "mode-backoff") : "0") },
    ],
  });
  const node = h("div.vmtas", null,
    h("div.page-head", null, h("h1", { text: "Virtual MTAs" })),
    h("div.card.flush", null, table.node));
  return {
    node,
    async refresh() {
      table.set(await app.list("vmtas", {}));
    },
  };
}
