// The user's API key, kept in this tab's sessionStorage: never in the URL, never in
// localStorage (it leaves with the tab), never sent anywhere but this origin's API.

const STORAGE_KEY = "acprop-tuner.key";

export function loadKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || "";
  } catch {
    return "";
  }
}

export function saveKey(key) {
  try {
    sessionStorage.setItem(STORAGE_KEY, key);
  } catch {
    // Storage disabled: the key lives as long as the page.
  }
}

export function forgetKey() {
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // nothing stored
  }
}
