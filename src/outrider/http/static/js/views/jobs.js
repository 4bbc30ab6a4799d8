// Jobs (X-Job): what each has queued, whether it is paused; pause and resume for admins.

import { path } from "../api.js";
import { h } from "../dom.js";
import { num } from "../format.js";
import { badge, Table } from "../ui.js";

export default function jobs(app) {
  const actions = (j) => {
    if (!app.isAdmin) return null;
    const verb = j.paused ? "resume" : "pause";
    return h(`button.btn.small${j.paused ? ".primary" : ""}`, {
      type: "button",
      text: j.paused ? "Resume" : "Pause",
      "aria-label": `${j.paused ? "Resume" : "Pause"} job ${j.job}`,
      dataset: { action: verb },
      on: { click: () => app.act(path("jobs", j.job, verb), {}, () => `${j.paused ? "Resumed" : "Paused"} job ${j.job}`) },
    });
  };
  const table = new Table({
    key: (j) => j.job,
    label: "Jobs",
    sort: "recipients",
    empty: "No job has queued mail or is paused. Mail gets a job from its X-Job header.",
    columns: [
      { key: "job", label: "Job", sort: (j) => j.job,
        render: (j) => h("a", { href: `#/messages?job=${encodeURIComponent(j.job)}`, text: j.job }) },
      { key: "recipients", label: "Recipients", num: true, sort: (j) => j.recipients, render: (j) => num(j.recipients) },
      { key: "messages", label: "Messages", num: true, sort: (j) => j.messages, render: (j) => num(j.messages) },
      { key: "paused", label: "State", sort: (j) => (j.paused ? 1 : 0),
        render: (j) => (j.paused ? badge("paused", "mode-paused") : badge("running", "mode-normal")) },
      ...(app.isAdmin ? [{ key: "actions", label: "Actions", className: "col-actions", render: actions }] : []),
    ],
  });
  const node = h("div.jobs", null,
    h("div.page-head", null, h("h1", { text: "Jobs" })),
    h("div.card.flush", null, table.node));
  return {
    node,
    async refresh() {
      table.set(await app.list("jobs", {}));
    },
  };
}
