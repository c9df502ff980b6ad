// The public REST API (/api/v1), called with the user's key. The only module that talks to
// the network. Paths are resolved relative to this module, so the dashboard also works
// behind a reverse proxy that mounts the service under a prefix.

const API_ROOT = new URL("../../../api/v1/", import.meta.url);

/** The server answered with an error status; `detail` is the server's text (never markup). */
export class ApiError extends Error {
  constructor(status, code, detail, retryAfter) {
    super(describe(detail) || code || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

/** The server could not be reached (or the connection broke). */
export class NetworkError extends Error {
  constructor(message) {
    super(message);
    this.name = "NetworkError";
  }
}

/** A readable sentence from an error body's `detail` (a string, or 422's list). */
export function describe(detail) {
  if (detail === null || detail === undefined) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((d) => (d && typeof d === "object" ? `${(d.loc || []).join(".")}: ${d.msg}` : String(d)))
      .join("; ");
  }
  return JSON.stringify(detail);
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  async request(path, { method = "GET", signal } = {}) {
    let response;
    try {
      response = await fetch(new URL(path, API_ROOT), {
        method,
        signal,
        headers: { Authorization: `Bearer ${this.key}`, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new NetworkError("the server could not be reached");
    }
    let body = null;
    if (response.status !== 204) {
      try {
        body = await response.json();
      } catch (err) {
        if (err && err.name === "AbortError") throw err;
        if (response.ok) throw new NetworkError("the server's answer was cut off");
      }
    }
    if (!response.ok) {
      const retryAfter = Number(response.headers.get("Retry-After")) || null;
      throw new ApiError(response.status, body?.error ?? "", body?.detail ?? response.statusText, retryAfter);
    }
    return body;
  }

  jobs({ limit = 50, signal } = {}) {
    return this.request(`jobs?limit=${limit}`, { signal });
  }

  job(id, { signal } = {}) {
    return this.request(`jobs/${encodeURIComponent(id)}`, { signal });
  }

  /** Trials numbered above `after` as columns, without their reports (see trial_feed.py). */
  trialColumns(id, after, limit, { signal } = {}) {
    return this.request(`jobs/${encodeURIComponent(id)}/trials/columns?after=${after}&limit=${limit}`, { signal });
  }

  /** Loss against step for the trials numbered `numbers` (at most 50). */
  curves(id, numbers, { signal } = {}) {
    const query = numbers.map((n) => `trial=${n}`).join("&");
    return this.request(`jobs/${encodeURIComponent(id)}/curves?${query}`, { signal });
  }

  importance(id, { signal } = {}) {
    return this.request(`jobs/${encodeURIComponent(id)}/importance`, { signal });
  }

  workers({ limit = 50, signal } = {}) {
    return this.request(`workers?limit=${limit}`, { signal });
  }

  recommendation(id, { signal } = {}) {
    return this.request(`jobs/${encodeURIComponent(id)}/recommendation`, { signal });
  }

  cancel(id) {
    return this.request(`jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  }
}
