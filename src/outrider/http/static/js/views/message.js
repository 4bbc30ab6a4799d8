// One message: its envelope, every recipient's state, its headers; delete for admins.

import { ApiError, del, get, objectOf, path } from "../api.js";
import { h, fill } from "../dom.js";
import { bytes, dateTime, num, relative } from "../format.js";
import { badge, card, note, stateBadge, Table } from "../ui.js";

export default function message(app, route) {
  const id = route.arg;
  const side = h("div.head-side");
  const envelope = h("div");
  const headers = h("pre.headers");
  const recipients = new Table({
    key: (r) => r.rcpt,
    label: "Recipients",
    columns: [
      { key: "rcpt", label: "Recipient", sort: (r) => r.rcpt, render: (r) => h("span.mono", { text: r.rcpt }) },
      { key: "state", label: "State", sort: (r) => r.state, render: (r) => stateBadge(r.state) },
      { key: "attempts", label: "Attempts", num: true, sort: (r) => r.attempts, render: (r) => num(r.attempts) },
      { key: "next_attempt", label: "Next attempt", render: (r) => (r.next_attempt ? relative(r.next_attempt) : "–") },
      { key: "last_error", label: "Last reply", className: "col-error",
        render: (r) => (r.last_error ? h("span.reply", { text: r.last_error }) : "–") },
    ],
  });
  const body = h("div", null,
    envelope,
    card("Recipients", recipients.node),
    card("Headers", headers));
  const node = h("div.message-detail", null,
    h("div.page-head", null,
      h("div", null, h("a.back", { href: "#/messages", text: "← Messages" }), h("h1.mono.wrap", { text: id })),
      side),
    body);

  async function remove() {
    const answer = await app.confirm({
      title: "Delete this message?",
      text: `Every recipient of ${id} still queued is removed for good.`,
      bounce: true,
    });
    if (!answer.ok) return;
    try {
      const reply = await del(`${path("messages", id)}?bounce=${answer.bounce ? "true" : "false"}`,
        { bounce: answer.bounce });
      app.toast(`Deleted ${reply && reply.deleted !== undefined ? reply.deleted : ""} recipient(s) of ${id}`, "ok");
      location.hash = "#/messages";
    } catch (err) {
      app.toast(err.message || String(err), "error");
    }
  }

  let shownHeaders = null;
  return {
    node,
    async refresh() {
      let m;
      try {
        m = objectOf(await get(path("messages", id)), "message");
      } catch (err) {
        if (err instanceof ApiError && (err.status === 404 || err.status === 400)) {
          fill(side);
          fill(body, note(`No queued message ${id}: it was delivered, bounced or deleted, or the id is wrong. `
            + "Its outcome is in the accounting log."));
          return;
        }
        throw err;
      }
      fill(side, m.held ? badge("held", "mode-paused") : null,
        app.isAdmin ? h("button.btn.small.danger", {
          type: "button", text: "Delete", "aria-label": `Delete message ${id}`, dataset: { action: "delete" },
          on: { click: remove },
        }) : null);
      fill(envelope, card(null, h("dl.facts", null, [
        ["Sender", h("span.mono", { text: m.sender || "<>" })],
        ["Size", bytes(m.size)],
        ["Received", dateTime(m.received)],
        ["Job", m.job],
        ["Virtual MTA", m.vmta],
        ["Message-ID", m.message_id ? h("span.mono", { text: m.message_id }) : null],
        ["Client", m.client_address ? `${m.client_address}${m.helo ? ` (${m.helo})` : ""}` : null],
        ["Auth user", m.auth_user],
        ["Source", m.source],
      ].map(([label, value]) => h("div", null, h("dt", { text: label }),
        h("dd", null, value === null || value === undefined || value === "" ? "–" : value))))));
      recipients.set(m.recipients || [], `|${Math.floor(Date.now() / 5000)}`);
      const text = m.headers || m.body || "";
      if (text !== shownHeaders) {
        headers.textContent = text;
        shownHeaders = text;
      }
    },
  };
}
