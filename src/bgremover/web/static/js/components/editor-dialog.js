// <editor-dialog>: put a finished cut-out on a colour or on an image (optionally blurred),
// and set the subject's brightness and contrast.
//
// Opens on bgremover:open {panel: "editor", jobId}; closes on bgremover:close, Esc, its
// buttons or a click on the backdrop. The preview is drawn on a <canvas> in the browser, at
// screen size so dragging the blur slider stays smooth. "Download" renders the same picture
// at full size and saves it as PNG; "Save as new result" asks the server for a derived job
// (POST /api/jobs/{id}/derive) that runs through the queue like any other and appears live.

import { api, ApiError } from "../api.js";
import { PanelDialog } from "../panels.js";
import { store } from "../store.js";

// Longest side of the preview canvas, in canvas pixels; small results are drawn larger so
// the preview fills the dialog (CSS then fits the canvas to the screen).
const PREVIEW_MAX = 1024;

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.decoding = "async";
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the image could not be loaded"));
    image.src = src;
  });
}

/** A clip's result as a muted, looping <video> once its first frame is in; it is drawn like
 * an image (drawImage takes either), so `naturalWidth`/`naturalHeight` are its frame's size. */
function loadClip(src) {
  return new Promise((resolve, reject) => {
    const video = document.createElement("video");
    Object.assign(video, { muted: true, loop: true, playsInline: true, preload: "auto" });
    video.onloadeddata = () => {
      Object.assign(video, { naturalWidth: video.videoWidth, naturalHeight: video.videoHeight });
      video.play().catch(() => {}); // paused where autoplay is refused: its first frame shows
      resolve(video);
    };
    video.onerror = () => reject(new Error("the clip could not be loaded"));
    video.src = src;
  });
}

/** Draw the cut-out over its background on `canvas`, whose size sets the scale. */
function compose(canvas, cutout, { mode, color, background, blur, brightness, contrast }) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  if (mode === "color") {
    ctx.fillStyle = color;
    ctx.fillRect(0, 0, width, height);
  } else if (mode === "image" && background) {
    // Like the server: scale to cover, centre, then Gaussian blur with radius `blur` in
    // full-size pixels (CSS blur() takes the same standard deviation). Drawn larger by three
    // radii on every side so the blur does not fade the edges towards transparency.
    const radius = blur * (width / cutout.naturalWidth);
    const margin = radius * 3;
    const scale = Math.max((width + 2 * margin) / background.naturalWidth,
      (height + 2 * margin) / background.naturalHeight);
    const w = background.naturalWidth * scale;
    const h = background.naturalHeight * scale;
    ctx.filter = radius > 0 ? `blur(${radius}px)` : "none";
    ctx.drawImage(background, (width - w) / 2, (height - h) / 2, w, h);
    ctx.filter = "none";
  }
  // The server applies the same CSS formulas to the subject alone (engine/composite.py).
  ctx.filter = brightness !== 1 || contrast !== 1
    ? `brightness(${brightness}) contrast(${contrast})` : "none";
  ctx.drawImage(cutout, 0, 0, width, height);
  ctx.filter = "none";
}

const PERCENT_SLIDERS = ["brightness", "contrast"];

class EditorDialog extends PanelDialog {
  static panel = "editor";

  markup() {
    return `
      <dialog class="editor-dialog" aria-labelledby="editor-title">
        <header class="dialog__header">
          <h2 id="editor-title">Edit result</h2>
          <span class="editor-dialog__name muted"></span>
          <button type="button" class="close" data-action="close" aria-label="Close editor">✕</button>
        </header>
        <div class="dialog__body editor-dialog__body">
          <div class="editor-dialog__stage">
            <canvas class="editor-dialog__canvas checkerboard" aria-label="Preview"></canvas>
            <p class="editor-dialog__loading muted">Loading…</p>
          </div>
          <form class="editor-dialog__controls">
            <fieldset>
              <legend>Background</legend>
              <label><input type="radio" name="mode" value="none"> Transparent</label>
              <label><input type="radio" name="mode" value="color" checked> Colour
                <input type="color" name="color" value="#ffffff" aria-label="Background colour"></label>
              <label><input type="radio" name="mode" value="image"> Image
                <input type="file" name="image" accept="image/png,image/jpeg,image/webp"
                       aria-label="Background image"></label>
              <label class="editor-dialog__slider">Blur
                <input type="range" name="blur" min="0" max="40" step="1" value="0"
                       aria-describedby="editor-blur-value">
                <output id="editor-blur-value" name="blurValue">0</output></label>
            </fieldset>
            <fieldset>
              <legend>Subject</legend>
              <label class="editor-dialog__slider">Brightness
                <input type="range" name="brightness" min="0" max="200" step="5" value="100"
                       aria-describedby="editor-brightness-value">
                <output id="editor-brightness-value" name="brightnessValue">100%</output></label>
              <label class="editor-dialog__slider">Contrast
                <input type="range" name="contrast" min="0" max="200" step="5" value="100"
                       aria-describedby="editor-contrast-value">
                <output id="editor-contrast-value" name="contrastValue">100%</output></label>
            </fieldset>
            <p class="editor-dialog__message" role="alert" hidden></p>
            <div class="editor-dialog__actions">
              <button type="button" data-action="download">Download PNG</button>
              <button type="submit" class="primary" data-action="save">Save as new result</button>
              <button type="button" data-action="close">Cancel</button>
            </div>
          </form>
        </div>
      </dialog>`;
  }

