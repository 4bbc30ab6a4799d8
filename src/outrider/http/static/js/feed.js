// The live event feed: reads the server-sent events of /api/v1/events with fetch (so the
// bearer token can go along, which EventSource cannot send), keeps the latest events,
// and reconnects with a growing pause when the stream ends.

import { authHeaders } from "./api.js";

const KEEP = 200;

/** Split an SSE byte stream's text into events: the ``data:`` lines of each block. */
export function parseBlocks(buffer) {
  const events = [];
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    let name = "";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") name = value;
    }
    if (data.length) events.push({ name, data: data.join("\n") });
  }
  return { events, rest };
}

/** One event's JSON, made uniform enough to show: type, time, id, recipient, queue, text. */
export function normalise(name, raw) {
  let e;
  try {
    e = JSON.parse(raw);
  } catch {
    e = { text: raw };
  }
  if (!e || typeof e !== "object") e = { text: String(e) };
  const message = e.message && typeof e.message === "object" ? e.message : {};
  const type = String(e.type || e.kind || e.event || name || "event").toLowerCase();
  return {
    type,
    at: e.time ?? e.at ?? e.t ?? Date.now() / 1000,
    id: e.queue_id || e.id || message.queue_id || "",
    rcpt: e.rcpt || e.recipient || "",
    queue: e.queue || "",
    text: [e.action, e.diagnostic || e.reply || e.error || e.text].filter(Boolean).join(": "),
    sender: e.sender || message.sender || "",
    recipients: typeof e.recipients === "number" ? e.recipients : 0,
  };
}

export class Feed {
  constructor(url) {
    this.url = url;
    this.events = [];
    this.listeners = new Set();
    this.state = "connecting";
    this.delay = 1000;
    this.controller = null;
    this.stopped = false;
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  notify() {
    for (const fn of this.listeners) fn(this);
  }

  start() {
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async loop() {
    while (!this.stopped) {
      try {
        await this.read();
      } catch (err) {
        if (this.stopped) return;
      }
      this.state = "reconnecting";
      this.notify();
      await new Promise((resolve) => setTimeout(resolve, this.delay));
      this.delay = Math.min(this.delay * 2, 30000);
    }
  }

  async read() {
    this.controller = new AbortController();
    const response = await fetch(this.url, {
      headers: { Accept: "text/event-stream", ...authHeaders() },
      signal: this.controller.signal,
      cache: "no-store",
    });
    if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
    this.state = "live";
    this.delay = 1000;
    this.notify();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const { events, rest } = parseBlocks(buffer);
      buffer = rest;
      if (buffer.length > 1 << 20) buffer = ""; // a runaway block: drop it
      if (events.length) {
        for (const ev of events) this.events.unshift(normalise(ev.name, ev.data));
        this.events.length = Math.min(this.events.length, KEEP);
        this.notify();
      }
    }
  }
}
