// Boot: register every component, load the server's config, connect the live store and
// wire the top bar. Components talk through the store and through window events:
//   bgremover:open   {panel: "jobs"|"notifications"|"history"|"analytics"|"help"|"editor"|"token",
//                     jobId?, since?}
//   bgremover:close  {}                       (Esc: close whatever is open)
//   bgremover:view-job {jobId}                (scroll to / highlight a job)
//   bgremover:unread {count}                  (notification centre's unread count)
//   bgremover:uploaded {batch, jobs}          (the drop zone created a batch)
//   bgremover:toggle-queue {}                 (P: pause or resume the queue)

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
import { openPanel } from "./panels.js";
import { installShortcuts } from "./shortcuts.js";
import { installTheme } from "./theme.js";

function wireTopBar() {
  document.getElementById("open-jobs").addEventListener("click", () => openPanel("jobs"));
  document.getElementById("open-notifications").addEventListener("click", () => openPanel("notifications"));
  document.getElementById("open-history").addEventListener("click", () => openPanel("history"));
  document.getElementById("open-analytics").addEventListener("click", () => openPanel("analytics"));
  document.getElementById("open-help").addEventListener("click", () => openPanel("help"));

  const count = document.getElementById("active-count");
  store.on("change", () => {
    const active = store.activeJobs().length;
    count.textContent = String(active);
    count.dataset.count = String(active);
  });
  wireQueueToggle(document.getElementById("toggle-queue"));
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

/** The top bar's pause/resume button (and P): shows the queue's state as every open page
 * hears it (`queue.updated`), and flips it. */
function wireQueueToggle(button) {
  const render = (queue) => {
    const paused = Boolean(queue?.paused);
    button.dataset.paused = String(paused);
    button.setAttribute("aria-pressed", String(paused));
    button.textContent = paused ? "Resume" : "Pause";
    button.title = paused
      ? `Queue paused${queue.paused_by ? ` by ${queue.paused_by}` : ""}: resume it (P)`
      : "Pause the queue: no new job starts; running ones finish (P)";
  };
  const toggle = async () => {
    if (button.disabled) return;
    button.disabled = true;
    try {
      store.setQueue(await (store.queue?.paused ? api.resumeQueue() : api.pauseQueue()));
    } finally {
      button.disabled = false;
    }
  };
  store.on("queue", render);
  button.addEventListener("click", toggle);
  window.addEventListener("bgremover:toggle-queue", toggle);
}

const DEVICE_NAMES = {
  cpu: "the CPU", cuda: "an NVIDIA GPU (CUDA)", rocm: "an AMD GPU (ROCm)",
  openvino: "OpenVINO", coreml: "Core ML", directml: "DirectML",
  auto: "the best device each worker has",
};

/** The footer says what runs the model, so a slow batch on the CPU is no mystery. */
function showDevice(device) {
  const label = document.getElementById("device");
  label.dataset.device = device;
  label.textContent = DEVICE_NAMES[device] ?? device;
}

async function boot() {
  installTheme(document.getElementById("toggle-theme"));
  installShortcuts();
  wireTopBar();
  window.addEventListener("bgremover:unauthorized", () => openPanel("token"));
  try {
    store.setConfig(await api.config());
    showDevice(store.config.device);
  } catch (error) {
    if (error.status === 401) return openPanel("token");
    throw error;
  }
  store.connect();
}

boot();
