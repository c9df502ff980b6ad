// The dashboard's controller: the key prompt, the hash route (#/jobs/<id>), and the poll
// loop that keeps the job list and the selected job live (about every 2 s).
//
// 401/403 bring the key prompt back with the server's reason; network errors, 429 and 5xx
// show a banner that does not block the page, and polling goes on.

import { Api, ApiError, NetworkError, describe } from "./api.js";
import { byId } from "./dom.js";
import { JobList } from "./joblist.js";
import { JobView } from "./jobview.js";
import { forgetKey, loadKey, saveKey } from "./keystore.js";
import { TrialTracker } from "./tracker.js";

const POLL_MS = 2000;
const HIDDEN_POLL_MS = 10000;
const ROUTE = /^#\/jobs\/([^/?#]+)$/;

class Dashboard {
  constructor() {
    this.prompt = byId("key-prompt");
    this.form = byId("key-form");
    this.input = byId("key-input");
    this.keyError = byId("key-error");
    this.submit = byId("key-submit");
    this.forget = byId("forget-key");
    this.layout = byId("dashboard");
    this.banner = byId("banner");
    this.placeholder = byId("detail-placeholder");
    this.notFound = byId("not-found");
    this.notFoundText = byId("not-found-text");
    this.jobRoot = byId("job-view");
    this.jobList = new JobList(byId("job-list"), byId("jobs-empty"), byId("jobs-total"));

    this.api = null;
    this.session = 0; // bumps when the key changes: answers of an older session are dropped
    this.selection = null; // {id, tracker, view, recKey, notFound, drawn, abort}
    this.timer = null;
    this.ticking = false;
    this.again = false;
  }

