// Keyboard shortcuts: J jobs, N notifications, H or Ctrl+H history, A analytics, ? help,
// P pauses or resumes the queue, Esc closes.
// They act through the same window events as the top bar's buttons.

import { closePanels, openPanel } from "./panels.js";

const KEYS = { j: "jobs", n: "notifications", h: "history", a: "analytics", "?": "help" };
const ACTIONS = { p: "bgremover:toggle-queue" };

/** True while the user types text: a letter there is text, not a command. */
function typing(target) {
  if (!(target instanceof Element)) return false;
  // A field left focused in a panel that has closed is not where the user types.
  if (target.closest("dialog:not([open])")) return false;
  if (target.isContentEditable) return true;
  if (target.matches("textarea, select")) return true;
  return target.matches("input") && !["checkbox", "radio", "button", "submit", "reset", "range", "color"]
    .includes(target.type);
}

export function installShortcuts() {
  window.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.repeat) return;
    // Esc closes panels even from a field inside one (a dialog closes itself on Esc anyway).
    if (event.key === "Escape") {
      closePanels();
      return;
    }
    if (typing(event.target)) return;
    const key = event.key.toLowerCase();
    // Ctrl+H is the browser's history; ours wins here, as in the app this one grew from.
    if (key === "h" && event.ctrlKey && !event.altKey && !event.metaKey && !event.shiftKey) {
      event.preventDefault();
      openPanel("history");
      return;
    }
    // Shift is allowed: "?" needs it on most layouts.
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    if (KEYS[key]) {
      event.preventDefault();
      openPanel(KEYS[key]);
    } else if (ACTIONS[key]) {
      event.preventDefault();
      window.dispatchEvent(new CustomEvent(ACTIONS[key]));
    }
  });
}
