// What the dashboard charts besides traffic: connections and spool size, sampled from
// each status poll while the page is open (the API keeps no history of them).

const KEEP_MS = 60 * 60 * 1000;

export class History {
  constructor() {
    this.samples = [];
  }

  add(status) {
    const now = Date.now();
    const connections = status.connections || {};
    const spool = status.spool || {};
    this.samples.push({
      t: now,
      in: connections.in ?? null,
      out: connections.out ?? 0,
      messages: spool.messages ?? 0,
      bytes: spool.bytes ?? 0,
    });
    while (this.samples.length && this.samples[0].t < now - KEEP_MS) this.samples.shift();
  }

  series(key) {
    return this.samples.map((sample) => sample[key]);
  }

  times() {
    return this.samples.map((sample) => sample.t);
  }
}
