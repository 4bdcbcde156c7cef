// Boot: register every component, load the server's config, connect the live store and
// wire the top bar. Components talk through the store and through window events:
//   bgremover:open   {panel: "jobs"|"notifications"|"history"|"analytics"|"help"|"editor"|"token",
//                     jobId?, since?}
//   bgremover:close  {}                       (Esc: close whatever is open)
//   bgremover:view-job {jobId}                (scroll to / highlight a job)
//   bgremover:unread {count}                  (notification centre's unread count)
//   bgremover:uploaded {batch, jobs}          (the drop zone created a batch)

import { api } from "./api.js";
import { store } from "./store.js";
import "./components/progress-bar.js";
import "./components/circular-progress.js";
import "./components/job-card.js";
import "./components/batch-card.js";
import "./components/drop-zone.js";
import "./components/results-grid.js";
import "./components/job-queue-sidebar.js";
import "./components/job-queue-modal.js";
import "./components/session-view.js";
import "./components/notification-center.js";
import "./components/history-view.js";
import "./components/analytics-view.js";
import "./components/editor-dialog.js";
import "./components/help-dialog.js";
import "./components/token-dialog.js";
import "./components/dev-panel.js";
import "./components/outage-banner.js";
import { installShortcuts } from "./shortcuts.js";
import { installTheme } from "./theme.js";

export function open(panel, detail = {}) {
  window.dispatchEvent(new CustomEvent("bgremover:open", { detail: { panel, ...detail } }));
}

function wireTopBar() {
  document.getElementById("open-jobs").addEventListener("click", () => open("jobs"));
  document.getElementById("open-notifications").addEventListener("click", () => open("notifications"));
  document.getElementById("open-history").addEventListener("click", () => open("history"));
  document.getElementById("open-analytics").addEventListener("click", () => open("analytics"));
  document.getElementById("open-help").addEventListener("click", () => open("help"));

  const count = document.getElementById("active-count");
  store.on("change", () => {
    const active = store.activeJobs().length;
    count.textContent = String(active);
    count.dataset.count = String(active);
  });
  const unread = document.getElementById("unread-count");
  window.addEventListener("bgremover:unread", (event) => {
    unread.textContent = event.detail.count ? String(event.detail.count) : "";
    unread.dataset.count = String(event.detail.count);
  });
  const connection = document.getElementById("connection");
  const labels = { open: "Live", connecting: "Connecting…", closed: "Offline — retrying" };
  store.on("connection", (state) => {
    connection.dataset.state = state;
    connection.textContent = labels[state];
  });
}

async function boot() {
  installTheme(document.getElementById("toggle-theme"));
  installShortcuts();
  wireTopBar();
  window.addEventListener("bgremover:unauthorized", () => open("token"));
  try {
    store.setConfig(await api.config());
  } catch (error) {
    if (error.status === 401) return open("token");
    throw error;
  }
  store.connect();
}

boot();
