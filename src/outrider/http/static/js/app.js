// The monitor's shell: hash routing, the 2-second poll (paused while the tab is hidden),
// rights (admin sees the action buttons), the live event feed, toasts and confirmations.

import { ApiError, get, listOf, objectOf, path, post, setToken, token, withQuery } from "./api.js";
import { h, fill } from "./dom.js";
import { Feed } from "./feed.js";
import { History } from "./history.js";
import dashboard from "./views/dashboard.js";
import queues from "./views/queues.js";
import queue from "./views/queue.js";
import messages from "./views/messages.js";
import message from "./views/message.js";
import vmtas from "./views/vmtas.js";
import jobs from "./views/jobs.js";

const POLL_MS = 2000;

/** "#/queues/x%2Fy?mode=paused" → {name: "queue", arg: "x/y", params}. */
export function parseRoute(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [pathPart, query = ""] = raw.split("?");
  const parts = pathPart.split("/").filter(Boolean);
  const params = Object.fromEntries(new URLSearchParams(query));
  const top = parts[0] || "";
  const arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : "";
  if (top === "queues") return { name: arg ? "queue" : "queues", arg, params };
  if (top === "messages") return { name: arg ? "message" : "messages", arg, params };
  if (top === "vmtas" || top === "jobs") return { name: top, arg, params };
  return { name: "dashboard", arg: "", params };
}

const VIEWS = { dashboard, queues, queue, messages, message, vmtas, jobs };
const NAV = { queue: "queues", message: "messages" };

class App {
  constructor() {
    this.root = document.getElementById("view");
    this.liveEl = document.getElementById("live");
    this.role = null;
    this.status = null;
    this.history = new History();
    this.feed = new Feed(withQuery(path("events"), { types: "received,delivered,bounced,deferred,queue" }));
    this.view = null;
    this.timer = null;
    this.busy = false;
    this.generation = 0;
    this.loginShown = false;
  }

  get isAdmin() {
    return this.role === "admin";
  }

  async start() {
    window.addEventListener("hashchange", () => this.route());
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) this.setLive("paused", "paused while the tab is hidden");
      else this.tick();
    });
    document.getElementById("login").addEventListener("close", (ev) => this.loginClosed(ev));
    await this.whoami();
    this.feed.start();
    this.route();
  }

  async whoami() {
    try {
      const me = await get(path("whoami"));
      this.role = me.role;
      const badge = document.getElementById("role");
      badge.textContent = me.role === "admin" ? "admin" : "read-only";
      badge.className = `badge ${me.role === "admin" ? "admin" : "monitor"}`;
      badge.hidden = false;
      document.body.classList.toggle("is-admin", this.isAdmin);
      if (me.version) document.getElementById("version").textContent = `Outrider ${me.version}`;
    } catch (err) {
      this.failed(err);
    }
  }

  route() {
    const r = parseRoute(location.hash);
    if (this.view && this.view.destroy) this.view.destroy();
    this.generation += 1;
    for (const a of document.querySelectorAll(".nav a")) {
      a.classList.toggle("active", a.dataset.view === (NAV[r.name] || r.name));
    }
    this.view = VIEWS[r.name](this, r);
    fill(this.root, this.view.node);
    this.root.focus({ preventScroll: true });
    window.scrollTo(0, 0);
    this.tick();
  }

  /** Poll now, then every POLL_MS while the tab is visible. */
  async tick() {
    clearTimeout(this.timer);
    if (document.hidden) {
      this.setLive("paused", "paused while the tab is hidden");
      return;
    }
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    const generation = this.generation;
    let rebuild = false;
    try {
      if (this.role === null) {
        // the daemon was not reachable at load: learn the rights now, then show the view again
        await this.whoami();
        if (this.role !== null) rebuild = true;
      }
      if (!rebuild) {
        const status = objectOf(await get(path("status")), "status");
        this.status = status;
        this.history.add(status);
        if (generation === this.generation) await this.view.refresh();
        this.setLive("live", "updated " + new Date().toLocaleTimeString());
      }
    } catch (err) {
      this.failed(err);
    } finally {
      this.busy = false;
    }
    if (rebuild) {
      this.route();
      return;
    }
    if (this.again) {
      this.again = false;
      this.tick();
      return;
    }
    if (!document.hidden) this.timer = setTimeout(() => this.tick(), POLL_MS);
  }

  /** Refresh soon after an action, without waiting for the next poll. */
  refreshSoon() {
    setTimeout(() => this.tick(), 150);
  }

  setLive(state, title) {
    this.liveEl.dataset.state = state;
    this.liveEl.title = title;
    this.liveEl.querySelector("span").textContent = state;
  }

  failed(err) {
    console.warn("monitor:", err && err.stack ? err.stack : err);
    if (err instanceof ApiError && err.status === 401) {
      this.setLive("signed out", "the API wants a token");
      this.askToken();
    } else if (err instanceof ApiError && err.status === 403) {
      this.setLive("forbidden", err.message);
    } else if (err instanceof ApiError) {
      this.setLive("error", err.message);
    } else {
      this.setLive("offline", String(err && err.message ? err.message : err));
    }
  }

  askToken() {
    if (this.loginShown) return;
    this.loginShown = true;
    const dialog = document.getElementById("login");
    document.getElementById("login-token").value = token();
    dialog.showModal();
  }

  async loginClosed() {
    this.loginShown = false;
    const value = document.getElementById("login-token").value.trim();
    if (!value) return;
    setToken(value);
    await this.whoami();
    this.feed.stop();
    this.feed.start();
    this.route();
  }

  toast(text, kind = "info") {
    const box = document.getElementById("toasts");
    const item = h(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status", text });
    box.append(item);
    setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
  }

  /** Ask before something that cannot be undone; resolves to {ok, bounce}. */
  confirm({ title, text, action = "Delete", bounce = false }) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = action;
    document.getElementById("confirm-bounce-row").hidden = !bounce;
    document.getElementById("confirm-bounce").checked = false;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve({
        ok: dialog.returnValue === "ok",
        bounce: document.getElementById("confirm-bounce").checked,
      }), { once: true });
      dialog.showModal();
    });
  }

  /** Run an admin action: POST ``url``, say what happened, refresh the view. */
  async act(url, body, describe) {
    try {
      const reply = await post(url, body);
      this.toast(describe(reply || {}), "ok");
    } catch (err) {
      this.toast(err.message || String(err), "error");
    }
    this.refreshSoon();
  }

  /** GET a list route (``/api/v1/queues?…``) and the list in its reply (under ``key``). */
  async list(name, params, key = name) {
    return listOf(await get(withQuery(path(name), params)), key);
  }
}

const app = new App();
app.start();
