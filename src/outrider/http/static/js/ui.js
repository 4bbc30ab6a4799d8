// Pieces the views share: badges, cards, sortable tables that turn into cards on a
// phone, the queue action buttons (admin only) and error notes.

import { h, fill, syncList } from "./dom.js";
import { ApiError, path, post } from "./api.js";

export function badge(text, kind = "", title = "") {
  return h(`span.badge${kind ? "." + kind : ""}`, { text, title: title || null });
}

export function modeBadge(mode, reason) {
  const m = mode || "normal";
  return badge(m, `mode-${m.replace(/[^a-z]/g, "")}`, reason);
}

export function stateBadge(state) {
  const st = state || "queued";
  return badge(st, `state-${st.replace(/[^a-z]/g, "")}`);
}

export function card(title, ...children) {
  return h("section.card", null, title ? h("h2", { text: title }) : null, ...children);
}

export function stat(label, value, sub, kind = "") {
  return h(`div.stat${kind ? "." + kind : ""}`, null,
    h("div.stat-label", { text: label }),
    h("div.stat-value", { text: value }),
    sub ? h("div.stat-sub", { text: sub }) : null);
}

export function note(text, kind = "empty") {
  return h(`p.${kind}`, { text });
}

/** A link to a queue's detail page; queue names contain "/" and anything a domain may. */
export function queueLink(name) {
  return h("a.mono", { href: `#/queues/${encodeURIComponent(name)}` }, breakable(name));
}

/** Text that may wrap after "/" and "@" (a <wbr> each) rather than anywhere. */
export function breakable(text) {
  return String(text).split(/(?<=[/@])/).flatMap((part, i) => (i ? [h("wbr"), part] : [part]));
}

export function messageLink(id) {
  return h("a.mono", { href: `#/messages/${encodeURIComponent(id)}`, text: id });
}

/**
 * A table whose rows are kept in step with the data (see ``syncList``). Columns:
 * ``{key, label, render(item) → node|text, num, sort(item) → value, className}``.
 * Clicking a sortable header sorts by it; ``onSort(key, dir)`` hears about it.
 * Under 700 px wide every row becomes a card whose cells carry their column's label.
 */
export class Table {
  constructor({ columns, key, sort = null, dir = "desc", onSort = null, empty = "Nothing here.", label = "" }) {
    this.columns = columns;
    this.key = key;
    this.sortKey = sort;
    this.dir = dir;
    this.onSort = onSort;
    this.emptyText = empty;
    this.items = [];
    this.head = h("tr");
    this.body = h("tbody");
    this.empty = h("p.empty", { text: empty, hidden: true });
    this.node = h("div.table-wrap", null,
      h("table.data", { "aria-label": label || null }, h("thead", null, this.head), this.body),
      this.empty);
    this.renderHead();
  }

  renderHead() {
    fill(this.head, this.columns.map((col) => {
      const th = h("th", { className: [col.num ? "num" : "", col.className || ""].join(" ").trim() });
      if (col.sort) {
        const active = this.sortKey === col.key;
        th.setAttribute("aria-sort", active ? (this.dir === "asc" ? "ascending" : "descending") : "none");
        th.append(h("button.sort", {
          type: "button",
          text: col.label + (active ? (this.dir === "asc" ? " ▲" : " ▼") : ""),
          on: { click: () => this.sortBy(col.key) },
        }));
      } else {
        th.textContent = col.label;
      }
      return th;
    }));
  }

  sortBy(key) {
    if (this.sortKey === key) this.dir = this.dir === "asc" ? "desc" : "asc";
    else {
      this.sortKey = key;
      const col = this.columns.find((c) => c.key === key);
      this.dir = col && col.num ? "desc" : "asc";
    }
    this.renderHead();
    this.set(this.items);
    if (this.onSort) this.onSort(this.sortKey, this.dir);
  }