  start() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitKey(this.input.value.trim());
    });
    this.forget.addEventListener("click", () => {
      forgetKey();
      this.showPrompt("");
    });
    window.addEventListener("hashchange", () => this.route());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.pollNow();
    });
    const key = loadKey();
    if (key) this.open(key);
    else this.showPrompt("");
  }

  // --- the key ---------------------------------------------------------------------------

  showPrompt(message) {
    this.session += 1;
    this.api = null;
    clearTimeout(this.timer);
    this.deselect();
    this.layout.hidden = true;
    this.forget.hidden = true;
    this.setBanner(null);
    this.prompt.hidden = false;
    this.keyError.textContent = message;
    this.input.setAttribute("aria-invalid", message ? "true" : "false");
    this.input.value = "";
    this.input.focus();
    document.title = "acprop-tuner dashboard";
  }

  async submitKey(key) {
    if (!key) {
      this.keyError.textContent = "Paste an API key first.";
      this.input.setAttribute("aria-invalid", "true");
      this.input.focus();
      return;
    }
    this.submit.disabled = true;
    this.keyError.textContent = "";
    try {
      await new Api(key).jobs({ limit: 1 });
    } catch (err) {
      this.keyError.textContent = keyProblem(err);
      this.input.setAttribute("aria-invalid", "true");
      this.input.focus();
      return;
    } finally {
      this.submit.disabled = false;
    }
    saveKey(key);
    this.open(key);
  }

  open(key) {
    this.session += 1;
    this.api = new Api(key);
    this.prompt.hidden = true;
    this.input.value = "";
    this.layout.hidden = false;
    this.forget.hidden = false;
    this.route();
    this.pollNow();
  }

  // --- the selected job ------------------------------------------------------------------

  route() {
    if (!this.api) return;
    const match = ROUTE.exec(window.location.hash);
    let id = null;
    try {
      id = match ? decodeURIComponent(match[1]) : null;
    } catch {
      id = match[1]; // malformed %-escape: look it up as typed (the server says not found)
    }
    if (this.selection?.id === id) return;
    this.deselect();
    this.jobList.select(id);
    this.placeholder.hidden = id !== null;
    if (id === null) return;
    this.selection = { id, tracker: new TrialTracker(this.api, id), view: null, recKey: null, notFound: false, abort: new AbortController() };
    this.pollNow();
  }

  deselect() {
    this.selection?.abort.abort();
    this.selection?.view?.close();
    this.selection = null;
    this.jobRoot.hidden = true;
    this.jobRoot.replaceChildren();
    this.notFound.hidden = true;
    this.placeholder.hidden = false;
  }

  async refreshSelected(api) {
    const sel = this.selection;
    if (!sel || sel.notFound) return;
    const { signal } = sel.abort;
    let job;
    try {
      job = await api.job(sel.id, { signal });
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        if (sel === this.selection) this.showNotFound(sel);
        return;
      }
      throw err;
    }
    if (sel !== this.selection) return;
    if (!sel.view) {
      sel.view = new JobView(this.jobRoot, { onCancel: () => this.cancel(sel) });
      this.jobRoot.hidden = false;
    }
    sel.view.setJob(job);
    document.title = `${job.progress.finished}/${job.progress.n_trials} · ${job.name} · acprop-tuner`;

    const changed = await sel.tracker.refresh(job, { signal });
    if (sel !== this.selection) return;
    if (changed || !sel.drawn) {
      sel.view.setTrials(sel.tracker.trials);
      sel.drawn = true;
    }

    // The recommendation only changes with the finished trials it uses, the job's end, or
    // its baselines (trained beside it).
    const p = job.progress;
    const recKey = `${job.status}|${p.complete}|${p.diverged}|${(job.baselines || []).map((b) => b.state).join(",")}`;
    if (recKey === sel.recKey) return;
    let state;
    try {
      state = { rec: await api.recommendation(sel.id, { signal }) };
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 409)) throw err;
      state = { reason: describe(err.detail), ended: !["queued", "running"].includes(job.status) };
    }
    if (sel !== this.selection) return;
    sel.view.setRecommendation(state);
    sel.recKey = recKey;
  }

  showNotFound(sel) {
    sel.notFound = true;
    this.jobRoot.hidden = true;
    this.jobRoot.replaceChildren();
    this.placeholder.hidden = true;
    this.notFound.hidden = false;
    this.notFoundText.textContent = `No job with id ${sel.id.slice(0, 64)} is visible with this key.`;
  }

  async cancel(sel) {
    try {
      const job = await this.api.cancel(sel.id);
      if (sel === this.selection) sel.view.setJob(job);
      this.pollNow();
    } catch (err) {
      if (err instanceof ApiError && err.status !== 401 && err.status !== 403) {
        sel.view?.showCancelError(`Could not cancel: ${err.message}`);
      } else {
        this.failed(err);
      }
    }
  }

  // --- polling ---------------------------------------------------------------------------

  pollNow() {
    if (!this.api) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), 0);
  }

  async tick() {
    const api = this.api;
    const session = this.session;
    if (!api) return;
    this.ticking = true;
    this.again = false;
    let delay = POLL_MS;
    try {
      await Promise.all([this.refreshJobs(api, session), this.refreshSelected(api)]);
      if (session === this.session) this.setBanner(null);
    } catch (err) {
      if (session === this.session) delay = this.failed(err);
    } finally {
      this.ticking = false;
    }
    if (session !== this.session || delay === null) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), this.again ? 0 : document.hidden ? HIDDEN_POLL_MS : delay);
  }

  async refreshJobs(api, session) {
    const page = await api.jobs({ limit: 50 });
    if (session === this.session) this.jobList.render(page);
  }

  /** Handle a failed poll; returns the delay before the next one, or null to stop. */
  failed(err) {
    if (err && err.name === "AbortError") return POLL_MS;
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      forgetKey();
      this.showPrompt(keyProblem(err));
      return null;
    }
    if (err instanceof NetworkError) {
      this.setBanner("Cannot reach the server. Retrying every 2 s…");
      return POLL_MS;
    }
    if (err instanceof ApiError) {
      const wait = Math.max(POLL_MS, (err.retryAfter || 0) * 1000);
      const what = err.status === 429 ? "Too many requests" : `The server answered ${err.status}`;
      this.setBanner(`${what}: ${err.message}. Retrying in ${Math.round(wait / 1000)} s…`);
      return wait;
    }
    console.error(err); // a bug in the page: surface it
    this.setBanner("Something went wrong while updating. Retrying…");
    return POLL_MS;
  }

  setBanner(text) {
    if (!text) {
      this.banner.hidden = true;
      this.banner.textContent = "";
      return;
    }
    this.banner.textContent = text;
    this.banner.hidden = false;
  }
}

function keyProblem(err) {
  if (err instanceof ApiError && err.status === 401) return `The server did not accept this key: ${err.message}.`;
  if (err instanceof ApiError && err.status === 403) return `This key cannot read jobs (it needs the user scope): ${err.message}.`;
  if (err instanceof NetworkError) return "Cannot reach the server; try again.";
  return `The key could not be checked: ${err.message}`;
}

new Dashboard().start();
