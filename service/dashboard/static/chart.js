// A very small plotting kit for inline SVG: scales, ticks, axes, line series and a colour
// ramp. Charts draw in a viewBox that follows their container's width (`layout`), and the
// SVG scales to it.

import { s } from "./dom.js";
import { num } from "./format.js";

/** A linear scale from [d0, d1] to [r0, r1]. */
export function linearScale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  const scale = (x) => r0 + ((x - d0) / span) * (r1 - r0);
  scale.domain = [d0, d1];
  scale.ticks = (count = 5) => linearTicks(d0, d1, count);
  scale.log = false;
  return scale;
}

/** A log10 scale from [d0, d1] (both > 0) to [r0, r1]. */
export function logScale(d0, d1, r0, r1) {
  const l0 = Math.log10(d0);
  const span = Math.log10(d1) - l0 || 1;
  const scale = (x) => r0 + ((Math.log10(x) - l0) / span) * (r1 - r0);
  scale.domain = [d0, d1];
  scale.ticks = () => logTicks(d0, d1);
  scale.log = true;
  return scale;
}

export function linearTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((st) => st >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

export function logTicks(lo, hi) {
  const a = Math.ceil(Math.log10(lo) - 1e-9);
  const b = Math.floor(Math.log10(hi) + 1e-9);
  const decades = b - a + 1;
  if (decades >= 3) {
    const stride = Math.ceil(decades / 7);
    const ticks = [];
    for (let e = a; e <= b; e += stride) ticks.push(10 ** e);
    return ticks;
  }
  const ticks = [];
  for (let e = a - 1; e <= b; e += 1) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e;
      if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push(t);
    }
  }
  return ticks.length >= 2 ? ticks : [lo, hi];
}

/** A y scale for losses: log when they are all positive and span more than ~1.5 decades. */
export function lossScale(values, r0, r1) {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return linearScale(0, 1, r0, r1);
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (lo > 0 && hi / lo >= 30) return logScale(lo / 1.25, hi * 1.25, r0, r1);
  if (hi === lo) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const pad = (hi - lo) * 0.06;
  return linearScale(lo - pad, hi + pad, r0, r1);
}

/** Log-padded extent of positive values (a factor `pad` on each side). */
export function logExtent(values, pad = 1.5) {
  const pos = values.filter((v) => Number.isFinite(v) && v > 0);
  if (pos.length === 0) return [1e-5, 1];
  const lo = Math.min(...pos);
  const hi = Math.max(...pos);
  return hi / lo < 10 ? [lo / 3, hi * 3] : [lo / pad, hi * pad];
}

/** The drawing size for a container `width` px wide: the viewBox follows the real width
 * (within bounds), so labels keep their size on a phone instead of shrinking with it. */
export function layout(width) {
  const w = Math.round(Math.min(760, Math.max(340, width || 640)));
  const h = Math.round(Math.max(260, Math.min(360, w * 0.56)));
  return { w, h, box: { left: 64, right: w - 16, top: 46, bottom: h - 46 } };
}

/** An empty chart: an SVG image with an accessible label. */
export function frame(size, label) {
  return s("svg", { class: "chart", viewBox: `0 0 ${size.w} ${size.h}`, role: "img", "aria-label": label, preserveAspectRatio: "xMidYMid meet" });
}

/**
 * Line series drawn with scales `x` and `y`, in order (later ones on top). A series is
 * `{key, label, className, points: [[x, y], ...], end?: {x, y, className, label}}`: a null
 * or non-finite y breaks the line; `end` marks a point of note (where a run diverged).
 * Charts take extra series from outside (a layer of reference lines) in the same shape.
 */
export function lineSeries(series, x, y) {
  const g = s("g", { class: "series" });
  for (const line of series) {
    let d = "";
    let pen = false;
    for (const [px, py] of line.points) {
      if (!Number.isFinite(px) || !Number.isFinite(py)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(px).toFixed(1)},${y(py).toFixed(1)}`;
      pen = true;
    }
    const group = s("g", { class: ["line", line.className], dataset: { series: line.key } },
      s("title", {}, line.label));
    if (d) group.append(s("path", { class: "line-path", d }));
    if (line.end && Number.isFinite(line.end.x) && Number.isFinite(line.end.y)) {
      group.append(
        s("path", {
          class: ["line-end", line.end.className],
          d: "M-4,-4L4,4M-4,4L4,-4",
          transform: `translate(${x(line.end.x).toFixed(1)} ${y(line.end.y).toFixed(1)})`,
        }, s("title", {}, line.end.label)),
      );
    }
    g.append(group);
  }
  return g;
}

/** Grid lines, ticks and labels for both axes of the plot area `box`. */
export function axes(box, x, y, { xLabel, yLabel, xFormat = num, yFormat = num }) {
  const g = s("g", { class: "axes" });
  for (const t of x.ticks(6)) {
    const px = x(t);
    g.append(
      s("line", { class: "grid", x1: px, x2: px, y1: box.top, y2: box.bottom }),
      s("text", { class: "tick", x: px, y: box.bottom + 16, "text-anchor": "middle" }, xFormat(t)),
    );
  }
  for (const t of y.ticks(5)) {
    const py = y(t);
    g.append(
      s("line", { class: "grid", x1: box.left, x2: box.right, y1: py, y2: py }),
      s("text", { class: "tick", x: box.left - 6, y: py + 4, "text-anchor": "end" }, yFormat(t)),
    );
  }
  g.append(
    s("rect", { class: "frame", x: box.left, y: box.top, width: box.right - box.left, height: box.bottom - box.top }),
    s("text", { class: "axis-label", x: (box.left + box.right) / 2, y: box.bottom + 34, "text-anchor": "middle" }, xLabel),
    s(
      "text",
      {
        class: "axis-label",
        transform: `translate(14 ${(box.top + box.bottom) / 2}) rotate(-90)`,
        "text-anchor": "middle",
      },
      yLabel,
    ),
  );
  return g;
}

// Viridis, cut before its pale yellow end so every colour reads on a white background.
const RAMP = ["#440154", "#3b528b", "#21918c", "#35b779", "#90c73e"];

/** A colour for t in [0, 1] along the ramp. */
export function ramp(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [hex(RAMP[i]), hex(RAMP[i + 1])];
  const mix = a.map((c, k) => Math.round(c + (b[k] - c) * f));
  return `rgb(${mix.join(",")})`;
}

function hex(color) {
  return [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
}

let gradientCount = 0;

/** A small horizontal SVG colour bar for a legend. */
export function rampBar(width = 120, height = 10) {
  gradientCount += 1;
  const id = `ramp-${gradientCount}`;
  const stops = RAMP.map((c, i) => s("stop", { offset: `${(100 * i) / (RAMP.length - 1)}%`, "stop-color": c }));
  return s(
    "svg",
    { class: "ramp-bar", viewBox: `0 0 ${width} ${height}`, width, height, "aria-hidden": "true" },
    s("defs", {}, s("linearGradient", { id }, stops)),
    s("rect", { x: 0, y: 0, width, height, rx: 2, fill: `url(#${id})` }),
  );
}
