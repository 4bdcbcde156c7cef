// <dev-panel>: the development test panel (only when the server runs with --dev). Every
// button drives the real system: it uploads real images (generated on a canvas, or one the
// user picks) and the notifications that follow are the server's own, caused by real events:
// a corrupt PNG fails in the decoder, a cancelled batch sends its cancelled summary, etc.

import { api } from "../api.js";
import { store } from "../store.js";
import { batchName, escapeHtml, time } from "../format.js";

const SCENARIOS = [
  ["single", "Single job", "Uploads one image."],
  ["batch", "Batch of 5", "One batch of five images."],
  ["concurrent", "4 concurrent uploads", "Four uploads at once, each its own batch."],
  ["success", "Success notice", "A batch of two that finishes: “Batch finished” (success)."],
  ["error", "Error: corrupt file", "A PNG cut in half: the job fails (error)."],
  ["warning", "Warning: cancel a batch", "Uploads three, then cancels the batch (warning)."],
  ["info", "Info: session complete", "Two batches in one session: “Session complete” (info)."],
];

/** A small photo-like PNG: sky, ground and a shaded subject, varied by `seed`. */
export async function sampleImage(seed = 0, width = 480, height = 360) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const hue = (seed * 47) % 360;
  const sky = ctx.createLinearGradient(0, 0, 0, height);
  sky.addColorStop(0, `hsl(${hue + 200} 60% 70%)`);
  sky.addColorStop(0.65, `hsl(${hue + 30} 70% 85%)`);
  sky.addColorStop(0.65, `hsl(${hue + 100} 30% 40%)`);
  sky.addColorStop(1, `hsl(${hue + 100} 35% 25%)`);
  ctx.fillStyle = sky;
  ctx.fillRect(0, 0, width, height);
  // The subject: a shaded ball on a pedestal, lit from the top left.
  const cx = width * (0.4 + 0.2 * ((seed % 3) / 2));
  const cy = height * 0.48;
  const r = height * 0.22;
  ctx.fillStyle = `hsl(${hue} 20% 30% / 0.45)`;
  ctx.beginPath();
  ctx.ellipse(cx + r * 0.2, height * 0.8, r * 1.1, r * 0.22, 0, 0, Math.PI * 2);
  ctx.fill();
  const pedestal = ctx.createLinearGradient(cx - r * 0.5, 0, cx + r * 0.5, 0);
  pedestal.addColorStop(0, "#777");
  pedestal.addColorStop(0.4, "#ddd");
  pedestal.addColorStop(1, "#555");
  ctx.fillStyle = pedestal;
  ctx.fillRect(cx - r * 0.45, cy + r * 0.7, r * 0.9, height * 0.8 - cy - r * 0.7);
  const ball = ctx.createRadialGradient(cx - r * 0.35, cy - r * 0.35, r * 0.1, cx, cy, r);
  ball.addColorStop(0, `hsl(${hue} 90% 85%)`);
  ball.addColorStop(0.5, `hsl(${hue} 75% 50%)`);
  ball.addColorStop(1, `hsl(${hue} 70% 20%)`);
  ctx.fillStyle = ball;
  ctx.beginPath();
  ctx.arc(cx, cy, r, 0, Math.PI * 2);
  ctx.fill();
  // Sensor-like noise, so the file is not a trivially flat image.
  const pixels = ctx.getImageData(0, 0, width, height);
  let state = seed * 9301 + 49297;
  for (let i = 0; i < pixels.data.length; i += 4) {
    state = (state * 9301 + 49297) % 233280;
    const noise = (state / 233280 - 0.5) * 14;
    pixels.data[i] += noise;
    pixels.data[i + 1] += noise;
    pixels.data[i + 2] += noise;
  }
  ctx.putImageData(pixels, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return new File([blob], `test-sample-${seed + 1}.png`, { type: "image/png" });
}

/** A PNG with the second half of its bytes gone: a real decode failure on the server. */
export async function corruptImage() {
  const whole = await sampleImage(99);
  const half = whole.slice(0, Math.floor(whole.size / 2), "image/png");
  return new File([half], "test-corrupt.png", { type: "image/png" });
}

class DevPanel extends HTMLElement {
  connectedCallback() {
    if (this._ready) return;
    this._ready = true;
    this.hidden = true;
    this._seed = 0;
    store.on("config", () => this._update());
    this._update();
  }

