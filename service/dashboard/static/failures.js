// Failed trials: why each failed, as its worker reported it, grouped by reason (a task that
// runs out of memory fails the same way many times). The job's own failure reason is shown
// above everything by the job view; this panel is about trials.

import { h, replace } from "./dom.js";
import { plural } from "./format.js";

const MAX_REASONS = 6;
const MAX_NUMBERS = 12;

/** Draw the panel for `failed` trials; hides it when there are none. */
export function renderFailures(panel, failed) {
  panel.hidden = failed.length === 0;
  if (!failed.length) {
    replace(panel);
    return;
  }
  const byReason = new Map();
  for (const t of failed) {
    const reason = t.error || "no reason reported";
    if (!byReason.has(reason)) byReason.set(reason, []);
    byReason.get(reason).push(t.number);
  }
  const groups = [...byReason.entries()].sort((a, b) => b[1].length - a[1].length);
  const items = groups.slice(0, MAX_REASONS).map(([reason, numbers]) =>
    h("li", { class: "failure" },
      h("code", { class: "failure-reason" }, reason),
      h("span", { class: "muted small" },
        ` ${plural(numbers.length, "trial")}: #${numbers.slice(0, MAX_NUMBERS).join(", #")}${numbers.length > MAX_NUMBERS ? ", …" : ""}`)));
  replace(
    panel,
    h("h2", { id: "failures-title" }, `Failed trials (${failed.length})`),
    h("ul", { class: "failures" }, items),
    groups.length > MAX_REASONS ? h("p", { class: "muted small" }, `and ${groups.length - MAX_REASONS} other reasons (filter the table by "failed")`) : null,
  );
}
