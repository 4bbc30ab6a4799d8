// Pure formatting helpers: numbers, sizes, durations and times as people read them.

const NF = new Intl.NumberFormat();

export function num(value) {
  return value === null || value === undefined ? "–" : NF.format(value);
}

export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = Number(value);
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** Seconds as "45s", "3m 12s", "2h 5m", "3d 4h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "–";
  let s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hr = Math.floor(s / 3600);
  s -= hr * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  return `${m}m ${s}s`;
}

/** Epoch milliseconds from an ISO 8601 string or epoch seconds; null when absent. */
export function toMillis(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value < 1e12 ? value * 1000 : value;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** "in 45s", "3m 12s ago", or "now". */
export function relative(value, now = Date.now()) {
  const ms = toMillis(value);
  if (ms === null) return "–";
  const delta = (ms - now) / 1000;
  if (Math.abs(delta) < 1) return "now";
  return delta > 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
}

/** Local time of day, HH:MM:SS. */
export function clock(value) {
  const ms = toMillis(value);
  if (ms === null) return "–";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

export function hhmm(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

const ISO_TIME = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})/g;

/** A server message with its ISO 8601 times made readable: "backoff since 18:38:40 (3m ago)". */
export function humanTimes(text, now = Date.now()) {
  return String(text || "").replace(ISO_TIME, (iso) => `${clock(iso)} (${relative(iso, now)})`);
}

/** Local date and time, for absolute moments (received, started). */
export function dateTime(value) {
  const ms = toMillis(value);
  if (ms === null) return "–";
  return new Date(ms).toLocaleString([], {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
}

/** An axis for values up to ``max``: ``ticks`` steps of 1, 2 or 5 × 10^n (2.5 too
 * unless ``integer``), so gridlines land on readable numbers. */
export function niceScale(max, ticks = 4, integer = true) {
  const raw = max > 0 ? max / ticks : 1 / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const multipliers = integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = multipliers.map((m) => m * power).find((v) => v >= raw);
  if (integer) step = Math.max(1, Math.round(step));
  return { step, top: step * ticks };
}