  sorted(items) {
    const col = this.columns.find((c) => c.key === this.sortKey);
    if (!col || !col.sort) return items;
    const sign = this.dir === "asc" ? 1 : -1;
    return [...items].sort((a, b) => {
      const va = col.sort(a);
      const vb = col.sort(b);
      if (va === vb) return String(this.key(a)).localeCompare(String(this.key(b)));
      if (va === null || va === undefined) return 1;
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : 1) * sign;
    });
  }

  /** Show ``items``; ``extra`` goes into each row's signature (e.g. the role, the minute). */
  set(items, extra = "") {
    this.items = items;
    syncList(this.body, this.sorted(items), this.key, (item) => JSON.stringify(item) + extra,
      (item) => this.row(item));
    this.empty.hidden = items.length > 0;
  }

  row(item) {
    return h("tr", null, this.columns.map((col) => {
      const value = col.render ? col.render(item) : item[col.key];
      const td = h("td", {
        className: [col.num ? "num" : "", col.className || ""].join(" ").trim(),
        "data-label": col.label,
      }, value === null || value === undefined || value === "" ? "–" : value);
      return td;
    }));
  }
}

/**
 * The names a queue's pause may have been set on: the queue, its destination (every
 * virtual MTA), its domain. ``outrider pause queue example.net`` pauses the queue
 * ``example.net/default`` without naming it, so resuming that name alone would fail.
 */
export function pauseNames(q) {
  const destination = q.queue.includes("/") ? q.queue.slice(0, q.queue.lastIndexOf("/")) : q.queue;
  return [...new Set([q.queue, destination, q.domain].filter(Boolean))];
}

/** Resume a queue: lift the pause that holds it (``paused_by`` when the API says), else
 * the one on its own name, its destination or its domain, whichever is paused. */
async function resumeQueue(app, q) {
  let last = null;
  const names = q.paused_by ? [...new Set([q.paused_by, ...pauseNames(q)])] : pauseNames(q);
  for (const name of names) {
    try {
      await post(path("queues", name, "resume"), {});
      app.toast(name === q.queue ? `Resumed ${name}` : `Resumed ${name} (the pause was set on it)`, "ok");
      app.refreshSoon();
      return;
    } catch (err) {
      last = err;
      if (!(err instanceof ApiError) || err.status !== 404) break;
    }
  }
  app.toast(last ? last.message : `Could not resume ${q.queue}`, "error");
  app.refreshSoon();
}

/** Pause/resume, retry and delete buttons for one queue, for admins only. */
export function queueActions(app, q, { compact = false } = {}) {
  if (!app.isAdmin) return null;
  const name = q.queue;
  const url = (verb) => path("queues", name, verb);
  const paused = q.mode === "paused";
  const buttons = [
    paused
      ? h("button.btn.small.primary", {
        type: "button", text: "Resume", "aria-label": `Resume ${name}`, dataset: { action: "resume" },
        on: { click: () => resumeQueue(app, q) },
      })
      : h("button.btn.small", {
        type: "button", text: "Pause", "aria-label": `Pause ${name}`, dataset: { action: "pause" },
        on: { click: () => app.act(url("pause"), {}, () => `Paused ${name}`) },
      }),
    h("button.btn.small", {
      type: "button", text: "Retry", "aria-label": `Retry ${name} now`, dataset: { action: "retry" },
      on: {
        click: () => app.act(url("retry"), {}, (r) => `Retrying ${r.retried ?? "its"} recipient(s) of ${name} now`),
      },
    }),
    h("button.btn.small.danger", {
      type: "button", text: "Delete", "aria-label": `Delete the mail queued for ${name}`,
      dataset: { action: "delete" },
      on: {
        click: async () => {
          const answer = await app.confirm({
            title: "Delete queued mail?",
            text: `Every recipient queued for ${name} (${q.recipients ?? "?"} now) is removed for good.`,
            bounce: true,
          });
          if (answer.ok) {
            await app.act(url("delete"), { bounce: answer.bounce },
              (r) => `Deleted ${r.deleted ?? 0} recipient(s) of ${name}` + (r.busy ? `, ${r.busy} busy` : ""));
          }
        },
      },
    }),
  ];
  return h(`div.actions${compact ? ".compact" : ""}`, null, buttons);
}
