// Parameter importance: how much each tuned setting decides the loss (Optuna's PED-ANOVA
// over the complete and diverged trials, computed by the server off its request path), as
// horizontal bars. Shown only when the job tunes more than one setting.

import { h, replace } from "./dom.js";
import { num, plural } from "./format.js";

/** `answer`: the server's (importances, evaluator, n_trials, n_finished, computing, reason). */
export function renderImportance(panel, answer) {
  const title = h("h2", { id: "importance-title" }, "Parameter importance");
  if (!answer.importances) {
    replace(panel, title, h("p", { class: "muted", dataset: { testid: "importance-reason" } }, `No importance yet: ${answer.reason}.`));
    return;
  }
  const entries = Object.entries(answer.importances);
  const rows = entries.map(([name, share]) => {
    const fill = h("span", { class: "imp-fill" });
    fill.style.width = `${Math.max(0.5, 100 * share)}%`; // CSSOM (the CSP allows no style attribute)
    return h("div", { class: "imp-row", dataset: { param: name } },
      h("span", { class: "imp-name" }, name),
      h("span", { class: "imp-bar", role: "img", "aria-label": `${name}: ${num(100 * share, 2)} %` }, fill),
      h("span", { class: "imp-value" }, `${num(100 * share, 2)} %`));
  });
  const stale = answer.n_finished > answer.n_trials;
  replace(
    panel,
    title,
    h("div", { class: "imp-rows" }, rows),
    h("p", { class: "muted small" },
      `${answer.evaluator} over ${plural(answer.n_trials, "finished trial")}`,
      answer.n_read < answer.n_trials ? ` (${answer.n_read} of them, evenly spread)` : "",
      "; diverged ones count as the worst",
      stale ? `; ${answer.n_finished - answer.n_trials} newer ones are being added` : ""),
  );
}