  _update() {
    const dev = Boolean(store.config?.dev);
    this.hidden = !dev;
    if (dev && !this.firstElementChild) this._build();
  }

  _build() {
    this.innerHTML = `
      <button type="button" class="dev-panel__toggle" aria-expanded="false" aria-controls="dev-panel-body">
        Test</button>
      <section class="dev-panel__body" id="dev-panel-body" aria-labelledby="dev-panel-title" hidden>
        <header class="dev-panel__head">
          <h2 id="dev-panel-title">Test panel</h2>
          <button type="button" class="close" data-action="close" aria-label="Close test panel">✕</button>
        </header>
        <p class="dev-panel__warning" role="note"><strong>These create real jobs</strong> on this
          server (they show in the queue and history, and use the model).</p>
        <label class="dev-panel__file">Image to use (optional):
          <input type="file" accept="image/*" name="sample"></label>
        <div class="dev-panel__buttons">
          ${SCENARIOS.map(([id, label, hint]) =>
            `<button type="button" data-scenario="${id}" title="${escapeHtml(hint)}">${escapeHtml(label)}</button>`,
          ).join("")}
        </div>
        <ol class="dev-panel__log" aria-live="polite" aria-label="Test log"></ol>
      </section>`;
    const toggle = this.querySelector(".dev-panel__toggle");
    const body = this.querySelector(".dev-panel__body");
    const show = (open) => {
      body.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
    };
    toggle.addEventListener("click", () => show(body.hidden));
    this.querySelector('[data-action="close"]').addEventListener("click", () => {
      show(false);
      toggle.focus();
    });
    this.addEventListener("click", (event) => {
      const button = event.target.closest("[data-scenario]");
      if (button) this._run(button);
    });
  }

  _log(text, kind = "info") {
    const log = this.querySelector(".dev-panel__log");
    const item = document.createElement("li");
    item.dataset.kind = kind;
    item.innerHTML = `<time>${escapeHtml(time(new Date().toISOString()))}</time> ${escapeHtml(text)}`;
    log.prepend(item);
    while (log.children.length > 30) log.lastElementChild.remove();
  }

  async _images(count) {
    const picked = this.querySelector('[name="sample"]').files[0];
    const files = [];
    for (let i = 0; i < count; i += 1) {
      if (picked) files.push(new File([picked], count > 1 ? `${i + 1}-${picked.name}` : picked.name, { type: picked.type }));
      else files.push(await sampleImage(this._seed++));
    }
    return files;
  }

  async _upload(files, options = {}) {
    const result = await api.upload(files, options);
    store.upsertBatches([result.batch]);
    store.upsertJobs(result.jobs);
    this._log(`Batch “${batchName(result.batch)}”: ${result.jobs.length} job(s)`);
    for (const rejected of result.rejected || []) this._log(`Refused ${rejected.file_name}: ${rejected.message}`, "error");
    return result;
  }

  async _run(button) {
    const scenario = button.dataset.scenario;
    button.disabled = true;
    try {
      if (scenario === "single") await this._upload(await this._images(1));
      else if (scenario === "batch") await this._upload(await this._images(5), { name: "Test batch of 5" });
      else if (scenario === "success") await this._upload(await this._images(2), { name: "Test success" });
      else if (scenario === "concurrent") {
        const files = await this._images(4);
        await Promise.all(files.map((file, i) => this._upload([file], { name: `Concurrent ${i + 1} of 4` })));
      } else if (scenario === "error") {
        await this._upload([await corruptImage()], { name: "Test corrupt file" });
      } else if (scenario === "warning") {
        const { batch } = await this._upload(await this._images(3), { name: "Test cancel" });
        // Let the first job start, so the cancel also stops a running inference.
        await new Promise((resolve) => setTimeout(resolve, 600));
        const { cancelled } = await api.cancelBatch(batch.id);
        this._log(`Cancelled ${cancelled.length} job(s) of “${batchName(batch)}”`);
      } else if (scenario === "info") {
        await Promise.all([
          this._upload(await this._images(1), { name: "Session part 1" }),
          this._upload(await this._images(1), { name: "Session part 2" }),
        ]);
        this._log("“Session complete” comes once every batch of the current session has ended.");
      }
    } catch (error) {
      this._log(`${button.textContent}: ${error.message}`, "error");
    } finally {
      button.disabled = false;
    }
  }
}

customElements.define("dev-panel", DevPanel);
