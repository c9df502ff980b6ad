// The job's two charts of final losses, as inline SVG: final loss against learning rate
// (with the recommendation drawn on it) and the best loss so far against trial number.
// `lossName` says which loss the y axis is (the validation loss where the workers measured
// one, else the final training loss).
//
// Both are drawn incrementally: a chart keeps one node per trial, and while its scales stay
// the same (the learning-rate range is the job's; the loss range moves only with a new lowest
// or highest loss) an update replaces only the nodes of the trials that changed, and redraws
// the few lines on top. A job of 5,000 trials then costs a few nodes per poll, not 10,000.
// A point's tooltip (its SVG <title>) is made when the pointer first reaches it, so the
// charts hold one node per trial, not two.

import { axes, frame, layout, linearScale, logExtent, logScale, lossScale, ramp, rampBar } from "./chart.js";
import { h, s } from "./dom.js";
import { loss, num } from "./format.js";

const BAND_Y = 24; // the "diverged" strip above the plot area
const SVG_NS = "http://www.w3.org/2000/svg";

/** One trial's node, made directly: the charts make one per trial (10,000 at 5,000 trials),
 * and dom.js's general `s()` costs several times the DOM's own work per node. */
function node(tag, attrs, number) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const name in attrs) {
    const value = attrs[name];
    if (value !== null && value !== undefined) el.setAttribute(name, value);
  }
  el.setAttribute("data-trial", number);
  return el;
}

function finiteLoss(t) {
  return (t.state === "complete" || t.state === "pruned") && Number.isFinite(t.value);
}

function describeTrial(t, tuned) {
  const parts = [`Trial ${t.number}`, `lr ${num(t.params.learning_rate)}`];
  for (const name of tuned) if (name !== "learning_rate") parts.push(`${name} ${num(t.params[name])}`);
  if (t.state === "diverged") parts.push(`diverged at step ${t.diverged_at_step ?? "?"}`);
  else parts.push(`loss ${loss(t.value)}${t.state === "pruned" ? " (pruned)" : ""}`);
  return parts.join(" · ");
}

function divergedBand(BOX) {
  return [
    s("rect", { class: "band", x: BOX.left, y: BAND_Y - 10, width: BOX.right - BOX.left, height: 20 }),
    s("text", { class: "band-label", x: BOX.left - 6, y: BAND_Y + 4, "text-anchor": "end" }, "diverged"),
  ];
}

function emptyNote(BOX, text) {
  return s("text", { class: "empty-note", x: (BOX.left + BOX.right) / 2, y: (BOX.top + BOX.bottom) / 2, "text-anchor": "middle" }, text);
}

function lossRange(trials, keep) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const t of trials) {
    if (!keep(t)) continue;
    if (t.value < lo) lo = t.value;
    if (t.value > hi) hi = t.value;
  }
  return lo <= hi ? [lo, hi] : [];
}

/** A chart of one node per trial, redrawn whole when its scales change and node by node
 * otherwise. Subclasses give `scales(trials, opts)` -> {key, ...}, `build(svg, scales, opts)`
 * (the fixed parts), `point(trial, scales, opts)` (a node or null) and `overlay(trials,
 * scales, opts)` (nodes drawn over the points, redrawn every time). */
class PointChart {
  constructor(figure) {
    this.figure = figure;
    this.key = null;
    this.nodes = new Map();
  }

  /** `changed`: the numbers of the trials that changed since the last draw (null: all). */
  draw(trials, byNumber, changed, opts) {
    const scales = this.scales(trials, opts);
    if (scales.key !== this.key || changed === null) {
      this.key = scales.key;
      this.svg = frame(scales.size, opts.label);
      this.under = s("g", { class: "overlay-under" });
      this.points = s("g", { class: "points" });
      this.over = s("g", { class: "overlay" });
      this.build(this.svg, scales, opts);
      this.svg.append(this.under, this.points, this.over);
      this.points.addEventListener("mouseover", (event) => this._tooltip(event.target));
      this.nodes = new Map();
      for (const t of trials) this._place(t, scales, opts);
      this.figure.replaceChildren(this.svg);
    } else {
      this.svg.setAttribute("aria-label", opts.label);
      for (const number of changed) {
        this.nodes.get(number)?.remove();
        this.nodes.delete(number);
        const t = byNumber.get(number);
        if (t) this._place(t, scales, opts);
      }
    }
    this.byNumber = byNumber;
    this.opts = opts;
    const { under = [], over = [] } = this.overlay(trials, scales, opts);
    this.under.replaceChildren(...under);
    this.over.replaceChildren(...over);
  }

  _tooltip(node) {
    const number = Number(node?.dataset?.trial);
    const t = this.byNumber?.get(number);
    if (!t || node.firstChild) return;
    node.append(s("title", {}, this.describe(t, this.opts)));
  }

  _place(t, scales, opts) {
    const node = this.point(t, scales, opts);
    if (!node) return;
    this.points.append(node);
    this.nodes.set(t.number, node);
  }
}