  setUp() {
    this.form = this.querySelector("form");
    this.canvas = this.querySelector("canvas");
    this._name = this.querySelector(".editor-dialog__name");
    this._loading = this.querySelector(".editor-dialog__loading");
    this._message = this.querySelector(".editor-dialog__message");

    this.form.addEventListener("input", (event) => this._onInput(event));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this._save();
    });
  }

  onAction(action) {
    if (action === "download") this._download();
  }

  closed() {
    this._reset();
  }

  /** Opens on the result of job `jobId`. */
  async open({ jobId } = {}) {
    if (!jobId) return;
    this._reset();
    this.jobId = jobId;
    const job = store.jobs.get(jobId);
    this._name.textContent = job?.file_name || "";
    this._setBusy(true);
    this._loading.hidden = false;
    this.show();
    try {
      // PNG keeps the transparency (a stored WebP result is converted on the fly); a clip's
      // WebM keeps it too and plays, redrawn on every frame.
      const clip = job?.result?.format === "webm";
      const cutout = clip
        ? await loadClip(api.resultUrl(jobId))
        : await loadImage(api.resultUrl(jobId, { format: "png" }));
      if (this.jobId !== jobId) return; // opened for another job meanwhile
      this.cutout = cutout;
      const scale = PREVIEW_MAX / Math.max(cutout.naturalWidth, cutout.naturalHeight);
      this.canvas.width = Math.round(cutout.naturalWidth * scale);
      this.canvas.height = Math.round(cutout.naturalHeight * scale);
      this._loading.hidden = true;
      this._setBusy(false);
      this._draw();
      if (clip) this._play(cutout);
    } catch (error) {
      this._loading.hidden = true;
      this._say(`Cannot edit this result: ${error.message}`);
    }
  }

  _reset() {
    this.jobId = null;
    this.cutout = null;
    this.background = null;
    if (this._backgroundUrl) URL.revokeObjectURL(this._backgroundUrl);
    this._backgroundUrl = null;
    this.form.reset();
    this.form.elements.blurValue.value = "0";
    for (const name of PERCENT_SLIDERS) this.form.elements[`${name}Value`].value = "100%";
    this._say("");
    this.canvas.getContext("2d").clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  _settings() {
    const form = this.form.elements;
    return {
      mode: form.mode.value,
      color: form.color.value,
      background: this.background,
      blur: Number(form.blur.value),
      brightness: Number(form.brightness.value) / 100,
      contrast: Number(form.contrast.value) / 100,
    };
  }

  async _onInput(event) {
    const form = this.form.elements;
    if (event.target === form.color) form.mode.value = "color";
    if (event.target === form.blur) form.blurValue.value = form.blur.value;
    for (const name of PERCENT_SLIDERS) {
      if (event.target === form[name]) form[`${name}Value`].value = `${form[name].value}%`;
    }
    if (event.target === form.image) {
      const file = form.image.files[0];
      if (!file) return;
      form.mode.value = "image";
      if (this._backgroundUrl) URL.revokeObjectURL(this._backgroundUrl);
      this._backgroundUrl = URL.createObjectURL(file);
      try {
        this.background = await loadImage(this._backgroundUrl);
        this._say("");
      } catch {
        this.background = null;
        this._say(`${file.name} is not an image this browser can show.`);
      }
    }
    this._draw();
  }

  /** Redraw a playing clip on every frame until another result (or none) is open. */
  _play(video) {
    const next = () => {
      if (this.cutout !== video) return video.pause();
      this._draw();
      requestAnimationFrame(next);
    };
    requestAnimationFrame(next);
  }

  // Slider input can fire faster than frames; draw at most once per frame.
  _draw() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = null;
      if (this.cutout) compose(this.canvas, this.cutout, this._settings());
    });
  }

  async _download() {
    if (!this.cutout) return;
    const full = document.createElement("canvas");
    full.width = this.cutout.naturalWidth;
    full.height = this.cutout.naturalHeight;
    compose(full, this.cutout, this._settings());
    const blob = await new Promise((resolve) => full.toBlob(resolve, "image/png"));
    if (!blob) return this._say("The picture is too large for this browser to save.");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    const stem = (store.jobs.get(this.jobId)?.file_name || "image").replace(/\.[^.]+$/, "");
    link.download = `${stem}-edited.png`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  async _save() {
    const jobId = this.jobId;
    if (!jobId) return;
    const settings = this._settings();
    if (settings.mode === "image" && !this.form.elements.image.files[0]) {
      return this._say("Choose a background image first.");
    }
    const form = new FormData();
    form.append("format", "png");
    if (settings.mode === "color") form.append("background_color", settings.color);
    if (settings.mode === "image") {
      form.append("background_image", this.form.elements.image.files[0]);
      form.append("background_blur", String(settings.blur));
    }
    for (const name of PERCENT_SLIDERS) {
      if (settings[name] !== 1) form.append(name, String(settings[name]));
    }
    this._setBusy(true);
    try {
      const job = await api.deriveJob(jobId, form);
      if (!store.jobs.has(job.id)) store.upsertJobs([job]); // the events may be ahead of us
      this.close();
      window.dispatchEvent(new CustomEvent("bgremover:view-job", { detail: { jobId: job.id } }));
    } catch (error) {
      this._say(error instanceof ApiError ? error.message : `Saving failed: ${error.message}`);
    } finally {
      this._setBusy(false);
    }
  }

  _say(message) {
    this._message.textContent = message;
    this._message.hidden = !message;
  }

  _setBusy(busy) {
    for (const button of this.form.querySelectorAll("[data-action=download], [data-action=save]")) {
      button.disabled = busy;
    }
  }
}

customElements.define("editor-dialog", EditorDialog);
