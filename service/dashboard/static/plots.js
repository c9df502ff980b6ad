// The job's two charts, as inline SVG: final loss against learning rate (with the
// recommendation drawn on it) and the best loss so far against trial number.

import { baselineLines, baselineLosses } from "./baselines.js";
import { axes, linearScale, logExtent, logScale, lossScale, ramp } from "./chart.js";
import { s } from "./dom.js";
import { loss, num } from "./format.js";

const BAND_Y = 24; // the "diverged" strip above the plot area

/** The drawing size for a container `width` px wide: the viewBox follows the real width
 * (within bounds), so labels keep their size on a phone instead of shrinking with it. */
function layout(width) {
  const w = Math.round(Math.min(760, Math.max(340, width || 640)));
  const h = Math.round(Math.max(260, Math.min(360, w * 0.56)));
  return { w, h, box: { left: 64, right: w - 16, top: 46, bottom: h - 46 } };
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

function frame(size, label) {
  return s("svg", { class: "chart", viewBox: `0 0 ${size.w} ${size.h}`, role: "img", "aria-label": label, preserveAspectRatio: "xMidYMid meet" });
}

function divergedBand(svg, BOX) {
  svg.append(
    s("rect", { class: "band", x: BOX.left, y: BAND_Y - 10, width: BOX.right - BOX.left, height: 20 }),
    s("text", { class: "band-label", x: BOX.left - 6, y: BAND_Y + 4, "text-anchor": "end" }, "diverged"),
  );
}

function emptyNote(svg, BOX, text) {
  svg.append(s("text", { class: "empty-note", x: (BOX.left + BOX.right) / 2, y: (BOX.top + BOX.bottom) / 2, "text-anchor": "middle" }, text));
}

/**
 * Final loss against learning rate. `space` is the job's search space (for the x range and
 * whether eps_root is tuned); `rec` the recommendation or null.
 */
export function lossVsLearningRate(trials, { space, rec, tuned, label, width }) {
  const size = layout(width);
  const BOX = size.box;
  const svg = frame(size, label);
  const finished = trials.filter(finiteLoss);
  const diverged = trials.filter((t) => t.state === "diverged");
  const lrRange = space.learning_rate;
  const [x0, x1] =
    lrRange && "low" in lrRange && lrRange.log !== false
      ? [lrRange.low / 1.4, lrRange.high * 1.4] // a margin, so points at the range's ends show whole
      : logExtent([...finished, ...diverged].map((t) => t.params.learning_rate));
  const x = logScale(x0, x1, BOX.left, BOX.right);
  const y = lossScale([...finished.map((t) => t.value), ...baselineLosses(rec)], BOX.bottom, BOX.top);
  const epsRange = space.eps_root && "low" in space.eps_root && space.eps_root.low < space.eps_root.high ? space.eps_root : null;
  const colour = epsRange ? epsRootColour(epsRange) : () => null;
  const inX = (v) => Number.isFinite(v) && v >= x0 && v <= x1;

  svg.append(axes(BOX, x, y, { xLabel: "learning rate (log scale)", yLabel: y.log ? "final loss (log scale)" : "final loss" }));
  divergedBand(svg, BOX);

  if (rec) {
    const [a, b] = rec.lr_interval.map((v) => Math.min(x1, Math.max(x0, v)));
    svg.append(
      s("rect", { class: "rec-interval", x: x(a), y: BOX.top, width: Math.max(1.5, x(b) - x(a)), height: BOX.bottom - BOX.top },
        s("title", {}, `lr interval ${num(rec.lr_interval[0])} – ${num(rec.lr_interval[1])}`)),
    );
    if (inX(rec.divergence_lr)) {
      const px = x(rec.divergence_lr);
      svg.append(
        s("line", { class: "rec-edge", x1: px, x2: px, y1: BAND_Y - 10, y2: BOX.bottom },
          s("title", {}, `divergence edge ≈ ${num(rec.divergence_lr)}`)),
        s("text", { class: "rec-edge-label", x: px + 4, y: BOX.top + 12 }, "edge"),
      );
    }
    if (inX(rec.learning_rate)) {
      const px = x(rec.learning_rate);
      svg.append(
        s("line", { class: "rec-lr", x1: px, x2: px, y1: BOX.top, y2: BOX.bottom },
          s("title", {}, `recommended learning rate ${num(rec.learning_rate)}`)),
        s("text", { class: "rec-lr-label", x: px - 4, y: BOX.top + 12, "text-anchor": "end" }, `lr ${num(rec.learning_rate, 2)}`),
      );
    }
  }

  svg.append(baselineLines(rec, y, BOX));

  const points = s("g", { class: "points" });
  for (const t of finished) {
    if (!inX(t.params.learning_rate)) continue;
    const fill = colour(t.params.eps_root);
    points.append(
      s("circle", {
        class: ["pt", t.state === "pruned" && "pruned", !fill && t.state !== "pruned" && "plain"],
        cx: x(t.params.learning_rate).toFixed(1),
        cy: y(t.value).toFixed(1),
        r: 4.5,
        fill: t.state === "pruned" ? null : fill,
        dataset: { trial: t.number },
      }, s("title", {}, describeTrial(t, tuned))),
    );
  }
  for (const t of diverged) {
    if (!inX(t.params.learning_rate)) continue;
    const px = x(t.params.learning_rate).toFixed(1);
    points.append(
      s("path", {
        class: "div-mark",
        d: "M-4,-4L4,4M-4,4L4,-4",
        transform: `translate(${px} ${BAND_Y})`,
        dataset: { trial: t.number },
      }, s("title", {}, describeTrial(t, tuned))),
    );
  }
  svg.append(points);
  if (finished.length + diverged.length === 0) emptyNote(svg, BOX, "no finished trial yet");
  return svg;
}

function epsRootColour(range) {
  if (range.log === false || range.low <= 0) {
    return (v) => ramp((v - range.low) / (range.high - range.low));
  }
  const lo = Math.log10(range.low);
  const span = Math.log10(range.high) - lo;
  return (v) => ramp((Math.log10(v) - lo) / span);
}

/** The lowest final loss among trials numbered up to n, against n. */
export function bestSoFar(trials, { nTrials, label, width }) {
  const size = layout(width);
  const BOX = size.box;
  const svg = frame(size, label);
  const finished = trials.filter((t) => t.state === "complete" && Number.isFinite(t.value));
  const diverged = trials.filter((t) => t.state === "diverged");
  const x = linearScale(0, Math.max(1, nTrials - 1), BOX.left, BOX.right);
  const y = lossScale(finished.map((t) => t.value), BOX.bottom, BOX.top);
  svg.append(axes(BOX, x, y, {
    xLabel: "trial number",
    yLabel: y.log ? "final loss (log scale)" : "final loss",
    xFormat: (v) => String(Math.round(v)),
  }));
  divergedBand(svg, BOX);

  const faint = s("g", { class: "points" });
  for (const t of finished) {
    faint.append(s("circle", { class: "pt-faint", cx: x(t.number).toFixed(1), cy: y(t.value).toFixed(1), r: 3 },
      s("title", {}, `Trial ${t.number} · loss ${loss(t.value)}`)));
  }
  for (const t of diverged) {
    faint.append(s("line", { class: "div-tick", x1: x(t.number), x2: x(t.number), y1: BAND_Y - 6, y2: BAND_Y + 6 },
      s("title", {}, `Trial ${t.number} diverged at step ${t.diverged_at_step ?? "?"}`)));
  }
  svg.append(faint);

  let best = Infinity;
  let d = "";
  for (const t of finished) {
    const px = x(t.number).toFixed(1);
    if (t.value < best) {
      best = t.value;
      const py = y(best).toFixed(1);
      d += d ? `H${px}V${py}` : `M${px},${py}`;
    }
  }
  if (d) {
    d += `H${x(Math.max(...finished.map((t) => t.number))).toFixed(1)}`;
    svg.append(s("path", { class: "best-line", d }));
    const last = finished.reduce((a, b) => (b.value < a.value ? b : a));
    svg.append(s("circle", { class: "best-pt", cx: x(last.number), cy: y(last.value), r: 5 },
      s("title", {}, `Best: trial ${last.number} · loss ${loss(last.value)}`)));
  } else {
    emptyNote(svg, BOX, "no complete trial yet");
  }
  return svg;
}