/** Final loss against learning rate. `space` is the job's search space (for the x range and
 * whether eps_root is tuned); `rec` the recommendation or null; `layers` the view's layers
 * (jobview.js), whose `scatter` nodes are drawn under the points. */
export class ScatterChart extends PointChart {
  scales(trials, { space, width, lossName, rec, layers = [] }) {
    const size = layout(width);
    const BOX = size.box;
    const lrRange = space.learning_rate;
    const [x0, x1] =
      lrRange && "low" in lrRange && lrRange.log !== false
        ? [lrRange.low / 1.4, lrRange.high * 1.4] // a margin, so points at the range's ends show whole
        : logExtent(trials.filter((t) => finiteLoss(t) || t.state === "diverged").map((t) => t.params.learning_rate));
    const x = logScale(x0, x1, BOX.left, BOX.right);
    // The layers' values (a baseline's loss) are held in the loss range as the trials' are.
    const extra = layers.flatMap((layer) => (layer.scatterLosses ? layer.scatterLosses(rec) : []));
    const y = lossScale([...lossRange(trials, finiteLoss), ...extra], BOX.bottom, BOX.top);
    const eps = space.eps_root && "low" in space.eps_root && space.eps_root.low < space.eps_root.high ? space.eps_root : null;
    const colour = eps ? epsRootColour(eps) : () => null;
    const key = [size.w, x0, x1, ...y.domain, y.log, lossName, eps?.low, eps?.high].join("|");
    return { key, size, BOX, x, y, colour, inX: (v) => Number.isFinite(v) && v >= x0 && v <= x1 };
  }

  build(svg, { BOX, x, y }, { lossName = "final loss" }) {
    svg.append(axes(BOX, x, y, { xLabel: "learning rate (log scale)", yLabel: y.log ? `${lossName} (log scale)` : lossName }), ...divergedBand(BOX));
  }

  point(t, { x, y, colour, inX }) {
    if (!inX(t.params.learning_rate)) return null;
    if (t.state === "diverged") {
      return node("path", {
        class: "div-mark",
        d: "M-4,-4L4,4M-4,4L4,-4",
        transform: `translate(${x(t.params.learning_rate).toFixed(1)} ${BAND_Y})`,
      }, t.number);
    }
    if (!finiteLoss(t)) return null;
    const pruned = t.state === "pruned";
    const fill = pruned ? null : colour(t.params.eps_root);
    return node("circle", {
      class: pruned ? "pt pruned" : fill ? "pt" : "pt plain",
      cx: x(t.params.learning_rate).toFixed(1),
      cy: y(t.value).toFixed(1),
      r: 4.5,
      fill,
    }, t.number);
  }

  describe(t, { tuned }) {
    return describeTrial(t, tuned);
  }

  overlay(trials, { BOX, x, y, inX }, { rec, layers = [] }) {
    const under = [];
    const over = [];
    if (rec) {
      const [x0, x1] = x.domain;
      const [a, b] = rec.lr_interval.map((v) => Math.min(x1, Math.max(x0, v)));
      under.push(s("rect", { class: "rec-interval", x: x(a), y: BOX.top, width: Math.max(1.5, x(b) - x(a)), height: BOX.bottom - BOX.top },
        s("title", {}, `lr interval ${num(rec.lr_interval[0])} – ${num(rec.lr_interval[1])}`)));
      if (inX(rec.divergence_lr)) {
        const px = x(rec.divergence_lr);
        under.push(
          s("line", { class: "rec-edge", x1: px, x2: px, y1: BAND_Y - 10, y2: BOX.bottom }, s("title", {}, `divergence edge ≈ ${num(rec.divergence_lr)}`)),
          s("text", { class: "rec-edge-label", x: px + 4, y: BOX.top + 12 }, "edge"),
        );
      }
      if (inX(rec.learning_rate)) {
        const px = x(rec.learning_rate);
        under.push(
          s("line", { class: "rec-lr", x1: px, x2: px, y1: BOX.top, y2: BOX.bottom }, s("title", {}, `recommended learning rate ${num(rec.learning_rate)}`)),
          s("text", { class: "rec-lr-label", x: px - 4, y: BOX.top + 12, "text-anchor": "end" }, `lr ${num(rec.learning_rate, 2)}`),
        );
      }
    }
    for (const layer of layers) if (layer.scatter) under.push(...layer.scatter(rec, { x, y, box: BOX }));
    if (this.nodes.size === 0) over.push(emptyNote(BOX, "no finished trial yet"));
    return { under, over };
  }
}

function epsRootColour(range) {
  if (range.log === false || range.low <= 0) {
    return (v) => ramp((v - range.low) / (range.high - range.low));
  }
  const lo = Math.log10(range.low);
  const span = Math.log10(range.high) - lo;
  return (v) => ramp((Math.log10(v) - lo) / span);
}

const isComplete = (t) => t.state === "complete" && Number.isFinite(t.value);

