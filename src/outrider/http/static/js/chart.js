// Small SVG line charts, drawn from scratch: a few series over time, a readable axis,
// a legend and a hover read-out. Sized to their container and redrawn when it resizes.

import { h, s, fill } from "./dom.js";
import { clock, hhmm, niceScale, num } from "./format.js";

const PAD = { top: 12, right: 12, bottom: 24, left: 44 };
const TICKS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map((s) => s * 1000);

/** Time between two x-axis labels: the shortest that gives at most five. */
export function tickEvery(span) {
  return TICKS.find((every) => span / every <= 5) || TICKS[TICKS.length - 1];
}

/**
 * A chart in ``holder``: ``opts.times`` (epoch ms, one per point) and ``opts.series``
 * ([{name, color, values}]), ``opts.format`` for values, ``opts.integer`` for counts,
 * ``opts.height`` in pixels, ``opts.area`` to shade under the first series.
 */
export class LineChart {
  constructor(holder, opts) {
    this.holder = holder;
    this.opts = opts;
    this.holder.classList.add("chart");
    this.tip = h("div.chart-tip", { hidden: true, role: "status" });
    this.legend = h("div.legend");
    this.plot = h("div.chart-plot");
    fill(this.holder, this.plot, this.legend, this.tip);
    this.width = 0;
    this.observer = new ResizeObserver(() => {
      const width = this.plot.clientWidth;
      if (width && Math.abs(width - this.width) > 2) this.draw();
    });
    this.observer.observe(this.plot);
    this.plot.addEventListener("pointermove", (ev) => this.hover(ev));
    this.plot.addEventListener("pointerleave", () => this.unhover());
  }

  update(opts) {
    this.opts = { ...this.opts, ...opts };
    this.draw();
  }

  destroy() {
    this.observer.disconnect();
  }

  geometry() {
    const width = Math.max(240, this.plot.clientWidth || 600);
    const height = this.opts.height || 200;
    return { width, height, innerW: width - PAD.left - PAD.right, innerH: height - PAD.top - PAD.bottom };
  }

  draw() {
    const { times = [], series = [], format = num, integer = true } = this.opts;
    const g = this.geometry();
    this.width = g.width;
    const max = Math.max(0, ...series.flatMap((ser) => ser.values.filter((v) => v !== null)));
    const scale = niceScale(max, 4, integer);
    const n = times.length;
    const x = (i) => PAD.left + (n <= 1 ? g.innerW : (i / (n - 1)) * g.innerW);
    const y = (v) => PAD.top + g.innerH - (v / scale.top) * g.innerH;
    this.geo = { ...g, n, x };

    const svg = s("svg", {
      width: g.width, height: g.height, viewBox: `0 0 ${g.width} ${g.height}`,
      role: "img", "aria-label": this.opts.label || "chart",
    });
    for (let k = 0; k <= 4; k += 1) {
      const v = scale.step * k;
      const yy = y(v);
      svg.append(s("line", { x1: PAD.left, x2: g.width - PAD.right, y1: yy, y2: yy, class: "grid" }));
      svg.append(s("text", { x: PAD.left - 6, y: yy + 4, class: "axis", "text-anchor": "end" }, format(v)));
    }
    if (n > 1) {
      const span = times[n - 1] - times[0];
      const every = tickEvery(span);
      const first = Math.ceil(times[0] / every) * every;
      for (let t = first; t <= times[n - 1]; t += every) {
        const xx = PAD.left + ((t - times[0]) / span) * g.innerW;
        if (xx < PAD.left + 16 || xx > g.width - PAD.right - 16) continue;
        const text = every < 60000 ? clock(t) : hhmm(t);
        svg.append(s("text", { x: xx, y: g.height - 6, class: "axis", "text-anchor": "middle" }, text));
      }
    }
    series.forEach((ser, si) => {
      const points = ser.values.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`));
      const line = points.filter(Boolean).join(" ");
      if (!line) return;
      if (si === 0 && this.opts.area && n > 1) {
        const base = y(0).toFixed(1);
        svg.append(s("polygon", {
          points: `${x(0).toFixed(1)},${base} ${line} ${x(n - 1).toFixed(1)},${base}`,
          fill: ser.color, class: "area",
        }));
      }
      svg.append(s("polyline", { points: line, stroke: ser.color, class: "series" }));
    });
    this.cursor = s("line", { x1: 0, x2: 0, y1: PAD.top, y2: PAD.top + g.innerH, class: "cursor", visibility: "hidden" });
    svg.append(this.cursor);
    fill(this.plot, svg);

    fill(this.legend, series.map((ser) => h("span.key", null,
      h("i", { dataset: { color: ser.color } }),
      ser.name,
      ser.total !== undefined ? h("b", null, format(ser.total)) : null,
    )));
    for (const swatch of this.legend.querySelectorAll("i")) swatch.style.background = swatch.dataset.color;
  }

  hover(ev) {
    const geo = this.geo;
    if (!geo || geo.n === 0) return;
    const rect = this.plot.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const ratio = (px - PAD.left) / geo.innerW;
    const i = Math.max(0, Math.min(geo.n - 1, Math.round(ratio * (geo.n - 1))));
    const { times, series, format = num } = this.opts;
    const xx = geo.x(i);
    this.cursor.setAttribute("x1", xx);
    this.cursor.setAttribute("x2", xx);
    this.cursor.setAttribute("visibility", "visible");
    const minutes = geo.n > 1 && times[1] - times[0] >= 60000;
    fill(this.tip, h("div.tip-time", { text: minutes ? hhmm(times[i]) : clock(times[i]) }),
      series.map((ser) => h("div", null, h("i", { dataset: { color: ser.color } }), `${ser.name} `,
        h("b", { text: ser.values[i] === null ? "–" : format(ser.values[i]) }))));
    for (const swatch of this.tip.querySelectorAll("i")) swatch.style.background = swatch.dataset.color;
    this.tip.hidden = false;
    const left = Math.min(Math.max(0, xx + 10), geo.width - this.tip.offsetWidth - 4);
    this.tip.style.left = `${xx + 10 + this.tip.offsetWidth > geo.width ? xx - this.tip.offsetWidth - 10 : left}px`;
  }

  unhover() {
    this.tip.hidden = true;
    if (this.cursor) this.cursor.setAttribute("visibility", "hidden");
  }
}
