// Small pieces shared by the job list and the job view: status badges and the stacked
// progress bar of a job's trial states.

import { h } from "./dom.js";

// Trial states in bar order: finished outcomes first, then work in flight.
export const STATES = ["complete", "pruned", "diverged", "failed", "running", "waiting"];

export function statusBadge(status) {
  return h("span", { class: ["badge", `status-${status}`] }, status);
}

/** "12 of 40 finished: 8 complete, 4 diverged; 2 running, 3 waiting". */
export function progressText(p) {
  const done = ["complete", "pruned", "diverged", "failed"].filter((k) => p[k]).map((k) => `${p[k]} ${k}`);
  const busy = ["running", "waiting"].filter((k) => p[k]).map((k) => `${p[k]} ${k}`);
  let text = `${p.finished} of ${p.n_trials} finished`;
  if (done.length) text += `: ${done.join(", ")}`;
  if (busy.length) text += `; ${busy.join(", ")}`;
  return text;
}

/** A bar with one segment per trial state, widths in proportion to n_trials. */
export function progressBar(p) {
  const bar = h("div", { class: "bar", role: "img", "aria-label": progressText(p) });
  const total = Math.max(1, p.n_trials, p.finished + p.running + p.waiting);
  for (const state of STATES) {
    if (!p[state]) continue;
    const segment = h("span", { class: ["seg", `seg-${state}`], title: `${p[state]} ${state}` });
    // CSSOM, not a style attribute: allowed by the page's CSP (style-src 'self').
    segment.style.width = `${(100 * p[state]) / total}%`;
    bar.append(segment);
  }
  return bar;
}