/** The lowest final loss among trials numbered up to n, against n. */
export class BestChart extends PointChart {
  scales(trials, { nTrials, width, lossName }) {
    const size = layout(width);
    const BOX = size.box;
    const x = linearScale(0, Math.max(1, nTrials - 1), BOX.left, BOX.right);
    const y = lossScale(lossRange(trials, isComplete), BOX.bottom, BOX.top);
    return { key: [size.w, nTrials, ...y.domain, y.log, lossName].join("|"), size, BOX, x, y };
  }

  build(svg, { BOX, x, y }, { lossName = "final loss" }) {
    svg.append(axes(BOX, x, y, {
      xLabel: "trial number",
      yLabel: y.log ? `${lossName} (log scale)` : lossName,
      xFormat: (v) => String(Math.round(v)),
    }), ...divergedBand(BOX));
  }

  // The complete trials' faint dots are one path (overlay), not a node each: with the
  // scatter's, 10,000 nodes to style, lay out and paint at every frame of a 5,000-trial job.
  point(t, { x }) {
    if (t.state !== "diverged") return null;
    return node("line", { class: "div-tick", x1: x(t.number), x2: x(t.number), y1: BAND_Y - 6, y2: BAND_Y + 6 }, t.number);
  }

  /** Names, in the dots' tooltip, the complete trial nearest the pointer's trial number. */
  _nearest(path, event, x) {
    const ctm = this.svg.getScreenCTM();
    if (!ctm) return;
    const px = new DOMPoint(event.clientX, event.clientY).matrixTransform(ctm.inverse()).x;
    const [d0, d1] = x.domain;
    const guess = Math.round(d0 + ((px - x(d0)) / (x(d1) - x(d0))) * (d1 - d0));
    for (let k = 0; k < 50; k += 1) {
      for (const n of [guess - k, guess + k]) {
        const t = this.byNumber?.get(n);
        if (t && isComplete(t)) {
          path.firstChild.textContent = this.describe(t);
          return;
        }
      }
    }
  }

  describe(t) {
    return t.state === "diverged" ? `Trial ${t.number} diverged at step ${t.diverged_at_step ?? "?"}` : `Trial ${t.number} · loss ${loss(t.value)}`;
  }

  overlay(trials, { BOX, x, y }) {
    let best = null;
    let last = -1;
    let d = "";
    let dots = "";
    for (const t of trials) {
      if (!isComplete(t)) continue;
      last = t.number;
      dots += `M${x(t.number).toFixed(1)} ${y(t.value).toFixed(1)}h0`;
      if (best === null || t.value < best.value) {
        best = t;
        const px = x(t.number).toFixed(1);
        const py = y(t.value).toFixed(1);
        d += d ? `H${px}V${py}` : `M${px},${py}`;
      }
    }
    if (!best) return { over: [emptyNote(BOX, "no complete trial yet")] };
    d += `H${x(last).toFixed(1)}`;
    const faint = s("path", { class: "pt-faint", d: dots }, s("title", {}, "complete trials"));
    faint.addEventListener("mousemove", (event) => this._nearest(faint, event, x));
    return {
      under: [faint],
      over: [
        s("path", { class: "best-line", d }),
        s("circle", { class: "best-pt", cx: x(best.number), cy: y(best.value), r: 5 }, s("title", {}, `Best: trial ${best.number} · loss ${loss(best.value)}`)),
      ],
    };
  }
}

/** The legend of the loss-against-learning-rate chart, with the entries of the view's layers. */
export function scatterLegend(space, rec, tuned, layers = []) {
  const swatch = (cls, shape) => s("svg", { class: "swatch", viewBox: "-6 -6 12 12", width: 12, height: 12, "aria-hidden": "true" }, s(shape.tag, { class: cls, ...shape.attrs }));
  const item = (...children) => h("span", { class: "legend-item" }, ...children);
  const items = [
    item(swatch("pt legend-pt", { tag: "circle", attrs: { r: 4.5 } }), "complete"),
    item(swatch("pt pruned", { tag: "circle", attrs: { r: 4 } }), "pruned"),
    item(swatch("div-mark", { tag: "path", attrs: { d: "M-4,-4L4,4M-4,4L4,-4" } }), "diverged (at top; hover for the step)"),
  ];
  if (rec) {
    items.push(
      item(swatch("rec-interval", { tag: "rect", attrs: { x: -5, y: -5, width: 10, height: 10 } }), "lr interval"),
      item(swatch("rec-lr", { tag: "line", attrs: { x1: 0, x2: 0, y1: -6, y2: 6 } }), "recommended"),
      item(swatch("rec-edge", { tag: "line", attrs: { x1: 0, x2: 0, y1: -6, y2: 6 } }), "divergence edge"),
    );
  }
  for (const layer of layers) if (layer.legend) items.push(...layer.legend(rec, swatch));
  if (tuned.includes("eps_root")) {
    const eps = space.eps_root;
    items.push(item("eps_root ", num(eps.low, 1), " ", rampBar(), " ", num(eps.high, 1)));
  }
  return items;
}
